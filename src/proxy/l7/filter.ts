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
  /**
   * Per-try timeout for this attempt (ms, 0 = none), set by a retry filter's onUpstreamAttempt.
   * The route timeout still bounds the whole request.
   */
  perTryTimeoutMs: number;
}

/** onUpstreamFailure asking for another attempt after a delay (retry back-off). */
export interface RetryDecision {
  /** Wait this long before the next attempt (ms). */
  readonly delayMs: number;
  /**
   * Host re-picks allowed when the picked host was already tried (Envoy's previous_hosts retry
   * host predicate with host_selection_retry_max_attempts); 0 = take the first pick.
   */
  readonly hostReselects: number;
}

export interface UpstreamFailure {
  /**
   * connect: no connection (UF); reset: connection/stream reset before response headers (UC/UR);
   * refused: HTTP/2 REFUSED_STREAM; protocol: malformed response (UPE); timeout: the per-route
   * timeout (per-try; the route timeout is never retried); status: a response, not yet sent
   * downstream (any status: the filter decides what is retriable).
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
   * true (now) or a RetryDecision (after a delay) to retry with a newly picked host. Asked only
   * for requests without a body or with an empty one (bodies are streamed, never buffered for
   * replay, so a request whose body went upstream is never retried).
   */
  onUpstreamFailure?(ctx: RequestContext, failure: UpstreamFailure): boolean | RetryDecision;
  /**
   * An attempt that every onUpstreamAttempt admitted is over (response done, failed, timed out or
   * cancelled): release what onUpstreamAttempt took. Also called for the filters before the one
   * that refused an attempt.
   */
  onUpstreamAttemptEnd?(ctx: RequestContext, attempt: UpstreamAttempt): void;
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
  /** Per-cluster counters and gauges the factory keeps across config versions (L7Engine.stats()). */
  stats?(): Record<string, Record<string, number>>;
}

/** The filters of one config version, split by hook so the hot path skips absent hooks. */
export class FilterChain {
  readonly onRequest: readonly HttpFilter[];
  readonly onUpstreamAttempt: readonly HttpFilter[];
  readonly onUpstreamFailure: readonly HttpFilter[];
  readonly onUpstreamAttemptEnd: readonly HttpFilter[];
  readonly onResponseHeaders: readonly HttpFilter[];
  readonly onComplete: readonly HttpFilter[];

  constructor(filters: readonly HttpFilter[]) {
    this.onRequest = filters.filter((f) => f.onRequest);
    this.onUpstreamAttempt = filters.filter((f) => f.onUpstreamAttempt);
    this.onUpstreamFailure = filters.filter((f) => f.onUpstreamFailure);
    this.onUpstreamAttemptEnd = filters.filter((f) => f.onUpstreamAttemptEnd);
    this.onResponseHeaders = filters.filter((f) => f.onResponseHeaders);
    this.onComplete = filters.filter((f) => f.onComplete);
  }
}

export function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof (v as { then?: unknown } | undefined)?.then === 'function';
}
