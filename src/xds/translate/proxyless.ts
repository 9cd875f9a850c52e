// Mesh model -> the xDS resources a proxyless gRPC client (grpc-js-xds) or Envoy's outbound
// side needs to call mesh services. Pure and deterministic.
//
// Names follow Istio's proxyless conventions, so a client dialing
// xds:///NAME.NAMESPACE.svc.cluster.local:PORT finds its Listener under exactly that name:
//   Listener / RouteConfiguration  "<host>:<port>"
//   Cluster / ClusterLoadAssignment "outbound|<port>|<subset>|<host>"
import { isIP } from 'node:net';
import type { TrafficPolicy } from '../../config/kinds/istio/destination-rule.js';
import type { HTTPRouteDestination } from '../../config/kinds/istio/virtual-service.js';
import type {
  DestinationRuleModel,
  MeshModel,
  RouteModel,
  ServiceModel,
  ServicePortModel,
  WorkloadModel,
} from '../../model/mesh-model.js';
import { parseGatewayDuration, parseGoDuration } from '../../util/duration.js';
import { Snapshot, TYPE_URLS, xdsResource, type XdsResource } from '../snapshot.js';
import { serverListeners } from './inbound.js';
import { hboneAddress, nodeProxyResources, waypointMetadata } from './node-proxy.js';
import { trellisMetadata } from '../struct.js';
import { prioritize, type ClientLocality, type LocalityEndpoint } from './locality.js';
export type { ClientLocality } from './locality.js';
import { grpcRouteMatch, httpRouteMatch, istioMatch, type EnvoyObject } from './route-match.js';
import { policySpecsFromModel, SecurityIndex, upstreamTls, type PolicySpecs } from './security.js';

const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const FAULT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
const ADS = { ads: {}, resource_api_version: 'V3' };

const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTP2', 'GRPC']);

export function listenerName(host: string, port: number): string {
  return `${host}:${port}`;
}

export function clusterName(host: string, port: number, subset = ''): string {
  return `outbound|${port}|${subset}|${host}`;
}

export function duration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

interface Ctx {
  readonly model: MeshModel;
  readonly security: SecurityIndex;
  readonly workloadsById: ReadonlyMap<string, WorkloadModel>;
  readonly servicesById: ReadonlyMap<string, ServiceModel>;
  readonly servicesByHost: ReadonlyMap<string, ServiceModel>;
  readonly rulesByHost: ReadonlyMap<string, DestinationRuleModel>;
  /** Routes by the service ids they are attached to; mesh VirtualServices by host. */
  readonly routesByService: ReadonlyMap<string, readonly RouteModel[]>;
  readonly meshVsByHost: ReadonlyMap<string, MeshModel['virtualServices'][number]>;
  readonly clientLocality: ClientLocality | undefined;
  readonly nodesByName: ReadonlyMap<string, MeshModel['nodes'][number]>;
}

function indexRoutes(model: MeshModel): {
  routesByService: Map<string, RouteModel[]>;
  meshVsByHost: Map<string, MeshModel['virtualServices'][number]>;
} {
  const routesByService = new Map<string, RouteModel[]>();
  for (const r of model.routes) {
    for (const target of r.attachedTo) {
      const list = routesByService.get(target);
      if (list) list.push(r);
      else routesByService.set(target, [r]);
    }
  }
  const meshVsByHost = new Map<string, MeshModel['virtualServices'][number]>();
  for (const v of model.virtualServices) {
    if (!v.gateways.includes('mesh')) continue;
    for (const h of v.hosts) if (!meshVsByHost.has(h)) meshVsByHost.set(h, v);
  }
  return { routesByService, meshVsByHost };
}

export interface ProxylessOptions {
  /**
   * AuthorizationPolicy / PeerAuthentication specs (the model binds policies but does not carry
   * them). Without them, a bound AuthorizationPolicy denies everything and a bound
   * PeerAuthentication counts as STRICT (fail closed); the Mesh mtls.mode always applies.
   */
  readonly policies?: PolicySpecs;
  /**
   * The locality (and labels) of the client this snapshot is for. With it, EDS priorities and
   * weights follow the DestinationRule's localityLbSetting (Istio semantics, see locality.ts);
   * without it, every locality is priority 0 (the mesh-wide view).
   */
  readonly clientLocality?: ClientLocality;
}

/**
 * The resources every proxyless client and xDS-enabled gRPC server of the mesh sees (per-node
 * views arrive with locality-aware routing): client-side Listener/RouteConfiguration/Cluster/
 * ClusterLoadAssignment per service port, and a server Listener per workload address:port.
 */
