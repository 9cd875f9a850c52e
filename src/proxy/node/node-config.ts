// What one node process must run, read from the xDS it holds (pure): its HBONE listener,
// local workloads' outbound proxies and upstream ports (with their egress policy), inbound ports (with their L4
// authorization; plaintext ones where PeerAuthentication allows), its gateways and waypoints; and how to reach a destination (endpoint node
// or waypoint).
import { allowPolicies } from '../rbac/policy-names.js';
import { readTrellisMetadata } from '../../xds/struct.js';
import { loadAssignmentOf, usableEndpoints } from '../envoy/endpoints.js';
import { compileRbacFilters, NETWORK_RBAC_TYPE, type CompiledRbac } from '../rbac/evaluate.js';
import type { EnvoyObject, XdsState } from '../xds-client.js';

export interface Bind {
  readonly address: string;
  readonly port: number;
}

export interface OutboundListener extends Bind {
  readonly name: string;
  readonly workload: string;
  readonly identity: string;
  /** The workload's own address (what its captured connections come from). */
  readonly workloadAddress: string;
}

/** A local plain-TCP port of one workload for one destination (Workload spec.upstreams). */
export interface UpstreamPort extends Bind {
  readonly name: string;
  readonly workload: string;
  /** The workload's SPIFFE ID: what the node calls the destination as. */
  readonly identity: string;
  /** The destination service host and port. */
  readonly host: string;
  readonly destPort: number;
}

export interface InboundPort extends Bind {
  readonly workload: string;
  readonly identity: string;
  readonly rbac: CompiledRbac;
  /** The ALLOW policies in force ("AuthorizationPolicy/ns/name", "NetworkPolicy/ns/name"): named in a flow record when none matched. */
  readonly allowPolicies: readonly string[];
}

/**
 * A workload's egress NetworkPolicy / Cilium filters, from the filter chain of its outbound or
 * upstream listener: evaluated on the chosen destination before the node connects.
 */
export interface EgressPolicy {
  readonly rbac: CompiledRbac;
  /** The ALLOW rules in force ("NetworkPolicy/ns/name/egress[i]"): named in a flow record when none matched. */
  readonly allowRules: readonly string[];
}

/** The RBAC filters of a listener's chains (tcp_proxy and the like left out), or undefined when there are none. */
function egressOf(chains: readonly EnvoyObject[]): EgressPolicy | undefined {
  const filters = chains
    .flatMap((c) => (c.filters as EnvoyObject[] | undefined) ?? [])
    .filter((f) => (f.typed_config as { '@type'?: unknown } | undefined)?.['@type'] === NETWORK_RBAC_TYPE);
  if (filters.length === 0) return undefined;
  return { rbac: compileRbacFilters(filters, 'l4'), allowRules: allowPolicies(filters, 'rule') };
}

/** A plaintext way into a local workload port (PeerAuthentication PERMISSIVE or DISABLE). */
export interface PlaintextInbound extends Bind {
  readonly name: string;
  readonly workload: string;
  readonly identity: string;
  /** The workload port it forwards to. */
  readonly target: Bind;
  readonly mode: string;
  readonly rbac: CompiledRbac;
  readonly allowPolicies: readonly string[];
}

export interface L7Role {
  readonly name: string;
  readonly role: 'gateway' | 'waypoint';
  readonly gateway: string;
  readonly identity: string;
  readonly bind?: Bind;
  /** Gateway: the route config of the port. Waypoint: authority ("host:port") -> route config and HTTP filters. */
  readonly chains: ReadonlyMap<string, { readonly routeConfig: string; readonly httpFilters: readonly EnvoyObject[] }>;
}

export interface NodeConfig {
  readonly node: string;
  readonly hbone?: Bind;
  readonly outbound: readonly OutboundListener[];
  /** By name. */
  readonly upstreams: readonly UpstreamPort[];
  /** By "ip:port". */
  readonly inbound: ReadonlyMap<string, InboundPort>;
  /** By name. */
  readonly plaintextInbound: readonly PlaintextInbound[];
  readonly l7: readonly L7Role[];
  /** Outbound and upstream listener name -> its egress policy (absent: the workload may connect anywhere). */
  readonly egress: ReadonlyMap<string, EgressPolicy>;
  /** Every identity this node answers or calls as. */
  readonly identities: readonly string[];
}

