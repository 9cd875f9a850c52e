// A cluster's connection circuit breakers, enforced where connections are made (Envoy's
// per-cluster connections and pending_requests resources, DEFAULT priority): the pools of every
// host of the cluster together hold at most max_connections upstream connections (connecting
// ones included), and a request that finds no ready connection waits as pending, at most
// max_pending_requests of them cluster-wide; one more fails at once (503 UO, overflow).
// As Envoy, a pool that has no connection at all may always open one (its requests could never
// be served otherwise); upstream_cx_overflow counts every connection refused or opened over the
// limit. Per engine and cluster name, shared across config versions like the pools.
import type { LocalReply } from './context.js';

const DEFAULT_LIMIT = 1024;

/** What the limits ask of a pool that was refused a connection, once one is closed. */
export interface LimitedPool {
  capacityFreed(): void;
}

export class ConnectionLimits {
  maxConnections = DEFAULT_LIMIT;
  maxPendingRequests = DEFAULT_LIMIT;
  /** upstream_cx_active (connecting ones included). */
  connections = 0;
  /** upstream_rq_pending_active. */
  pending = 0;
  cxOverflow = 0;
  pendingOverflow = 0;
  /** Pools waiting for a connection slot, woken in arrival order. */
  readonly #blocked = new Set<LimitedPool>();

  /** A request waits for a connection: false (counted as upstream_rq_pending_overflow) when full. */
  enqueue(): boolean {
    if (this.pending >= this.maxPendingRequests) {
      this.pendingOverflow++;
      return false;
    }
    this.pending++;
    return true;
  }

  dequeue(): void {
    if (this.pending > 0) this.pending--;
  }

  /**
   * Takes a connection slot for `pool`; `sole`: the pool has no connection (allowed anyway). When
   * refused, the pool is told (capacityFreed) once a slot frees.
   */
  tryOpen(pool: LimitedPool, sole: boolean): boolean {
    if (this.connections >= this.maxConnections) {
      this.cxOverflow++;
      if (!sole) {
        this.#blocked.add(pool);
        return false;
      }
    }
    this.connections++;
    return true;
  }

  /**
   * A connection of `owner` closed (or failed to connect): its slot goes to the owner's waiting
   * requests first, then to the pools waiting for one.
   */
  closed(owner?: LimitedPool): void {
    if (this.connections > 0) this.connections--;
    owner?.capacityFreed();
    while (this.#blocked.size > 0 && this.connections < this.maxConnections) {
      const [p] = this.#blocked;
      this.#blocked.delete(p!);
      p!.capacityFreed();
    }
  }

  forget(pool: LimitedPool): void {
    this.#blocked.delete(pool);
  }

  snapshot(): Record<string, number> {
    return {
      upstream_cx_active: this.connections,
      upstream_cx_overflow: this.cxOverflow,
      upstream_rq_pending_active: this.pending,
      upstream_rq_pending_overflow: this.pendingOverflow,
    };
  }
}

/** Envoy's answer to a request refused by a circuit breaker (reset reason overflow). */
export const OVERFLOW: LocalReply = Object.freeze({
  status: 503,
  body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
  headers: Object.freeze({ 'x-envoy-overloaded': 'true' }) as Record<string, string>,
  flag: 'UO',
  details: 'upstream_reset_before_response_started{overflow}',
});
