// Mesh model -> the resources Trellis' node processes read (the ztunnel + waypoint/gateway
// roles), as Envoy v3 Listeners and RouteConfigurations. Pure and deterministic.
//
// Every resource a node needs is named "trellis/<node>/...", so a node subscribes to the
// wildcard and keeps its own:
//   trellis/<node>/hbone                        the HBONE (HTTP/2 CONNECT over mTLS) listener
//   trellis/<node>/outbound/<ns>/<workload>     a local workload's outbound HTTP proxy (HTTP_PROXY),
//                                               whose source identity is that workload's; its filter
//                                               chain (if any) holds the workload's egress NetworkPolicy
//                                               filters (network RBAC), checked before connecting
//   trellis/<node>/inbound/<ip>:<port>          a local workload port: the L4 authorization
//                                               (network RBAC) the node enforces before delivering
//   trellis/<node>/inbound-plaintext/<ip>:<port>
//                                               the plaintext way into a local workload port whose
//                                               PeerAuthentication mode is PERMISSIVE or DISABLE
//                                               (bound on the node's address, same L4 authorization)
//   trellis/<node>/upstream/<ns>/<workload>/<localPort>
//                                               a local workload's plain-TCP port for one destination
//                                               (Workload spec.upstreams): tcp_proxy to the service's
//                                               cluster (after the same egress filters), the destination
//                                               "host:port" in the metadata
//   trellis/<node>/gateway/<ns>/<name>/<port>   an ingress gateway port, HCM -> RDS
//   trellis/<node>/waypoint/<ns>/<name>         a waypoint: one filter chain per service port it
//                                               serves, named "<host>:<port>" (the HBONE authority)
// Outbound routing (services, clusters, endpoints) is the mesh-wide proxyless translation:
// endpoints carry the node that runs them and clusters the waypoint they go through
// (trellis metadata), so node proxies and grpc-js-xds clients read the same resources.
import type {
  GatewayModel,
  MeshModel,
  NodeModel,
  RouteModel,
  ServiceModel,
  WorkloadModel,
} from '../../model/mesh-model.js';
import { compareStrings } from '../../util/compare.js';
import { bindsOverlap, inboundPlaintextPorts, nodeBinds, outboundProxyPorts } from '../../model/upstreams.js';
import { TYPE_URLS, xdsResource, type XdsResource } from '../snapshot.js';
import { trellisMetadata } from '../struct.js';
import { gatewayRequestAuthentications, jwtAuthnFilter, waypointRequestAuthentications } from './jwt-authn.js';
import { egressNetworkPolicyFilters, ingressNetworkPolicyFilters } from './network-policy.js';
import { rbacFilters } from './rbac.js';
import type { EnvoyObject } from './route-match.js';
import { CORS_FILTER, CORS_TYPE, effectiveHostnames, FAULT_FILTER, FAULT_TYPE } from './routes.js';
import type { SecurityIndex } from './security.js';

const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
export const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
const ADS = { ads: {}, resource_api_version: 'V3' };
const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTP2', 'GRPC']);

export function nodeResourcePrefix(node: string): string {
  return `trellis/${node}/`;
}

/** The route configuration of one port of an ingress gateway (node-independent). */
export function gatewayRouteName(gw: GatewayModel, port: number): string {
  return `trellis/gateway/${gw.namespace}/${gw.name}/${port}`;
}

/** The HBONE address of a node ("ip:port"). */
export function hboneAddress(node: NodeModel): string {
  return `${node.address}:${node.ports.hbone}`;
}

export interface NodeTranslation {
  readonly model: MeshModel;
  readonly security: SecurityIndex;
  /** Gateway API routes -> Envoy routes (the proxyless translation's precedence and actions). */
  readonly routes: (routes: readonly RouteModel[], listenerPort: number) => EnvoyObject[];
  /** The cluster of a mesh service port (created if needed), or undefined when host:port is none. */
  readonly serviceCluster: (host: string, port: number) => string | undefined;
}

