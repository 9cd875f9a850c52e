// Istio's standard request metrics (istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes) from each completed request, as Istio's stats
// plugin reports them: reporter "waypoint" in a waypoint (ambient), "source" in a gateway
// (whose source labels are the gateway itself).
//
// Label values never carry per-request or per-pod-address values. The proxy has no mesh model:
// - source: the peer's SPIFFE ID gives source_principal and the namespace; the workload name is
//   not known to the proxy (Istio reads it from peer metadata), so source_workload is the peer's
//   service account;
// - destination workload: the Trellis metadata of the upstream host's EDS endpoint (workload,
//   namespace, identity), read once per config version;
// - destination service: the service the waypoint serves (its route config is "<host>:<port>"),
//   or the host of the upstream cluster ("outbound|port|subset|host") in a gateway.
//
// Hot path: O(1) per request with no allocation once a series exists: the label tuple is keyed
// by interned objects (source per peer identity, service per route config or cluster,
// destination per cluster host) and small integers, through nested maps to preallocated series.
import type { RequestContext } from '../context.js';
import type { AccessLogRecord } from '../access-log.js';
import type { FilterConfigView, HttpFilter, HttpFilterFactory } from '../filter.js';
import { list, obj, str, num } from '../config.js';
import { loadAssignmentOf } from '../../envoy/endpoints.js';
import { readTrellisMetadata } from '../../../xds/struct.js';
import {
  clusterHost,
  serviceParts,
  spiffeParts,
  type Family,
  type Histogram,
  type MetricsRegistry,
  type Scalar,
} from '../../../observe/metrics-registry.js';
import { PEER_LABELS } from '../../../observe/flows.js';

/** Istio's default duration buckets (ms). */
export const DURATION_BUCKETS_MS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];
/** Istio's default size buckets (bytes): exponential, factor 10, from 1. */
export const SIZE_BUCKETS_BYTES = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

