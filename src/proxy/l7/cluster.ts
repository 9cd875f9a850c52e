// Cluster + ClusterLoadAssignment -> what the router needs per request: the hosts by priority
// level, a load balancer over them, the upstream protocol, and connection pools. Pools, request
// counters and host health (outlier ejection, active health checks) live in HostShared, keyed by
// cluster, connection-relevant cluster settings and endpoint, so they survive config updates that
// do not change them; the ones an update no longer references are drained (requests in flight
// finish, bounded by a drain timeout), and receive no new requests.
//
// Without outlier detection or health checks every usable host is healthy, and the load balancer
// works over the lowest priority level that has hosts (what Envoy's priority load gives then).
// With them, PriorityLoadBalancer applies Envoy's priority load (overprovisioning factor) and
// panic threshold, recomputed when a host's health changes.
import { durationMs, enumName, list, num, obj, str, type EnvoyObject, type L7Config } from './config.js';
import { loadAssignmentOf, usableEndpointsByPriority } from '../envoy/endpoints.js';
import {
  levelBalancer,
  PriorityLoadBalancer,
  type LbHost,
  type LbOptions,
  type LbPolicy,
  type LoadBalancer,
  type PriorityLevel,
} from './load-balancer.js';
import { HealthChecker, healthCheckSettings } from './health-check.js';
import { HostHealth, OutlierDetector, outlierSettings, type HealthEpoch } from './outlier-detection.js';
import { ConnectionLimits } from './conn-limits.js';
import { thresholdsOf } from './filters/circuit-breaker.js';
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

/** How long a removed endpoint's pools wait for requests in flight before closing. */
const DRAIN_TIMEOUT_MS = 60_000;

/** Connection pools, in-flight count and health of one endpoint of one cluster, shared across config versions. */
export class HostShared {
  active = 0;
  readonly target: UpstreamTarget;
  readonly health = new HostHealth();
  readonly #connector: UpstreamConnector;
  /** The cluster's max_connections / max_pending_requests, shared by the pools of all its hosts. */
  readonly #limits: ConnectionLimits;
  #h1: Http1Pool | undefined;
  #h2: Http2Pool | undefined;
  #draining = false;
  #drainTimer: NodeJS.Timeout | undefined;

  constructor(target: UpstreamTarget, connector: UpstreamConnector, limits = new ConnectionLimits()) {
    this.target = target;
    this.#connector = connector;
    this.#limits = limits;
  }

