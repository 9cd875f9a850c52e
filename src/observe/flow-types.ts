// The flow record (Hubble's model), types only: the nodes write it, the relay merges it,
// `trellis observe` and the browser dashboard read it.

export type Verdict = 'FORWARDED' | 'DENIED' | 'ERROR';

/**
 * Where the record was taken (Hubble's trace_observation_point, named for our hops):
 * "node-outbound" a node proxy's outbound side (a workload's CONNECT / HTTP_PROXY / upstream
 * port, or an L7 engine's tunnel to an endpoint), "node-inbound" a node proxy's HBONE or
 * plaintext inbound (Hubble's TO_ENDPOINT), "waypoint" / "gateway" an L7 engine's request
 * (Hubble's TO_PROXY with an l7 part).
 */
export type ObservationPoint = 'node-inbound' | 'node-outbound' | 'waypoint' | 'gateway';

/** The HTTP part of a record an L7 engine wrote (one per request; Hubble's Layer7 HTTP). */
export interface L7Info {
  readonly method: string;
  readonly path: string;
  /** Response status sent; 0 when the stream was reset before a response. */
  readonly status: number;
  /** Request headers in to stream done (ms). */
  readonly latencyMs: number;
  /** Envoy response flags ("UF", "RBAC", "NR"...); empty when none. */
  readonly flags: readonly string[];
}

export interface FlowRecord {
  readonly time: string;
  readonly node: string;
  /** The node's worker process that handled it (when the node runs several). */
  readonly worker?: number;
  readonly direction: 'outbound' | 'inbound';
  readonly verdict: Verdict;
  /** Why it was denied or failed (a verify.ts reason, an RBAC decision, a connect error). */
  readonly reason?: string;
  readonly source: { readonly identity?: string; readonly address?: string; readonly workload?: string };
  readonly destination: {
    readonly identity?: string;
    readonly address?: string;
    readonly service?: string;
    readonly workload?: string;
  };
  /** What carried it: "hbone" (mTLS tunnel), "waypoint", "passthrough", "plaintext" (inbound, no tunnel). */
  readonly via?: string;
  /**
   * "none" on an inbound connection the peer made in plaintext (a PERMISSIVE or DISABLE port):
   * Istio's connection_security_policy="none". Absent on everything else, which is mTLS inbound.
   */
  readonly tls?: 'none';
  readonly bytesSent?: number;
  readonly bytesReceived?: number;
  readonly durationMs?: number;
  /** Absent on records written before it existed: read it as node-inbound / node-outbound by direction. */
  readonly observationPoint?: ObservationPoint;
  /** The deciding policy and rule ("AuthorizationPolicy/ns/name" style name) when RBAC made the verdict. */
  readonly policy?: string;
  /** Only on L7 records (one per HTTP request, from a waypoint or gateway). */
  readonly l7?: L7Info;
  /** W3C trace id (32 hex) of the request, when it carried a traceparent. */
  readonly traceId?: string;
}
