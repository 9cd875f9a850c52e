// Policies bound to what they select: workloads (selectors), a namespace, the whole mesh
// (Istio's root namespace), or targetRefs (Gateways / Services through their waypoint).
import type { MeshSpec } from '../config/kinds/trellis/mesh.js';
import type { CiliumRule } from '../config/kinds/cilium/cilium-network-policy.js';
import { own } from '../util/own.js';
import { BUILTIN_CLASSES } from './gateways.js';
import { keyOf, type Resource } from '../config/resource.js';
import type { AnalysisSink } from './analysis.js';
import type { PolicyBindingModel, PolicyKind, ServiceModel, WorkloadModel } from './mesh-model.js';
import type { ResourceIndex } from './resource-index.js';
import { timestampOf } from './routes.js';
import type { WorkloadLookup } from './services.js';
import { isEmptySelector, matchesLabels, matchesSelector, type SelectorLike } from './selectors.js';

interface TargetRef {
  readonly group?: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}

interface IstioPolicyLike {
  readonly selector?: { readonly matchLabels?: Readonly<Record<string, string>> };
  readonly targetRef?: TargetRef;
  readonly targetRefs?: readonly TargetRef[];
}

export interface PolicyContext {
  readonly index: ResourceIndex;
  readonly mesh: MeshSpec;
  readonly workloads: readonly WorkloadModel[];
  readonly lookup: WorkloadLookup;
  readonly services: readonly ServiceModel[];
  readonly analysis: AnalysisSink;
}

export function compilePolicies(ctx: PolicyContext): PolicyBindingModel[] {
  const out: PolicyBindingModel[] = [];
  for (const p of ctx.index.all('AuthorizationPolicy')) {
    out.push({ ...istioBinding(ctx, p, 'AuthorizationPolicy', p.spec, authzNeedsL7(p)), authorization: p.spec });
    warnCustomAction(ctx, p);
  }
  for (const p of ctx.index.all('PeerAuthentication'))
    out.push({ ...istioBinding(ctx, p, 'PeerAuthentication', p.spec, false), peerAuthentication: p.spec });
  for (const p of ctx.index.all('RequestAuthentication'))
    out.push({ ...istioBinding(ctx, p, 'RequestAuthentication', p.spec, true), requestAuthentication: p.spec });
  for (const p of ctx.index.all('NetworkPolicy')) out.push(networkPolicyBinding(ctx, p));
  for (const p of ctx.index.all('CiliumNetworkPolicy')) out.push(ciliumBinding(ctx, p, 'CiliumNetworkPolicy'));
  for (const p of ctx.index.all('CiliumClusterwideNetworkPolicy'))
    out.push(ciliumBinding(ctx, p, 'CiliumClusterwideNetworkPolicy'));
  warnL7WithoutWaypoint(ctx, out);
  return out;
}

function istioBinding(
  ctx: PolicyContext,
  r: Resource,
  kind: PolicyKind,
  spec: IstioPolicyLike,
  needsL7: boolean,
): PolicyBindingModel {
  const ns = r.namespace!;
  const key = keyOf(r);
  const created = timestampOf(r.metadata.creationTimestamp);
  const base = {
    id: `${kind}/${ns}/${r.name}`,
    source: key,
    kind,
    namespace: ns,
    needsL7,
    ...(created !== undefined ? { creationTimestamp: created } : {}),
  };
  const refs = spec.targetRefs ?? (spec.targetRef ? [spec.targetRef] : []);
  if (refs.length > 0) {
    const targets: string[] = [];
    refs.forEach((t, i) => {
      const field = spec.targetRefs ? `spec.targetRefs[${i}]` : 'spec.targetRef';
      if (t.kind === 'GatewayClass') {
        // Cluster-scoped: a built-in class, or a GatewayClass resource.
        if (own(BUILTIN_CLASSES, t.name) === undefined && !ctx.index.get('GatewayClass', undefined, t.name)) {
          ctx.analysis.add('ReferencedResourceNotFound', key, `Referenced GatewayClass not found: "${t.name}"`, field);
        }
        targets.push(`GatewayClass/${t.name}`);
        return;
      }
      const tNs = t.namespace ?? ns;
      const found =
        t.kind === 'Gateway'
          ? ctx.index.get('Gateway', tNs, t.name)
          : t.kind === 'Service'
            ? ctx.index.get('Service', tNs, t.name)
            : t.kind === 'ServiceEntry'
              ? ctx.index.get('ServiceEntry', tNs, t.name)
              : undefined;
      if (!found) {
        ctx.analysis.add(
          'ReferencedResourceNotFound',
          key,
          `Referenced ${t.kind} not found: "${tNs}/${t.name}"`,
          field,
        );
      }
      targets.push(`${t.kind}/${tNs}/${t.name}`);
    });
    return { ...base, scope: 'target', workloads: [], targets: targets.sort() };
  }
  const inRoot = ns === ctx.mesh.rootNamespace;
  const hasSelector = !isEmptySelector(spec.selector);
  if (inRoot && hasSelector && kind === 'PeerAuthentication') {
    // Istio ignores a PeerAuthentication with a selector in the root namespace.
    ctx.analysis.add(
      'IgnoredPolicy',
      key,
      `a PeerAuthentication with a selector in the root namespace (${ns}) is ignored, as in Istio; put it in the workloads' namespace, or remove the selector to make it mesh-wide`,
      'spec.selector',
    );
    return { ...base, scope: 'workload', workloads: [], targets: [] };
  }
  // In the root namespace a selector matches workloads of every namespace (Istio).
  const candidates = inRoot ? ctx.workloads : ctx.lookup.inNamespace(ns);
  const match = spec.selector?.matchLabels;
  const workloads = candidates.filter((w) => matchesLabels(match, w.labels)).map((w) => w.id);
  const scope = inRoot && !hasSelector ? 'mesh' : hasSelector ? 'workload' : 'namespace';
  if (scope === 'workload' && workloads.length === 0) {
    ctx.analysis.add(
      'SelectorMatchesNothing',
      key,
      `spec.selector matches no workload ${inRoot ? 'in any namespace' : `in namespace ${ns}`}`,
      'spec.selector',
    );
  }
  return { ...base, scope, workloads, targets: [] };
}

