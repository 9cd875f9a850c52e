// Gateway API routes -> attached to Gateway listeners or (GAMMA) Services, backends resolved,
// with the upstream Accepted / ResolvedRefs conditions and reasons.
import { keyOf } from '../config/resource.js';
import { AnalysisSink } from './analysis.js';
import type { GRPCRouteRule } from '../config/kinds/gateway/grpc-route.js';
import type { HTTPRouteRule } from '../config/kinds/gateway/http-route.js';
import { condition, CONTROLLER_NAME, hostnamesIntersect } from './conditions.js';
import type { GatewayDraft } from './gateways.js';
import type {
  BackendModel,
  ConditionModel,
  ParentRefModel,
  RouteModel,
  RouteParentStatus,
  RouteRuleModel,
  ServiceModel,
  AnalysisMessage,
  ResourceStatusModel,
} from './mesh-model.js';
import { referenceAllowed, type RefFrom, type RefTo } from './reference-grants.js';
import type { ResourceIndex } from './resource-index.js';
import { matchesSelector } from './selectors.js';

const GW_GROUP = 'gateway.networking.k8s.io';

interface ParentRefLike {
  readonly group?: string;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name: string;
  readonly sectionName?: string;
  readonly port?: number;
}
interface BackendRefLike {
  readonly group?: string;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name: string;
  readonly port?: number;
  readonly weight?: number;
  readonly filters?: readonly FilterLike[];
}
interface FilterLike {
  readonly type: string;
  readonly requestMirror?: { readonly backendRef: BackendRefLike };
}
export interface RouteLike {
  readonly kind: RouteModel['kind'];
  readonly namespace: string | undefined;
  readonly name: string;
  readonly metadata?: { readonly creationTimestamp?: unknown };
  readonly spec: {
    readonly parentRefs?: readonly ParentRefLike[];
    readonly hostnames?: readonly string[];
    readonly rules?: readonly {
      readonly name?: string;
      readonly backendRefs?: readonly BackendRefLike[];
      readonly filters?: readonly FilterLike[];
      readonly sessionPersistence?: unknown;
    }[];
  };
}