export function nodeProxyResources(t: NodeTranslation): XdsResource[] {
  const out: XdsResource[] = [];
  const workloads = new Map(t.model.workloads.map((w) => [w.id, w]));
  const gateways = new Map(t.model.gateways.map((g) => [g.id, g]));
  for (const node of t.model.nodes) {
    const prefix = nodeResourcePrefix(node.name);
    out.push(
      listener(`${prefix}hbone`, node.address, node.ports.hbone, [], {
        role: 'hbone',
        node: node.name,
      }),
    );
    const local = node.workloads.map((id) => workloads.get(id)).filter((w): w is WorkloadModel => w !== undefined);
    const gws = node.gateways.map((id) => gateways.get(id)).filter((g): g is GatewayModel => g !== undefined);
    const ports = outboundProxyPorts(node, local, gws);
    for (const w of local) {
      out.push(
        listener(`${prefix}outbound/${w.namespace}/${w.name}`, node.address, ports.get(w.id)!, outboundChains(t, w), {
          role: 'outbound',
          workload: w.id,
          identity: w.identity,
          // Where the workload sends from: a captured connection is known to be its by this address.
          address: w.address,
        }),
      );
      for (const port of [...new Set(Object.values(w.ports))].sort((a, b) => a - b)) {
        out.push(inboundListener(t, prefix, w, port));
      }
    }
    for (const gw of gws) {
      if (gw.role === 'waypoint') out.push(waypointListener(t, prefix, node, gw));
      else out.push(...gatewayResources(t, prefix, gw));
    }
    out.push(...upstreamListeners(t, prefix, node, local, gws));
    out.push(...inboundPlaintextListeners(t, prefix, node, local, gws));
  }
  return out;
}

/**
 * The CNI layer's egress side (NetworkPolicy / Cilium egress rules of the SOURCE workload, destination
 * in the permissions) as network RBAC filters: the node evaluates them on the destination it picked
 * before connecting, so both the workload's HTTP_PROXY / CONNECT listener and its upstream ports
 * carry them. [] when the workload is not isolated for egress.
 */
function egressFilters(t: NodeTranslation, w: WorkloadModel, statPrefix: string): EnvoyObject[] {
  return egressNetworkPolicyFilters(t.model, w, { layer: 'network', statPrefix });
}

/** The outbound proxy's one filter chain: only its egress filters (the proxying is the node's own). */
function outboundChains(t: NodeTranslation, w: WorkloadModel): EnvoyObject[] {
  const name = `outbound|${w.namespace}/${w.name}`;
  const filters = egressFilters(t, w, name);
  return filters.length ? [{ name, filters }] : [];
}

/**
 * The local workloads' upstream ports. One that collides with what the node already binds, or
 * with an earlier upstream, is left out (the model reports it as UpstreamPortConflict): the
 * node's own listeners never lose their port to one. Without a mesh service behind host:port
 * the listener has no filter chain and the node refuses its connections (UpstreamServiceNotFound).
 */
function upstreamListeners(
  t: NodeTranslation,
  prefix: string,
  node: NodeModel,
  local: readonly WorkloadModel[],
  gws: readonly GatewayModel[],
): XdsResource[] {
  const out: XdsResource[] = [];
  const taken: { address: string; port: number }[] = nodeBinds(node, local, gws);
  const names = new Set<string>();
  for (const w of local) {
    for (const u of w.upstreams ?? []) {
      const name = `${prefix}upstream/${w.namespace}/${w.name}/${u.localPort}`;
      const bind = { address: u.localAddress, port: u.localPort };
      if (names.has(name) || taken.some((b) => bindsOverlap(b, bind))) continue;
      names.add(name);
      taken.push(bind);
      const destination = `${u.host}:${u.port}`;
      const cluster = t.serviceCluster(u.host, u.port);
      const chains: EnvoyObject[] = cluster
        ? [
            {
              name: `upstream|${destination}`,
              filters: [
                // Egress policy before the proxy, as a network RBAC filter ahead of tcp_proxy in Envoy.
                ...egressFilters(t, w, cluster),
                {
                  name: 'envoy.filters.network.tcp_proxy',
                  typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: cluster, cluster },
                },
              ],
            },
          ]
        : [];
      out.push(
        listener(name, u.localAddress, u.localPort, chains, {
          role: 'upstream',
          workload: w.id,
          identity: w.identity,
          destination,
        }),
      );
    }
  }
  return out;
}

function listener(
  name: string,
  address: string,
  port: number,
  filterChains: readonly EnvoyObject[],
  metadata: Record<string, string | readonly string[]>,
): XdsResource {
  return xdsResource(TYPE_URLS.listener, name, {
    name,
    address: { socket_address: { address, port_value: port } },
    ...(filterChains.length ? { filter_chains: [...filterChains] } : {}),
    metadata: trellisMetadata(metadata),
  });
}

