// Kubernetes NetworkPolicy and CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy -> Envoy RBAC
// filter configs (envoy.extensions.filters.{network,http}.rbac.v3.RBAC), the one policy engine
// every enforcement point runs (src/proxy/rbac/evaluate.ts). Pure: a function of the model.
//
// Per enforcement point (a workload's inbound port, or a workload's outbound side):
//   trellis.networkpolicy.<dir>-deny  DENY  Cilium ingressDeny/egressDeny rules (deny wins, as in Cilium)
//   trellis.networkpolicy.<dir>       ALLOW present when the workload is isolated in that direction:
//                                           the union of every allow rule of every policy selecting it
// These filters are separate from the AuthorizationPolicy filters: both layers must allow, as a
// CNI and a mesh do when run together. RBAC policies are named "<Kind>/<ns>/<name>/ingress[<i>]"
// (Cilium rules from specs[] as ".../specs[<j>]/ingress[<i>]"), so a decision names its rule.
//
// Peers are matched by AUTHENTICATED identity (as Cilium mutual auth / Istio do), not by pod IP:
// a pod selector becomes the SPIFFE IDs of the workloads it selects, a namespace selector the
// SPIFFE IDs of those namespaces, CIDRs the source IP (direct_remote_ip). A plaintext peer
// therefore never matches a pod peer (fail closed). Egress rules are the same structure with the
// destination in the permissions (destination_ip of the selected workloads, CIDRs, ports).
//
// What cannot be known here fails closed: in an ALLOW rule it never matches, in a DENY rule it
// always matches (CIDR groups, node/group selectors, Kafka/DNS L7 rules, header secrets...).
// Cilium HTTP rules become HTTP header permissions: only an L7 engine evaluates them; at L4 the
// evaluator treats them as unknown, so the connection is refused rather than let through.
//
// Waypoints (Istio ambient's split): a service's waypoint runs its endpoints' ingress filters as
// HTTP RBAC with the real caller (`destinationPort` fixes the port entries: the waypoint's RBAC
// runs before routing and sees no destination port). The node, which sees the waypoint's
// identity, then admits the waypoint on a rule's HTTP ports (`waypointIdentities`, policies named
// ".../ingress[<i>]/via-waypoint") instead of failing closed: the waypoint enforced the rule.
// L3/L4-only rules get no such grant: at the node they see the waypoint's identity, as in Istio
// ambient. To have the waypoint enforce one with the real caller, give its toPorts entry a
// match-all HTTP rule (`rules: { http: [{}] }`).
import type { CiliumRule, Entity } from '../../config/kinds/cilium/cilium-network-policy.js';
import { parseCiliumPort } from '../../config/kinds/cilium/cilium-network-policy.js';
import type { NetworkPolicySpec } from '../../config/kinds/kubernetes/network-policy.js';
import type { MeshModel, PolicyBindingModel, WorkloadModel } from '../../model/mesh-model.js';
import { isEmptySelector, matchesSelector, type SelectorLike } from '../../model/selectors.js';
import type { EnvoyObject } from './route-match.js';

export const NETWORK_POLICY_HTTP_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
export const NETWORK_POLICY_NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

export type Direction = 'ingress' | 'egress';

export interface NetworkPolicyFilterOptions {
  /** network: an L4 filter chain (node inbound); http: an HCM's http_filters (an L7 engine). */
  readonly layer: 'network' | 'http';
  /** Network RBAC's required stat_prefix; defaults to the filter name. */
  readonly statPrefix?: string;
  /**
   * A waypoint chain (layer http): the workload port its traffic is delivered to. Port entries
   * are decided against it here, since the waypoint's RBAC sees no destination port.
   */
  readonly destinationPort?: number;
  /**
   * The node inbound (layer network): identities of the waypoints fronting the workload. An
   * ingress ALLOW rule whose ports carry HTTP rules admits them on those ports: the waypoint
   * already enforced the whole rule with the real caller.
   */
  readonly waypointIdentities?: readonly string[];
}

type Action = 'ALLOW' | 'DENY';

const ANY: EnvoyObject = { any: true };
const NO_ID: EnvoyObject = { not_id: { any: true } };
const NO_PERM: EnvoyObject = { not_rule: { any: true } };
const CILIUM_NS = 'io.kubernetes.pod.namespace';
const CILIUM_NS_LABELS = 'io.cilium.k8s.namespace.labels.';

const andIds = (ids: EnvoyObject[]): EnvoyObject =>
  ids.length === 0 ? ANY : ids.length === 1 ? ids[0]! : { and_ids: { ids } };
