// The terminal step of the filter chain (Envoy's router filter): carries out the route's action.
// Direct responses and redirects are answered here; cluster routes pick a host, send the request
// through the host's pool and stream the response back, under the route's timeout. Retries and
// circuit breakers plug in through the onUpstreamAttempt / onUpstreamFailure /
// onUpstreamAttemptEnd filter hooks: the attempt loop here runs per-try timeouts, retry back-off
// delays and host re-picks; the route timeout bounds all attempts together.
import type { HostState, ClusterState } from './cluster.js';
import { durationMs, obj, type EnvoyObject } from './config.js';
import { OVERFLOW } from './conn-limits.js';
import type { LocalReply } from './context.js';
import { H1UpgradeExchange, type Exchange } from './exchange.js';
import {
  isPromise,
  type HttpFilter,
  type RetryDecision,
  type UpstreamAttempt,
  type UpstreamFailure,
} from './filter.js';
import { stripHopByHop, type HeaderMap } from './headers.js';
import { FILTER_ERROR, sendLocalReply, sendResponse } from './local-reply.js';
import type { ClusterAction } from './route-table.js';
import {
  openConnection,
  type UpstreamFailureReason,
  type UpstreamHandlers,
  type UpstreamRequest,
} from './upstream-pool.js';
import type { Duplex } from 'node:stream';

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
  overflow: OVERFLOW,
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
      if (ex instanceof H1UpgradeExchange && ex.upgrade === 'websocket') new UpgradeForwarder(ex, action).start();
      else new Forwarder(ex, action).start();
  }
}

/** One request's way upstream: host choice, attempts, timeouts, retries, response streaming. */
class Forwarder implements UpstreamHandlers {
  readonly #ex: Exchange;
  readonly #action: ClusterAction;
  #cluster!: ClusterState;
  #host: HostState | undefined;
  #upstream: UpstreamRequest | undefined;
  /** The attempt in flight (admitted by every onUpstreamAttempt). */
  #current: UpstreamAttempt | undefined;
  /** Route timeout (all attempts). */
  #timer: NodeJS.Timeout | undefined;
  #tryTimer: NodeJS.Timeout | undefined;
  #backoffTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  /** Hosts tried so far (only once a retry happens). */
  #tried: string[] | undefined;
  #reselects = 0;
  #done = false;
  /** The upstream is HTTP/2: trailers may follow any response. */
  #trailers = false;
  readonly #resume = () => this.#upstream?.resume();
  readonly #next = () => {
    this.#backoffTimer = undefined;
    if (!this.#done) this.#attemptOnce();
  };

  constructor(ex: Exchange, action: ClusterAction) {
    this.#ex = ex;
    this.#action = action;
  }

  start(): void {
    const ex = this.#ex;
    const a = this.#action;
    const cluster = routeToCluster(ex, a);
    if (!cluster) return;
    this.#cluster = cluster;
    const timeoutMs = ex.isGrpc ? grpcTimeoutMs(ex, a) : a.timeoutMs;
    if (timeoutMs > 0) this.#timer = setTimeout(() => this.#onTimeout(), timeoutMs);
    ex.onAbort = () => this.#onDownstreamAbort();
    this.#attemptOnce();
  }