/** HTTP RBAC filter configs -> network RBAC filters (same rules; what a node proxy enforces at L4). */
function networkRbac(httpFilters: readonly EnvoyObject[], statPrefix: string): EnvoyObject[] {
  return httpFilters.map((f) => {
    const cfg = f.typed_config as EnvoyObject;
    return {
      name: String(f.name).replace('envoy.filters.http.rbac', 'envoy.filters.network.rbac'),
      typed_config: { ...cfg, '@type': NETWORK_RBAC_TYPE, stat_prefix: statPrefix },
    };
  });
}

function applied(
  t: NodeTranslation,
  workloadIds: readonly string[],
  targetIds: readonly string[],
): Parameters<typeof rbacFilters>[0] {
  return t.security.authorizationPolicies(workloadIds, targetIds).map((a) => ({
    namespace: a.binding.namespace ?? '',
    name: a.binding.source.name,
    spec: a.spec,
  }));
}

/**
 * A local workload port. As ztunnel: the node enforces the policies that select the workload
 * (selector, namespace, mesh-wide); policies attached to a Service (targetRefs) are the
 * waypoint's to enforce.
 */
function inboundListener(t: NodeTranslation, prefix: string, w: WorkloadModel, port: number): XdsResource {
  const rbac = [
    ...networkRbac(rbacFilters(applied(t, [w.id], []), t.model.mesh.trustDomain), `inbound|${port}`),
    // The CNI layer (NetworkPolicy, Cilium): separate filters, so both layers must allow. The
    // waypoints in front of this port enforce its HTTP rules, so those rules admit them here.
    ...ingressNetworkPolicyFilters(t.model, w, {
      layer: 'network',
      statPrefix: `inbound|${port}`,
      waypointIdentities: frontingWaypoints(t.model, w, port),
    }),
  ];
  return listener(
    `${prefix}inbound/${w.address}:${port}`,
    w.address,
    port,
    [{ name: `inbound|${w.address}:${port}`, ...(rbac.length ? { filters: rbac } : {}) }],
    { role: 'inbound', workload: w.id, identity: w.identity },
  );
}

/**
 * Plaintext inbound (PeerAuthentication PERMISSIVE or DISABLE): for each local workload port whose
 * effective mode accepts plaintext, a port on the node's address (stable, inboundPlaintextPorts)
 * where the node takes plaintext connections and forwards them to the workload after the same
 * L4 filters as its HBONE inbound (the inbound listener's chains, copied, so both paths always
 * enforce the same thing); the peer has no principal there, so principal rules never match it.
 * STRICT ports get none: a plaintext client is refused. The kernel datapath (a later issue) will
 * DNAT plaintext traffic addressed to workload ports to these listeners, as ztunnel's inbound
 * capture does; until then clients dial them directly.
 */
function inboundPlaintextListeners(
  t: NodeTranslation,
  prefix: string,
  node: NodeModel,
  local: readonly WorkloadModel[],
  gws: readonly GatewayModel[],
): XdsResource[] {
  const out: XdsResource[] = [];
  const ports = inboundPlaintextPorts(node, local, gws);
  for (const w of local) {
    for (const port of [...new Set(Object.values(w.ports))].sort((a, b) => a - b)) {
      const mode = t.security.mtlsMode(w, port);
      const plaintextPort = ports.get(`${w.id}:${port}`);
      if (mode === 'STRICT' || plaintextPort === undefined) continue;
      const chains = (inboundListener(t, prefix, w, port).body.filter_chains as EnvoyObject[] | undefined) ?? [];
      out.push(
        listener(`${prefix}inbound-plaintext/${w.address}:${port}`, node.address, plaintextPort, chains, {
          role: 'inbound-plaintext',
          workload: w.id,
          identity: w.identity,
          target: `${w.address}:${port}`,
          mtls: mode,
        }),
      );
    }
  }
  return out;
}

function hcm(routeConfig: string, httpFilters: readonly EnvoyObject[]): EnvoyObject {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': HCM_TYPE,
      stat_prefix: routeConfig,
      rds: { route_config_name: routeConfig, config_source: ADS },
      // JWT authentication, then authorization (both in httpFilters), then the filters routes configure per route (CORS answers preflights
      // before faults apply, as in Istio), the router last.
      http_filters: [
        ...httpFilters,
        { name: CORS_FILTER, typed_config: { '@type': CORS_TYPE } },
        { name: FAULT_FILTER, typed_config: { '@type': FAULT_TYPE } },
        { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
      ],
    },
  };
}

