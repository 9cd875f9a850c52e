// Flow records (Hubble's idea): one structured record per connection a node proxy handled,
// with both identities and the verdict; and the Istio-named L4 counters derived from them.

import {
  clusterHost,
  MetricsRegistry,
  serviceParts,
  spiffeParts,
  type Family,
  type FamilySnapshot,
  type Scalar,
} from './metrics-registry.js';

export type { FlowRecord, L7Info, ObservationPoint, Verdict } from './flow-types.js';
import type { FlowRecord } from './flow-types.js';

/** Who talked to whom: the labels Istio's TCP and request metrics share, in this order. */
export const PEER_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
] as const;

/** Istio's TCP metric labels (the L4 subset of the request metrics' labels), in this order. */
const L4_LABELS = [...PEER_LABELS, 'response_flags', 'connection_security_policy'] as const;

/** "WorkloadEntry/<ns>/<name>" or "ServiceEntry/<ns>/<name>#i" (the model's workload ids) -> name and namespace. */
function workloadParts(id: string | undefined): { name: string; namespace: string } | undefined {
  const m = id ? /^[^/]+\/([^/]+)\/([^/#]+)/.exec(id) : null;
  return m ? { namespace: m[1]!, name: m[2]! } : undefined;
}

/**
 * The Istio-named L4 counters (istio_tcp_*), derived from flow records, in a MetricsRegistry the
 * node's L7 stats filters share, so /metrics is one page.
 */
export class L4Metrics {
  readonly registry: MetricsRegistry;
  readonly #opened: Family<Scalar>;
  readonly #closed: Family<Scalar>;
  readonly #sent: Family<Scalar>;
  readonly #received: Family<Scalar>;

  constructor(registry = new MetricsRegistry()) {
    this.registry = registry;
    this.#opened = registry.counter(
      'istio_tcp_connections_opened_total',
      'TCP connections opened (Istio standard metric).',
      L4_LABELS,
    );
    this.#closed = registry.counter(
      'istio_tcp_connections_closed_total',
      'TCP connections closed (Istio standard metric).',
      L4_LABELS,
    );
    this.#sent = registry.counter(
      'istio_tcp_sent_bytes_total',
      'Bytes sent to the client over TCP connections, counted when they close (Istio standard metric).',
      L4_LABELS,
    );
    this.#received = registry.counter(
      'istio_tcp_received_bytes_total',
      'Bytes received from the client over TCP connections, counted when they close (Istio standard metric).',
      L4_LABELS,
    );
  }

  /** Every family, for adding up the series of several worker processes. */
  snapshot(): FamilySnapshot[] {
    return this.registry.snapshot();
  }

  merge(snapshot: readonly FamilySnapshot[]): void {
    this.registry.merge(snapshot);
  }

  /** Once per connection (open and close), not per request: building the label values here is fine. */
  record(f: FlowRecord, phase: 'open' | 'close'): void {
    const inbound = f.direction === 'inbound';
    // Workload names are known for the local side (the flow's workload id); the peer's from its SPIFFE ID.
    const src = workloadParts(f.source.workload);
    const dst = workloadParts(f.destination.workload);
    const srcId = spiffeParts(f.source.identity);
    const dstId = spiffeParts(f.destination.identity);
    // A service host, or a cluster name an L7 engine dialed; never an address (a per-pod value).
    const service = f.destination.service ? clusterHost(f.destination.service) : undefined;
    const svc = service ? serviceParts(service.replace(/:\d+$/, '')) : undefined;
    const tls = inbound
      ? f.tls === 'none'
        ? 'none'
        : 'mutual_tls'
      : f.via === 'passthrough'
        ? 'none'
        : f.via === 'hbone' || f.via === 'waypoint'
          ? 'mutual_tls'
          : 'unknown';
    const values = [
      inbound ? 'destination' : 'source',
      src?.name ?? srcId?.serviceAccount ?? 'unknown',
      src?.namespace ?? srcId?.namespace ?? 'unknown',
      f.source.identity ?? 'unknown',
      dst?.name ?? dstId?.serviceAccount ?? 'unknown',
      dst?.namespace ?? dstId?.namespace ?? 'unknown',
      f.destination.identity ?? 'unknown',
      service?.replace(/:\d+$/, '') ?? 'unknown',
      svc?.name ?? 'unknown',
      svc?.namespace ?? 'unknown',
      'tcp',
      f.verdict === 'FORWARDED' ? '-' : f.verdict === 'DENIED' ? 'RBAC' : 'UF',
      tls,
    ];
    if (phase === 'open') this.#opened.with(values).inc();
    else {
      this.#closed.with(values).inc();
      if (f.bytesSent) this.#sent.with(values).inc(f.bytesSent);
      if (f.bytesReceived) this.#received.with(values).inc(f.bytesReceived);
    }
  }

  render(): string {
    return this.registry.render();
  }
}
