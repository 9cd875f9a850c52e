// envoy.config.route.v3.RetryPolicy (RouteAction.retry_policy, else VirtualHost.retry_policy):
// which failures are retried (retry_on), how many times (num_retries, default 1), each try's
// timeout (per_try_timeout), the fully jittered exponential back-off between tries
// (retry_back_off: base_interval default 25 ms, max_interval default 10x base) and host
// re-picks away from hosts already tried (the previous_hosts retry host predicate). Each retry
// also needs a slot of the cluster's max_retries / retry_budget (ClusterCircuits, shared with
// the circuit breaker filter); without one the failed response goes to the client (flag UO),
// and when the retries ran out it carries flag URX.
//
// Bodies are streamed upstream, never buffered: the router asks this filter only about
// requests without a body, or whose body was empty and has ended; anything else is never
// retried. A response is retried only before any of it reached the client.
import { L7ConfigError, bool, durationMs, list, num, obj, str, type EnvoyObject, type L7Config } from '../config.js';
import type { RequestContext } from '../context.js';
import type { HttpFilter, HttpFilterFactory, RetryDecision, UpstreamAttempt, UpstreamFailure } from '../filter.js';
import { joined, type HeaderMap } from '../headers.js';
import { headerMatcher, type MatchInput, type RequestPredicate } from '../matchers.js';
import type { ClusterCircuit, ClusterCircuits } from './circuit-breaker.js';

// retry_on conditions (x-envoy-retry-on / x-envoy-retry-grpc-on names).
const FIVE_XX = 1 << 0;
const GATEWAY_ERROR = 1 << 1;
const RESET = 1 << 2;
const CONNECT_FAILURE = 1 << 3;
const RETRIABLE_4XX = 1 << 4;
const REFUSED_STREAM = 1 << 5;
const STATUS_CODES = 1 << 6;
const RETRIABLE_HEADERS = 1 << 7;
const RATE_LIMITED = 1 << 8;
const RESET_BEFORE_REQUEST = 1 << 9;
const GRPC_CANCELLED = 1 << 10;
const GRPC_DEADLINE_EXCEEDED = 1 << 11;
const GRPC_INTERNAL = 1 << 12;
const GRPC_RESOURCE_EXHAUSTED = 1 << 13;
const GRPC_UNAVAILABLE = 1 << 14;
const GRPC_ANY = GRPC_CANCELLED | GRPC_DEADLINE_EXCEEDED | GRPC_INTERNAL | GRPC_RESOURCE_EXHAUSTED | GRPC_UNAVAILABLE;

const RETRY_ON: Readonly<Record<string, number>> = {
  '5xx': FIVE_XX,
  'gateway-error': GATEWAY_ERROR,
  reset: RESET,
  'reset-before-request': RESET_BEFORE_REQUEST,
  'connect-failure': CONNECT_FAILURE,
  'retriable-4xx': RETRIABLE_4XX,
  'refused-stream': REFUSED_STREAM,
  'retriable-status-codes': STATUS_CODES,
  'retriable-headers': RETRIABLE_HEADERS,
  'envoy-ratelimited': RATE_LIMITED,
  // No HTTP/3 upstreams: nothing to retry.
  'http3-post-connect-failure': 0,
  cancelled: GRPC_CANCELLED,
  'deadline-exceeded': GRPC_DEADLINE_EXCEEDED,
  internal: GRPC_INTERNAL,
  'resource-exhausted': GRPC_RESOURCE_EXHAUSTED,
  unavailable: GRPC_UNAVAILABLE,
};

/** Conditions that retry an attempt failing without a response, by reason. */
const ON_FAILURE: Readonly<Record<Exclude<UpstreamFailure['reason'], 'status'>, number>> = {
  connect: FIVE_XX | GATEWAY_ERROR | RESET | CONNECT_FAILURE | RESET_BEFORE_REQUEST,
  reset: FIVE_XX | GATEWAY_ERROR | RESET,
  refused: FIVE_XX | GATEWAY_ERROR | RESET | REFUSED_STREAM | RESET_BEFORE_REQUEST,
  protocol: FIVE_XX | GATEWAY_ERROR | RESET,
  // The per-try timeout: "does not respond at all (read timeout)".
  timeout: FIVE_XX | GATEWAY_ERROR | RESET,
};

const DEFAULT_BASE_INTERVAL_MS = 25;
const PREVIOUS_HOSTS = 'envoy.retry_host_predicates.previous_hosts';
const OMIT_CANARY_HOSTS = 'envoy.retry_host_predicates.omit_canary_hosts';

export interface CompiledRetryPolicy {
  readonly retryOn: number;
  readonly numRetries: number;
  readonly perTryTimeoutMs: number;
  readonly baseIntervalMs: number;
  readonly maxIntervalMs: number;
  readonly statusCodes: readonly number[];
  readonly retriableHeaders: readonly RequestPredicate[];
  readonly requestHeaders: readonly RequestPredicate[];
  /** previous_hosts: re-picks allowed per retry (host_selection_retry_max_attempts); 0 without it. */
  readonly hostReselects: number;
  /** VirtualHost include_request_attempt_count: x-envoy-attempt-count on upstream requests. */
  readonly attemptCountHeader: boolean;
}

