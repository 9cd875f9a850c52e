// Policy maps (Cilium's per-endpoint maps): for each workload on a node and each direction, the
// (peer identity, protocol, port range) tuples the policy engine allows. The decisions come from
// the very RBAC filters the node proxy enforces (ingressNetworkPolicyFilters /
// egressNetworkPolicyFilters evaluated by compileRbacFilters), asked once per identity and per
// port interval, so the kernel and the proxies cannot disagree. Pure.
//
// Ports: the filters only distinguish the ports and ranges they name, so the port space is cut at
// those boundaries and one port of each piece is asked; allowed pieces are merged into ranges.
// Only TCP: the translation only lets TCP (or Cilium's ANY) port entries match, because every
// Trellis listener is TCP; UDP and SCTP to an isolated workload are therefore dropped.
import type { MeshModel, WorkloadModel } from '../../../model/mesh-model.js';
import { compileRbacFilters, type RbacDecision } from '../../../proxy/rbac/evaluate.js';
import { allowPolicies } from '../../../proxy/rbac/policy-names.js';
import type { EnvoyObject } from '../../../xds/translate/route-match.js';
import {
  egressNetworkPolicyFilters,
  ingressNetworkPolicyFilters,
  type Direction,
} from '../../../xds/translate/network-policy.js';
import { buildIpcache, type Identity, type Ipcache } from './ipcache.js';

export type L4Proto = 'tcp';

/** Allowed: traffic with this peer identity, protocol and destination port in [from, to]. */
export interface AllowEntry {
  readonly identity: number;
  readonly proto: L4Proto;
  readonly from: number;
  readonly to: number;
}

export interface WorkloadPolicy {
  readonly workload: WorkloadModel;
  readonly direction: Direction;
  /** The ALLOW policies in force ("NetworkPolicy/ns/name"), for drop reasons. */
  readonly policies: readonly string[];
  /** Sorted by identity, protocol, port. */
  readonly allow: readonly AllowEntry[];
  /** The engine's own decision for one peer identity and port (for drop reasons). */
  explain(identity: number, port: number): RbacDecision | undefined;
}

export interface NodePolicy {
  readonly ipcache: Ipcache;
  /** Workloads isolated for ingress (some filter applies), sorted by address. */
  readonly ingress: readonly WorkloadPolicy[];
  readonly egress: readonly WorkloadPolicy[];
  readonly problems: readonly string[];
}

type FiltersOf = (model: MeshModel, w: WorkloadModel) => EnvoyObject[];
const FILTERS: Record<Direction, FiltersOf> = {
  ingress: (m, w) => ingressNetworkPolicyFilters(m, w, { layer: 'network' }),
  egress: (m, w) => egressNetworkPolicyFilters(m, w, { layer: 'network' }),
};

/** Calls visit on every object in a JSON tree. */
function walk(v: unknown, visit: (o: Record<string, unknown>) => void): void {
  if (Array.isArray(v)) for (const x of v) walk(x, visit);
  else if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    visit(o);
    for (const x of Object.values(o)) walk(x, visit);
  }
}

/** Every CIDR an RBAC config can match on (source or destination), "a.b.c.d/len". */
export function cidrsInFilters(filters: readonly EnvoyObject[]): string[] {
  const out = new Set<string>();
  walk(filters, (o) => {
    if (typeof o.address_prefix !== 'string') return;
    const len = (o.prefix_len as { value?: unknown } | undefined)?.value;
    out.add(`${o.address_prefix}/${typeof len === 'number' ? len : 32}`);
  });
  return [...out].sort();
}

/** The port pieces [from, to] over 0-65535 inside which the filters cannot tell ports apart. */
export function portPieces(filters: readonly EnvoyObject[]): [number, number][] {
  const cuts = new Set<number>([0, 65536]);
  walk(filters, (o) => {
    if (typeof o.destination_port === 'number') cuts.add(o.destination_port).add(o.destination_port + 1);
    const r = o.destination_port_range as { start?: unknown; end?: unknown } | undefined;
    // Int32Range: end exclusive.
    if (r && typeof r.start === 'number' && typeof r.end === 'number') cuts.add(r.start).add(r.end);
  });
  const sorted = [...cuts].filter((c) => c >= 0 && c <= 65536).sort((a, b) => a - b);
  return sorted.slice(0, -1).map((c, i) => [c, sorted[i + 1]! - 1]);
}

