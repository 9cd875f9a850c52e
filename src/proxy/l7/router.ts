// The terminal step of the filter chain (Envoy's router filter): carries out the route's action.
// Direct responses and redirects are answered here; cluster routes pick a host, send the request
// through the host's pool and stream the response back, under the route's timeout. Retries and
// circuit breakers plug in through the onUpstreamAttempt / onUpstreamFailure filter hooks.
import type { HostState, ClusterState } from './cluster.js';
import type { LocalReply } from './context.js';
import type { Exchange } from './exchange.js';
import type { UpstreamFailure } from './filter.js';
import { stripHopByHop, type HeaderMap } from './headers.js';
import { FILTER_ERROR, sendLocalReply, sendResponse } from './local-reply.js';
import type { ClusterAction } from './route-table.js';
import type { UpstreamFailureReason, UpstreamHandlers, UpstreamRequest } from './upstream-pool.js';

const NO_ROUTE: LocalReply = { status: 404, body: 'route not found', flag: 'NR', details: 'route_not_found' };
const NO_HEALTHY: LocalReply = {
  status: 503,
  body: 'no healthy upstream',
  flag: 'UH',
  details: 'no_healthy_upstream',
};
const TIMEOUT: LocalReply = {
  status: 504,
  body: 'upstream request timeout',
  flag: 'UT',
  details: 'response_timeout',
  grpcStatus: 4, // DEADLINE_EXCEEDED
};

const INVALID_HEADERS: LocalReply = {
  status: 502,
  body: 'upstream sent invalid response headers',
  flag: 'UPE',
  details: 'invalid_upstream_response_headers',
};

const FAILURES: Readonly<Record<UpstreamFailureReason, LocalReply>> = {
  connect: failure(503, 'UF', 'connection_failure', 'connection failure'),
  reset: failure(503, 'UC', 'connection_termination', 'connection termination'),
  refused: failure(503, 'UR', 'remote_refused_stream_reset', 'remote refused stream reset'),
  protocol: failure(502, 'UPE', 'protocol_error', 'protocol error'),
};

function failure(status: number, flag: string, detail: string, reason: string): LocalReply {
  return {
    status,
    flag,
    details: `upstream_reset_before_response_started{${detail}}`,
    body: `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`,
  };
}

export function routeRequest(ex: Exchange): void {
  const route = ex.route;
  if (!route) {
    sendLocalReply(ex, NO_ROUTE);
    return;
  }
  const action = route.action;
  switch (action.kind) {
    case 'direct':
      ex.details = 'direct_response';
      sendResponse(ex, action.status, action.body);
      return;
    case 'redirect':
      ex.details = 'direct_response';
      sendResponse(ex, action.status, undefined, { location: action.location(ex) });
      return;
    case 'cluster':
      new Forwarder(ex, action).start();
  }
}

/** One request's way upstream: host choice, attempts, timeout, response streaming. */
class Forwarder implements UpstreamHandlers {
  readonly #ex: Exchange;
  readonly #action: ClusterAction;
  #cluster!: ClusterState;
  #host: HostState | undefined;
  #upstream: UpstreamRequest | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #done = false;
  /** The upstream is HTTP/2: trailers may follow any response. */
  #trailers = false;
  readonly #resume = () => this.#upstream?.resume();

  constructor(ex: Exchange, action: ClusterAction) {
    this.#ex = ex;
    this.#action = action;
  }

  start(): void {
    const ex = this.#ex;
    const a = this.#action;
    const name = a.pickCluster(ex);
    const cluster = name === undefined ? undefined : ex.config.clusters.get(name);
    if (!cluster) {
      sendLocalReply(ex, { status: a.clusterNotFoundStatus, flag: 'NC', details: 'cluster_not_found' });
      return;
    }
    this.#cluster = cluster;
    ex.upstreamCluster = cluster.name;
    if (a.rewritePath) ex.path = a.rewritePath(ex.path);
    if (a.hostRewrite) ex.authority = a.hostRewrite;
    if (a.timeoutMs > 0) this.#timer = setTimeout(() => this.#onTimeout(), a.timeoutMs);
    ex.onAbort = () => this.#onDownstreamAbort();
    this.#attemptOnce();
  }

