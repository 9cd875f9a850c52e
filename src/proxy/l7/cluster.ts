// Cluster + ClusterLoadAssignment -> what the router needs per request: the hosts of the
// priority level in use, a load balancer over them, the upstream protocol, and connection pools.
// Pools and request counters live in HostShared, keyed by cluster, connection-relevant cluster
// settings and endpoint, so they survive config updates that do not change them; the ones an
// update no longer references are drained.
import { durationMs, enumName, list, num, obj, str, type EnvoyObject, type L7Config } from './config.js';
import { loadAssignmentOf, usableEndpoints } from '../envoy/endpoints.js';
import { createLoadBalancer, type LbHost, type LbOptions, type LbPolicy, type LoadBalancer } from './load-balancer.js';
import { Http1Pool } from './h1-upstream.js';
import { Http2Pool } from './h2-upstream.js';
import type { UpstreamPool } from './upstream-pool.js';
import type { UpstreamConnector, UpstreamTarget } from './upstream.js';

export type UpstreamProtocol = 'http1' | 'http2' | 'downstream';

const LB_POLICIES = [
  'ROUND_ROBIN',
  'LEAST_REQUEST',
  'RING_HASH',
  'RANDOM',
  'ORIGINAL_DST_LB',
  'MAGLEV',
  'CLUSTER_PROVIDED',
  'LOAD_BALANCING_POLICY_CONFIG',
];
const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** Connection pools and in-flight count of one endpoint of one cluster, shared across config versions. */
export class HostShared {
  active = 0;
  readonly target: UpstreamTarget;
  readonly #connector: UpstreamConnector;
  #h1: Http1Pool | undefined;
  #h2: Http2Pool | undefined;
  #draining = false;

  constructor(target: UpstreamTarget, connector: UpstreamConnector) {
    this.target = target;
    this.#connector = connector;
  }

  pool(protocol: 'http1' | 'http2'): UpstreamPool {
    let p: UpstreamPool | undefined = protocol === 'http1' ? this.#h1 : this.#h2;
    if (p) return p;
    if (protocol === 'http1') p = this.#h1 = new Http1Pool(this.target, this.#connector);
    else p = this.#h2 = new Http2Pool(this.target, this.#connector);
    // A request that started on an old config still gets served; the pool closes after it.
    if (this.#draining) p.drain();
    return p;
  }

  drain(): void {
    this.#draining = true;
    this.#h1?.drain();
    this.#h2?.drain();
  }

  close(): void {
    this.#draining = true;
    this.#h1?.close();
    this.#h2?.close();
  }
}

export interface HostState extends LbHost {
  readonly address: string;
  readonly port: number;
  readonly endpoint: EnvoyObject;
  readonly stats: HostShared;
}

export class ClusterState {
  readonly name: string;
  readonly raw: EnvoyObject;
  readonly protocol: UpstreamProtocol;
  /** Hosts of the priority level in use (the lowest one with a usable host). */
  readonly hosts: readonly HostState[];
  readonly lb: LoadBalancer<HostState>;
  /** Cluster connect_timeout (for connectors that honour it); 0 = none. */
  readonly connectTimeoutMs: number;

  constructor(name: string, raw: EnvoyObject, hosts: readonly HostState[]) {
    this.name = name;
    this.raw = raw;
    this.protocol = upstreamProtocol(raw);
    this.hosts = hosts;
    this.lb = createLoadBalancer(lbPolicy(raw), hosts, lbOptions(raw));
    this.connectTimeoutMs = durationMs(raw.connect_timeout) ?? 0;
  }
}

/** Builds ClusterStates for each config and owns the HostShared registry (per engine). */
export class ClusterManager {
  readonly #connector: UpstreamConnector;
  #shared = new Map<string, HostShared>();
  /** Last build, to reuse a ClusterState whose Cluster and load assignment objects are unchanged. */
  #previous = new Map<string, { cluster: EnvoyObject; cla: EnvoyObject | undefined; state: ClusterState }>();

  constructor(connector: UpstreamConnector) {
    this.#connector = connector;
  }

