// Upstreams of trellis.dev Workloads (Consul Connect's local_bind_port): a plain-TCP port a
// node process listens on for one workload and one destination. Here: the ports a node
// process binds besides them (shared with the xDS translation, which assigns the outbound
// proxy ports), and the analysis — a destination that is no mesh service (warning), a local
// bind that collides with another bind on the same machine (error).
import { keyOf, type Resource } from '../config/resource.js';
import { compareStrings } from '../util/compare.js';
import { closest } from '../util/did-you-mean.js';
import type { AnalysisSink } from './analysis.js';
import type { GatewayModel, NodeModel, ServiceModel, UpstreamModel, WorkloadModel } from './mesh-model.js';
import type { ResourceIndex } from './resource-index.js';

// Outbound proxy ports are spread over this many ports from the node's outbound port.
const OUTBOUND_RANGE = 1000;

/** FNV-1a: a stable spread of workload ids over the outbound range. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * A port per key (in the given order) hashed into [base, base + 1000), probing upwards past
 * `taken` (which it extends): a key keeps its port whatever other keys come and go, unless
 * their hashes collide.
 */
function hashedPorts(keys: readonly string[], base: number, taken: Set<number>): Map<string, number> {
  const size = Math.min(OUTBOUND_RANGE, 65536 - base);
  const out = new Map<string, number>();
  for (const key of keys) {
    const start = fnv1a(key) % size;
    for (let i = 0; i < size; i++) {
      const port = base + ((start + i) % size);
      if (taken.has(port)) continue;
      out.set(key, port);
      taken.add(port);
      break;
    }
  }
  return out;
}

/**
 * Outbound proxy ports, which must not move while workloads run with HTTP_PROXY pointing at
 * them: a Workload's spec.outboundPort if it pins one, otherwise a port hashed from the
 * workload's id into [outbound, outbound + 1000), probing upwards past the node's other ports,
 * its gateways' listeners and ports already given out. Adding or removing a workload moves no
 * other workload's port unless their hashes collided (an upstream localPort that lands on one
 * is reported as UpstreamPortConflict rather than moving the proxy).
 */
export function outboundProxyPorts(
  node: NodeModel,
  local: readonly WorkloadModel[],
  gws: readonly GatewayModel[],
): Map<string, number> {
  const taken = new Set<number>([
    node.ports.hbone,
    node.ports.inbound,
    node.ports.metrics,
    node.ports.health,
    ...gws.flatMap((g) => g.listeners.map((l) => l.port)),
  ]);
  const out = new Map<string, number>();
  const sorted = [...local].sort((a, b) => compareStrings(a.id, b.id));
  for (const w of sorted) {
    if (w.outboundPort === undefined) continue;
    out.set(w.id, w.outboundPort);
    taken.add(w.outboundPort);
  }
  const hashed = hashedPorts(
    sorted.filter((w) => w.outboundPort === undefined).map((w) => w.id),
    node.ports.outbound,
    taken,
  );
  for (const [id, port] of hashed) out.set(id, port);
  return out;
}

/**
 * Inbound plaintext ports ("<workload id>:<port>" -> node port): where the node accepts plaintext
 * for a local workload port whose PeerAuthentication mode lets it (PERMISSIVE, DISABLE). Given
 * to every workload port whatever its mode, so flipping a mode never moves a port; hashed from
 * "<workload id>:<port>" into [inbound, inbound + 1000), probing upwards past the node's own
 * ports, its gateways' listeners, the outbound proxy ports (computed first, so these never move
 * them) and ports already given out.
 */
export function inboundPlaintextPorts(
  node: NodeModel,
  local: readonly WorkloadModel[],
  gws: readonly GatewayModel[],
): Map<string, number> {
  const taken = new Set<number>([
    ...Object.values(node.ports),
    ...gws.flatMap((g) => g.listeners.map((l) => l.port)),
    ...outboundProxyPorts(node, local, gws).values(),
  ]);
  const keys = local
    .flatMap((w) => [...new Set(Object.values(w.ports))].map((p) => `${w.id}:${p}`))
    .sort(compareStrings);
  return hashedPorts(keys, node.ports.inbound, taken);
}