  #attemptOnce(): void {
    const ex = this.#ex;
    const cluster = this.#cluster;
    const hash = cluster.lb.usesHash && this.#action.hashPolicy ? this.#action.hashPolicy(ex) : undefined;
    const host = cluster.lb.pick(hash);
    if (!host) {
      this.#complete();
      sendLocalReply(ex, NO_HEALTHY);
      return;
    }
    this.#attempt++;
    ex.upstreamHost = host.key;
    const hooks = ex.config.chain.onUpstreamAttempt;
    for (const f of hooks) {
      let refused;
      try {
        refused = f.onUpstreamAttempt!(ex, { cluster: cluster.name, host: host.key, attempt: this.#attempt });
      } catch {
        refused = FILTER_ERROR;
      }
      if (refused) {
        this.#complete();
        sendLocalReply(ex, refused);
        return;
      }
    }
    if (this.#action.autoHostRewrite) ex.authority = host.key;
    const protocol =
      cluster.protocol === 'downstream' ? (ex.protocol === 'HTTP/2' ? 'http2' : 'http1') : cluster.protocol;
    this.#trailers = protocol === 'http2';
    this.#host = host;
    host.stats.active++;
    this.#upstream = host.stats.pool(protocol).request(ex, this);
  }

  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    if (this.#done) return;
    const ex = this.#ex;
    if (status >= 500 && this.#retry({ reason: 'status', attempt: this.#attempt, status, headers })) {
      this.#upstream!.abort();
      this.#releaseHost();
      this.#attemptOnce();
      return;
    }
    stripHopByHop(headers);
    // Trailers can follow an HTTP/2 response, or an HTTP/1.1 one without content-length (chunked).
    const trailers = this.#trailers || headers['content-length'] === undefined;
    if (!ex.respond(status, headers, endStream, trailers)) {
      this.#upstream!.abort();
      this.#complete();
      sendLocalReply(ex, INVALID_HEADERS);
      return;
    }
    if (endStream) this.#complete();
  }

  onUpstreamData(chunk: Buffer): void {
    if (this.#done) return;
    const ex = this.#ex;
    if (!ex.write(chunk)) {
      this.#upstream!.pause();
      ex.onDrain(this.#resume);
    }
  }

  onUpstreamEnd(trailers: HeaderMap | undefined): void {
    if (this.#done) return;
    this.#complete();
    this.#ex.finish(trailers);
  }

  onUpstreamError(reason: UpstreamFailureReason): void {
    if (this.#done) return;
    this.#releaseHost();
    if (this.#retry({ reason, attempt: this.#attempt })) {
      this.#attemptOnce();
      return;
    }
    this.#complete();
    // After the response started, sendLocalReply resets the stream (the flag is still logged).
    sendLocalReply(this.#ex, FAILURES[reason]);
  }

  /** Whether a retry filter asks for another attempt; only before anything reached the client. */
  #retry(failure: UpstreamFailure): boolean {
    const ex = this.#ex;
    const hooks = ex.config.chain.onUpstreamFailure;
    if (hooks.length === 0 || ex.responseStarted || ex.closed || ex.body !== undefined) return false;
    for (const f of hooks) {
      try {
        if (f.onUpstreamFailure!(ex, failure)) return true;
      } catch {
        // A failing retry filter means no retry.
      }
    }
    return false;
  }

  #onTimeout(): void {
    this.#timer = undefined;
    if (this.#done) return;
    this.#upstream?.abort();
    this.#complete();
    sendLocalReply(this.#ex, TIMEOUT);
  }

  #onDownstreamAbort(): void {
    if (this.#done) return;
    this.#upstream?.abort();
    this.#complete();
  }

  #complete(): void {
    this.#done = true;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#releaseHost();
  }

  #releaseHost(): void {
    if (this.#host) {
      this.#host.stats.active--;
      this.#host = undefined;
    }
  }
}