/** One request's retry bookkeeping (only for requests that retried). */
interface RetryState {
  readonly circuit: ClusterCircuit;
  /** The attempt that holds the retry slot. */
  readonly attempt: number;
}

/**
 * RetryPolicy -> compiled form; throws L7ConfigError (update() NACKs) for values the engine
 * cannot honour. `where` names the route for messages.
 */
export function compileRetryPolicy(p: EnvoyObject, where: string, attemptCountHeader: boolean): CompiledRetryPolicy {
  const fail = (msg: string): never => {
    throw new L7ConfigError(`${where}: retry_policy ${msg}`);
  };
  let retryOn = 0;
  const on = str(p.retry_on) ?? '';
  for (const raw of on.split(',')) {
    // As Envoy: a token it does not know is ignored (the rest of the policy still applies).
    retryOn |= RETRY_ON[raw.trim()] ?? 0;
  }
  const numRetries = num(p.num_retries) ?? 1;
  if (!(numRetries >= 0) || !Number.isInteger(numRetries)) fail('num_retries must be a non-negative integer');
  const perTryTimeoutMs = durationMs(p.per_try_timeout) ?? 0;
  if (perTryTimeoutMs < 0) fail('per_try_timeout must not be negative');
  const backOff = obj(p.retry_back_off);
  const baseIntervalMs = backOff
    ? (durationMs(backOff.base_interval) ?? DEFAULT_BASE_INTERVAL_MS)
    : DEFAULT_BASE_INTERVAL_MS;
  if (!(baseIntervalMs > 0)) fail('retry_back_off base_interval must be greater than 0');
  const maxIntervalMs = (backOff ? durationMs(backOff.max_interval) : undefined) ?? baseIntervalMs * 10;
  if (!(maxIntervalMs >= baseIntervalMs)) fail('retry_back_off max_interval must not be less than base_interval');
  const statusCodes = (Array.isArray(p.retriable_status_codes) ? p.retriable_status_codes : []).map((c) => {
    const n = num(c);
    if (n === undefined || !Number.isInteger(n) || n < 100 || n > 599)
      fail('retriable_status_codes must be HTTP statuses');
    return n!;
  });
  const retriableHeaders = list(p.retriable_headers).map(headerMatcher);
  const requestHeaders = list(p.retriable_request_headers).map(headerMatcher);
  if (retryOn & RETRIABLE_HEADERS && retriableHeaders.length === 0) retryOn &= ~RETRIABLE_HEADERS;
  let hostReselects = 0;
  for (const pred of list(p.retry_host_predicate)) {
    const name = str(pred.name) ?? '';
    const type = str(obj(pred.typed_config)?.['@type']) ?? '';
    if (name === PREVIOUS_HOSTS || type.endsWith('.PreviousHostsPredicate')) {
      hostReselects = num(p.host_selection_retry_max_attempts) ?? 1;
    } else if (name === OMIT_CANARY_HOSTS || type.endsWith('.OmitCanaryHostsPredicate')) {
      // No canary hosts in our endpoints: nothing to omit.
    } else fail(`retry_host_predicate ${JSON.stringify(name || type)} is not supported`);
  }
  return {
    retryOn,
    numRetries,
    perTryTimeoutMs,
    baseIntervalMs,
    maxIntervalMs,
    statusCodes,
    retriableHeaders,
    requestHeaders,
    hostReselects: Math.max(0, hostReselects),
    attemptCountHeader,
  };
}

/** Every route's effective policy (the route's, else its virtual host's), by Route object. */
function compileAll(config: L7Config): Map<EnvoyObject, CompiledRetryPolicy> {
  const out = new Map<EnvoyObject, CompiledRetryPolicy>();
  for (const [rcName, rc] of config.routes) {
    for (const vh of list(rc.virtual_hosts)) {
      const vhPolicy = obj(vh.retry_policy);
      const countHeader = bool(vh.include_request_attempt_count) === true;
      let vhCompiled: CompiledRetryPolicy | undefined;
      for (const r of list(vh.routes)) {
        const action = obj(r.route);
        if (!action) continue;
        const where = `route configuration ${rcName}, virtual host ${str(vh.name) ?? ''}, route ${str(r.name) ?? ''}`;
        const own = obj(action.retry_policy);
        if (own) out.set(r, compileRetryPolicy(own, where, countHeader));
        else if (vhPolicy) out.set(r, (vhCompiled ??= compileRetryPolicy(vhPolicy, where, countHeader)));
        else if (countHeader) out.set(r, (vhCompiled ??= compileRetryPolicy({ num_retries: 0 }, where, true)));
      }
    }
  }
  return out;
}

/** Envoy's JitteredExponentialBackOffStrategy: uniform in [0, (2^n - 1) * base), capped at max. */
export function backOffMs(policy: CompiledRetryPolicy, retry: number): number {
  const ceiling = Math.min((2 ** Math.min(retry, 30) - 1) * policy.baseIntervalMs, policy.maxIntervalMs);
  return Math.floor(Math.random() * ceiling);
}