/** An address:port something listens on, and what it is (for messages). */
export interface BindModel {
  readonly address: string;
  readonly port: number;
  readonly what: string;
}

/**
 * What listens on a node's machine besides upstreams: the node's own ports, its workloads'
 * outbound proxies, its ingress gateways' listeners, and its workloads' own ports.
 */
export function nodeBinds(node: NodeModel, local: readonly WorkloadModel[], gws: readonly GatewayModel[]): BindModel[] {
  const out: BindModel[] = [];
  for (const [name, port] of Object.entries(node.ports))
    out.push({ address: node.address, port, what: `node ${node.name}'s ${name} port` });
  const outbound = outboundProxyPorts(node, local, gws);
  for (const w of local) {
    const port = outbound.get(w.id);
    if (port !== undefined)
      out.push({ address: node.address, port, what: `the outbound proxy of workload ${w.namespace}/${w.name}` });
  }
  for (const g of gws) {
    if (g.role !== 'gateway' || !g.address) continue;
    for (const l of g.listeners)
      out.push({ address: g.address, port: l.port, what: `listener ${l.name} of gateway ${g.namespace}/${g.name}` });
  }
  for (const w of local) {
    for (const [name, port] of Object.entries(w.ports))
      out.push({ address: w.address, port, what: `port ${name} of workload ${w.namespace}/${w.name}` });
  }
  return out;
}

const UNSPECIFIED = new Set(['0.0.0.0', '::']);

/** Whether two listeners would fight over a port: same port, and the same address or a wildcard one. */
export function bindsOverlap(a: { address: string; port: number }, b: { address: string; port: number }): boolean {
  return a.port === b.port && (a.address === b.address || UNSPECIFIED.has(a.address) || UNSPECIFIED.has(b.address));
}

/** Nodes with a loopback address run on one machine (as `trellis up` runs them); others each on their own. */
function machineOf(node: NodeModel): string {
  return node.address.startsWith('127.') || node.address === '::1' ? '' : `node/${node.name}`;
}

/** The mesh service (and port) an upstream names, or why there is none (a message). */
export function upstreamDestination(
  services: ReadonlyMap<string, ServiceModel>,
  u: Pick<UpstreamModel, 'host' | 'port'>,
): { readonly service: ServiceModel } | { readonly problem: string; readonly field: 'host' | 'port' } {
  const svc = services.get(u.host);
  if (!svc) {
    const hosts = [...services.keys()];
    // A short name (orders, orders.shop) is a likely intent: the node resolves full host names only.
    const expanded = hosts.filter((h) => h.startsWith(`${u.host}.`));
    const guess = expanded.length === 1 ? expanded[0] : closest(u.host, hosts);
    return {
      field: 'host',
      problem: `no service has host ${u.host}${guess ? ` (did you mean ${guess}?)` : ''}; connections to this upstream will be refused`,
    };
  }
  if (svc.origin === 'ServiceEntry' && svc.location === 'MESH_EXTERNAL') {
    return {
      field: 'host',
      problem: `${u.host} is a MESH_EXTERNAL ServiceEntry host; node proxies forward upstreams to mesh services only`,
    };
  }
  if (!svc.ports.some((p) => p.port === u.port)) {
    return {
      field: 'port',
      problem: `service ${u.host} has no port ${u.port} (ports: ${svc.ports.map((p) => p.port).join(', ') || 'none'})`,
    };
  }
  return { service: svc };
}

/**
 * UpstreamServiceNotFound for destinations that are no mesh service port; UpstreamPortConflict for
 * a local bind that another listener on the same machine already has (reported on the later
 * upstream, in node order then workload id order).
 */