const orIds = (ids: EnvoyObject[]): EnvoyObject =>
  ids.length === 0 ? NO_ID : ids.length === 1 ? ids[0]! : { or_ids: { ids } };
const andPerm = (rules: EnvoyObject[]): EnvoyObject =>
  rules.length === 0 ? ANY : rules.length === 1 ? rules[0]! : { and_rules: { rules } };
const orPerm = (rules: EnvoyObject[]): EnvoyObject =>
  rules.length === 0 ? NO_PERM : rules.length === 1 ? rules[0]! : { or_rules: { rules } };

/** Something not evaluable here: an ALLOW never matches it, a DENY always does (fail closed). */
const unknownId = (a: Action): EnvoyObject => (a === 'ALLOW' ? NO_ID : ANY);
const unknownPerm = (a: Action): EnvoyObject => (a === 'ALLOW' ? NO_PERM : ANY);

function cidrRange(v: string): EnvoyObject {
  const [addr, len] = v.split('/') as [string, string | undefined];
  return {
    address_prefix: addr,
    prefix_len: { value: len !== undefined ? Number(len) : addr.includes(':') ? 128 : 32 },
  };
}

function hostCidr(address: string): string {
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}

/** A CIDR minus its exceptions, on the source (principal) or destination (permission) address. */
function cidrId(cidr: string, except: readonly string[] | undefined): EnvoyObject {
  const base: EnvoyObject = { direct_remote_ip: cidrRange(cidr) };
  if (!except?.length) return base;
  return andIds([base, { not_id: orIds(except.map((e) => ({ direct_remote_ip: cidrRange(e) }))) }]);
}
function cidrPerm(cidr: string, except: readonly string[] | undefined): EnvoyObject {
  const base: EnvoyObject = { destination_ip: cidrRange(cidr) };
  if (!except?.length) return base;
  return andPerm([base, { not_rule: orPerm(except.map((e) => ({ destination_ip: cidrRange(e) }))) }]);
}

function identityIds(workloads: readonly WorkloadModel[]): EnvoyObject {
  const ids = [...new Set(workloads.map((w) => w.identity))].sort();
  return orIds(ids.map((id) => ({ authenticated: { principal_name: { exact: id } } })));
}
function addressPerms(workloads: readonly WorkloadModel[]): EnvoyObject {
  const ips = [...new Set(workloads.map((w) => w.address))].sort();
  return orPerm(ips.map((ip) => ({ destination_ip: cidrRange(hostCidr(ip)) })));
}

/** Every identity of a namespace, including service accounts with no workload yet. */
function namespaceId(td: string, ns: string): EnvoyObject {
  return { authenticated: { principal_name: { prefix: `spiffe://${td}/ns/${ns}/sa/` } } };
}

// ---------------------------------------------------------------------------------------------------------
// Ports

interface PortSpec {
  readonly protocol: string;
  /** A number, a named port, or undefined for every port. */
  readonly port?: number | string;
  readonly endPort?: number;
}

/**
 * One port entry on the destination: a name resolves against the destination workload's ports
 * (none: no match). Only TCP (or Cilium's ANY) can match a Trellis listener, which is TCP.
 */
function portPerm(p: PortSpec, dest: WorkloadModel | undefined, fixed?: number): EnvoyObject | undefined {
  if (p.protocol !== 'TCP' && p.protocol !== 'ANY') return undefined;
  if (p.port === undefined || p.port === 0) return ANY;
  let start: number;
  let end: number; // inclusive
  if (typeof p.port === 'string') {
    const n = dest ? namedPort(dest, p.port) : undefined;
    if (n === undefined) return undefined;
    start = end = n;
  } else {
    start = p.port;
    end = p.endPort !== undefined && p.endPort > p.port ? p.endPort : p.port;
  }
  // A known destination port (a waypoint chain): decided now, exactly.
  if (fixed !== undefined) return fixed >= start && fixed <= end ? ANY : undefined;
  if (end > start) return { destination_port_range: { start, end: end + 1 } }; // Int32Range end is exclusive
  return { destination_port: start };
}

function namedPort(w: WorkloadModel, name: string): number | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(w.ports)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/** ORed port entries; absent or empty: every port. undefined: no entry can match. */
function portsPerm(
  ports: readonly PortSpec[] | undefined,
  dest: WorkloadModel | undefined,
  fixed?: number,
): EnvoyObject | undefined {
  if (!ports || ports.length === 0) return ANY;
  const perms = ports.map((p) => portPerm(p, dest, fixed)).filter((p): p is EnvoyObject => p !== undefined);
  if (perms.some((p) => p === ANY)) return ANY;
  return perms.length ? orPerm(perms) : undefined;
}