export const REQUEST_LABELS = [
  ...PEER_LABELS,
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

interface Interned {
  /** Label values in REQUEST_LABELS order for this part of the tuple. */
  readonly values: readonly string[];
}
interface SourceInfo extends Interned {
  readonly tls: 'mutual_tls' | 'none' | 'unknown';
}
interface Series {
  readonly requests: Scalar;
  readonly duration: Histogram;
  readonly requestBytes: Histogram;
  readonly responseBytes: Histogram;
}
type ByCode = Map<number, Series>;

const UNKNOWN3: Interned = { values: ['unknown', 'unknown', 'unknown'] };

export interface StatsFilterOptions {
  readonly registry: MetricsRegistry;
  readonly reporter: 'waypoint' | 'source';
  /**
   * A gateway's own SPIFFE ID. With reporter "source" the source labels describe the reporting
   * proxy itself (as Istio's gateways report), and connection_security_policy is "unknown".
   */
  readonly self?: string;
}

export function statsFilter(opts: StatsFilterOptions): HttpFilterFactory {
  const { registry, reporter, self } = opts;
  const requests = registry.counter(
    'istio_requests_total',
    'Requests handled by the proxy (Istio standard metric).',
    REQUEST_LABELS,
  );
  const duration = registry.histogram(
    'istio_request_duration_milliseconds',
    'Request duration in milliseconds, headers received to stream done (Istio standard metric).',
    REQUEST_LABELS,
    DURATION_BUCKETS_MS,
  );
  const requestBytes = registry.histogram(
    'istio_request_bytes',
    'Request body size in bytes (Istio standard metric; headers not counted).',
    REQUEST_LABELS,
    SIZE_BUCKETS_BYTES,
  );
  const responseBytes = registry.histogram(
    'istio_response_bytes',
    'Response body size in bytes (Istio standard metric; headers not counted).',
    REQUEST_LABELS,
    SIZE_BUCKETS_BYTES,
  );

  // Interned across config versions, so the nested series maps keep their keys.
  const sources = new Map<string, SourceInfo>();
  const services = new Map<string, Interned>();
  const destinations = new Map<string, Interned>();
  const flagIds = new Map<string, number>([['', 0]]);
  const flagNames = ['-'];
  const series = new Map<SourceInfo, Map<Interned, Map<Interned, ByCode>>>();

  const noPeer: SourceInfo = { values: ['unknown', 'unknown', 'unknown'], tls: 'none' };
  const selfId = self ? spiffeParts(self) : undefined;
  const selfSource: SourceInfo | undefined =
    reporter === 'source' && self
      ? { values: [selfId?.serviceAccount ?? 'unknown', selfId?.namespace ?? 'unknown', self], tls: 'unknown' }
      : undefined;
  const sourceOf = (identity: string | undefined): SourceInfo => {
    if (selfSource) return selfSource;
    if (!identity) return noPeer;
    let s = sources.get(identity);
    if (!s) {
      const p = spiffeParts(identity);
      s = { values: [p?.serviceAccount ?? 'unknown', p?.namespace ?? 'unknown', identity], tls: 'mutual_tls' };
      sources.set(identity, s);
    }
    return s;
  };
  const serviceOf = (host: string): Interned => {
    let s = services.get(host);
    if (!s) {
      const p = serviceParts(host);
      s = { values: [host, p.name, p.namespace] };
      services.set(host, s);
    }
    return s;
  };
  const destinationOf = (workload: string, namespace: string, principal: string): Interned => {
    const key = `${workload}\u0000${namespace}\u0000${principal}`;
    let d = destinations.get(key);
    if (!d) destinations.set(key, (d = { values: [workload, namespace, principal] }));
    return d;
  };
  const flagsId = (flags: readonly string[]): number => {
    if (flags.length === 0) return 0;
    // One flag is the common case: no join.
    const name = flags.length === 1 ? flags[0]! : flags.join(',');
    let id = flagIds.get(name);
    if (id === undefined) {
      id = flagNames.length;
      flagIds.set(name, id);
      flagNames.push(name);
    }
    return id;
  };

  const seriesFor = (
    src: SourceInfo,
    svc: Interned,
    dst: Interned,
    grpc: boolean,
    status: number,
    grpcStatus: number | undefined,
    flags: number,
  ): Series => {
    let bySvc = series.get(src);
    if (!bySvc) series.set(src, (bySvc = new Map()));
    let byDst = bySvc.get(svc);
    if (!byDst) bySvc.set(svc, (byDst = new Map()));
    let byCode = byDst.get(dst);
    if (!byCode) byDst.set(dst, (byCode = new Map()));
    // One number for the rest of the tuple: status < 1000 (10 bits), grpc-status 0..16 or none
    // (5 bits), protocol (1 bit), flags id above.
    const g = grpcStatus === undefined || grpcStatus < 0 || grpcStatus > 30 ? 31 : grpcStatus;
    const code = status >= 0 && status < 1024 ? status : 1023;
    const key = ((flags * 1024 + code) * 32 + g) * 2 + (grpc ? 1 : 0);
    let s = byCode.get(key);
    if (!s) {
      // First time for this tuple: the registry's string-keyed lookup, once.
      const values = [
        reporter,
        ...src.values,
        ...dst.values,
        ...svc.values,
        grpc ? 'grpc' : 'http',
        String(status),
        g === 31 ? 'unknown' : String(g),
        flagNames[flags]!,
        src.tls,
      ];
      s = {
        requests: requests.with(values),
        duration: duration.with(values),
        requestBytes: requestBytes.with(values),
        responseBytes: responseBytes.with(values),
      };
      byCode.set(key, s);
    }
    return s;
  };

  return {
    name: 'trellis.stats',
    create(view: FilterConfigView): HttpFilter {
      // Per config version: cluster -> "address:port" -> destination workload labels.
      const hostsByCluster = new Map<string, Map<string, Interned>>();
      for (const [name, cluster] of view.config.clusters) {
        const hosts = new Map<string, Interned>();
        const cla = loadAssignmentOf(name, cluster, view.config.endpoints);
        for (const group of list(cla?.endpoints))
          for (const lbe of list(group.lb_endpoints)) {
            const sa = obj(obj(obj(lbe.endpoint)?.address)?.socket_address);
            const address = str(sa?.address);
            const port = num(sa?.port_value);
            if (!address || port === undefined) continue;
            const md = readTrellisMetadata(lbe);
            const identity = typeof md.identity === 'string' && md.identity ? md.identity : undefined;
            const id = spiffeParts(identity);
            hosts.set(
              `${address}:${port}`,
              destinationOf(
                typeof md.workload === 'string' && md.workload ? md.workload : (id?.serviceAccount ?? 'unknown'),
                typeof md.namespace === 'string' && md.namespace ? md.namespace : (id?.namespace ?? 'unknown'),
                identity ?? 'unknown',
              ),
            );
          }
        hostsByCluster.set(name, hosts);
      }
      // The waypoint's service per route config, the gateway's per cluster (resolved lazily, interned).
      const serviceByKey = new Map<string, Interned>();
      const unknownService = serviceOf('unknown');
      return {
        onComplete(ctx: RequestContext, r: AccessLogRecord): void {
          const cluster = r.upstreamCluster;
          // Keyed by route config (waypoint: "<host>:<port>") or cluster (gateway); resolved once.
          const key = reporter === 'waypoint' ? r.routeConfig : cluster;
          let svc = key === undefined ? unknownService : serviceByKey.get(key);
          if (svc === undefined && key !== undefined) {
            const colon = key.lastIndexOf(':');
            const host = reporter === 'waypoint' ? (colon > 0 ? key.slice(0, colon) : key) : clusterHost(key);
            serviceByKey.set(key, (svc = host ? serviceOf(host) : unknownService));
          }
          const dst =
            cluster !== undefined && r.upstreamHost !== undefined
              ? (hostsByCluster.get(cluster)?.get(r.upstreamHost) ?? UNKNOWN3)
              : UNKNOWN3;
          const s = seriesFor(
            sourceOf(r.peerIdentity),
            svc ?? unknownService,
            dst,
            ctx.isGrpc,
            r.status,
            r.grpcStatus,
            flagsId(r.responseFlags),
          );
          s.requests.inc();
          s.duration.observe(r.durationMs);
          s.requestBytes.observe(r.bytesReceived);
          s.responseBytes.observe(r.bytesSent);
        },
      };
    },
  };
}

/** engine.stats() counter -> its Envoy Prometheus name (with _total, as Prometheus counters end). */
const CLUSTER_COUNTERS: readonly (readonly [stat: string, metric: string, help: string])[] = [
  [
    'upstream_rq_retry',
    'envoy_cluster_upstream_rq_retry_total',
    'Retries sent upstream (Envoy cluster.upstream_rq_retry).',
  ],
  [
    'upstream_rq_retry_overflow',
    'envoy_cluster_upstream_rq_retry_overflow_total',
    'Retries refused by the circuit breaker or retry budget (Envoy cluster.upstream_rq_retry_overflow).',
  ],
  [
    'upstream_rq_pending_overflow',
    'envoy_cluster_upstream_rq_pending_overflow_total',
    'Requests refused by the circuit breaker, flag UO (Envoy cluster.upstream_rq_pending_overflow).',
  ],
  [
    'upstream_cx_overflow',
    'envoy_cluster_upstream_cx_overflow_total',
    'Connections refused by the max_connections circuit breaker (Envoy cluster.upstream_cx_overflow).',
  ],
  [
    'ejections_enforced_total',
    'envoy_cluster_outlier_detection_ejections_enforced_total',
    'Hosts ejected by outlier detection (Envoy cluster.outlier_detection.ejections_enforced_total).',
  ],
];

/**
 * Adds an engine's per-cluster counters (L7Engine.stats(), read at scrape time) to a registry.
 * Several engines of one node add up per cluster.
 */
export function addClusterStats(registry: MetricsRegistry, stats: Record<string, Record<string, number>>): void {
  const families: Family<Scalar>[] = CLUSTER_COUNTERS.map(([, metric, help]) =>
    registry.counter(metric, help, ['cluster_name']),
  );
  for (const [cluster, values] of Object.entries(stats))
    CLUSTER_COUNTERS.forEach(([stat], i) => {
      const v = values[stat];
      if (typeof v === 'number') families[i]!.with([cluster]).inc(v);
    });
}