  pool(protocol: 'http1' | 'http2'): UpstreamPool {
    let p: UpstreamPool | undefined = protocol === 'http1' ? this.#h1 : this.#h2;
    if (p) return p;
    if (protocol === 'http1') p = this.#h1 = new Http1Pool(this.target, this.#connector, this.#limits);
    else p = this.#h2 = new Http2Pool(this.target, this.#connector, this.#limits);
    // A request that started on an old config still gets served; the pool closes after it.
    if (this.#draining) p.drain();
    return p;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** The engine's connector, for connections outside the pools (WebSocket upgrades in router.ts). */
  get connector(): UpstreamConnector {
    return this.#connector;
  }

  /** No new requests come (the endpoint left the config); those in flight finish within timeoutMs. */
  drain(timeoutMs = DRAIN_TIMEOUT_MS): void {
    if (this.#draining) return;
    this.#draining = true;
    this.health.owner = undefined;
    this.#h1?.drain();
    this.#h2?.drain();
    this.#drainTimer = setTimeout(() => this.close(), timeoutMs);
    this.#drainTimer.unref();
  }

  close(): void {
    this.#draining = true;
    if (this.#drainTimer) clearTimeout(this.#drainTimer);
    this.#drainTimer = undefined;
    this.#h1?.close();
    this.#h2?.close();
  }
}

export interface HostState extends LbHost {
  readonly address: string;
  readonly port: number;
  readonly endpoint: EnvoyObject;
  readonly priority: number;
  readonly stats: HostShared;
}

/** Health machinery of one cluster name, kept across config versions (the epoch load balancers watch). */
class ClusterHealth implements HealthEpoch {
  epoch = 0;
  outlier: OutlierDetector | undefined;
  #outlierKey = '';
  checker: HealthChecker | undefined;
  #checkKey = '';
  warnings: string[] = [];

  /** Applies the cluster's outlier_detection and health_checks; false when neither is in effect. */
  configure(name: string, cluster: EnvoyObject, connector: UpstreamConnector): boolean {
    this.warnings = [];
    const od = obj(cluster.outlier_detection);
    if (od) {
      const key = JSON.stringify(od);
      const { settings, unsupported } = outlierSettings(od);
      for (const f of unsupported) this.warnings.push(`cluster ${name}: outlier_detection.${f} is not supported`);
      if (!this.outlier) this.outlier = new OutlierDetector(settings);
      else if (key !== this.#outlierKey) this.outlier.reconfigure(settings);
      this.#outlierKey = key;
    } else if (this.outlier) {
      this.outlier.stop();
      this.outlier = undefined;
    }
    const checks = list(cluster.health_checks);
    const key = checks.length > 0 ? JSON.stringify(checks[0]) : '';
    if (key !== this.#checkKey) {
      this.checker?.stop();
      this.checker = undefined;
      this.#checkKey = key;
    }
    if (checks.length > 0 && !this.checker) {
      const s = healthCheckSettings(name, checks);
      if (typeof s === 'string') this.warnings.push(`cluster ${name}: ${s}`);
      else if (s) {
        this.checker = new HealthChecker(s, connector);
        this.checker.onPass = (host) => this.outlier?.healthCheckPassed(host);
      }
    }
    if (checks.length > 1) this.warnings.push(`cluster ${name}: only the first of health_checks is used`);
    return this.outlier !== undefined || this.checker !== undefined;
  }

  setHosts(hosts: readonly HostState[]): void {
    const shared = hosts.map((h) => h.stats);
    for (const s of shared) s.health.owner = this;
    if (!this.checker) {
      // No active checking (any more): nobody is failed by it.
      for (const s of shared) {
        if (s.health.hcFailed) {
          s.health.hcFailed = false;
          this.epoch++;
        }
        s.health.hcSuccesses = 0;
      }
    }
    this.outlier?.setHosts(shared);
    this.checker?.setHosts(shared);
  }

  stop(): void {
    this.outlier?.stop();
    this.checker?.stop();
  }
}

export class ClusterState {
  readonly name: string;
  readonly raw: EnvoyObject;
  readonly protocol: UpstreamProtocol;
  /** Usable hosts of every priority level (EDS UNHEALTHY, DRAINING and TIMEOUT are left out). */
  readonly hosts: readonly HostState[];
  /** The same hosts by priority level, lowest first. */
  readonly levels: readonly PriorityLevel<HostState>[];
  readonly lb: LoadBalancer<HostState>;
  /** Cluster connect_timeout (for connectors that honour it); 0 = none. */
  readonly connectTimeoutMs: number;
  /** Outlier detection, when the cluster has it (outcomes are reported by the outlier filter). */
  readonly outlier: OutlierDetector | undefined;
  readonly healthChecker: HealthChecker | undefined;
  /** Settings of this cluster the engine does not honour. */
  readonly warnings: readonly string[];
  readonly #byKey: Map<string, HostState> | undefined;

  constructor(
    name: string,
    raw: EnvoyObject,
    levels: readonly PriorityLevel<HostState>[],
    health?: ClusterHealth,
    overprovisioningFactor = 140,
  ) {
    this.name = name;
    this.raw = raw;
    this.protocol = upstreamProtocol(raw);
    this.levels = levels;
    this.hosts = levels.flatMap((l) => l.hosts);
    this.connectTimeoutMs = durationMs(raw.connect_timeout) ?? 0;
    this.outlier = health?.outlier;
    this.healthChecker = health?.checker;
    this.warnings = health?.warnings ?? [];
    const policy = lbPolicy(raw);
    const options: LbOptions = {
      ...lbOptions(raw),
      localityWeighted: localityWeighted(raw),
      overprovisioningFactor,
    };
    if (health && (health.outlier || health.checker)) {
      this.lb = new PriorityLoadBalancer(policy, levels, options, {
        panicThreshold: panicThreshold(raw),
        overprovisioningFactor,
        isHealthy: (h) => h.stats.health.healthy,
        source: health,
      });
    } else {
      const first = levels.find((l) => l.hosts.length > 0)?.hosts ?? [];
      this.lb = levelBalancer(policy, first, first, options);
    }
    this.#byKey = this.outlier ? new Map(this.hosts.map((h) => [h.key, h])) : undefined;
  }

  /** The host with this "address:port" key (clusters with outlier detection only). */
  host(key: string): HostState | undefined {
    return this.#byKey?.get(key);
  }
}

/** Builds ClusterStates for each config and owns the HostShared registry (per engine). */
export class ClusterManager {
  readonly #connector: UpstreamConnector;
  #shared = new Map<string, HostShared>();
  #health = new Map<string, ClusterHealth>();
  /** Connection circuit breakers by cluster name (kept while the cluster is configured). */
  #limits = new Map<string, ConnectionLimits>();
  /** Last build, to reuse a ClusterState whose Cluster and load assignment objects are unchanged. */
  #previous = new Map<string, { cluster: EnvoyObject; cla: EnvoyObject | undefined; state: ClusterState }>();

  constructor(connector: UpstreamConnector) {
    this.#connector = connector;
  }

  build(config: L7Config): Map<string, ClusterState> {
    const out = new Map<string, ClusterState>();
    const shared = new Map<string, HostShared>();
    const previous = new Map<string, { cluster: EnvoyObject; cla: EnvoyObject | undefined; state: ClusterState }>();
    const health = new Map<string, ClusterHealth>();
    // Thresholds first: a malformed circuit_breakers throws (a NACK) before any state changes.
    const thresholds = [...config.clusters].map(([name, cluster]) => [name, thresholdsOf(name, cluster)] as const);
    const limits = new Map<string, ConnectionLimits>();
    for (const [name, t] of thresholds) {
      const l = this.#limits.get(name) ?? new ConnectionLimits();
      l.maxConnections = t.maxConnections;
      l.maxPendingRequests = t.maxPendingRequests;
      limits.set(name, l);
    }
    this.#limits = limits;
    for (const [name, cluster] of config.clusters) {
      const cla = loadAssignmentOf(name, cluster, config.endpoints);
      const prev = this.#previous.get(name);
      let state: ClusterState;
      let h = this.#health.get(name);
      if (prev && prev.cluster === cluster && prev.cla === cla) {
        state = prev.state;
        for (const host of state.hosts) shared.set(sharedKey(name, cluster, host.endpoint), host.stats);
      } else {
        if (!h) h = new ClusterHealth();
        const active = h.configure(name, cluster, this.#connector);
        const levels = this.#levels(name, cluster, cla, shared);
        const hosts = levels.flatMap((l) => l.hosts);
        h.setHosts(hosts);
        const op = num(obj(cla?.policy)?.overprovisioning_factor);
        state = new ClusterState(name, cluster, levels, active || h.warnings.length > 0 ? h : undefined, op || 140);
      }
      if (h) health.set(name, h);
      out.set(name, state);
      previous.set(name, { cluster, cla, state });
    }
    for (const [name, h] of this.#health) if (!health.has(name)) h.stop();
    // Pools no cluster refers to any more: requests in flight finish, then they close.
    for (const [key, s] of this.#shared) if (!shared.has(key)) s.drain();
    this.#shared = shared;
    this.#previous = previous;
    this.#health = health;
    return out;
  }

  /** Connection circuit breaker gauges and counters by cluster (Envoy stat names). */
  stats(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, l] of this.#limits) out[name] = l.snapshot();
    return out;
  }

  close(): void {
    for (const h of this.#health.values()) h.stop();
    for (const s of this.#shared.values()) s.close();
    this.#shared.clear();
    this.#previous.clear();
    this.#health.clear();
  }

  #levels(
    name: string,
    cluster: EnvoyObject,
    cla: EnvoyObject | undefined,
    shared: Map<string, HostShared>,
  ): PriorityLevel<HostState>[] {
    return usableEndpointsByPriority(cla).map(({ priority, endpoints }) => ({
      priority,
      hosts: endpoints.map(({ address, port, weight, endpoint: lbe, locality, localityWeight }) => {
        const key = sharedKey(name, cluster, lbe);
        let stats = shared.get(key) ?? this.#shared.get(key);
        if (!stats || stats.draining) {
          stats = new HostShared(
            { address, port, clusterName: name, cluster, endpoint: lbe },
            this.#connector,
            this.#limits.get(name),
          );
        }
        shared.set(key, stats);
        return {
          address,
          port,
          key: address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`,
          weight,
          endpoint: lbe,
          priority,
          locality,
          localityWeight,
          stats,
        };
      }),
    }));
  }
}

/** common_lb_config.healthy_panic_threshold (Percent), default 50. */
function panicThreshold(c: EnvoyObject): number {
  const p = obj(obj(c.common_lb_config)?.healthy_panic_threshold);
  const v = num(p?.value);
  return v === undefined ? 50 : Math.min(100, Math.max(0, v));
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
  // health_check_config (probe port, disabled): a change restarts the host's checks.
  return JSON.stringify([
    name,
    conn,
    ep.address ?? null,
    ep.hostname ?? null,
    lbe.metadata ?? null,
    ep.health_check_config ?? null,
  ]);
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

const TYPED_LB: Readonly<Record<string, LbPolicy>> = {
  RoundRobin: 'ROUND_ROBIN',
  LeastRequest: 'LEAST_REQUEST',
  Random: 'RANDOM',
  RingHash: 'RING_HASH',
  Maglev: 'MAGLEV',
};

/**
 * The first entry of load_balancing_policy.policies we implement (Envoy's and gRPC's A52 rule:
 * the list is in preference order, unknown entries are skipped), with its typed config.
 * wrr_locality is looked through to its endpoint-picking policy.
 */
function typedLb(lbp: unknown, depth = 0): { policy: LbPolicy; config: EnvoyObject } | undefined {
  if (depth > 16) return undefined;
  for (const p of list(obj(lbp)?.policies)) {
    const config = obj(obj(p.typed_extension_config)?.typed_config);
    const type = str(config?.['@type']) ?? '';
    const last = type.slice(type.lastIndexOf('.') + 1);
    const policy = TYPED_LB[last];
    if (policy && config) return { policy, config };
    if (last === 'WrrLocality') {
      const child = typedLb(config?.endpoint_picking_policy, depth + 1);
      if (child) return child;
    }
  }
  return undefined;
}

/**
 * Locality weighted balancing: common_lb_config.locality_weighted_lb_config, or with a typed
 * policy (which wins, as in Envoy) its locality_lb_config.locality_weighted_lb_config.
 */
function localityWeighted(c: EnvoyObject): boolean {
  const typed = typedLb(c.load_balancing_policy);
  if (typed) return obj(obj(typed.config.locality_lb_config)?.locality_weighted_lb_config) !== undefined;
  return obj(c.common_lb_config)?.locality_weighted_lb_config !== undefined;
}

/** The typed load_balancing_policy (it wins, as in Envoy), else lb_policy. */
function lbPolicy(c: EnvoyObject): LbPolicy {
  const typed = typedLb(c.load_balancing_policy);
  if (typed) return typed.policy;
  const name = enumName(c.lb_policy, LB_POLICIES) ?? 'ROUND_ROBIN';
  return (['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV'] as const).includes(name as LbPolicy)
    ? (name as LbPolicy)
    : 'ROUND_ROBIN';
}

/** The policy's settings: from the typed policy's config when there is one, else the *_lb_config fields. */
function lbOptions(c: EnvoyObject): LbOptions {
  const typed = typedLb(c.load_balancing_policy)?.config;
  const ring = typed ?? obj(c.ring_hash_lb_config);
  const maglev = typed ?? obj(c.maglev_lb_config);
  const lr = typed ?? obj(c.least_request_lb_config);
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
