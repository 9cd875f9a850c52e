// envoy.config.cluster.v3.CircuitBreakers, the DEFAULT priority thresholds of each cluster:
// max_connections, max_pending_requests, max_requests (1024 each by default) and max_retries
// (default 3), or a retry_budget (budget_percent default 20% of active + pending requests,
// min_retry_concurrency default 3) that replaces max_retries when set. A request over a limit
// fails at once with 503, flag UO and x-envoy-overloaded: true, without an upstream attempt.
//
// State (gauges and counters) lives per engine and per cluster name in ClusterCircuits, shared
// across config versions like the hosts' pools; each config version only replaces thresholds.
// The counters carry Envoy's cluster stat names (upstream_rq_pending_overflow, upstream_rq_retry,
// upstream_rq_retry_overflow, upstream_rq_retry_success, ...) for L7Engine.stats().
//
// Connections: max_connections and max_pending_requests are enforced by the upstream pools
// (conn-limits.ts: requests wait for a free connection, and overflow past the pending bound);
// this filter reads them only through thresholdsOf. Its rqActive counts attempts admitted,
// waiting for a connection or not (Envoy's active + pending requests).
import { L7ConfigError, enumName, list, num, obj, type EnvoyObject, type L7Config } from '../config.js';
import { OVERFLOW } from '../conn-limits.js';
import type { RequestContext } from '../context.js';
import type { HttpFilterFactory, UpstreamAttempt } from '../filter.js';

const DEFAULT_LIMIT = 1024;
const DEFAULT_MAX_RETRIES = 3;
const DEFAULT_BUDGET_PERCENT = 20;
const DEFAULT_MIN_RETRY_CONCURRENCY = 3;
const PRIORITIES = ['DEFAULT', 'HIGH'];

export { OVERFLOW };

export interface Thresholds {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
  /** retry_budget.budget_percent; undefined: no budget (max_retries applies). */
  readonly budgetPercent: number | undefined;
  readonly minRetryConcurrency: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = Object.freeze({
  maxConnections: DEFAULT_LIMIT,
  maxPendingRequests: DEFAULT_LIMIT,
  maxRequests: DEFAULT_LIMIT,
  maxRetries: DEFAULT_MAX_RETRIES,
  budgetPercent: undefined,
  minRetryConcurrency: DEFAULT_MIN_RETRY_CONCURRENCY,
});

/** Envoy cluster stat names. */
export interface ClusterCounters {
  /** Upstream attempts admitted. */
  upstream_rq_total: number;
  /** Requests refused by max_requests (503 UO); the pools count max_pending_requests ones. */
  upstream_rq_pending_overflow: number;
  /** Retries performed. */
  upstream_rq_retry: number;
  /** Retries refused by max_retries or the retry budget. */
  upstream_rq_retry_overflow: number;
  /** Retried requests that got a response not retried again. */
  upstream_rq_retry_success: number;
  /** Requests whose retries ran out (num_retries). */
  upstream_rq_retry_limit_exceeded: number;
  /** Attempts cut by the per-try timeout. */
  upstream_rq_per_try_timeout: number;
}

/** One cluster's breaker state, shared across config versions. */
export class ClusterCircuit {
  readonly name: string;
  thresholds: Thresholds = DEFAULT_THRESHOLDS;
  /** Attempts in flight (upstream_rq_active). */
  rqActive = 0;
  /** Retries in flight or waiting for their back-off (upstream_rq_retry_active... Envoy's remaining_retries). */
  retriesActive = 0;
  readonly counters: ClusterCounters = {
    upstream_rq_total: 0,
    upstream_rq_pending_overflow: 0,
    upstream_rq_retry: 0,
    upstream_rq_retry_overflow: 0,
    upstream_rq_retry_success: 0,
    upstream_rq_retry_limit_exceeded: 0,
    upstream_rq_per_try_timeout: 0,
  };

  constructor(name: string) {
    this.name = name;
  }

  /** Takes a request slot; false (and the overflow counted) when a limit is reached. */
  admit(): boolean {
    const t = this.thresholds;
    if (this.rqActive >= t.maxRequests) {
      this.counters.upstream_rq_pending_overflow++;
      return false;
    }
    this.rqActive++;
    this.counters.upstream_rq_total++;
    return true;
  }

  release(): void {
    if (this.rqActive > 0) this.rqActive--;
  }

  /** Concurrent retries allowed now: the budget's share of active + pending (rqActive), or max_retries. */
  get retryLimit(): number {
    const t = this.thresholds;
    if (t.budgetPercent === undefined) return t.maxRetries;
    const budget = Math.floor((this.rqActive * t.budgetPercent) / 100);
    return Math.max(t.minRetryConcurrency, budget);
  }

