// The one filter interface. A factory creates a filter instance per config version (on every
// update(), so it can precompile its part of the config, e.g. typed_per_filter_config per
// route); per-request state lives in ctx.filterState. The router is the terminal step after the
// chain. Hooks are optional; the engine only calls the filters that define each one.
import type { L7Config } from './config.js';
import type { LocalReply, RequestContext } from './context.js';
import type { HeaderMap } from './headers.js';
import type { AccessLogRecord } from './access-log.js';

/** undefined: continue with the next filter; a LocalReply: answer with it; a Promise: wait (async filters only). */
export type FilterResult = void | LocalReply | Promise<void | LocalReply>;

export interface UpstreamAttempt {
  readonly cluster: string;
  /** "address:port" of the host picked for this attempt. */
  readonly host: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

export interface UpstreamFailure {
  /**
   * connect: no connection (UF); reset: connection/stream reset before response headers (UC/UR);
   * refused: HTTP/2 REFUSED_STREAM; protocol: malformed response (UPE); timeout: the per-route
   * timeout; status: a 5xx response, not yet sent downstream.
   */
  readonly reason: 'connect' | 'reset' | 'refused' | 'protocol' | 'timeout' | 'status';
  readonly attempt: number;
  readonly status?: number;
  /** Response headers for reason "status" (grpc-status of a trailers-only response). */
  readonly headers?: HeaderMap;
}

export interface HttpFilter {
  /** Request headers received and routed. Return a LocalReply to answer instead of forwarding. */
  onRequest?(ctx: RequestContext): FilterResult;
  /**
   * Extension point for circuit breakers: called before each upstream attempt, after the host is
   * picked. A LocalReply refuses the attempt (flag UO for overflow).
   */
  onUpstreamAttempt?(ctx: RequestContext, attempt: UpstreamAttempt): void | LocalReply;
  /**
   * Extension point for retries: an attempt failed before anything reached the client. Return
   * true to retry with a newly picked host. Asked only for requests without a body (bodies are
   * streamed, never buffered for replay).
   */
  onUpstreamFailure?(ctx: RequestContext, failure: UpstreamFailure): boolean;
  /** Response headers (upstream or local) about to be sent; mutable. */
  onResponseHeaders?(ctx: RequestContext, status: number, headers: HeaderMap): void;
  /** The stream is done (finished, reset or aborted). */
  onComplete?(ctx: RequestContext, record: AccessLogRecord): void;
}

export interface FilterConfigView {
  readonly config: L7Config;
  /** Our own SPIFFE ID, when the engine has one. */
  readonly identity: string | undefined;
}

export interface HttpFilterFactory {
  readonly name: string;
  create(view: FilterConfigView): HttpFilter;
}

/** The filters of one config version, split by hook so the hot path skips absent hooks. */
export class FilterChain {
  readonly onRequest: readonly HttpFilter[];
  readonly onUpstreamAttempt: readonly HttpFilter[];
  readonly onUpstreamFailure: readonly HttpFilter[];
  readonly onResponseHeaders: readonly HttpFilter[];
  readonly onComplete: readonly HttpFilter[];

  constructor(filters: readonly HttpFilter[]) {
    this.onRequest = filters.filter((f) => f.onRequest);
    this.onUpstreamAttempt = filters.filter((f) => f.onUpstreamAttempt);
    this.onUpstreamFailure = filters.filter((f) => f.onUpstreamFailure);
    this.onResponseHeaders = filters.filter((f) => f.onResponseHeaders);
    this.onComplete = filters.filter((f) => f.onComplete);
  }
}

export function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof (v as { then?: unknown } | undefined)?.then === 'function';
}
