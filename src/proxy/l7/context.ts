// What filters see of a request: the request as routed, the chosen route, the peer, and a place
// for per-request filter state. Implemented by Exchange (exchange.ts).
import type { FormatContext } from './header-ops.js';
import type { HeaderMap } from './headers.js';
import type { MatchInput } from './matchers.js';
import type { RouteEntry } from './route-table.js';

export interface PeerInfo {
  /** The caller's SPIFFE ID when known (mTLS / HBONE). */
  readonly identity?: string;
  readonly address?: string;
  readonly port?: number;
  /** The scheme the client used to reach us ("https" behind TLS); default "http". */
  readonly scheme?: 'http' | 'https';
}

export type DownstreamProtocol = 'HTTP/1.1' | 'HTTP/2';

/** A response a filter (or the router) produces instead of forwarding. */
export interface LocalReply {
  readonly status: number;
  readonly body?: string;
  /** Extra response headers (lowercase names). */
  readonly headers?: HeaderMap;
  /** Envoy response flag for the access log ("RBAC"/"UAEX"/"FI"...). */
  readonly flag?: string;
  /** Envoy response_code_details ("rbac_access_denied"...). */
  readonly details?: string;
  /** For gRPC requests: the grpc-status to send; default derived from `status` as Envoy does. */
  readonly grpcStatus?: number;
}

export interface RequestContext extends FormatContext, MatchInput {
  readonly method: string;
  readonly scheme: string;
  /** :authority / Host. Filters may rewrite it (the route is already chosen). */
  authority: string;
  /** :path with query. Filters may rewrite it. */
  path: string;
  /** Request headers, lowercase names, no pseudo-headers; mutable. */
  readonly headers: HeaderMap;
  readonly protocol: DownstreamProtocol;
  readonly peer: PeerInfo;
  /** content-type application/grpc*. */
  readonly isGrpc: boolean;
  readonly requestId: string;
  /** Date.now() when the request headers arrived. */
  readonly startTime: number;
  /** The RouteConfiguration name this connection routes with. */
  readonly routeConfig: string;
  /** The matched route; undefined when none matched (the router answers 404). */
  readonly route: RouteEntry | undefined;
  /** Per-request state for filters, keyed by filter. */
  readonly filterState: Map<unknown, unknown>;
  /** Adds an Envoy response flag to the access log record. */
  addResponseFlag(flag: string): void;
}