/** creationTimestamp as RFC 3339 text (YAML may have parsed it into a Date). */
export function timestampOf(v: unknown): string | undefined {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v.toISOString();
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export interface ServiceLookup {
  byKey(namespace: string, name: string): ServiceModel | undefined;
  byHostname(hostname: string): ServiceModel | undefined;
  /** The first host of a ServiceEntry. */
  byServiceEntry(namespace: string, name: string): ServiceModel | undefined;
}

/** What compiling a route may look at: narrow lookups, so results can be cached by what was looked up. */
export interface RouteEnv extends ServiceLookup {
  gateway(namespace: string, name: string): GatewayDraft | undefined;
  namespaceLabels(namespace: string): Readonly<Record<string, string>> | undefined;
  referenceAllowed(from: RefFrom, to: RefTo): boolean;
}

export interface CompiledRoute {
  readonly model: RouteModel;
  readonly status: ResourceStatusModel;
  readonly messages: readonly AnalysisMessage[];
}

export function routeEnv(index: ResourceIndex, gateways: readonly GatewayDraft[], services: ServiceLookup): RouteEnv {
  const gwByKey = new Map(gateways.map((g) => [`${g.model.namespace}/${g.model.name}`, g]));
  return {
    byKey: (ns, name) => services.byKey(ns, name),
    byHostname: (h) => services.byHostname(h),
    byServiceEntry: (ns, name) => services.byServiceEntry(ns, name),
    gateway: (ns, name) => gwByKey.get(`${ns}/${name}`),
    namespaceLabels: (ns) => index.get('Namespace', undefined, ns)?.metadata.labels,
    referenceAllowed: (from, to) => referenceAllowed(index, from, to),
  };
}

export function routeResources(index: ResourceIndex): RouteLike[] {
  return [
    ...(index.all('HTTPRoute') as readonly RouteLike[]),
    ...(index.all('GRPCRoute') as readonly RouteLike[]),
    ...(index.all('TCPRoute') as readonly RouteLike[]),
    ...(index.all('TLSRoute') as readonly RouteLike[]),
  ];
}

export function compileRoute(route: RouteLike, env: RouteEnv): CompiledRoute {
  const analysis = new AnalysisSink();
  const ns = route.namespace!;
  const key = keyOf(route);
  const hostnames = route.spec.hostnames ?? [];

  // Backends first: ResolvedRefs is the same for every parent.
  const refProblems: { reason: string; message: string; field: string }[] = [];
  const rules: RouteRuleModel[] = (route.spec.rules ?? []).map((rule, ri) => {
    const backends = (rule.backendRefs ?? []).map((b, bi) => {
      const field = `spec.rules[${ri}].backendRefs[${bi}]`;
      const res = resolveBackend(route, b, env);
      if (res.problem) refProblems.push({ ...res.problem, field });
      const m: { -readonly [K in keyof BackendModel]: BackendModel[K] } = {
        weight: b.weight ?? 1,
        field,
        resolved: !res.problem,
      };
      if (res.service) m.service = res.service.id;
      if (b.port !== undefined) m.port = b.port;
      return m;
    });
    reportUnsupported(rule, ri, key, analysis);
    const mirrors: BackendModel[] = [];
    (rule.filters ?? []).forEach((f, fi) => {
      if (f.type !== 'RequestMirror' || !f.requestMirror) return;
      const b = f.requestMirror.backendRef;
      const field = `spec.rules[${ri}].filters[${fi}].requestMirror.backendRef`;
      const res = resolveBackend(route, b, env);
      if (res.problem) refProblems.push({ ...res.problem, field });
      const mm: { -readonly [K in keyof BackendModel]: BackendModel[K] } = { weight: 1, field, resolved: !res.problem };
      if (res.service) mm.service = res.service.id;
      if (b.port !== undefined) mm.port = b.port;
      mirrors.push(mm);
    });
    const m: { -readonly [K in keyof RouteRuleModel]: RouteRuleModel[K] } = { index: ri, backends };
    if (mirrors.length) m.mirrors = mirrors;
    if (rule.name !== undefined) m.name = rule.name;
    if (route.kind === 'HTTPRoute') m.http = rule as unknown as HTTPRouteRule;
    if (route.kind === 'GRPCRoute') m.grpc = rule as unknown as GRPCRouteRule;
    return m;
  });
  for (const p of refProblems)
    analysis.condition({ type: 'ResolvedRefs', status: 'False', reason: p.reason }, key, p.message, p.field);
  const resolvedRefs: ConditionModel = refProblems.length
    ? condition('ResolvedRefs', false, refProblems[0]!.reason, refProblems.map((p) => p.message).join('; '))
    : condition('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved');

  const attachedTo: string[] = [];
  const parents: RouteParentStatus[] = (route.spec.parentRefs ?? []).map((p, pi) => {
    const parentRef: ParentRefModel = {
      group: p.group ?? GW_GROUP,
      kind: p.kind ?? 'Gateway',
      namespace: p.namespace ?? ns,
      name: p.name,
      ...(p.sectionName !== undefined ? { sectionName: p.sectionName } : {}),
      ...(p.port !== undefined ? { port: p.port } : {}),
    };
    const accepted = attach(route, parentRef, hostnames, env, attachedTo);
    if (accepted.status === 'False') analysis.condition(accepted, key, accepted.message, `spec.parentRefs[${pi}]`);
    return { parentRef, controllerName: CONTROLLER_NAME, conditions: [accepted, resolvedRefs] };
  });

  const created = timestampOf(route.metadata?.creationTimestamp);
  const model: RouteModel = {
    id: `${route.kind}/${ns}/${route.name}`,
    source: key,
    kind: route.kind,
    namespace: ns,
    hostnames,
    ...(created !== undefined ? { creationTimestamp: created } : {}),
    rules,
    attachedTo: attachedTo.sort(),
    parents,
  };
  return { model, status: { resource: key, parents }, messages: analysis.messages };
}

/** Filters Trellis cannot apply: the translation answers 500 for the rule (Gateway API: never skip a filter). */
export const UNSUPPORTED_FILTERS: ReadonlySet<string> = new Set(['ExtensionRef', 'ExternalAuth']);

function reportUnsupported(
  rule: NonNullable<RouteLike['spec']['rules']>[number],
  ri: number,
  key: ReturnType<typeof keyOf>,
  analysis: AnalysisSink,
): void {
  const check = (filters: readonly FilterLike[] | undefined, at: string) =>
    (filters ?? []).forEach((f, fi) => {
      if (UNSUPPORTED_FILTERS.has(f.type))
        analysis.add(
          'UnsupportedRouteFeature',
          key,
          `filter type ${f.type} is not supported: requests matching this rule answer 500`,
          `${at}.filters[${fi}]`,
        );
    });
  check(rule.filters, `spec.rules[${ri}]`);
  (rule.backendRefs ?? []).forEach((b, bi) => check(b.filters, `spec.rules[${ri}].backendRefs[${bi}]`));
  if (rule.sessionPersistence !== undefined)
    analysis.add(
      'UnsupportedRouteFeature',
      key,
      'sessionPersistence is not supported and is ignored',
      `spec.rules[${ri}].sessionPersistence`,
    );
}

function attach(
  route: RouteLike,
  ref: ParentRefModel,
  hostnames: readonly string[],
  env: RouteEnv,
  attachedTo: string[],
): ConditionModel {
  const ns = route.namespace!;
  const group = ref.group === 'core' ? '' : ref.group;
  if (group === '' && ref.kind === 'Service') {
    // GAMMA: a route whose parent is a Service configures mesh traffic to it.
    const svc = env.byKey(ref.namespace, ref.name);
    if (!svc)
      return condition('Accepted', false, 'NoMatchingParent', `parent Service ${ref.namespace}/${ref.name} not found`);
    if (ref.port !== undefined && !svc.ports.some((p) => p.port === ref.port)) {
      return condition(
        'Accepted',
        false,
        'NoMatchingParent',
        `Service ${ref.namespace}/${ref.name} has no port ${ref.port}`,
      );
    }
    attachedTo.push(svc.id);
    return condition('Accepted', true, 'Accepted', `attached to Service ${ref.namespace}/${ref.name}`);
  }
  if (group !== GW_GROUP || ref.kind !== 'Gateway') {
    return condition(
      'Accepted',
      false,
      'UnsupportedValue',
      `parentRef kind ${ref.group}/${ref.kind} is not supported (use a Gateway, or a Service for mesh routes)`,
    );
  }
  const gw = env.gateway(ref.namespace, ref.name);
  if (!gw)
    return condition('Accepted', false, 'NoMatchingParent', `parent Gateway ${ref.namespace}/${ref.name} not found`);

  let candidates = gw.model.listeners;
  if (ref.sectionName !== undefined) candidates = candidates.filter((l) => l.name === ref.sectionName);
  if (ref.port !== undefined) candidates = candidates.filter((l) => l.port === ref.port);
  if (candidates.length === 0) {
    const what = [
      ref.sectionName !== undefined ? `sectionName ${ref.sectionName}` : '',
      ref.port !== undefined ? `port ${ref.port}` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    return condition(
      'Accepted',
      false,
      'NoMatchingParent',
      `Gateway ${ref.namespace}/${ref.name} has no listener with ${what}`,
    );
  }
  const gwSpec = gw.resource.spec;
  let allowedSomewhere = false;
  let accepted = false;
  for (const l of candidates) {
    const spec = gwSpec.listeners.find((x) => x.name === l.name)!;
    const kinds = gw.allowedKinds.get(l.name) ?? [];
    if (!kinds.includes(route.kind)) continue;
    const from = spec.allowedRoutes?.namespaces?.from ?? 'Same';
    let nsOk = from === 'All' || (from === 'Same' && ns === gw.model.namespace);
    if (from === 'Selector') {
      const nsLabels = env.namespaceLabels(ns) ?? {};
      const labels = { 'kubernetes.io/metadata.name': ns, ...nsLabels };
      const sel = spec.allowedRoutes?.namespaces?.selector;
      nsOk = matchesSelector(sel, labels);
    }
    if (!nsOk) continue;
    allowedSomewhere = true;
    if (l.hostname !== undefined && hostnames.length > 0 && !hostnames.some((h) => hostnamesIntersect(h, l.hostname!)))
      continue;
    accepted = true;
    attachedTo.push(`${gw.model.id}/${l.name}`);
  }
  if (accepted) return condition('Accepted', true, 'Accepted', `attached to Gateway ${ref.namespace}/${ref.name}`);
  if (!allowedSomewhere) {
    return condition(
      'Accepted',
      false,
      'NotAllowedByListeners',
      `no listener of Gateway ${ref.namespace}/${ref.name} allows ${route.kind} from namespace ${ns}`,
    );
  }
  return condition(
    'Accepted',
    false,
    'NoMatchingListenerHostname',
    `hostnames ${hostnames.join(', ')} match no listener hostname of Gateway ${ref.namespace}/${ref.name}`,
  );
}

function resolveBackend(
  route: RouteLike,
  b: BackendRefLike,
  env: RouteEnv,
): { service?: ServiceModel; problem?: { reason: string; message: string } } {
  const ns = route.namespace!;
  const group = b.group === undefined || b.group === 'core' ? '' : b.group;
  const kind = b.kind ?? 'Service';
  const refNs = b.namespace ?? ns;
  let svc: ServiceModel | undefined;
  if (group === '' && kind === 'Service') {
    svc = env.byKey(refNs, b.name);
  } else if (group === 'networking.istio.io' && kind === 'Hostname') {
    svc = env.byHostname(b.name);
  } else if (group === 'networking.istio.io' && kind === 'ServiceEntry') {
    svc = env.byServiceEntry(refNs, b.name);
  } else {
    return {
      problem: {
        reason: 'InvalidKind',
        message: `backend kind ${group || 'core'}/${kind} is not supported (Service, or networking.istio.io Hostname/ServiceEntry)`,
      },
    };
  }
  if (
    !env.referenceAllowed(
      { group: GW_GROUP, kind: route.kind, namespace: ns },
      { group, kind, namespace: refNs, name: b.name },
    )
  ) {
    return {
      problem: {
        reason: 'RefNotPermitted',
        message: `${kind} ${refNs}/${b.name} is in another namespace and no ReferenceGrant in ${refNs} allows ${route.kind}s from ${ns}`,
      },
    };
  }
  if (!svc) return { problem: { reason: 'BackendNotFound', message: `${kind} ${refNs}/${b.name} not found` } };
  if (b.port !== undefined && !svc.ports.some((p) => p.port === b.port)) {
    return {
      service: svc,
      problem: {
        reason: 'BackendNotFound',
        message: `${kind} ${refNs}/${b.name} has no port ${b.port} (ports: ${svc.ports.map((p) => p.port).join(', ') || 'none'})`,
      },
    };
  }
  return { service: svc };
}