export function checkUpstreams(
  index: ResourceIndex,
  workloads: readonly WorkloadModel[],
  services: readonly ServiceModel[],
  nodes: readonly NodeModel[],
  gateways: readonly GatewayModel[],
  analysis: AnalysisSink,
): void {
  const byHost = new Map<string, ServiceModel>();
  for (const s of services) if (!byHost.has(s.hostname)) byHost.set(s.hostname, s);
  // The Workload that placed each WorkloadEntry (the first, as compileWorkloads decides).
  const placements = new Map<string, Resource<'Workload'>>();
  for (const r of index.all('Workload')) {
    const id = `WorkloadEntry/${r.namespace}/${r.spec.workloadEntry ?? r.name}`;
    if (placements.has(id)) continue;
    placements.set(id, r);
    (r.spec.upstreams ?? []).forEach((u, i) => {
      const d = upstreamDestination(byHost, u);
      if ('problem' in d)
        analysis.add(
          'UpstreamServiceNotFound',
          keyOf(r),
          `upstream ${u.host}:${u.port}: ${d.problem}`,
          `spec.upstreams[${i}].${d.field}`,
        );
    });
  }
  checkPinnedOutboundPorts(workloads, nodes, gateways, placements, analysis);
  if (!workloads.some((w) => w.upstreams?.length)) return;

  const byId = new Map(workloads.map((w) => [w.id, w]));
  const gwById = new Map(gateways.map((g) => [g.id, g]));
  const machines = new Map<string, NodeModel[]>();
  for (const n of nodes) {
    const m = machineOf(n);
    const list = machines.get(m);
    if (list) list.push(n);
    else machines.set(m, [n]);
  }
  for (const group of machines.values()) {
    const locals = group.map((n) => ({
      node: n,
      local: n.workloads.map((id) => byId.get(id)).filter((w): w is WorkloadModel => w !== undefined),
    }));
    const taken = locals.flatMap(({ node, local }) =>
      nodeBinds(
        node,
        local,
        node.gateways.map((id) => gwById.get(id)).filter((g): g is GatewayModel => g !== undefined),
      ),
    );
    const upstreams: BindModel[] = [];
    for (const { local } of locals) {
      for (const w of local) {
        const r = placements.get(w.id);
        if (!r || !w.upstreams) continue;
        w.upstreams.forEach((u, i) => {
          const bind = { address: u.localAddress, port: u.localPort };
          const field = `spec.upstreams[${i}]`;
          const hit = taken.find((b) => bindsOverlap(b, bind)) ?? upstreams.find((b) => bindsOverlap(b, bind));
          if (hit) {
            analysis.add(
              'UpstreamPortConflict',
              keyOf(r),
              `upstream ${u.host}:${u.port} listens on ${u.localAddress}:${u.localPort}, which ${hit.what} already uses (${hit.address}:${hit.port})`,
              `${field}.localPort`,
            );
          } else {
            upstreams.push({ ...bind, what: `upstream ${field} of Workload ${r.namespace}/${r.name}` });
          }
        });
      }
    }
  }
}

/** UpstreamPortConflict for a Workload's spec.outboundPort that its node already uses for something else. */
function checkPinnedOutboundPorts(
  workloads: readonly WorkloadModel[],
  nodes: readonly NodeModel[],
  gateways: readonly GatewayModel[],
  placements: ReadonlyMap<string, Resource<'Workload'>>,
  analysis: AnalysisSink,
): void {
  if (!workloads.some((w) => w.outboundPort !== undefined)) return;
  const byId = new Map(workloads.map((w) => [w.id, w]));
  for (const node of nodes) {
    const gws = node.gateways.map((id) => gateways.find((g) => g.id === id)).filter((g) => g !== undefined);
    const used = new Map<number, string>();
    for (const [name, port] of Object.entries(node.ports)) used.set(port, `node ${node.name}'s ${name} port`);
    for (const g of gws)
      for (const l of g.listeners) used.set(l.port, `listener ${l.name} of gateway ${g.namespace}/${g.name}`);
    const local = node.workloads.map((id) => byId.get(id)).filter((w) => w !== undefined);
    for (const w of [...local].sort((a, b) => compareStrings(a.id, b.id))) {
      const r = placements.get(w.id);
      if (w.outboundPort === undefined || !r) continue;
      const hit = used.get(w.outboundPort);
      if (hit)
        analysis.add(
          'UpstreamPortConflict',
          keyOf(r),
          `outboundPort ${w.outboundPort} is already used by ${hit} on ${node.address}`,
          'spec.outboundPort',
        );
      else used.set(w.outboundPort, `the outbound proxy of workload ${w.namespace}/${w.name}`);
    }
  }
}