  /** Takes a retry slot (counted as upstream_rq_retry), or counts upstream_rq_retry_overflow. */
  tryRetry(): boolean {
    if (this.retriesActive >= this.retryLimit) {
      this.counters.upstream_rq_retry_overflow++;
      return false;
    }
    this.retriesActive++;
    this.counters.upstream_rq_retry++;
    return true;
  }

  releaseRetry(): void {
    if (this.retriesActive > 0) this.retriesActive--;
  }

  snapshot(): Record<string, number> {
    return {
      ...this.counters,
      upstream_rq_active: this.rqActive,
      upstream_rq_retry_active: this.retriesActive,
    };
  }
}

/** Per engine: the breaker state of every cluster by name. */
export class ClusterCircuits {
  readonly #byName = new Map<string, ClusterCircuit>();

  get(name: string): ClusterCircuit {
    let c = this.#byName.get(name);
    if (!c) this.#byName.set(name, (c = new ClusterCircuit(name)));
    return c;
  }

  /** A config version's thresholds; clusters no longer configured are forgotten once idle. */
  configure(config: L7Config): Map<string, ClusterCircuit> {
    // Read everything first: a malformed cluster throws (a NACK) before any state changes.
    const read = [...config.clusters].map(([name, cluster]) => [name, thresholdsOf(name, cluster)] as const);
    const out = new Map<string, ClusterCircuit>();
    for (const [name, thresholds] of read) {
      const c = this.get(name);
      c.thresholds = thresholds;
      out.set(name, c);
    }
    for (const [name, c] of this.#byName)
      if (!out.has(name) && c.rqActive === 0 && c.retriesActive === 0) this.#byName.delete(name);
    return out;
  }

  stats(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, c] of this.#byName) out[name] = c.snapshot();
    return out;
  }
}

/** The DEFAULT priority thresholds (a missing priority is DEFAULT); throws L7ConfigError when malformed. */
export function thresholdsOf(name: string, cluster: EnvoyObject): Thresholds {
  const cb = obj(cluster.circuit_breakers);
  if (!cb) return DEFAULT_THRESHOLDS;
  const t = list(cb.thresholds).find((x) => (enumName(x.priority, PRIORITIES) ?? 'DEFAULT') === 'DEFAULT');
  if (!t) return DEFAULT_THRESHOLDS;
  const limit = (field: string, dflt: number): number => {
    const v = num(t[field]);
    if (v === undefined) return dflt;
    if (v < 0 || !Number.isInteger(v))
      throw new L7ConfigError(`cluster ${name}: circuit_breakers ${field} must be a non-negative integer`);
    return v;
  };
  const budget = obj(t.retry_budget);
  let budgetPercent: number | undefined;
  let minRetryConcurrency = DEFAULT_MIN_RETRY_CONCURRENCY;
  if (budget) {
    budgetPercent = num(obj(budget.budget_percent)?.value ?? budget.budget_percent) ?? DEFAULT_BUDGET_PERCENT;
    if (!(budgetPercent >= 0 && budgetPercent <= 100))
      throw new L7ConfigError(`cluster ${name}: retry_budget budget_percent must be within [0, 100]`);
    const min = num(budget.min_retry_concurrency);
    if (min !== undefined) {
      if (min < 0 || !Number.isInteger(min))
        throw new L7ConfigError(`cluster ${name}: retry_budget min_retry_concurrency must be a non-negative integer`);
      minRetryConcurrency = min;
    }
  }
  return {
    maxConnections: limit('max_connections', DEFAULT_LIMIT),
    maxPendingRequests: limit('max_pending_requests', DEFAULT_LIMIT),
    maxRequests: limit('max_requests', DEFAULT_LIMIT),
    maxRetries: limit('max_retries', DEFAULT_MAX_RETRIES),
    budgetPercent,
    minRetryConcurrency,
  };
}

/**
 * The breaker filter: onUpstreamAttempt takes a request slot of the attempt's cluster (or
 * answers 503 UO), onUpstreamAttemptEnd gives it back. `circuits` is shared with retryFilter.
 */
export function circuitBreakerFilter(circuits: ClusterCircuits): HttpFilterFactory {
  return {
    name: 'envoy.cluster.circuit_breakers',
    stats: () => circuits.stats(),
    create({ config }) {
      const byCluster = circuits.configure(config);
      // The router calls onUpstreamAttemptEnd only for attempts this filter admitted.
      return {
        onUpstreamAttempt(_ctx: RequestContext, attempt: UpstreamAttempt) {
          const c = byCluster.get(attempt.cluster) ?? circuits.get(attempt.cluster);
          return c.admit() ? undefined : OVERFLOW;
        },
        onUpstreamAttemptEnd(_ctx: RequestContext, attempt: UpstreamAttempt) {
          (byCluster.get(attempt.cluster) ?? circuits.get(attempt.cluster)).release();
        },
      };
    },
  };
}