export function proxylessSnapshot(model: MeshModel, options: ProxylessOptions = {}): Snapshot {
  const ctx: Ctx = {
    model,
    security: new SecurityIndex(model, options.policies ?? policySpecsFromModel(model)),
    workloadsById: new Map(model.workloads.map((w) => [w.id, w])),
    servicesById: new Map(model.services.map((s) => [s.id, s])),
    servicesByHost: new Map(model.services.map((s) => [s.hostname, s])),
    rulesByHost: new Map(model.destinationRules.map((d) => [d.host, d])),
    ...indexRoutes(model),
    clientLocality: options.clientLocality,
    nodesByName: new Map(model.nodes.map((n) => [n.name, n])),
  };
  const resources: XdsResource[] = [];
  const clusters = new Map<string, XdsResource>();
  const addCluster = (svc: ServiceModel, port: ServicePortModel, subset: string): string => {
    const name = clusterName(svc.hostname, port.port, subset);
    if (!clusters.has(name)) {
      clusters.set(name, cluster(ctx, svc, port, subset, name));
      resources.push(endpoints(ctx, svc, port, subset, name));
    }
    return name;
  };

  for (const svc of model.services) {
    if (svc.origin === 'ServiceEntry' && svc.location === 'MESH_EXTERNAL') continue;
    for (const port of svc.ports) {
      addCluster(svc, port, '');
      if (!HTTP_PROTOCOLS.has(port.protocol)) continue;
      const name = listenerName(svc.hostname, port.port);
      resources.push(
        xdsResource(TYPE_URLS.listener, name, {
          name,
          api_listener: {
            api_listener: {
              '@type': HCM_TYPE,
              rds: { route_config_name: name, config_source: ADS },
              http_filters: [
                { name: 'envoy.filters.http.fault', typed_config: { '@type': FAULT_TYPE } },
                { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
              ],
            },
          },
        }),
      );
      resources.push(
        xdsResource(TYPE_URLS.route, name, {
          name,
          virtual_hosts: [
            {
              name,
              domains: [name, svc.hostname],
              routes: routesFor(ctx, svc, port, addCluster),
            },
          ],
        }),
      );
    }
  }
  resources.push(...serverListeners(ctx.security));
  resources.push(
    ...nodeProxyResources({
      model,
      security: ctx.security,
      routes: (routes) => gatewayRoutes(ctx, routes, GATEWAY_PORT, addCluster),
      serviceCluster: (host, port) => {
        const svc = ctx.servicesByHost.get(host);
        const p = svc?.ports.find((x) => x.port === port);
        if (!svc || !p || (svc.origin === 'ServiceEntry' && svc.location === 'MESH_EXTERNAL')) return undefined;
        return addCluster(svc, p, '');
      },
    }),
  );
  return new Snapshot([...resources, ...clusters.values()]);
}

/** Gateway backendRefs always name their port; this stands in for "the port the route is for". */
const GATEWAY_PORT: ServicePortModel = { name: '', port: 0, protocol: 'HTTP', transport: 'TCP', targetPort: 0 };

type AddCluster = (svc: ServiceModel, port: ServicePortModel, subset: string) => string;

/** Gateway API (GAMMA) routes attached to the service win; else a VirtualService for its host; else one default route. */
function routesFor(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, addCluster: AddCluster): EnvoyObject[] {
  const attached = (ctx.routesByService.get(svc.id) ?? []).filter((r) =>
    r.parents.some(
      (p) =>
        p.parentRef.kind === 'Service' &&
        p.parentRef.name === svc.name &&
        p.parentRef.namespace === svc.namespace &&
        (p.parentRef.port === undefined || p.parentRef.port === port.port),
    ),
  );
  if (attached.length > 0) return gatewayRoutes(ctx, attached, port, addCluster);
  const vs = ctx.meshVsByHost.get(svc.hostname);
  if (vs && vs.http.length > 0) return istioRoutes(ctx, vs.namespace, vs.http, svc, port, addCluster);
  return [{ match: { prefix: '' }, route: clusterAction(ctx, [{ svc, port, subset: '', weight: 1 }], addCluster)! }];
}

interface Candidate {
  readonly route: EnvoyObject;
  /** Gateway API precedence keys (exact > longest prefix > method > headers > query). */
  readonly key: readonly number[];
  readonly order: number;
}

function gatewayRoutes(
  ctx: Ctx,
  routes: readonly RouteModel[],
  port: ServicePortModel,
  addCluster: AddCluster,
): EnvoyObject[] {
  const out: Candidate[] = [];
  let order = 0;
  for (const r of routes) {
    for (const rule of r.rules) {
      const action = backendAction(ctx, rule.backends, port, addCluster);
      if (!action) continue;
      const timeoutMs = rule.http?.timeouts?.request ? parseGatewayDuration(rule.http.timeouts.request) : undefined;
      if (timeoutMs) action.max_stream_duration = { max_stream_duration: duration(timeoutMs) };
      const headerMods = headerModifiers(rule.http?.filters ?? rule.grpc?.filters);
      const matches = rule.http
        ? rule.http.matches.map((m) => ({ match: httpRouteMatch(m), key: precedence(m) }))
        : rule.grpc
          ? (rule.grpc.matches ?? [{}]).map((m) => ({
              match: grpcRouteMatch(m),
              key: [0, 0, 0, (m.headers ?? []).length, 0],
            }))
          : [{ match: { prefix: '/' }, key: [0, 0, 0, 0, 0] }];
      for (const m of matches)
        out.push({ route: { match: m.match, route: action, ...headerMods }, key: m.key, order: order++ });
    }
  }
  out.sort((a, b) => {
    for (let i = 0; i < a.key.length; i++) if (a.key[i] !== b.key[i]) return b.key[i]! - a.key[i]!;
    return a.order - b.order;
  });
  return out.map((c) => c.route);
}

type HeaderFilter = {
  type: string;
  requestHeaderModifier?: HeaderModifier;
  responseHeaderModifier?: HeaderModifier;
};
type HeaderModifier = {
  set?: readonly { name: string; value: string }[];
  add?: readonly { name: string; value: string }[];
  remove?: readonly string[];
};

/** Request/ResponseHeaderModifier filters -> the route's header mutations (set overwrites, add appends). */
function headerModifiers(filters: readonly HeaderFilter[] | undefined): EnvoyObject {
  const out: EnvoyObject = {};
  const one = (m: HeaderModifier | undefined, dir: 'request' | 'response'): void => {
    if (!m) return;
    const add = [
      ...(m.set ?? []).map((h) => ({
        header: { key: h.name.toLowerCase(), value: h.value },
        append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
      })),
      ...(m.add ?? []).map((h) => ({
        header: { key: h.name.toLowerCase(), value: h.value },
        append_action: 'APPEND_IF_EXISTS_OR_ADD',
      })),
    ];
    if (add.length) out[`${dir}_headers_to_add`] = add;
    if (m.remove?.length) out[`${dir}_headers_to_remove`] = m.remove.map((h) => h.toLowerCase());
  };
  for (const f of filters ?? []) {
    if (f.type === 'RequestHeaderModifier') one(f.requestHeaderModifier, 'request');
    if (f.type === 'ResponseHeaderModifier') one(f.responseHeaderModifier, 'response');
  }
  return out;
}

/** Gateway API tie-breaks: exact path, then longest path, then method, then most headers, then most query params. */
function precedence(m: {
  path: { type: string; value: string };
  headers?: readonly unknown[];
  queryParams?: readonly unknown[];
  method?: string;
}): number[] {
  return [
    m.path.type === 'Exact' ? 1 : 0,
    m.path.type === 'RegularExpression' ? 0 : m.path.value.length,
    m.method !== undefined ? 1 : 0,
    (m.headers ?? []).length,
    (m.queryParams ?? []).length,
  ];
}

/** Weighted clusters from resolved backends; Service backends use the service port named by the backendRef. */
function backendAction(
  ctx: Ctx,
  backends: RouteModel['rules'][number]['backends'],
  port: ServicePortModel,
  addCluster: AddCluster,
): EnvoyObject | undefined {
  const targets: Target[] = [];
  for (const b of backends) {
    if (!b.resolved || !b.service || b.weight <= 0) continue;
    const svc = ctx.servicesById.get(b.service);
    const p = svc?.ports.find((x) => x.port === (b.port ?? port.port)) ?? svc?.ports[0];
    if (!svc || !p) continue;
    targets.push({ svc, port: p, subset: b.subset ?? '', weight: b.weight });
  }
  // All-zero or unresolved: no route (proxyless gRPC has no direct responses).
  return clusterAction(ctx, targets, addCluster);
}

interface Target {
  readonly svc: ServiceModel;
  readonly port: ServicePortModel;
  readonly subset: string;
  readonly weight: number;
}

/** One cluster or weighted clusters, with the hash policy of the first target's DestinationRule. */
function clusterAction(ctx: Ctx, targets: readonly Target[], addCluster: AddCluster): EnvoyObject | undefined {
  if (targets.length === 0) return undefined;
  const clusters = targets.map((t) => ({ name: addCluster(t.svc, t.port, t.subset), weight: { value: t.weight } }));
  const action: EnvoyObject =
    clusters.length === 1 ? { cluster: clusters[0]!.name } : { weighted_clusters: { clusters } };
  const hash = hashPolicy(ctx, targets[0]!);
  if (hash) action.hash_policy = hash;
  return action;
}

/** DestinationRule consistentHash -> the route's hash policy (what RING_HASH clusters hash on). */
function hashPolicy(ctx: Ctx, t: Target): EnvoyObject[] | undefined {
  const dr = ctx.rulesByHost.get(t.svc.hostname);
  const ch = mergePolicy(dr?.trafficPolicy, t.subset ? dr?.subsetPolicies[t.subset] : undefined, t.port.port)
    ?.loadBalancer?.consistentHash;
  if (!ch) return undefined;
  if (ch.httpHeaderName) return [{ header: { header_name: ch.httpHeaderName.toLowerCase() } }];
  if (ch.httpCookie) {
    const cookie: EnvoyObject = { name: ch.httpCookie.name };
    const ttl = ch.httpCookie.ttl ? parseGoDuration(ch.httpCookie.ttl) : undefined;
    if (ttl !== undefined) cookie.ttl = duration(ttl);
    if (ch.httpCookie.path) cookie.path = ch.httpCookie.path;
    return [{ cookie }];
  }
  if (ch.useSourceIp) return [{ connection_properties: { source_ip: true } }];
  if (ch.httpQueryParameterName) return [{ query_parameter: { name: ch.httpQueryParameterName } }];
  return undefined;
}

function istioRoutes(
  ctx: Ctx,
  namespace: string,
  http: MeshModel['virtualServices'][number]['http'],
  self: ServiceModel,
  port: ServicePortModel,
  addCluster: AddCluster,
): EnvoyObject[] {
  const out: EnvoyObject[] = [];
  for (const h of http) {
    const dests = (h.route ?? []) as readonly HTTPRouteDestination[];
    const targets: Target[] = [];
    for (const d of dests) {
      const host = d.destination.host.includes('.')
        ? d.destination.host
        : `${d.destination.host}.${namespace}.svc.${ctx.model.mesh.clusterDomain}`;
      const svc = ctx.servicesByHost.get(host);
      if (!svc) continue;
      const p =
        svc.ports.find((x) => x.port === (d.destination.port?.number ?? port.port)) ??
        (svc === self ? port : svc.ports[0]);
      if (!p) continue;
      const weight = d.weight ?? (dests.length === 1 ? 100 : 0);
      if (weight > 0) targets.push({ svc, port: p, subset: d.destination.subset ?? '', weight });
    }
    const action = clusterAction(ctx, targets, addCluster);
    if (!action) continue;
    const timeoutMs = h.timeout ? parseGoDuration(h.timeout) : undefined;
    if (timeoutMs) action.max_stream_duration = { max_stream_duration: duration(timeoutMs) };
    const retry = retryPolicy(h.retries);
    if (retry) action.retry_policy = retry;
    const fault = faultConfig(h.fault);
    for (const m of h.match?.length ? h.match : [undefined]) {
      const route: EnvoyObject = { match: istioMatch(m), route: action };
      if (fault) route.typed_per_filter_config = { 'envoy.filters.http.fault': fault };
      out.push(route);
    }
  }
  return out;
}

/** Istio retries -> Envoy retry policy; gRPC clients honour the gRPC status conditions. */
function retryPolicy(
  r: { attempts?: number; perTryTimeout?: string; retryOn?: string } | undefined,
): EnvoyObject | undefined {
  if (!r || !r.attempts) return undefined;
  const policy: EnvoyObject = {
    retry_on: r.retryOn ?? 'connect-failure,refused-stream,unavailable,cancelled',
    num_retries: { value: r.attempts },
  };
  const perTry = r.perTryTimeout ? parseGoDuration(r.perTryTimeout) : undefined;
  if (perTry) policy.per_try_timeout = duration(perTry);
  return policy;
}

type IstioFault = {
  delay?: { fixedDelay?: string; percentage?: { value?: number } };
  abort?: { httpStatus?: number; grpcStatus?: string; percentage?: { value?: number } };
};

const GRPC_CODES: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Percentages as Envoy FractionalPercent per million (keeps Istio's decimals). */
function fraction(p: { value?: number } | undefined): EnvoyObject {
  return { numerator: Math.round((p?.value ?? 100) * 10_000), denominator: 'MILLION' };
}

function faultConfig(f: unknown): EnvoyObject | undefined {
  const fault = f as IstioFault | undefined;
  if (!fault) return undefined;
  const cfg: EnvoyObject = { '@type': FAULT_TYPE };
  const delayMs = fault.delay?.fixedDelay ? parseGoDuration(fault.delay.fixedDelay) : undefined;
  if (delayMs !== undefined)
    cfg.delay = { fixed_delay: duration(delayMs), percentage: fraction(fault.delay?.percentage) };
  if (fault.abort) {
    const abort: EnvoyObject = { percentage: fraction(fault.abort.percentage) };
    if (fault.abort.grpcStatus !== undefined) abort.grpc_status = GRPC_CODES[fault.abort.grpcStatus] ?? 2;
    else if (fault.abort.httpStatus !== undefined) abort.http_status = fault.abort.httpStatus;
    cfg.abort = abort;
  }
  return cfg;
}

function cluster(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, subset: string, name: string): XdsResource {
  const dr = ctx.rulesByHost.get(svc.hostname);
  const policy = mergePolicy(dr?.trafficPolicy, subset ? dr?.subsetPolicies[subset] : undefined, port.port);
  const body: EnvoyObject = {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: name },
    lb_policy: policy?.loadBalancer?.consistentHash ? 'RING_HASH' : 'ROUND_ROBIN',
    ...ringHashConfig(policy),
  };
  const pool = policy?.connectionPool;
  if (pool) {
    const thresholds: EnvoyObject = { priority: 'DEFAULT' };
    if (pool.tcp?.maxConnections !== undefined) thresholds.max_connections = { value: pool.tcp.maxConnections };
    if (pool.http?.http1MaxPendingRequests !== undefined)
      thresholds.max_pending_requests = { value: pool.http.http1MaxPendingRequests };
    if (pool.http?.http2MaxRequests !== undefined) thresholds.max_requests = { value: pool.http.http2MaxRequests };
    if (pool.http?.maxRetries !== undefined) thresholds.max_retries = { value: pool.http.maxRetries };
    body.circuit_breakers = { thresholds: [thresholds] };
  }
  const od = policy?.outlierDetection;
  if (od) {
    // As istiod: success-rate ejection off. gRPC clients (A50) implement only success-rate and
    // failure-percentage ejection, so the consecutive-error settings below reach Envoy only.
    const o: EnvoyObject = { enforcing_success_rate: { value: 0 } };
    const consecutive = od.consecutive5xxErrors ?? od.consecutiveErrors;
    if (consecutive !== undefined) o.consecutive_5xx = { value: consecutive };
    if (od.consecutiveGatewayErrors !== undefined)
      o.consecutive_gateway_failure = { value: od.consecutiveGatewayErrors };
    const interval = od.interval ? parseGoDuration(od.interval) : undefined;
    if (interval) o.interval = duration(interval);
    const base = od.baseEjectionTime ? parseGoDuration(od.baseEjectionTime) : undefined;
    if (base) o.base_ejection_time = duration(base);
    if (od.maxEjectionPercent !== undefined) o.max_ejection_percent = { value: od.maxEjectionPercent };
    body.outlier_detection = o;
  }
  const tls = clusterTls(ctx, svc, port, subset);
  if (tls) body.transport_socket = tls;
  if (port.protocol === 'GRPC' || port.protocol === 'HTTP2') {
    body.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  const waypoint = subset === '' ? waypointMetadata(ctx.model, svc, port.protocol) : undefined;
  if (waypoint) body.metadata = waypoint;
  return xdsResource(TYPE_URLS.cluster, name, body);
}

/**
 * STRICT mTLS on the destination: an UpstreamTlsContext presenting our SVID and accepting only
 * the SPIFFE IDs of the endpoints. TLS when every endpoint's server port is STRICT (grpc-js has
 * no per-endpoint transport sockets; PERMISSIVE servers accept plaintext only, see inbound.ts);
 * without endpoints, when the Mesh default is STRICT.
 */
function clusterTls(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, subset: string): EnvoyObject | undefined {
  if (svc.location === 'MESH_EXTERNAL') return undefined;
  const members = subset ? subsetMembers(ctx, svc, subset) : undefined;
  const eps = svc.endpoints.filter(
    (e) => e.identity !== '' && e.ports[port.name] !== undefined && (!members || members.has(e.workload)),
  );
  const strict =
    eps.length === 0
      ? ctx.model.mesh.mtls.mode === 'STRICT'
      : eps.every((e) => ctx.security.mtlsMode(ctx.workloadsById.get(e.workload), e.ports[port.name]!) === 'STRICT');
  if (!strict) return undefined;
  return upstreamTls(eps.length > 0 ? eps.map((e) => e.identity) : svc.identities);
}

function ringHashConfig(policy: TrafficPolicy | undefined): EnvoyObject {
  const ch = policy?.loadBalancer?.consistentHash;
  const size = ch?.ringHash?.minimumRingSize ?? ch?.minimumRingSize;
  return size ? { ring_hash_lb_config: { minimum_ring_size: { value: size } } } : {};
}

/** Subset policy over the host policy, then the port-level settings for this port (Istio's order). */
function mergePolicy(
  host: TrafficPolicy | undefined,
  subset: TrafficPolicy | undefined,
  port: number,
): TrafficPolicy | undefined {
  const base = subset ?? host;
  if (!base) return undefined;
  const pl = (base.portLevelSettings ?? []).find((p) => p.port?.number === port);
  return pl ? ({ ...base, ...pl } as TrafficPolicy) : base;
}

function endpoints(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, subset: string, name: string): XdsResource {
  const members = subset ? subsetMembers(ctx, svc, subset) : undefined;
  // gRPC clients NACK a load assignment naming one address twice (e.g. two WorkloadEntries
  // for one VM, which Istio accepts): the first endpoint keeps it, with the weights summed.
  const byAddress = new Map<string, { weight: number; lbWeight: { value: number } }>();
  const eps: LocalityEndpoint<EnvoyObject>[] = [];
  for (const e of svc.endpoints) {
    const epPort = e.ports[port.name];
    // Proxyless clients need IP literals (grpc-js-xds rejects host names).
    if (epPort === undefined || !isIP(e.address)) continue;
    if (members && !members.has(e.workload)) continue;
    const key = `${e.address} ${epPort}`;
    const seen = byAddress.get(key);
    if (seen) {
      seen.weight += e.weight;
      seen.lbWeight.value += e.weight;
      continue;
    }
    const entry = {
      locality: e.locality,
      labels: e.labels,
      weight: e.weight,
      lbWeight: { value: e.weight },
      value: {} as EnvoyObject,
    };
    entry.value = {
      endpoint: { address: { socket_address: { address: e.address, port_value: epPort } } },
      health_status: 'HEALTHY',
      load_balancing_weight: entry.lbWeight,
    };
    // Which node proxy terminates HBONE for it, and who it must be (Trellis' node proxies).
    const node = e.node ? ctx.nodesByName.get(e.node) : undefined;
    if (node)
      entry.value.metadata = trellisMetadata({ node: node.name, hbone: hboneAddress(node), identity: e.identity });
    byAddress.set(key, entry);
    eps.push(entry);
  }
  const dr = ctx.rulesByHost.get(svc.hostname);
  const policy = mergePolicy(dr?.trafficPolicy, subset ? dr?.subsetPolicies[subset] : undefined, port.port);
  const groups = prioritize(eps, policy, ctx.clientLocality);
  return xdsResource(TYPE_URLS.endpoint, name, {
    cluster_name: name,
    endpoints: groups.map((g) => {
      const locality: EnvoyObject = {};
      if (g.locality.region) locality.region = g.locality.region;
      if (g.locality.zone) locality.zone = g.locality.zone;
      if (g.locality.subzone) locality.sub_zone = g.locality.subzone;
      return {
        locality,
        // A locality without weight is dropped by gRPC clients.
        load_balancing_weight: { value: Math.max(1, g.weight) },
        priority: g.priority,
        lb_endpoints: g.members,
      };
    }),
  });
}

/** The workloads a DestinationRule subset selects (as the model computed them), merged across rules. */
function subsetMembers(ctx: Ctx, svc: ServiceModel, subset: string): ReadonlySet<string> {
  const ids = new Set<string>();
  for (const d of ctx.model.destinationRules) {
    if (d.host === svc.hostname && Object.hasOwn(d.subsets, subset)) for (const id of d.subsets[subset]!) ids.add(id);
  }
  return ids;
}