/** Rules that look at HTTP attributes can only be enforced by an L7 proxy (a waypoint). */
function authzNeedsL7(p: Resource<'AuthorizationPolicy'>): boolean {
  for (const rule of p.spec.rules ?? []) {
    for (const f of rule.from ?? []) {
      const s = f.source as Readonly<Record<string, unknown>>;
      if (s.requestPrincipals || s.notRequestPrincipals) return true;
    }
    for (const t of rule.to ?? []) {
      const o = t.operation as Readonly<Record<string, unknown>>;
      if (o.methods || o.notMethods || o.paths || o.notPaths || o.hosts || o.notHosts) return true;
    }
    for (const w of rule.when ?? []) if (w.key.startsWith('request.')) return true;
  }
  return false;
}

/** Trellis has no ext_authz: a CUSTOM policy denies what its rules match (fail closed), say so. */
function warnCustomAction(ctx: PolicyContext, p: Resource<'AuthorizationPolicy'>): void {
  if (p.spec.action !== 'CUSTOM') return;
  const provider = p.spec.provider?.name;
  ctx.analysis.add(
    'ExternalAuthorizationUnavailable',
    keyOf(p),
    `action CUSTOM asks the external authorizer ${provider ? JSON.stringify(provider) : '(no provider set)'}, but Trellis has no ext_authz support: requests matching its rules are denied (fail closed) instead of being sent to it`,
    'spec.action',
  );
}

function networkPolicyBinding(ctx: PolicyContext, p: Resource<'NetworkPolicy'>): PolicyBindingModel {
  const ns = p.namespace!;
  const selector = p.spec.podSelector as SelectorLike | undefined;
  const workloads = ctx.lookup
    .inNamespace(ns)
    .filter((w) => matchesSelector(selector, w.labels))
    .map((w) => w.id);
  const scope = isEmptySelector(selector) ? 'namespace' : 'workload';
  if (scope === 'workload' && workloads.length === 0) {
    ctx.analysis.add(
      'SelectorMatchesNothing',
      keyOf(p),
      `spec.podSelector matches no workload in namespace ${ns}`,
      'spec.podSelector',
    );
  }
  return {
    id: `NetworkPolicy/${ns}/${p.name}`,
    source: keyOf(p),
    kind: 'NetworkPolicy',
    namespace: ns,
    scope,
    workloads,
    targets: [],
    needsL7: false,
    networkPolicy: p.spec,
  };
}

interface CiliumRuleLike {
  readonly endpointSelector?: SelectorLike;
  readonly nodeSelector?: SelectorLike;
  readonly ingress?: readonly {
    readonly toPorts?: readonly { readonly rules?: { readonly http?: readonly unknown[] } }[];
  }[];
  readonly egress?: readonly {
    readonly toPorts?: readonly { readonly rules?: { readonly http?: readonly unknown[] } }[];
  }[];
}

/** The labels Cilium gives every endpoint besides its own: namespace, service account, cluster. */
function ciliumLabels(w: WorkloadModel): Readonly<Record<string, string>> {
  return {
    ...w.labels,
    'io.kubernetes.pod.namespace': w.namespace,
    'io.cilium.k8s.policy.serviceaccount': w.serviceAccount,
    'io.cilium.k8s.policy.cluster': 'default',
  };
}