/** A workload port a waypoint chain can deliver to. */
interface WaypointTarget {
  readonly workload: WorkloadModel;
  readonly port: number;
}

/**
 * Where the waypoint chain of a service port can deliver: the endpoints of the backends of the
 * mesh routes (HTTPRoute / GRPCRoute) attached to the service, mirrors included, and the
 * service's own endpoints (its default route). A superset is safe: the chain then enforces more
 * endpoints' network policies, never fewer. (Mesh VirtualServices are not followed yet.)
 */
function waypointTargets(model: MeshModel, svc: ServiceModel, port: ServiceModel['ports'][number]): WaypointTarget[] {
  const byId = workloadsById(model);
  const out: WaypointTarget[] = [];
  const add = (s: ServiceModel, portName: string) => {
    for (const e of s.endpoints) {
      const w = byId.get(e.workload);
      const target = e.ports[portName];
      if (w && target !== undefined) out.push({ workload: w, port: target });
    }
  };
  add(svc, port.name);
  for (const r of model.routes) {
    if ((r.kind !== 'HTTPRoute' && r.kind !== 'GRPCRoute') || !r.attachedTo.includes(svc.id)) continue;
    for (const rule of r.rules) {
      for (const b of [...rule.backends, ...(rule.mirrors ?? [])]) {
        const s = b.service ? model.services.find((x) => x.id === b.service) : undefined;
        const sp = s?.ports.find((x) => x.port === b.port) ?? (s?.ports.length === 1 ? s.ports[0] : undefined);
        if (s && sp) add(s, sp.name);
      }
    }
  }
  return out;
}

/** Per model (immutable): "<workload id>|<port>" -> identities of the waypoints delivering to it. */
const frontingCache = new WeakMap<MeshModel, Map<string, string[]>>();

/**
 * The identities of the waypoints whose chains (waypointListener) deliver to this workload port,
 * and so carry its network policies. Indexed once per model: every inbound listener asks.
 */
function frontingWaypoints(model: MeshModel, w: WorkloadModel, port: number): string[] {
  let index = frontingCache.get(model);
  if (!index) {
    const built = new Map<string, Set<string>>();
    for (const svc of model.services) {
      const gw = svc.waypoint ? model.gateways.find((g) => g.id === svc.waypoint && g.role === 'waypoint') : undefined;
      if (!gw) continue;
      for (const p of svc.ports) {
        if (!HTTP_PROTOCOLS.has(p.protocol)) continue;
        for (const target of waypointTargets(model, svc, p)) {
          const key = `${target.workload.id}|${target.port}`;
          const ids = built.get(key);
          if (ids) ids.add(gw.identity);
          else built.set(key, new Set([gw.identity]));
        }
      }
    }
    index = new Map([...built].map(([k, v]) => [k, [...v].sort(compareStrings)]));
    frontingCache.set(model, index);
  }
  return index.get(`${w.id}|${port}`) ?? [];
}

const byIdCache = new WeakMap<MeshModel, Map<string, WorkloadModel>>();
function workloadsById(model: MeshModel): Map<string, WorkloadModel> {
  let m = byIdCache.get(model);
  if (!m) byIdCache.set(model, (m = new Map(model.workloads.map((w) => [w.id, w]))));
  return m;
}

/**
 * The CNI layer at a waypoint chain: the ingress NetworkPolicy / Cilium filters (http RBAC, with
 * the real caller and the HTTP attributes) of every workload port the chain can deliver to. RBAC
 * runs before the router picks an endpoint, so when those differ every distinct set is added: a
 * request must pass each (the intersection), never more than any one endpoint would admit.
 */
function waypointNetworkPolicyFilters(
  t: NodeTranslation,
  svc: ServiceModel,
  port: ServiceModel['ports'][number],
): EnvoyObject[] {
  const seen = new Set<string>();
  const out: EnvoyObject[] = [];
  for (const { workload, port: target } of waypointTargets(t.model, svc, port)) {
    const filters = ingressNetworkPolicyFilters(t.model, workload, { layer: 'http', destinationPort: target });
    const key = JSON.stringify(filters);
    if (filters.length === 0 || seen.has(key)) continue;
    seen.add(key);
    out.push(...filters);
  }
  return out;
}

