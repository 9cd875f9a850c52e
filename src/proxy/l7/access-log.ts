// One structured record per request, built when the stream is done, for the `log` callback and
// onComplete filters. Response flags are Envoy's short names.

/** Envoy response flags the engine sets. */
export const ResponseFlag = {
  /** No route matched. */
  NoRouteFound: 'NR',
  /** The route's cluster is not in the config. */
  NoClusterFound: 'NC',
  /** No healthy host in the cluster. */
  NoHealthyUpstream: 'UH',
  /** Upstream connection failure. */
  UpstreamConnectionFailure: 'UF',
  /** Upstream connection terminated. */
  UpstreamConnectionTermination: 'UC',
  /** Upstream stream reset. */
  UpstreamRemoteReset: 'UR',
  /** Upstream request timeout. */
  UpstreamRequestTimeout: 'UT',
  /** Malformed upstream response. */
  UpstreamProtocolError: 'UPE',
  /** The client went away before the response completed. */
  DownstreamConnectionTermination: 'DC',
  /** Answered by a filter or a route's direct response / redirect. */
  LocalReply: 'DR',
} as const;

export interface AccessLogRecord {
  /** Epoch ms when the request headers arrived. */
  readonly startTime: number;
  readonly durationMs: number;
  readonly method: string;
  readonly authority: string;
  /** :path as received (before rewrites). */
  readonly path: string;
  readonly protocol: 'HTTP/1.1' | 'HTTP/2';
  /** Response status sent; 0 when the stream was reset before any response. */
  readonly status: number;
  /** grpc-status sent (headers or trailers), for gRPC requests. */
  readonly grpcStatus: number | undefined;
  /** Envoy response flags ("NR", "UF", "UT", ...); empty when none. */
  readonly responseFlags: readonly string[];
  /** Envoy response_code_details for locally generated responses ("route_not_found"...). */
  readonly details: string | undefined;
  readonly routeConfig: string;
  readonly routeName: string | undefined;
  readonly upstreamCluster: string | undefined;
  /** "address:port" of the last upstream host tried. */
  readonly upstreamHost: string | undefined;
  /** Request body bytes received from the client. */
  readonly bytesReceived: number;
  /** Response body bytes sent to the client. */
  readonly bytesSent: number;
  readonly requestId: string;
  readonly peerIdentity: string | undefined;
  readonly peerAddress: string | undefined;
}

export type AccessLogger = (record: AccessLogRecord) => void;

export const NO_FLAGS: readonly string[] = Object.freeze([]);
