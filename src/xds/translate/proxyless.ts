// Mesh model -> the xDS resources a proxyless gRPC client (grpc-js-xds) or Envoy's outbound
// side needs to call mesh services. Pure and deterministic.
//
// Names follow Istio's proxyless conventions, so a client dialing
// xds:///NAME.NAMESPACE.svc.cluster.local:PORT finds its Listener under exactly that name:
//   Listener / RouteConfiguration  "<host>:<port>"
//   Cluster / ClusterLoadAssignment "outbound|<port>|<subset>|<host>"
import { isIP } from 'node:net';
import type { TrafficPolicy } from '../../config/kinds/istio/destination-rule.js';
import type {
  DestinationRuleModel,
  MeshModel,
  RouteModel,
  ServiceModel,
  ServicePortModel,
  WorkloadModel,
} from '../../model/mesh-model.js';
import { parseGoDuration } from '../../util/duration.js';
import { Snapshot, TYPE_URLS, xdsResource, type XdsResource } from '../snapshot.js';
import { serverListeners } from './inbound.js';
import { healthCheckPort, healthChecksFor } from './health-checks.js';
import { hboneAddress, nodeProxyResources, waypointMetadata } from './node-proxy.js';
import { readTrellisMetadata, trellisMetadata } from '../struct.js';
import { prioritize, type ClientLocality, type LocalityEndpoint } from './locality.js';
export type { ClientLocality } from './locality.js';
import type { EnvoyObject } from './route-match.js';
import { clusterAction, gatewayRoutes, istioRoutes, type AddCluster, type RouteCtx } from './routes.js';
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