const hasNamedPort = (ports: readonly PortSpec[] | undefined): boolean =>
  (ports ?? []).some((p) => typeof p.port === 'string');

// ---------------------------------------------------------------------------------------------------------
// Filters

interface Built {
  readonly isolated: boolean;
  readonly allow: Record<string, EnvoyObject>;
  readonly deny: Record<string, EnvoyObject>;
}

function filter(name: string, action: Action, policies: Record<string, EnvoyObject>, o: NetworkPolicyFilterOptions) {
  const sorted: Record<string, EnvoyObject> = {};
  for (const k of Object.keys(policies).sort()) sorted[k] = policies[k]!;
  const rules = { action, policies: sorted };
  return {
    name,
    typed_config:
      o.layer === 'network'
        ? { '@type': NETWORK_POLICY_NETWORK_RBAC_TYPE, stat_prefix: o.statPrefix ?? name, rules }
        : { '@type': NETWORK_POLICY_HTTP_RBAC_TYPE, rules },
  };
}

function filters(dir: Direction, b: Built, o: NetworkPolicyFilterOptions): EnvoyObject[] {
  const out: EnvoyObject[] = [];
  if (Object.keys(b.deny).length) out.push(filter(`trellis.networkpolicy.${dir}-deny`, 'DENY', b.deny, o));
  // Isolated with no rule: an ALLOW filter without policies denies everything.
  if (b.isolated) out.push(filter(`trellis.networkpolicy.${dir}`, 'ALLOW', b.allow, o));
  return out;
}

/**
 * The RBAC filters enforcing, at a workload's inbound port, the NetworkPolicies and Cilium
 * policies that select it: DENY (Cilium ingressDeny) first, then the ALLOW union when it is
 * isolated for ingress. [] when none applies.
 */
export function ingressNetworkPolicyFilters(
  model: MeshModel,
  workload: WorkloadModel,
  options: NetworkPolicyFilterOptions,
): EnvoyObject[] {
  return filters('ingress', build(model, workload, 'ingress', options), options);
}

/**
 * The RBAC filters for a workload's outgoing connections (its egress policies), destination in
 * the permissions. The node checks them before connecting out (node-proxy.ts puts them on the
 * workload's outbound and upstream listeners).
 */
export function egressNetworkPolicyFilters(
  model: MeshModel,
  workload: WorkloadModel,
  options: NetworkPolicyFilterOptions,
): EnvoyObject[] {
  return filters('egress', build(model, workload, 'egress', options), options);
}

const KINDS = new Set(['NetworkPolicy', 'CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy']);

interface BindingIndex {
  /** workload id -> the NetworkPolicies binding it. */
  readonly byWorkload: Map<string, PolicyBindingModel[]>;
  /**
   * Every Cilium policy: their rules are matched per rule here (ciliumSelects), with the labels
   * Cilium derives from the namespace (io.cilium.k8s.namespace.labels.*) that the binding lacks.
   */
  readonly cilium: PolicyBindingModel[];
}

/** Per model (immutable), built once. */
const bindingCache = new WeakMap<MeshModel, BindingIndex>();

function bindingsOf(model: MeshModel, workloadId: string): readonly PolicyBindingModel[] {
  let index = bindingCache.get(model);
  if (!index) {
    index = { byWorkload: new Map(), cilium: [] };
    for (const p of model.policies) {
      if (!KINDS.has(p.kind)) continue;
      if (p.kind !== 'NetworkPolicy') {
        if (p.scope !== 'target') index.cilium.push(p);
        continue;
      }
      for (const w of p.workloads) {
        const list = index.byWorkload.get(w);
        if (list) list.push(p);
        else index.byWorkload.set(w, [p]);
      }
    }
    bindingCache.set(model, index);
  }
  return [...(index.byWorkload.get(workloadId) ?? []), ...index.cilium];
}

interface Ctx {
  readonly model: MeshModel;
  readonly td: string;
  /** The workload the filters are for: the destination (ingress) or the source (egress). */
  readonly self: WorkloadModel;
  readonly dir: Direction;
  readonly options: NetworkPolicyFilterOptions;
}