/** The ipcache for a whole model: every workload, every CIDR any policy filter mentions. */
export function modelIpcache(model: MeshModel): Ipcache {
  const cidrs = new Set<string>();
  for (const w of model.workloads)
    for (const dir of ['ingress', 'egress'] as const)
      for (const c of cidrsInFilters(FILTERS[dir](model, w)))
        if (!c.endsWith('/32') || !isWorkloadIp(model, c)) cidrs.add(c);
  return buildIpcache(model.workloads, [...cidrs]);
}

// Workload /32s in egress filters are the workloads' own addresses, already in the ipcache.
const workloadIps = new WeakMap<MeshModel, Set<string>>();
function isWorkloadIp(model: MeshModel, cidr: string): boolean {
  let ips = workloadIps.get(model);
  if (!ips) workloadIps.set(model, (ips = new Set(model.workloads.map((w) => `${w.address}/32`))));
  return ips.has(cidr);
}

/** The workloads a node runs (trellis.dev Workload placement). */
export function workloadsOnNode(model: MeshModel, node: string): WorkloadModel[] {
  return model.workloads.filter((w) => w.node === node);
}

/** The policy maps of a node's workloads. */
export function compileNodePolicy(
  model: MeshModel,
  local: readonly WorkloadModel[],
  ipcache: Ipcache = modelIpcache(model),
): NodePolicy {
  const problems = [...ipcache.problems];
  const result: Record<Direction, WorkloadPolicy[]> = { ingress: [], egress: [] };
  for (const w of [...local].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)))
    for (const dir of ['ingress', 'egress'] as const) {
      const p = workloadPolicy(model, ipcache, w, dir, problems);
      if (p) result[dir].push(p);
    }
  return { ipcache, ingress: result.ingress, egress: result.egress, problems };
}

function workloadPolicy(
  model: MeshModel,
  ipcache: Ipcache,
  w: WorkloadModel,
  dir: Direction,
  problems: string[],
): WorkloadPolicy | undefined {
  const filters = FILTERS[dir](model, w);
  const rbac = compileRbacFilters(filters, 'l4');
  if (rbac.empty) return undefined; // not isolated: the kernel lets everything through
  for (const p of rbac.problems) problems.push(`${w.id} ${dir}: ${p}`);
  const attrs = (peer: Identity, address: string, port: number) =>
    dir === 'ingress'
      ? { principal: peer.principal, sourceIp: address, destinationIp: w.address, destinationPort: port }
      : { principal: w.identity, sourceIp: w.address, destinationIp: address, destinationPort: port };
  const pieces = portPieces(filters);
  const allow: AllowEntry[] = [];
  for (const peer of ipcache.identities) {
    let open: [number, number] | undefined;
    const close = (): void => {
      if (open) allow.push({ identity: peer.id, proto: 'tcp', from: open[0], to: open[1] });
      open = undefined;
    };
    for (const [from, to] of pieces) {
      const verdicts = peer.samples.map((a) => rbac.evaluate(attrs(peer, a, from)).allowed);
      // Members of one identity decided differently (e.g. a named port one of them lacks): fail closed.
      if (verdicts.some((v) => v !== verdicts[0]))
        problems.push(`${w.id} ${dir}: ${peer.name} ports ${from}-${to} decided differently per member; denied`);
      const allowed = verdicts.length > 0 && verdicts.every((v) => v);
      if (!allowed) close();
      else if (open && open[1] + 1 === from) open[1] = to;
      else {
        close();
        open = [from, to];
      }
    }
    close();
  }
  const byId = new Map(ipcache.identities.map((i) => [i.id, i]));
  return {
    workload: w,
    direction: dir,
    policies: allowPolicies(filters),
    allow,
    explain: (identity, port) => {
      const peer = byId.get(identity);
      const address = peer?.samples[0];
      return peer && address !== undefined ? rbac.evaluate(attrs(peer, address, port)) : undefined;
    },
  };
}