function ciliumBinding(
  ctx: PolicyContext,
  p: Resource,
  kind: 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy',
): PolicyBindingModel {
  const body = p as unknown as { spec?: CiliumRuleLike; specs?: readonly CiliumRuleLike[] };
  const rules = body.specs ?? (body.spec ? [body.spec] : []);
  const ns = p.namespace;
  const candidates = ns === undefined ? ctx.workloads : ctx.lookup.inNamespace(ns);
  const ids = new Set<string>();
  const targets = new Set<string>();
  let needsL7 = false;
  for (const rule of rules) {
    if (rule.nodeSelector) {
      for (const n of ctx.mesh.nodes ?? [])
        if (matchesSelector(rule.nodeSelector, n.labels ?? {})) targets.add(`Node/${n.name}`);
    } else {
      for (const w of candidates) if (matchesSelector(rule.endpointSelector, ciliumLabels(w))) ids.add(w.id);
    }
    for (const dir of [rule.ingress ?? [], rule.egress ?? []]) {
      for (const r of dir) for (const tp of r.toPorts ?? []) if ((tp.rules?.http ?? []).length > 0) needsL7 = true;
    }
  }
  const workloads = [...ids].sort();
  const scope =
    targets.size > 0
      ? 'target'
      : rules.every((r) => isEmptySelector(r.endpointSelector))
        ? ns === undefined
          ? 'mesh'
          : 'namespace'
        : 'workload';
  if (scope === 'workload' && workloads.length === 0) {
    ctx.analysis.add(
      'SelectorMatchesNothing',
      keyOf(p),
      `endpointSelector matches no workload${ns ? ` in namespace ${ns}` : ''}`,
      body.specs ? 'specs' : 'spec.endpointSelector',
    );
  }
  const base = {
    id: `${kind}/${ns === undefined ? '' : `${ns}/`}${p.name}`,
    source: keyOf(p),
    kind,
    scope,
    workloads,
    targets: [...targets].sort(),
    needsL7,
    cilium: ciliumRulesOf(p),
  } as const;
  return ns === undefined ? base : { ...base, namespace: ns };
}

/** The rules as written, spec first then specs[] (Cilium applies both), with their paths for naming. */
function ciliumRulesOf(p: Resource): { path: string; rule: CiliumRule }[] {
  const body = p as unknown as { spec?: CiliumRule; specs?: readonly CiliumRule[] };
  const out: { path: string; rule: CiliumRule }[] = [];
  if (body.spec) out.push({ path: 'spec', rule: body.spec });
  body.specs?.forEach((rule, i) => out.push({ path: `specs[${i}]`, rule }));
  return out;
}

/**
 * Istio ambient: selector-bound policies are enforced by the node proxies, which see only L4;
 * waypoints enforce policies bound with targetRefs. An L7 rule bound by selector is therefore
 * never enforced as written: say so instead of silently ignoring it.
 */
function warnL7WithoutWaypoint(ctx: PolicyContext, policies: readonly PolicyBindingModel[]): void {
  let fronted: Set<string> | undefined;
  for (const p of policies) {
    if (!p.needsL7 || p.scope === 'target' || p.workloads.length === 0) continue;
    if (p.cilium) {
      // Cilium HTTP ingress rules are enforced by the waypoint of a Service fronting the endpoint
      // (the node then admits the waypoint); egress HTTP rules and unfronted endpoints are not.
      fronted ??= new Set(ctx.services.filter((s) => s.waypoint).flatMap((s) => s.endpoints.map((e) => e.workload)));
      const missing = ciliumL7Unenforced(ctx, p, fronted);
      if (missing.length === 0) continue;
      ctx.analysis.add(
        'L7PolicyWithoutWaypoint',
        p.source,
        `has HTTP rules (toPorts[].rules.http) that no waypoint enforces for ${missing.join(', ')}: node proxies see L4 only, so those rules never allow there (fail closed). Put the workloads behind a waypoint (label their Service istio.io/use-waypoint); egress HTTP rules are not enforced yet`,
      );
      continue;
    }
    ctx.analysis.add(
      'L7PolicyWithoutWaypoint',
      p.source,
      `needs an L7 proxy (HTTP methods, paths, headers or JWT), but it is bound by selector, so only node proxies enforce it and they see L4 only (L7 ALLOW rules never match there). Bind it with targetRefs to the Service (or its waypoint Gateway), as Istio ambient requires`,
    );
  }
}

/** The workloads (ids) a Cilium policy's HTTP rules select that no waypoint enforces them for. */
function ciliumL7Unenforced(ctx: PolicyContext, p: PolicyBindingModel, fronted: ReadonlySet<string>): string[] {
  const ids = new Set(p.workloads);
  const selected = ctx.workloads.filter((w) => ids.has(w.id));
  const out = new Set<string>();
  const hasHttp = (rules: CiliumRuleLike['ingress']) =>
    (rules ?? []).some((r) => (r.toPorts ?? []).some((tp) => (tp.rules?.http ?? []).length > 0));
  for (const { rule } of p.cilium ?? []) {
    if (rule.nodeSelector) continue;
    const r = rule as CiliumRuleLike;
    const ingress = hasHttp(r.ingress);
    const egress = hasHttp(r.egress);
    if (!ingress && !egress) continue;
    for (const w of selected) {
      if (!matchesSelector(rule.endpointSelector, ciliumLabels(w))) continue;
      if (egress || !fronted.has(w.id)) out.add(w.id);
    }
  }
  return [...out].sort();
}