  #attemptOnce(): void {
    const ex = this.#ex;
    const cluster = this.#cluster;
    const hash = cluster.lb.usesHash && this.#action.hashPolicy ? this.#action.hashPolicy(ex) : undefined;
    let host = cluster.lb.pick(hash);
    // previous_hosts: pick again (a bounded number of times) when the host was already tried.
    const tried = this.#tried;
    for (let i = 0; host && tried && i < this.#reselects && tried.includes(host.key); i++) {
      host = cluster.lb.pick(hash);
    }
    if (!host) {
      this.#complete();
      sendLocalReply(ex, NO_HEALTHY);
      return;
    }
    this.#attempt++;
    ex.upstreamHost = host.key;
    const attempt: UpstreamAttempt = {
      cluster: cluster.name,
      host: host.key,
      attempt: this.#attempt,
      perTryTimeoutMs: 0,
    };
    const refused = admitAttempt(ex, attempt);
    if (refused) {
      this.#complete();
      sendLocalReply(ex, refused);
      return;
    }
    if (this.#action.autoHostRewrite) ex.authority = host.key;
    const protocol =
      cluster.protocol === 'downstream' ? (ex.protocol === 'HTTP/2' ? 'http2' : 'http1') : cluster.protocol;
    this.#trailers = protocol === 'http2';
    this.#host = host;
    this.#current = attempt;
    host.stats.active++;
    if (attempt.perTryTimeoutMs > 0) this.#tryTimer = setTimeout(() => this.#onTryTimeout(), attempt.perTryTimeoutMs);
    const upstream = host.stats.pool(protocol).request(ex, this);
    // The pool may have failed the request synchronously (and a retry may already be under way).
    if (this.#current === attempt) this.#upstream = upstream;
  }

  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    if (this.#done) return;
    const ex = this.#ex;
    if (this.#mayRetry()) {
      const d = this.#askRetry({ reason: 'status', attempt: this.#attempt, status, headers });
      if (d !== false) {
        this.#upstream?.abort();
        this.#endAttempt();
        this.#retryAfter(d);
        return;
      }
    }
    // The response starts downstream: the per-try timeout no longer applies (Envoy).
    if (this.#tryTimer) {
      clearTimeout(this.#tryTimer);
      this.#tryTimer = undefined;
    }
    stripHopByHop(headers);
    // Trailers can follow an HTTP/2 response, or an HTTP/1.1 one without content-length (chunked).
    const trailers = this.#trailers || headers['content-length'] === undefined;
    if (!ex.respond(status, headers, endStream, trailers)) {
      this.#upstream?.abort();
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
      this.#upstream?.pause();
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
    this.#endAttempt();
    // A circuit breaker's refusal is never retried (Envoy), nor reported as the host's failure.
    if (reason !== 'overflow' && this.#mayRetry()) {
      const d = this.#askRetry({ reason, attempt: this.#attempt });
      if (d !== false) {
        this.#retryAfter(d);
        return;
      }
    }
    this.#complete();
    // After the response started, sendLocalReply resets the stream (the flag is still logged).
    sendLocalReply(this.#ex, FAILURES[reason]);
  }

  /** Retry filters are asked only before anything reached the client, and with no body sent. */
  #mayRetry(): boolean {
    const ex = this.#ex;
    return ex.config.chain.onUpstreamFailure.length > 0 && !ex.responseStarted && !ex.closed && ex.body === undefined;
  }

  /** Whether a retry filter asks for another attempt (true: now; a decision: after its delay). */
  #askRetry(failure: UpstreamFailure): boolean | RetryDecision {
    const ex = this.#ex;
    for (const f of ex.config.chain.onUpstreamFailure) {
      try {
        const d = f.onUpstreamFailure!(ex, failure);
        if (d) return d;
      } catch {
        // A failing retry filter means no retry.
      }
    }
    return false;
  }

  #retryAfter(d: true | RetryDecision): void {
    const host = this.#ex.upstreamHost;
    if (host !== undefined) (this.#tried ??= []).push(host);
    if (d === true) {
      this.#reselects = 0;
      this.#attemptOnce();
      return;
    }
    this.#reselects = d.hostReselects;
    if (d.delayMs > 0) this.#backoffTimer = setTimeout(this.#next, d.delayMs);
    else this.#attemptOnce();
  }

  #onTryTimeout(): void {
    this.#tryTimer = undefined;
    if (this.#done) return;
    this.#upstream?.abort();
    this.#endAttempt();
    if (this.#mayRetry()) {
      const d = this.#askRetry({ reason: 'timeout', attempt: this.#attempt });
      if (d !== false) {
        this.#retryAfter(d);
        return;
      }
    }
    this.#complete();
    sendLocalReply(this.#ex, TIMEOUT);
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
    if (this.#backoffTimer) {
      clearTimeout(this.#backoffTimer);
      this.#backoffTimer = undefined;
    }
    this.#endAttempt();
  }

  /** The attempt in flight is over: per-try timer, host's in-flight count, onUpstreamAttemptEnd. */
  #endAttempt(): void {
    if (this.#tryTimer) {
      clearTimeout(this.#tryTimer);
      this.#tryTimer = undefined;
    }
    this.#upstream = undefined;
    if (this.#host) {
      this.#host.stats.active--;
      this.#host = undefined;
    }
    const attempt = this.#current;
    if (attempt) {
      this.#current = undefined;
      const ex = this.#ex;
      for (const f of ex.config.chain.onUpstreamAttemptEnd) attemptEnd(f, ex, attempt);
    }
  }
}

/** The route's cluster (NC local reply when it is unknown), with the route's rewrites applied. */
function routeToCluster(ex: Exchange, a: ClusterAction): ClusterState | undefined {
  const name = a.pickCluster(ex);
  const cluster = name === undefined ? undefined : ex.config.clusters.get(name);
  if (!cluster) {
    sendLocalReply(ex, { status: a.clusterNotFoundStatus, flag: 'NC', details: 'cluster_not_found' });
    return undefined;
  }
  ex.upstreamCluster = cluster.name;
  if (a.rewritePath) ex.path = a.rewritePath(ex.path);
  if (a.hostRewrite) ex.authority = a.hostRewrite;
  return cluster;
}

/** Asks the onUpstreamAttempt filters (circuit breakers); a refusal is released by those that had admitted it. */
function admitAttempt(ex: Exchange, attempt: UpstreamAttempt): LocalReply | undefined {
  const hooks = ex.config.chain.onUpstreamAttempt;
  for (let i = 0; i < hooks.length; i++) {
    let refused;
    try {
      refused = hooks[i]!.onUpstreamAttempt!(ex, attempt);
    } catch {
      refused = FILTER_ERROR;
    }
    if (refused) {
      for (let j = 0; j < i; j++) attemptEnd(hooks[j]!, ex, attempt);
      return refused;
    }
  }
  return undefined;
}

function attemptEnd(f: HttpFilter, ex: Exchange, attempt: UpstreamAttempt): void {
  if (!f.onUpstreamAttemptEnd) return;
  try {
    f.onUpstreamAttemptEnd(ex, attempt);
  } catch {
    // Bookkeeping of one filter must not break the request.
  }
}

/** The gRPC timeout settings of a route (max_stream_duration.grpc_timeout_header_max / _offset, or max_grpc_timeout). */
interface GrpcTimeout {
  /** undefined: grpc-timeout is not used (the route timeout applies). 0: no cap. */
  readonly maxMs: number | undefined;
  readonly offsetMs: number;
  readonly streamMs: number;
}

const grpcTimeouts = new WeakMap<EnvoyObject, GrpcTimeout>();

function grpcTimeoutOf(raw: EnvoyObject): GrpcTimeout {
  let g = grpcTimeouts.get(raw);
  if (!g) {
    const msd = obj(raw.max_stream_duration);
    const maxMs = durationMs(msd?.grpc_timeout_header_max) ?? durationMs(raw.max_grpc_timeout);
    const offsetMs = durationMs(msd?.grpc_timeout_header_offset) ?? durationMs(raw.grpc_timeout_offset) ?? 0;
    g = { maxMs, offsetMs, streamMs: durationMs(msd?.max_stream_duration) ?? 0 };
    grpcTimeouts.set(raw, g);
  }
  return g;
}

/**
 * The timeout of a gRPC request (Envoy): with grpc_timeout_header_max (or the deprecated
 * max_grpc_timeout) set, the client's grpc-timeout (none: infinity) capped by it (0: no cap),
 * less the offset, replaces the route timeout; max_stream_duration still applies. Otherwise
 * the route timeout as for any request (none set: streams are not cut).
 */
function grpcTimeoutMs(ex: Exchange, a: ClusterAction): number {
  const g = grpcTimeoutOf(a.raw);
  if (g.maxMs === undefined) return a.timeoutMs;
  const header = ex.headers['grpc-timeout'];
  let t = typeof header === 'string' ? parseGrpcTimeout(header) : 0;
  if (g.maxMs > 0 && (t === 0 || t > g.maxMs)) t = g.maxMs;
  if (t > 0 && g.offsetMs > 0) t = Math.max(1, t - g.offsetMs);
  if (g.streamMs > 0 && (t === 0 || t > g.streamMs)) t = g.streamMs;
  return t;
}

const GRPC_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** "100m" -> 100 (ms); 0 when malformed (no timeout). */
function parseGrpcTimeout(v: string): number {
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return 0;
  return Math.max(1, Math.ceil(Number(m[1]) * GRPC_UNITS[m[2]!]!));
}

const MAX_UPGRADE_HEAD = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * A WebSocket upgrade (Envoy's upgrade_configs "websocket", on by default here): the request goes
 * upstream on a connection of its own (pools never carry it); a 101 answer is relayed and the
 * two connections are spliced until either closes, with no route timeout once upgraded (the
 * route timeout bounds only the wait for the upstream's answer). Any other answer is relayed as
 * a response and both connections close. Circuit breakers count the upgraded stream as a
 * request in flight for its whole life.
 */
class UpgradeForwarder {
  readonly #ex: H1UpgradeExchange;
  readonly #action: ClusterAction;
  #host: HostState | undefined;
  #attempt: UpstreamAttempt | undefined;
  #upstream: Duplex | undefined;
  #timer: NodeJS.Timeout | undefined;
  #done = false;

  constructor(ex: H1UpgradeExchange, action: ClusterAction) {
    this.#ex = ex;
    this.#action = action;
  }

  start(): void {
    const ex = this.#ex;
    const a = this.#action;
    const cluster = routeToCluster(ex, a);
    if (!cluster) return;
    const hash = cluster.lb.usesHash && a.hashPolicy ? a.hashPolicy(ex) : undefined;
    const host = cluster.lb.pick(hash);
    if (!host) {
      sendLocalReply(ex, NO_HEALTHY);
      return;
    }
    ex.upstreamHost = host.key;
    const attempt: UpstreamAttempt = { cluster: cluster.name, host: host.key, attempt: 1, perTryTimeoutMs: 0 };
    const refused = admitAttempt(ex, attempt);
    if (refused) {
      sendLocalReply(ex, refused);
      return;
    }
    if (a.autoHostRewrite) ex.authority = host.key;
    this.#attempt = attempt;
    this.#host = host;
    host.stats.active++;
    if (a.timeoutMs > 0) this.#timer = setTimeout(() => this.#fail(TIMEOUT), a.timeoutMs);
    ex.onAbort = () => this.#finish();
    let opened: Duplex | Promise<Duplex>;
    try {
      opened = openConnection(host.stats.connector, host.stats.target);
    } catch {
      this.#fail(FAILURES.connect);
      return;
    }
    if (isPromise<Duplex>(opened))
      opened.then(
        (s) => this.#connected(s),
        () => this.#fail(FAILURES.connect),
      );
    else this.#connected(opened);
  }

  #connected(up: Duplex): void {
    if (this.#done) {
      up.destroy();
      return;
    }
    this.#upstream = up;
    const ex = this.#ex;
    let head: string;
    try {
      head = upgradeHead(ex);
    } catch {
      this.#fail(FAILURES.protocol);
      return;
    }
    up.on('error', ignore);
    let buf: Buffer | undefined;
    const onData = (chunk: Buffer) => {
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      const end = buf.indexOf(HEAD_END);
      if (end < 0) {
        if (buf.length > MAX_UPGRADE_HEAD) this.#fail(FAILURES.protocol);
        return;
      }
      up.removeListener('data', onData);
      up.removeListener('close', onClose);
      up.pause();
      const parsed = parseResponseHead(buf.subarray(0, end).toString('latin1'));
      if (!parsed) {
        this.#fail(FAILURES.protocol);
        return;
      }
      this.#onHead(up, parsed[0], parsed[1], buf.subarray(end + HEAD_END.length));
    };
    const onClose = () => this.#fail(FAILURES.reset);
    up.on('data', onData);
    up.once('close', onClose);
    up.write(Buffer.from(head, 'latin1'));
  }

  #onHead(up: Duplex, status: number, headers: HeaderMap, rest: Buffer): void {
    const ex = this.#ex;
    if (this.#done) return;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (status === 101) {
      const token = headers.upgrade;
      stripHopByHop(headers);
      headers.connection = 'upgrade';
      headers.upgrade = typeof token === 'string' ? token : ex.upgrade;
      if (!ex.respond(101, headers, false, false)) {
        this.#fail(INVALID_HEADERS);
        return;
      }
      ex.splice(up, rest, () => this.#finish());
      up.resume();
      return;
    }
    // Not upgraded: an ordinary response, the last one on both connections.
    const length = headers['content-length'];
    let remaining = typeof length === 'string' ? Number(length) : -1;
    stripHopByHop(headers);
    if (!ex.respond(status, headers, remaining === 0, false)) {
      this.#fail(INVALID_HEADERS);
      return;
    }
    if (remaining === 0) {
      this.#finish();
      return;
    }
    const onBody = (c: Buffer) => {
      if (remaining >= 0) {
        if (c.length > remaining) c = c.subarray(0, remaining);
        remaining -= c.length;
      }
      ex.write(c);
      if (remaining === 0) {
        ex.finish(undefined);
        this.#finish();
      }
    };
    if (rest.length > 0) onBody(rest);
    if (this.#done) return;
    up.on('data', onBody);
    up.once('close', () => {
      if (this.#done) return;
      if (remaining > 0) ex.reset();
      else ex.finish(undefined);
      this.#finish();
    });
    up.resume();
  }

  #fail(reply: LocalReply): void {
    if (this.#done) return;
    this.#finish();
    sendLocalReply(this.#ex, reply);
  }

  /** Releases the host and the attempt; closes the upstream connection. */
  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const up = this.#upstream;
    if (up && !up.destroyed && !this.#ex.responseStarted) up.destroy();
    else if (up && !up.destroyed && this.#ex.status !== 101) up.destroy();
    if (this.#host) {
      this.#host.stats.active--;
      this.#host = undefined;
    }
    const attempt = this.#attempt;
    if (attempt) {
      this.#attempt = undefined;
      const ex = this.#ex;
      for (const f of ex.config.chain.onUpstreamAttemptEnd) attemptEnd(f, ex, attempt);
    }
  }
}

const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_HEADER_VALUE = /[\r\n\0]/;

/** The upgrade request as it goes upstream (the Upgrade/Connection pair put back). */
function upgradeHead(ex: H1UpgradeExchange): string {
  if (/[\s\0]/.test(ex.path) || !HEADER_TOKEN.test(ex.method)) throw new Error('invalid request line');
  if (BAD_HEADER_VALUE.test(ex.authority)) throw new Error('invalid authority');
  let head = `${ex.method} ${ex.path} HTTP/1.1\r\nhost: ${ex.authority}\r\n`;
  const h = ex.headers;
  for (const name in h) {
    const v = h[name];
    if (v === undefined) continue;
    if (!HEADER_TOKEN.test(name)) throw new Error('invalid header name');
    for (const x of typeof v === 'string' ? [v] : v) {
      if (BAD_HEADER_VALUE.test(x)) throw new Error('invalid header value');
      head += `${name}: ${x}\r\n`;
    }
  }
  return `${head}connection: upgrade\r\nupgrade: ${ex.upgrade}\r\n\r\n`;
}

/** "HTTP/1.1 101 ...\r\nname: value..." -> [status, headers]; undefined when malformed. */
function parseResponseHead(text: string): [number, HeaderMap] | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers: HeaderMap = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!HEADER_TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).trim();
    const cur = headers[name];
    if (cur === undefined) headers[name] = value;
    else if (typeof cur === 'string') headers[name] = [cur, value];
    else cur.push(value);
  }
  return [Number(m[1]), headers];
}

function ignore(): void {}