function bindOf(l: EnvoyObject): Bind | undefined {
  const sa = (l.address as { socket_address?: { address?: string; port_value?: number | string } } | undefined)
    ?.socket_address;
  if (!sa?.address || sa.port_value === undefined) return undefined;
  return { address: sa.address, port: Number(sa.port_value) };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function hcmOf(chain: EnvoyObject): { routeConfig: string; httpFilters: EnvoyObject[] } | undefined {
  for (const f of (chain.filters as EnvoyObject[] | undefined) ?? []) {
    const tc = f.typed_config as EnvoyObject | undefined;
    const rds = tc?.rds as { route_config_name?: string } | undefined;
    if (rds?.route_config_name) {
      return {
        routeConfig: rds.route_config_name,
        httpFilters: ((tc?.http_filters as EnvoyObject[] | undefined) ?? []).filter(
          (h) => h.name !== 'envoy.filters.http.router',
        ),
      };
    }
  }
  return undefined;
}

export function nodeConfig(node: string, state: XdsState): NodeConfig {
  const prefix = `trellis/${node}/`;
  let hbone: Bind | undefined;
  const outbound: OutboundListener[] = [];
  const upstreams: UpstreamPort[] = [];
  const inbound = new Map<string, InboundPort>();
  const plaintextInbound: PlaintextInbound[] = [];
  const l7: L7Role[] = [];
  const egress = new Map<string, EgressPolicy>();
  const identities = new Set<string>();
  for (const [name, l] of state.listeners) {
    if (!name.startsWith(prefix)) continue;
    const md = readTrellisMetadata(l);
    const role = str(md.role);
    const identity = str(md.identity);
    if (identity) identities.add(identity);
    const bind = bindOf(l);
    const chains = (l.filter_chains as EnvoyObject[] | undefined) ?? [];
    if (role === 'outbound' || role === 'upstream') {
      const e = egressOf(chains);
      if (e) egress.set(name, e);
    }
    if (role === 'hbone') hbone = bind;
    else if (role === 'outbound' && bind)
      outbound.push({ name, ...bind, workload: str(md.workload), identity, workloadAddress: str(md.address) });
    else if (role === 'upstream' && bind) {
      const dest = str(md.destination);
      const colon = dest.lastIndexOf(':');
      const destPort = Number(dest.slice(colon + 1));
      if (colon > 0 && Number.isInteger(destPort) && destPort > 0)
        upstreams.push({ name, ...bind, workload: str(md.workload), identity, host: dest.slice(0, colon), destPort });
    } else if (role === 'inbound' && bind) {
      const filters = chains.flatMap((c) => (c.filters as EnvoyObject[] | undefined) ?? []);
      inbound.set(`${bind.address}:${bind.port}`, {
        ...bind,
        workload: str(md.workload),
        identity,
        rbac: compileRbacFilters(filters, 'l4'),
        allowPolicies: allowPolicies(filters),
      });
    } else if (role === 'inbound-plaintext' && bind) {
      const target = str(md.target);
      const colon = target.lastIndexOf(':');
      const port = Number(target.slice(colon + 1));
      if (colon > 0 && Number.isInteger(port) && port > 0) {
        const filters = chains.flatMap((c) => (c.filters as EnvoyObject[] | undefined) ?? []);
        plaintextInbound.push({
          name,
          ...bind,
          workload: str(md.workload),
          identity,
          target: { address: target.slice(0, colon), port },
          mode: str(md.mtls),
          rbac: compileRbacFilters(filters, 'l4'),
          allowPolicies: allowPolicies(filters),
        });
      }
    } else if (role === 'gateway' || role === 'waypoint') {
      const map = new Map<string, { routeConfig: string; httpFilters: EnvoyObject[] }>();
      for (const c of chains) {
        const h = hcmOf(c);
        if (h) map.set(role === 'waypoint' ? str(c.name) : '*', h);
      }
      l7.push({
        name,
        role,
        gateway: str(md.gateway),
        identity,
        ...(role === 'gateway' && bind ? { bind } : {}),
        chains: map,
      });
    }
  }
  outbound.sort((a, b) => (a.name < b.name ? -1 : 1));
  upstreams.sort((a, b) => (a.name < b.name ? -1 : 1));
  plaintextInbound.sort((a, b) => (a.name < b.name ? -1 : 1));
  return {
    node,
    ...(hbone ? { hbone } : {}),
    outbound,
    upstreams,
    inbound,
    plaintextInbound,
    l7,
    egress,
    identities: [...identities].sort(),
  };
}

/** SDS names a node needs: each identity's SVID and its trust domain's bundle. */
export function secretNamesFor(node: string, state: XdsState): string[] {
  const names = new Set<string>();
  for (const id of nodeConfig(node, state).identities) {
    names.add(`spiffe:${id}`);
    const td = /^spiffe:\/\/[^/]+/.exec(id)?.[0];
    if (td) names.add(`spiffe-bundle:${td}`);
  }
  return [...names];
}

/** Where a tunnelled connection goes. */
export type Route =
  | {
      readonly kind: 'hbone';
      readonly peer: string;
      readonly authority: string;
      readonly identity: string;
      readonly service?: string;
      readonly via: 'hbone' | 'waypoint';
    }
  | { readonly kind: 'direct'; readonly address: string; readonly port: number; readonly service?: string }
  | { readonly kind: 'refused'; readonly reason: string };

interface Ep {
  readonly address: string;
  readonly port: number;
  readonly hbone?: string;
  readonly identity?: string;
}

/** host:port -> a route; round robin over a cluster's endpoints (lowest priority with endpoints). */
export class Resolver {
  readonly #state: XdsState;
  readonly #rr = new Map<string, number>();
  /** "ip:port" -> the endpoint (for callers that dial a workload address directly). */
  readonly #byAddress = new Map<string, Ep>();
  /** "vip:port" -> the service host (a captured connection to a Service's VIP). */
  readonly #byVip = new Map<string, string>();

  constructor(state: XdsState) {
    this.#state = state;
    for (const cla of state.endpoints.values())
      for (const ep of endpointsOf(cla)) this.#byAddress.set(`${ep.address}:${ep.port}`, ep);
    for (const [name, cluster] of state.clusters) {
      const vips = readTrellisMetadata(cluster).addresses;
      const [, port, subset, host] = name.split('|');
      if (typeof vips !== 'string' || subset !== '' || !host) continue;
      for (const vip of vips.split(',')) this.#byVip.set(`${vip}:${port}`, host);
    }
  }

  /** The service host a VIP:port stands for, if any. */
  serviceOfVip(address: string, port: number): string | undefined {
    return this.#byVip.get(`${address}:${port}`);
  }

  resolve(host: string, port: number): Route {
    const key = `${host}:${port}`;
    const direct = this.#byAddress.get(key);
    if (direct) return this.#toEndpoint(direct, undefined, false);
    const clusterName = `outbound|${port}||${host}`;
    const cluster = this.#state.clusters.get(clusterName);
    if (!cluster) return { kind: 'refused', reason: `no-such-service` };
    const md = readTrellisMetadata(cluster);
    if (typeof md.waypoint === 'string' && typeof md.hbone === 'string' && typeof md.identity === 'string') {
      return { kind: 'hbone', peer: md.hbone, authority: key, identity: md.identity, service: host, via: 'waypoint' };
    }
    const eps = endpointsOf(loadAssignmentOf(clusterName, cluster, this.#state.endpoints));
    if (eps.length === 0) return { kind: 'refused', reason: 'no-healthy-upstream' };
    const i = (this.#rr.get(clusterName) ?? 0) % eps.length;
    this.#rr.set(clusterName, i + 1);
    return this.#toEndpoint(eps[i]!, host, cluster.transport_socket !== undefined);
  }

  /**
   * The usable endpoints ("ip", port) of a mesh service port: where a waypoint may send a
   * connection addressed to it, for the source's egress policy. [] when none or not a service.
   */
  endpoints(host: string, port: number): { readonly address: string; readonly port: number }[] {
    const clusterName = `outbound|${port}||${host}`;
    const cluster = this.#state.clusters.get(clusterName);
    if (!cluster) return [];
    return endpointsOf(loadAssignmentOf(clusterName, cluster, this.#state.endpoints)).map((e) => ({
      address: e.address,
      port: e.port,
    }));
  }

  #toEndpoint(ep: Ep, service: string | undefined, tls: boolean): Route {
    if (ep.hbone && ep.identity) {
      return {
        kind: 'hbone',
        peer: ep.hbone,
        authority: `${ep.address}:${ep.port}`,
        identity: ep.identity,
        ...(service ? { service } : {}),
        via: 'hbone',
      };
    }
    // No node proxy in front of it: plaintext only where the mesh does not require mTLS.
    if (tls) return { kind: 'refused', reason: 'mtls-required-but-no-node-proxy' };
    return { kind: 'direct', address: ep.address, port: ep.port, ...(service ? { service } : {}) };
  }
}

/** The usable endpoints with the HBONE hints Trellis puts in their metadata. */
function endpointsOf(cla: EnvoyObject | undefined): Ep[] {
  return usableEndpoints(cla).map(({ address, port, endpoint }) => {
    const md = readTrellisMetadata(endpoint);
    return {
      address,
      port,
      ...(typeof md.hbone === 'string' ? { hbone: md.hbone } : {}),
      ...(typeof md.identity === 'string' && md.identity ? { identity: md.identity } : {}),
    };
  });
}