  build(config: L7Config): Map<string, ClusterState> {
    const out = new Map<string, ClusterState>();
    const shared = new Map<string, HostShared>();
    const previous = new Map<string, { cluster: EnvoyObject; cla: EnvoyObject | undefined; state: ClusterState }>();
    for (const [name, cluster] of config.clusters) {
      const cla = loadAssignmentOf(name, cluster, config.endpoints);
      const prev = this.#previous.get(name);
      let state: ClusterState;
      if (prev && prev.cluster === cluster && prev.cla === cla) {
        state = prev.state;
        for (const h of state.hosts) shared.set(sharedKey(name, cluster, h.endpoint), h.stats);
      } else {
        state = new ClusterState(name, cluster, this.#hosts(name, cluster, cla, shared));
      }
      out.set(name, state);
      previous.set(name, { cluster, cla, state });
    }
    // Pools no cluster refers to any more: requests in flight finish, then they close.
    for (const [key, s] of this.#shared) if (!shared.has(key)) s.drain();
    this.#shared = shared;
    this.#previous = previous;
    return out;
  }

  close(): void {
    for (const s of this.#shared.values()) s.close();
    this.#shared.clear();
    this.#previous.clear();
  }

  #hosts(
    name: string,
    cluster: EnvoyObject,
    cla: EnvoyObject | undefined,
    shared: Map<string, HostShared>,
  ): HostState[] {
    return usableEndpoints(cla).map(({ address, port, weight, endpoint: lbe }) => {
      const key = sharedKey(name, cluster, lbe);
      let stats = shared.get(key) ?? this.#shared.get(key);
      if (!stats) {
        stats = new HostShared({ address, port, clusterName: name, cluster, endpoint: lbe }, this.#connector);
      }
      shared.set(key, stats);
      return {
        address,
        port,
        key: address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`,
        weight,
        endpoint: lbe,
        stats,
      };
    });
  }
}

/** Settings that change how connections are made: a change means new pools. */
const CONNECTION_FIELDS = [
  'transport_socket',
  'transport_socket_matches',
  'typed_extension_protocol_options',
  'http2_protocol_options',
  'http_protocol_options',
  'protocol_selection',
  'upstream_connection_options',
  'metadata',
];

function sharedKey(name: string, cluster: EnvoyObject, lbe: EnvoyObject): string {
  const conn = CONNECTION_FIELDS.map((f) => cluster[f] ?? null);
  const ep = obj(lbe.endpoint) ?? {};
  return JSON.stringify([name, conn, ep.address ?? null, ep.hostname ?? null, lbe.metadata ?? null]);
}

function upstreamProtocol(c: EnvoyObject): UpstreamProtocol {
  const opts = obj(obj(c.typed_extension_protocol_options)?.[HTTP_PROTOCOL_OPTIONS]);
  if (opts) {
    const explicit = obj(opts.explicit_http_config);
    if (explicit) return explicit.http2_protocol_options != null ? 'http2' : 'http1';
    if (opts.use_downstream_protocol_config != null) return 'downstream';
    // auto_config needs ALPN, which plaintext connections lack: HTTP/1.1 as Envoy would fall back.
    return 'http1';
  }
  if (c.http2_protocol_options != null) return 'http2';
  if (
    enumName(c.protocol_selection, ['USE_CONFIGURED_PROTOCOL', 'USE_DOWNSTREAM_PROTOCOL']) === 'USE_DOWNSTREAM_PROTOCOL'
  )
    return 'downstream';
  return 'http1';
}

/** lb_policy, or the typed load_balancing_policy list (first policy we know). */
function lbPolicy(c: EnvoyObject): LbPolicy {
  const typed = list(obj(c.load_balancing_policy)?.policies);
  for (const p of typed) {
    const type = str(obj(obj(p.typed_extension_config)?.typed_config)?.['@type']) ?? '';
    const last = type.slice(type.lastIndexOf('.') + 1);
    const byType: Record<string, LbPolicy> = {
      RoundRobin: 'ROUND_ROBIN',
      LeastRequest: 'LEAST_REQUEST',
      Random: 'RANDOM',
      RingHash: 'RING_HASH',
      Maglev: 'MAGLEV',
    };
    if (byType[last]) return byType[last];
  }
  const name = enumName(c.lb_policy, LB_POLICIES) ?? 'ROUND_ROBIN';
  return (['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV'] as const).includes(name as LbPolicy)
    ? (name as LbPolicy)
    : 'ROUND_ROBIN';
}

function lbOptions(c: EnvoyObject): LbOptions {
  const ring = obj(c.ring_hash_lb_config);
  const maglev = obj(c.maglev_lb_config);
  const lr = obj(c.least_request_lb_config);
  const o: { -readonly [K in keyof LbOptions]: LbOptions[K] } = {};
  const min = num(ring?.minimum_ring_size);
  const max = num(ring?.maximum_ring_size);
  const table = num(maglev?.table_size);
  const choices = num(lr?.choice_count);
  if (min) o.minimumRingSize = min;
  if (max) o.maximumRingSize = max;
  if (table) o.maglevTableSize = table;
  if (choices) o.choiceCount = choices;
  return o;
}