interface Ctx extends RouteCtx {
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
    policy: (svc, subset, port) => {
      const dr = ctx.rulesByHost.get(svc.hostname);
      return mergePolicy(dr?.trafficPolicy, subset ? dr?.subsetPolicies[subset] : undefined, port);
    },
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
      routes: (routes, listenerPort) =>
        gatewayRoutes(ctx, routes, GATEWAY_PORT, addCluster, { pathSeparatedPrefix: true, listenerPort }),
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

/**
 * The "<host>:<port>" routes of a port. grpc-js-xds refuses a whole route configuration that
 * holds a redirect or a direct response (only `route` actions are valid to it), so on gRPC
 * ports, the ones its clients call, those rules are left out: a redirect means nothing to a
 * gRPC call, and a call that would have matched one falls through to the next rule or fails
 * with "no route", as it did before they were translated. HTTP ports keep them (waypoints).
 */
function routesFor(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, addCluster: AddCluster): EnvoyObject[] {
  const routes = serviceRoutes(ctx, svc, port, addCluster);
  if (port.protocol !== 'GRPC') return routes;
  const forwarding = routes.filter((r) => r.redirect === undefined && r.direct_response === undefined);
  return forwarding;
}

/** Gateway API (GAMMA) routes attached to the service win; else a VirtualService for its host; else one default route. */
function serviceRoutes(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, addCluster: AddCluster): EnvoyObject[] {
  const attached = (ctx.routesByService.get(svc.id) ?? []).filter((r) =>
    r.parents.some(
      (p) =>
        p.parentRef.kind === 'Service' &&
        p.parentRef.name === svc.name &&
        p.parentRef.namespace === svc.namespace &&
        (p.parentRef.port === undefined || p.parentRef.port === port.port),
    ),
  );
  // "<host>:<port>" route configurations are read by gRPC clients too (no path_separated_prefix).
  if (attached.length > 0)
    return gatewayRoutes(ctx, attached, port, addCluster, { pathSeparatedPrefix: false, listenerPort: port.port });
  const vs = ctx.meshVsByHost.get(svc.hostname);
  if (vs && vs.http.length > 0) return istioRoutes(ctx, addCluster, vs.namespace, vs.http, svc, port);
  return [{ match: { prefix: '' }, route: clusterAction(ctx, [{ svc, port, subset: '', weight: 1 }], addCluster)! }];
}

function cluster(ctx: Ctx, svc: ServiceModel, port: ServicePortModel, subset: string, name: string): XdsResource {
  const dr = ctx.rulesByHost.get(svc.hostname);
  const policy = mergePolicy(dr?.trafficPolicy, subset ? dr?.subsetPolicies[subset] : undefined, port.port);
  const body: EnvoyObject = {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: name },
    ...lbPolicyFields(policy),
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
    // As istiod: an error count of 0 turns that detector's enforcement off, any other enables it
    // at 100%; the deprecated consecutiveErrors counts gateway errors (502/503/504) only.
    const o: EnvoyObject = { enforcing_success_rate: { value: 0 } };
    if (od.consecutiveErrors !== undefined && od.consecutiveErrors > 0) {
      o.consecutive_gateway_failure = { value: od.consecutiveErrors };
      o.enforcing_consecutive_gateway_failure = { value: 100 };
      o.enforcing_consecutive_5xx = { value: 0 };
    }
    if (od.consecutive5xxErrors !== undefined) {
      o.consecutive_5xx = { value: od.consecutive5xxErrors };
      o.enforcing_consecutive_5xx = { value: od.consecutive5xxErrors > 0 ? 100 : 0 };
    }
    if (od.consecutiveGatewayErrors !== undefined) {
      o.consecutive_gateway_failure = { value: od.consecutiveGatewayErrors };
      o.enforcing_consecutive_gateway_failure = { value: od.consecutiveGatewayErrors > 0 ? 100 : 0 };
    }
    const interval = od.interval ? parseGoDuration(od.interval) : undefined;
    if (interval) o.interval = duration(interval);
    const base = od.baseEjectionTime ? parseGoDuration(od.baseEjectionTime) : undefined;
    if (base) o.base_ejection_time = duration(base);
    if (od.maxEjectionPercent !== undefined && od.maxEjectionPercent > 0)
      o.max_ejection_percent = { value: od.maxEjectionPercent };
    body.outlier_detection = o;
    // minHealthPercent is the panic threshold; istiod sets it even when unset (0: panic off,
    // as few pods per service make Envoy's 50% default counterproductive).
    body.common_lb_config = { healthy_panic_threshold: { value: od.minHealthPercent ?? 0 } };
  }
  const healthChecks = healthChecksFor(port.healthCheck);
  if (healthChecks) {
    body.health_checks = healthChecks;
    // A readiness probe (Istio): an endpoint that is not ready gets no traffic, so no panic
    // routing unless the DestinationRule's outlierDetection.minHealthPercent set a threshold.
    if (!body.common_lb_config) body.common_lb_config = { healthy_panic_threshold: { value: 0 } };
  }
  if (policy?.loadBalancer?.localityLbSetting?.distribute?.length) {
    // distribute sets locality weights (EDS); Envoy and the L7 engine honour them only with
    // locality weighted balancing on (gRPC clients always do).
    body.common_lb_config = {
      ...((body.common_lb_config as EnvoyObject | undefined) ?? {}),
      locality_weighted_lb_config: {},
    };
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
  // The service's VIPs: a node proxy that captured a connection to one knows the service by it.
  if (subset === '' && svc.addresses.length > 0)
    body.metadata = trellisMetadata({ ...readTrellisMetadata(body), addresses: svc.addresses.join(',') });
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

const LB_TYPE = 'type.googleapis.com/envoy.extensions.load_balancing_policies.';

function typedLbPolicy(name: string, type: string, config: EnvoyObject = {}): EnvoyObject {
  return {
    typed_extension_config: {
      name: `envoy.load_balancing_policies.${name}`,
      typed_config: { '@type': LB_TYPE + type, ...config },
    },
  };
}

/**
 * The cluster's LB policy. ROUND_ROBIN (or unset) and consistentHash stay in lb_policy, which every
 * client reads. LEAST_REQUEST (LEAST_CONN is Istio's deprecated alias) and RANDOM go in
 * load_balancing_policy instead: grpc-js-xds NACKs those lb_policy values, and both Envoy and gRPC
 * (A52) take the first entry of `policies` they implement, so gRPC clients, which have neither,
 * skip to the last entry. That one is wrr_locality over round_robin because it is exactly what
 * gRPC turns lb_policy ROUND_ROBIN into, so they keep their locality weighting. PASSTHROUGH
 * (Istio's ORIGINAL_DST) has no meaning for EDS clusters: round robin.
 */
function lbPolicyFields(policy: TrafficPolicy | undefined): EnvoyObject {
  const lb = policy?.loadBalancer;
  if (lb?.consistentHash) return { lb_policy: 'RING_HASH', ...ringHashConfig(policy) };
  // With a typed policy Envoy reads locality weighting from its config, not common_lb_config.
  const locality: EnvoyObject = lb?.localityLbSetting?.distribute?.length
    ? { locality_lb_config: { locality_weighted_lb_config: {} } }
    : {};
  let first: EnvoyObject;
  if (lb?.simple === 'LEAST_REQUEST' || lb?.simple === 'LEAST_CONN') {
    // choice_count 2 is Envoy's default, written out as istiod does.
    first = typedLbPolicy('least_request', 'least_request.v3.LeastRequest', {
      choice_count: { value: 2 },
      ...locality,
    });
  } else if (lb?.simple === 'RANDOM') {
    first = typedLbPolicy('random', 'random.v3.Random', locality);
  } else {
    return { lb_policy: 'ROUND_ROBIN' };
  }
  const fallback = typedLbPolicy('wrr_locality', 'wrr_locality.v3.WrrLocality', {
    endpoint_picking_policy: { policies: [typedLbPolicy('round_robin', 'round_robin.v3.RoundRobin')] },
  });
  return { load_balancing_policy: { policies: [first, fallback] } };
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
  const probe = healthChecksFor(port.healthCheck) ? port.healthCheck : undefined;
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
    if (probe) {
      // Endpoints outside the probe's group are not checked; the others on the probe's port.
      const own = ctx.workloadsById.get(e.workload)?.probe?.group === probe.group;
      const hcPort = own ? healthCheckPort(probe, epPort) : undefined;
      if (!own) (entry.value.endpoint as EnvoyObject).health_check_config = { disable_active_health_check: true };
      else if (hcPort !== undefined) (entry.value.endpoint as EnvoyObject).health_check_config = { port_value: hcPort };
    }
    // Which node proxy terminates HBONE for it, and who it must be (Trellis' node proxies).
    // workload/namespace: the destination_workload labels of the L7 stats filter (Istio's peer metadata).
    const node = e.node ? ctx.nodesByName.get(e.node) : undefined;
    const w = ctx.workloadsById.get(e.workload);
    if (node)
      entry.value.metadata = trellisMetadata({
        node: node.name,
        hbone: hboneAddress(node),
        identity: e.identity,
        ...(w ? { workload: w.name, namespace: w.namespace } : {}),
      });
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