function grpcBit(status: string | string[] | undefined): number {
  switch (typeof status === 'string' ? status : undefined) {
    case '1':
      return GRPC_CANCELLED;
    case '4':
      return GRPC_DEADLINE_EXCEEDED;
    case '8':
      return GRPC_RESOURCE_EXHAUSTED;
    case '13':
      return GRPC_INTERNAL;
    case '14':
      return GRPC_UNAVAILABLE;
    default:
      return 0;
  }
}

function responseInput(headers: HeaderMap, status: number, isGrpc: boolean): MatchInput {
  return {
    header: (name) => (name === ':status' ? String(status) : joined(headers[name])),
    queryParam: () => undefined,
    isGrpc,
  };
}

function requestInput(ctx: RequestContext): MatchInput {
  return {
    header: (name) =>
      name === ':method'
        ? ctx.method
        : name === ':path'
          ? ctx.path
          : name === ':authority'
            ? ctx.authority
            : name === ':scheme'
              ? ctx.scheme
              : joined(ctx.headers[name]),
    queryParam: () => undefined,
    isGrpc: ctx.isGrpc,
  };
}

/** Whether a response (not yet sent) meets the policy's conditions. */
function retriableResponse(p: CompiledRetryPolicy, ctx: RequestContext, f: UpstreamFailure): boolean {
  const headers = f.headers ?? {};
  // Envoy never retries an overloaded upstream's answer.
  if (headers['x-envoy-overloaded'] !== undefined) return false;
  const s = f.status ?? 0;
  const on = p.retryOn;
  if (on & FIVE_XX && s >= 500) return true;
  if (on & GATEWAY_ERROR && (s === 502 || s === 503 || s === 504)) return true;
  if (on & RETRIABLE_4XX && s === 409) return true;
  if (on & STATUS_CODES && p.statusCodes.includes(s)) return true;
  if (on & RATE_LIMITED && headers['x-envoy-ratelimited'] !== undefined) return true;
  if (on & GRPC_ANY && ctx.isGrpc && on & grpcBit(headers['grpc-status'])) return true;
  if (on & RETRIABLE_HEADERS) {
    const input = responseInput(headers, s, ctx.isGrpc);
    for (const m of p.retriableHeaders) if (m(input)) return true;
  }
  return false;
}

/** The retry filter; `circuits` is the engine's breaker state (max_retries / retry_budget). */
export function retryFilter(circuits: ClusterCircuits): HttpFilterFactory {
  return {
    name: 'envoy.router.retry_policy',
    create({ config }): HttpFilter {
      const policies = compileAll(config);
      // No route retries: no hooks at all (the hot path skips them).
      if (policies.size === 0) return {};
      const retrying = new WeakMap<RequestContext, RetryState>();
      const releaseSlot = (ctx: RequestContext): void => {
        const st = retrying.get(ctx);
        if (st) {
          retrying.delete(ctx);
          st.circuit.releaseRetry();
        }
      };
      return {
        onUpstreamAttempt(ctx, attempt) {
          const raw = ctx.route?.raw;
          const p = raw && policies.get(raw);
          if (!p) return undefined;
          if (p.perTryTimeoutMs > 0) attempt.perTryTimeoutMs = p.perTryTimeoutMs;
          if (p.attemptCountHeader) ctx.headers['x-envoy-attempt-count'] = String(attempt.attempt);
          return undefined;
        },
        onUpstreamFailure(ctx, f): boolean | RetryDecision {
          const raw = ctx.route?.raw;
          const p = raw && policies.get(raw);
          if (!p) return false;
          const circuit = circuits.get(ctx.upstreamCluster ?? '');
          if (f.reason === 'timeout') circuit.counters.upstream_rq_per_try_timeout++;
          const would = f.reason === 'status' ? retriableResponse(p, ctx, f) : (p.retryOn & ON_FAILURE[f.reason]) !== 0;
          if (!would) {
            if (f.reason === 'status' && f.attempt > 1) circuit.counters.upstream_rq_retry_success++;
            return false;
          }
          if (p.requestHeaders.length > 0) {
            const input = requestInput(ctx);
            if (!p.requestHeaders.some((m) => m(input))) return false;
          }
          if (f.attempt > p.numRetries) {
            if (p.numRetries > 0) {
              circuit.counters.upstream_rq_retry_limit_exceeded++;
              ctx.addResponseFlag('URX');
            }
            return false;
          }
          // The previous retry's slot is given back before asking for the next one.
          releaseSlot(ctx);
          if (!circuit.tryRetry()) {
            ctx.addResponseFlag('UO');
            return false;
          }
          retrying.set(ctx, { circuit, attempt: f.attempt + 1 });
          return { delayMs: backOffMs(p, f.attempt), hostReselects: p.hostReselects };
        },
        onUpstreamAttemptEnd(ctx, attempt: UpstreamAttempt) {
          if (attempt.attempt > 1 && retrying.get(ctx)?.attempt === attempt.attempt) releaseSlot(ctx);
        },
        onComplete(ctx) {
          releaseSlot(ctx);
        },
      };
    },
  };
}