/**
 * A waypoint: per HTTP port of each service using it, the service's routes, the policies attached
 * to the service, then its endpoints' network policies (both layers must allow).
 */
function waypointListener(t: NodeTranslation, prefix: string, node: NodeModel, gw: GatewayModel): XdsResource {
  const served = t.model.services.filter((s) => s.waypoint === gw.id);
  const chains: EnvoyObject[] = [];
  for (const svc of served) {
    // JWT authentication before authorization: RBAC reads the request principal it verified.
    const jwt = jwtAuthnFilter(waypointRequestAuthentications(t.security, svc));
    const filters = [...(jwt ? [jwt] : []), ...rbacFilters(applied(t, [], [svc.id]), t.model.mesh.trustDomain)];
    for (const p of svc.ports) {
      if (!HTTP_PROTOCOLS.has(p.protocol)) continue;
      const name = `${svc.hostname}:${p.port}`;
      chains.push({ name, filters: [hcm(name, [...filters, ...waypointNetworkPolicyFilters(t, svc, p)])] });
    }
  }
  return listener(`${prefix}waypoint/${gw.namespace}/${gw.name}`, node.address, node.ports.hbone, chains, {
    role: 'waypoint',
    gateway: gw.id,
    identity: gw.identity,
  });
}

/** An ingress gateway: one Listener and RouteConfiguration per HTTP(S) port, a virtual host per hostname. */
function gatewayResources(t: NodeTranslation, prefix: string, gw: GatewayModel): XdsResource[] {
  if (!gw.address) return [];
  const out: XdsResource[] = [];
  const byPort = new Map<number, GatewayModel['listeners'][number][]>();
  for (const l of gw.listeners) {
    if (l.protocol !== 'HTTP') continue; // HTTPS/TLS termination arrives with the edge work
    const list = byPort.get(l.port);
    if (list) list.push(l);
    else byPort.set(l.port, [l]);
  }
  const jwt = jwtAuthnFilter(gatewayRequestAuthentications(t.security, gw));
  const filters = [...(jwt ? [jwt] : []), ...rbacFilters(applied(t, [], [gw.id]), t.model.mesh.trustDomain)];
  for (const [port, listeners] of [...byPort].sort(([a], [b]) => a - b)) {
    const routeName = gatewayRouteName(gw, port);
    const byHost = new Map<string, RouteModel[]>();
    for (const l of listeners) {
      const parent = `${gw.id}/${l.name}`;
      for (const r of t.model.routes) {
        if (r.kind !== 'HTTPRoute' && r.kind !== 'GRPCRoute') continue;
        if (!r.attachedTo.includes(parent)) continue;
        const hosts = effectiveHostnames(r.hostnames, l.hostname);
        for (const h of hosts) {
          const list = byHost.get(h);
          if (!list) byHost.set(h, [r]);
          else if (!list.includes(r)) list.push(r);
        }
      }
    }
    const hosts = [...byHost.keys()].sort(compareStrings);
    out.push(
      xdsResource(TYPE_URLS.route, routeName, {
        name: routeName,
        virtual_hosts: hosts.map((h) => ({
          name: `${routeName}/${h}`,
          domains: [h],
          routes: t.routes(byHost.get(h)!, port),
        })),
      }),
    );
    out.push(
      listener(
        `${prefix}gateway/${gw.namespace}/${gw.name}/${port}`,
        gw.address,
        port,
        [{ filters: [hcm(routeName, filters)] }],
        {
          role: 'gateway',
          gateway: gw.id,
          identity: gw.identity,
        },
      ),
    );
  }
  return out;
}

/** Trellis metadata of a service's cluster: the waypoint its traffic goes through, if any. */
export function waypointMetadata(model: MeshModel, svc: ServiceModel, protocol: string): EnvoyObject | undefined {
  if (!svc.waypoint || !HTTP_PROTOCOLS.has(protocol)) return undefined;
  const gw = model.gateways.find((g) => g.id === svc.waypoint);
  const node = gw?.node ? model.nodes.find((n) => n.name === gw.node) : undefined;
  if (!gw || !node) return undefined;
  return trellisMetadata({ waypoint: gw.id, node: node.name, hbone: hboneAddress(node), identity: gw.identity });
}