function build(model: MeshModel, self: WorkloadModel, dir: Direction, options: NetworkPolicyFilterOptions): Built {
  const ctx: Ctx = { model, td: model.mesh.trustDomain, self, dir, options };
  const allow: Record<string, EnvoyObject> = {};
  const deny: Record<string, EnvoyObject> = {};
  let isolated = false;
  for (const b of bindingsOf(model, self.id)) {
    if (b.kind === 'NetworkPolicy') {
      if (!b.networkPolicy) {
        // Bound but its spec is unknown to the translation: fail closed.
        deny[`${b.id}/unknown`] = { permissions: [ANY], principals: [ANY] };
        continue;
      }
      if (k8sPolicy(ctx, b, b.networkPolicy, allow)) isolated = true;
      continue;
    }
    if (!b.cilium) {
      if (!b.workloads.includes(self.id)) continue;
      deny[`${b.id}/unknown`] = { permissions: [ANY], principals: [ANY] };
      continue;
    }
    for (const { path, rule } of b.cilium) {
      if (rule.nodeSelector || !ciliumSelects(ctx, b, rule.endpointSelector, self)) continue;
      const prefix = path === 'spec' ? b.id : `${b.id}/${path}`;
      if (ciliumRule(ctx, b, rule, prefix, allow, deny)) isolated = true;
    }
  }
  return { isolated, allow, deny };
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes NetworkPolicy

type K8sPeer = NonNullable<NonNullable<NetworkPolicySpec['ingress']>[number]['from']>[number];

/** Adds the policy's rules for ctx.dir; true when it isolates the workload in that direction. */
function k8sPolicy(ctx: Ctx, b: PolicyBindingModel, spec: NetworkPolicySpec, allow: Record<string, EnvoyObject>) {
  // SetDefaults_NetworkPolicySpec, in case the spec did not go through the kind's completion.
  const types = spec.policyTypes?.length ? spec.policyTypes : spec.egress?.length ? ['Ingress', 'Egress'] : ['Ingress'];
  const isolates = types.includes(ctx.dir === 'ingress' ? 'Ingress' : 'Egress');
  if (!isolates) return false;
  const ns = b.namespace!;
  if (ctx.dir === 'ingress') {
    (spec.ingress ?? []).forEach((rule, i) => {
      // `from` and `ports` absent or empty: every source / every port.
      const ports = portsPerm(rule.ports, ctx.self, ctx.options.destinationPort);
      const ids = rule.from?.length ? orIds(rule.from.map((p) => k8sPeerId(ctx, ns, p))) : ANY;
      allow[`${b.id}/ingress[${i}]`] = { permissions: [ports ?? NO_PERM], principals: [ids] };
    });
  } else {
    (spec.egress ?? []).forEach((rule, i) => {
      const perms = rule.to?.length
        ? rule.to.map((p) => k8sPeerDest(ctx, ns, p, rule.ports))
        : [destinationsWithPorts(ctx.model.workloads, undefined, rule.ports)];
      allow[`${b.id}/egress[${i}]`] = { permissions: [orPerm(perms)], principals: [ANY] };
    });
  }
  return true;
}

function namespacesMatching(ctx: Ctx, selector: SelectorLike): string[] {
  return ctx.model.namespaces.filter((n) => matchesSelector(selector, n.labels)).map((n) => n.name);
}

/** The workloads a peer selects (podSelector within the policy's namespace or the selected namespaces). */
function k8sPeerWorkloads(ctx: Ctx, ns: string, peer: K8sPeer): WorkloadModel[] {
  const namespaces = peer.namespaceSelector ? new Set(namespacesMatching(ctx, peer.namespaceSelector)) : new Set([ns]);
  return ctx.model.workloads.filter(
    (w) => namespaces.has(w.namespace) && matchesSelector(peer.podSelector as SelectorLike | undefined, w.labels),
  );
}

function k8sPeerId(ctx: Ctx, ns: string, peer: K8sPeer): EnvoyObject {
  if (peer.ipBlock) return cidrId(peer.ipBlock.cidr, peer.ipBlock.except);
  if (peer.namespaceSelector && isEmptySelector(peer.podSelector as SelectorLike | undefined)) {
    // Every pod of the selected namespaces: their identities, present and future.
    if (isEmptySelector(peer.namespaceSelector))
      return { authenticated: { principal_name: { prefix: `spiffe://${ctx.td}/ns/` } } };
    return orIds(namespacesMatching(ctx, peer.namespaceSelector).map((n) => namespaceId(ctx.td, n)));
  }
  return identityIds(k8sPeerWorkloads(ctx, ns, peer));
}

function k8sPeerDest(ctx: Ctx, ns: string, peer: K8sPeer, ports: readonly PortSpec[] | undefined): EnvoyObject {
  if (peer.ipBlock) {
    // A named port cannot resolve against an address outside the mesh.
    const p = portsPerm(ports, undefined);
    return p ? andPerm([cidrPerm(peer.ipBlock.cidr, peer.ipBlock.except), p]) : NO_PERM;
  }
  return destinationsWithPorts(k8sPeerWorkloads(ctx, ns, peer), undefined, ports);
}

/**
 * Destination workloads (by address) AND the ports; named ports resolve per destination, so
 * each workload then gets its own (address, port) pair.
 */
function destinationsWithPorts(
  workloads: readonly WorkloadModel[],
  extra: EnvoyObject | undefined,
  ports: readonly PortSpec[] | undefined,
): EnvoyObject {
  const withExtra = (p: EnvoyObject) => (extra ? andPerm([extra, p]) : p);
  if (!hasNamedPort(ports)) {
    const p = portsPerm(ports, undefined);
    return p ? withExtra(andPerm([addressPerms(workloads), p])) : NO_PERM;
  }
  const per = workloads
    .map((w) => {
      const p = portsPerm(ports, w);
      return p ? andPerm([addressPerms([w]), p]) : undefined;
    })
    .filter((p): p is EnvoyObject => p !== undefined);
  return per.length ? withExtra(orPerm(per)) : NO_PERM;
}

// ---------------------------------------------------------------------------------------------------------
// Cilium

/** The labels Cilium gives an endpoint: its own, its namespace, service account, cluster, namespace labels. */
function ciliumLabels(ctx: Ctx, w: WorkloadModel): Record<string, string> {
  const out: Record<string, string> = {
    ...w.labels,
    [CILIUM_NS]: w.namespace,
    'io.cilium.k8s.policy.serviceaccount': w.serviceAccount,
    'io.cilium.k8s.policy.cluster': 'default',
  };
  const ns = ctx.model.namespaces.find((n) => n.name === w.namespace);
  for (const [k, v] of Object.entries(ns?.labels ?? {})) out[`${CILIUM_NS_LABELS}${k}`] = v;
  return out;
}

/** The label key without its Cilium source prefix ("k8s:", "any:"). */
const bareKey = (k: string): string => k.replace(/^(?:k8s|any|container|reserved|unspec):/, '');
const mentionsNamespace = (s: SelectorLike | undefined): boolean =>
  Object.keys(s?.matchLabels ?? {}).some((k) => bareKey(k) === CILIUM_NS) ||
  (s?.matchExpressions ?? []).some((e) => bareKey(e.key) === CILIUM_NS);

/**
 * Whether a Cilium endpoint selector picks a workload. In a namespaced policy, a selector that
 * does not name io.kubernetes.pod.namespace is confined to the policy's namespace (Cilium injects it).
 */
function ciliumSelects(ctx: Ctx, b: PolicyBindingModel, s: SelectorLike | undefined, w: WorkloadModel): boolean {
  if (b.namespace !== undefined && !mentionsNamespace(s) && w.namespace !== b.namespace) return false;
  return matchesSelector(s, ciliumLabels(ctx, w));
}

type CiliumIngress = NonNullable<CiliumRule['ingress']>[number];
type CiliumEgress = NonNullable<CiliumRule['egress']>[number];
type CiliumPortRule = NonNullable<CiliumIngress['toPorts']>[number];
type CiliumCidrRule = NonNullable<CiliumIngress['fromCIDRSet']>[number];
type CiliumHttp = NonNullable<NonNullable<CiliumPortRule['rules']>['http']>[number];

/** Adds one Cilium rule's ctx.dir rules; true when it puts the workload in default deny for ctx.dir. */
function ciliumRule(
  ctx: Ctx,
  b: PolicyBindingModel,
  rule: CiliumRule,
  prefix: string,
  allow: Record<string, EnvoyObject>,
  deny: Record<string, EnvoyObject>,
): boolean {
  const allows = (ctx.dir === 'ingress' ? rule.ingress : rule.egress) ?? [];
  const denies = (ctx.dir === 'ingress' ? rule.ingressDeny : rule.egressDeny) ?? [];
  const field = ctx.dir === 'ingress' ? 'ingress' : 'egress';
  allows.forEach((r, i) => {
    allow[`${prefix}/${field}[${i}]`] =
      ctx.dir === 'ingress' ? ciliumIngressPolicy(ctx, b, r, 'ALLOW') : ciliumEgressPolicy(ctx, b, r, 'ALLOW');
    const via = ctx.dir === 'ingress' ? viaWaypoint(ctx, r as CiliumIngress) : undefined;
    if (via) allow[`${prefix}/${field}[${i}]/via-waypoint`] = via;
  });
  denies.forEach((r, i) => {
    deny[`${prefix}/${field}Deny[${i}]`] =
      ctx.dir === 'ingress'
        ? ciliumIngressPolicy(ctx, b, r as CiliumIngress, 'DENY')
        : ciliumEgressPolicy(ctx, b, r as CiliumEgress, 'DENY');
  });
  // enableDefaultDeny defaults to true for a direction that has (allow or deny) rules.
  const explicit = rule.enableDefaultDeny?.[ctx.dir];
  return (allows.length > 0 || denies.length > 0) && explicit !== false;
}

const nonEmpty = <T>(v: readonly T[] | undefined): v is readonly T[] => v !== undefined && v.length > 0;

function ciliumIngressPolicy(ctx: Ctx, b: PolicyBindingModel, r: CiliumIngress, action: Action): EnvoyObject {
  const l3: EnvoyObject[] = [];
  let hasL3 = false;
  if (nonEmpty(r.fromEndpoints)) {
    hasL3 = true;
    l3.push(identityIds(ciliumSelected(ctx, b, r.fromEndpoints)));
  }
  if (nonEmpty(r.fromCIDR)) {
    hasL3 = true;
    l3.push(...r.fromCIDR.map((c) => cidrId(c, undefined)));
  }
  if (nonEmpty(r.fromCIDRSet)) {
    hasL3 = true;
    l3.push(...r.fromCIDRSet.map((c) => cidrSetId(c, action)));
  }
  if (nonEmpty(r.fromEntities)) {
    hasL3 = true;
    l3.push(...r.fromEntities.map((e) => entityId(ctx, e, action)));
  }
  if (nonEmpty(r.fromNodes) || nonEmpty(r.fromGroups)) {
    hasL3 = true;
    l3.push(unknownId(action)); // node and cloud-group selectors are not modelled
  }
  const hasL4 = nonEmpty(r.toPorts) || nonEmpty(r.icmps);
  // An empty rule `{}` selects the endpoint (default deny) and allows nothing.
  if (!hasL3 && !hasL4) return { permissions: [NO_PERM], principals: [NO_ID] };
  let ids = hasL3 ? orIds(l3) : ANY; // no L3 peer: every source on the L4 ports
  if (nonEmpty(r.fromRequires)) {
    // Requirements narrow the sources; applied to this rule (Cilium applies them to every rule of the endpoint).
    ids = andIds([ids, identityIds(ciliumSelected(ctx, b, r.fromRequires))]);
  }
  return { permissions: [ciliumL4(r, ctx.self, action, ctx.options.destinationPort)], principals: [ids] };
}

/**
 * At the node: the fronting waypoints on the ports of the rule's toPorts entries that carry HTTP
 * rules (and only HTTP: the waypoint cannot evaluate Kafka or DNS rules, so those stay closed).
 * The waypoint ran the whole rule, L3 peers included, with the real caller.
 */
function viaWaypoint(ctx: Ctx, r: CiliumIngress): EnvoyObject | undefined {
  const waypoints = ctx.options.waypointIdentities ?? [];
  if (!waypoints.length || !nonEmpty(r.toPorts)) return undefined;
  const httpPorts = r.toPorts.filter((tp) => tp.rules !== undefined && httpOnly(tp.rules));
  if (!httpPorts.length) return undefined;
  const perm = ciliumL4({ toPorts: httpPorts.map((tp) => (tp.ports ? { ports: tp.ports } : {})) }, ctx.self, 'ALLOW');
  const ids = [...new Set(waypoints)].sort().map((id) => ({ authenticated: { principal_name: { exact: id } } }));
  return { permissions: [perm], principals: [orIds(ids)] };
}

function httpOnly(rules: NonNullable<CiliumPortRule['rules']>): boolean {
  const r = rules as Readonly<Record<string, unknown>>;
  const others = Object.keys(r).filter((k) => k !== 'http' && Array.isArray(r[k]) && (r[k] as unknown[]).length > 0);
  return others.length === 0 && (rules.http ?? []).length > 0;
}

function ciliumEgressPolicy(ctx: Ctx, b: PolicyBindingModel, r: CiliumEgress, action: Action): EnvoyObject {
  const ports = (dest: WorkloadModel | undefined) => ciliumL4(r, dest, action);
  const dests: EnvoyObject[] = [];
  let hasL3 = false;
  const toWorkloads = (ws: readonly WorkloadModel[]) => {
    if (!ciliumNamedPorts(r)) return andPerm([addressPerms(ws), ports(undefined)]);
    return orPerm(ws.map((w) => andPerm([addressPerms([w]), ports(w)])));
  };
  if (nonEmpty(r.toEndpoints)) {
    hasL3 = true;
    dests.push(toWorkloads(ciliumSelected(ctx, b, r.toEndpoints)));
  }
  const cidrs: EnvoyObject[] = [];
  if (nonEmpty(r.toCIDR)) cidrs.push(...r.toCIDR.map((c) => cidrPerm(c, undefined)));
  if (nonEmpty(r.toCIDRSet))
    cidrs.push(...r.toCIDRSet.map((c) => (c.cidr ? cidrPerm(c.cidr, c.except) : unknownPerm(action))));
  if (nonEmpty(r.toEntities)) cidrs.push(...r.toEntities.map((e) => entityDest(ctx, e, action)));
  const fqdns =
    'toFQDNs' in r ? (r as { toFQDNs?: readonly { matchName?: string; matchPattern?: string }[] }).toFQDNs : undefined;
  if (nonEmpty(fqdns)) cidrs.push(...fqdns.map(fqdnPerm));
  if (nonEmpty(r.toServices) || nonEmpty(r.toNodes) || nonEmpty(r.toGroups)) cidrs.push(unknownPerm(action));
  if (cidrs.length) {
    hasL3 = true;
    dests.push(andPerm([orPerm(cidrs), ports(undefined)]));
  }
  const hasL4 = nonEmpty(r.toPorts) || nonEmpty(r.icmps);
  if (!hasL3 && !hasL4) return { permissions: [NO_PERM], principals: [NO_ID] };
  if (!hasL3) dests.push(toWorkloadsOrAnywhere(ctx, r, ports));
  if (nonEmpty(r.toRequires))
    return {
      permissions: [andPerm([orPerm(dests), addressPerms(ciliumSelected(ctx, b, r.toRequires))])],
      principals: [ANY],
    };
  return { permissions: [orPerm(dests)], principals: [ANY] };
}

/** L4-only egress: any destination; named ports resolve against any mesh workload that has them. */
function toWorkloadsOrAnywhere(
  ctx: Ctx,
  r: CiliumEgress,
  ports: (dest: WorkloadModel | undefined) => EnvoyObject,
): EnvoyObject {
  if (!ciliumNamedPorts(r)) return ports(undefined);
  return orPerm([ports(undefined), ...ctx.model.workloads.map((w) => andPerm([addressPerms([w]), ports(w)]))]);
}

const ciliumNamedPorts = (r: CiliumEgress): boolean =>
  (r.toPorts ?? []).some((tp) => (tp.ports ?? []).some((p) => typeof ciliumPortValue(p.port) === 'string'));

function ciliumSelected(ctx: Ctx, b: PolicyBindingModel, selectors: readonly SelectorLike[]): WorkloadModel[] {
  return ctx.model.workloads.filter((w) => selectors.some((s) => ciliumSelects(ctx, b, s, w)));
}

function cidrSetId(c: CiliumCidrRule, action: Action): EnvoyObject {
  return c.cidr ? cidrId(c.cidr, c.except) : unknownId(action); // CiliumCIDRGroups are not modelled
}

const nodeAddresses = (ctx: Ctx, pick: (isOwn: boolean) => boolean): string[] =>
  ctx.model.nodes.filter((n) => pick(n.name === ctx.self.node)).map((n) => n.address);

/**
 * Cilium entities as sources: `cluster` is any identity of this trust domain, `world` a peer with
 * no mesh identity (plaintext), `host`/`remote-node` the node addresses, `ingress` the ingress
 * gateways' identities.
 */
function entityId(ctx: Ctx, e: Entity, action: Action): EnvoyObject {
  switch (e) {
    case 'all':
      return ANY;
    case 'cluster':
      return { authenticated: { principal_name: { prefix: `spiffe://${ctx.td}/` } } };
    case 'world':
      return { not_id: { authenticated: {} } };
    case 'host':
      return orIds(nodeAddresses(ctx, (own) => own).map((a) => cidrId(hostCidr(a), undefined)));
    case 'remote-node':
      return orIds(nodeAddresses(ctx, (own) => !own).map((a) => cidrId(hostCidr(a), undefined)));
    case 'ingress': {
      const ids = ctx.model.gateways.filter((g) => g.role !== 'waypoint').map((g) => g.identity);
      return orIds([...new Set(ids)].sort().map((id) => ({ authenticated: { principal_name: { exact: id } } })));
    }
    case 'none':
      return NO_ID;
    default:
      return unknownId(action); // init, health, unmanaged, kube-apiserver: no Trellis equivalent
  }
}

function entityDest(ctx: Ctx, e: Entity, action: Action): EnvoyObject {
  const inCluster = () =>
    orPerm([
      addressPerms(ctx.model.workloads),
      ...ctx.model.nodes.map((n) => ({ destination_ip: cidrRange(hostCidr(n.address)) })),
    ]);
  switch (e) {
    case 'all':
      return ANY;
    case 'cluster':
      return inCluster();
    case 'world':
      return { not_rule: inCluster() };
    case 'host':
    case 'remote-node':
      return orPerm(
        nodeAddresses(ctx, (own) => (e === 'host' ? own : !own)).map((a) => ({
          destination_ip: cidrRange(hostCidr(a)),
        })),
      );
    case 'none':
      return NO_PERM;
    default:
      return unknownPerm(action);
  }
}

/** toFQDNs: the TLS SNI or the HTTP authority (the latter needs L7: unknown at L4). */
function fqdnPerm(f: { matchName?: string; matchPattern?: string }): EnvoyObject {
  const re = f.matchName
    ? escapeRegex(f.matchName.replace(/\.$/, ''))
    : (f.matchPattern ?? '')
        .replace(/\.$/, '')
        .split('*')
        .map((part) => escapeRegex(part))
        .join(f.matchPattern === '*' ? '.*' : '[-a-zA-Z0-9_]*');
  return orPerm([
    { requested_server_name: { safe_regex: { regex: re } } },
    { header: { name: ':authority', safe_regex_match: { regex: `${re}(:[0-9]+)?` } } },
  ]);
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/** toPorts (ORed entries; each: its ports AND its L7 rules); icmps never match a TCP listener. */
function ciliumL4(
  r: { readonly toPorts?: readonly CiliumPortRule[]; readonly icmps?: readonly unknown[] },
  dest: WorkloadModel | undefined,
  action: Action,
  fixed?: number,
): EnvoyObject {
  if (!nonEmpty(r.toPorts)) return nonEmpty(r.icmps) ? NO_PERM : ANY;
  return orPerm(
    r.toPorts.map((tp) => {
      const ports = portsPerm(
        (tp.ports ?? []).map((p) => ({
          protocol: p.protocol,
          port: ciliumPortValue(p.port),
          ...(p.endPort ? { endPort: p.endPort } : {}),
        })),
        dest,
        fixed,
      );
      if (!ports) return NO_PERM;
      const l7 = tp.rules ? ciliumL7(tp.rules, action) : undefined;
      return l7 ? andPerm([ports, l7]) : ports;
    }),
  );
}

function ciliumPortValue(port: string | undefined): number | string | undefined {
  if (port === undefined || port === '') return undefined;
  const n = parseCiliumPort(port);
  if (typeof n === 'number') return n;
  return n.startsWith('named:') ? n.slice('named:'.length) : undefined;
}

/** L7 rules of one toPorts entry: HTTP rules ORed; other L7 protocols are not modelled (fail closed). */
function ciliumL7(rules: NonNullable<CiliumPortRule['rules']>, action: Action): EnvoyObject | undefined {
  const r = rules as Readonly<Record<string, unknown>>;
  const http = rules.http ?? [];
  const others = Object.keys(r).filter((k) => k !== 'http' && Array.isArray(r[k]) && (r[k] as unknown[]).length > 0);
  if (others.length) return unknownPerm(action);
  if (!http.length) return undefined;
  return orPerm(http.map((h) => httpRule(h, action)));
}

/** One Cilium HTTP rule: its fields ANDed; method, path and host are RE2 regexes over the whole value. */
function httpRule(h: CiliumHttp, action: Action): EnvoyObject {
  const parts: EnvoyObject[] = [];
  const re = (name: string, regex: string): EnvoyObject => ({
    header: { name, safe_regex_match: { regex } },
  });
  if (h.method) parts.push(re(':method', h.method));
  // Cilium matches the :path header, query string included.
  if (h.path) parts.push(re(':path', h.path));
  if (h.host) parts.push(re(':authority', h.host));
  for (const line of h.headers ?? []) {
    const colon = line.indexOf(':');
    const name = (colon < 0 ? line : line.slice(0, colon)).trim().toLowerCase();
    const value = colon < 0 ? undefined : line.slice(colon + 1).trim();
    parts.push(
      value === undefined
        ? { header: { name, present_match: true } }
        : { header: { name, string_match: { exact: value } } },
    );
  }
  for (const m of h.headerMatches ?? []) {
    // A mismatch action (LOG, ADD, ...) lets the request through; only plain matches constrain.
    if (m.mismatch) continue;
    if (m.secret) {
      parts.push(unknownPerm(action)); // the value lives in a Secret the translation cannot read
      continue;
    }
    const name = m.name.toLowerCase();
    parts.push(
      m.value === undefined
        ? { header: { name, present_match: true } }
        : { header: { name, string_match: { exact: m.value } } },
    );
  }
  return andPerm(parts);
}
