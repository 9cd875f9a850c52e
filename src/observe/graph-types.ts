// What the control plane's dashboard API answers (GET /api/graph, GET /api/signals): the
// service graph and the golden signals, computed from the nodes' Istio metrics the way Kiali
// computes them from Prometheus. Types only: the browser dashboard reads them too.

/** "service" a mesh Service (or ServiceEntry host); "workload" a source outside any service; "gateway" an ingress; "external" callers the mesh cannot name. */
export type GraphNodeKind = 'service' | 'workload' | 'gateway' | 'external';

export interface GraphNode {
  /** "svc:<ns>/<name>", "wl:<ns>/<name>", "gw:<ns>/<name>" or "external". */
  readonly id: string;
  readonly kind: GraphNodeKind;
  readonly name: string;
  readonly namespace?: string;
  /** Served through a waypoint (L7 metrics and policy). */
  readonly waypoint?: boolean;
}

/**
 * "mutual_tls" when every connection or request of the edge was mTLS, "none" when none was,
 * "mixed" when both happened in the window, "unknown" when the reporter cannot tell.
 */
export type MtlsMark = 'mutual_tls' | 'none' | 'mixed' | 'unknown';

export interface GraphEdge {
  readonly source: string;
  readonly target: string;
  /** "http" (from istio_requests_total) or "tcp" (from istio_tcp_connections_opened_total). */
  readonly protocol: 'http' | 'tcp';
  /** Requests per second (http) or connections opened per second (tcp), over the window. */
  readonly rate: number;
  /** Fraction (0..1) of requests answered 5xx or reset (http), or of connections that failed (tcp). */
  readonly errorRate: number;
  /** Requests or connections per second refused by policy (response flag RBAC / DENIED flows). */
  readonly deniedRate: number;
  /** 99th percentile request duration in ms (http only; null without requests in the window). */
  readonly p99Ms: number | null;
  /** Bytes per second in both directions (tcp: counted when connections close). */
  readonly bytesRate: number;
  readonly mtls: MtlsMark;
  /** Requests or connections in the window. */
  readonly total: number;
}

export interface ServiceGraph {
  /** Epoch ms of the newest scrape used. */
  readonly time: number;
  /** The window the rates cover, in seconds (the scrapes actually used; may be shorter than asked at start). */
  readonly windowSeconds: number;
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
  /** Mesh nodes whose metrics could not be read in the last scrape. */
  readonly unreachable: readonly string[];
}

/** One point of a service's golden signals (inbound traffic to it, all callers together). */
export interface SignalPoint {
  /** Epoch ms at the end of the interval. */
  readonly t: number;
  readonly rate: number;
  readonly errorRate: number;
  readonly deniedRate: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

export interface ServiceSignals {
  /** A GraphNode id. */
  readonly id: string;
  readonly name: string;
  readonly namespace?: string;
  readonly protocol: 'http' | 'tcp';
  readonly points: readonly SignalPoint[];
}

export interface SignalsAnswer {
  /** Seconds between points (the scrape interval). */
  readonly intervalSeconds: number;
  readonly services: readonly ServiceSignals[];
}
