// Connection pools to one upstream endpoint, per engine (Envoy's per-worker pools): HTTP/1.1
// keep-alive through an http.Agent whose connections come from the connector, and HTTP/2 as
// one multiplexed session. Both expose a request as UpstreamRequest + UpstreamHandlers
// callbacks, so the router does not care which protocol runs underneath.
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { isPromise } from './filter.js';
import type { HeaderMap } from './headers.js';
import { socketLike, type UpstreamConnector, type UpstreamTarget } from './upstream.js';

/** What an upstream request is built from (the Exchange). */
export interface UpstreamSource {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Request headers without pseudo-headers and hop-by-hop headers; consumed (mutated) by the pool. */
  readonly headers: HeaderMap;
  /** The request body, or undefined when the request has none. */
  readonly body: Readable | undefined;
  bytesReceived: number;
}

export type UpstreamFailureReason = 'connect' | 'reset' | 'refused' | 'protocol';

export interface UpstreamHandlers {
  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void;
  onUpstreamData(chunk: Buffer): void;
  onUpstreamEnd(trailers: HeaderMap | undefined): void;
  onUpstreamError(reason: UpstreamFailureReason, error: Error | undefined): void;
}

export interface UpstreamRequest {
  /** Response body flow control (downstream backpressure). */
  pause(): void;
  resume(): void;
  /** Cancels the request (reset); no handler is called afterwards. */
  abort(): void;
}

export interface UpstreamPool {
  readonly protocol: 'http1' | 'http2';
  readonly target: UpstreamTarget;
  request(src: UpstreamSource, handlers: UpstreamHandlers): UpstreamRequest;
  /** Keeps serving requests in flight, closes connections as they become idle. */
  drain(): void;
  /** Closes every connection now. */
  close(): void;
}

/** The connector failed: no connection was made (UF), as opposed to a reset of one (UC). */
export class UpstreamConnectError extends Error {}

/**
 * Opens a connection through the connector and resolves once it is connected, so connect
 * failures are told apart from resets. A TCP socket still connecting is waited for.
 */
export function openConnection(connector: UpstreamConnector, target: UpstreamTarget): Duplex | Promise<Duplex> {
  let r: Duplex | Promise<Duplex>;
  try {
    r = connector(target);
  } catch (e) {
    return Promise.reject(new UpstreamConnectError(String((e as Error).message ?? e), { cause: e }));
  }
  const fail = (e: unknown): never => {
    throw e instanceof UpstreamConnectError
      ? e
      : new UpstreamConnectError(String((e as Error).message ?? e), { cause: e });
  };
  const ready = isPromise<Duplex>(r) ? r.then(whenConnected, fail) : whenConnected(r);
  return isPromise<Duplex>(ready) ? ready.then(undefined, fail) : ready;
}

function whenConnected(s: Duplex): Duplex | Promise<Duplex> {
  if (!(s as Partial<Socket>).connecting) return s;
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => {
      s.removeListener('connect', onConnect);
      reject(e);
    };
    const onConnect = () => {
      s.removeListener('error', onError);
      resolve(s);
    };
    s.once('error', onError);
    s.once('connect', onConnect);
  });
}

/** Streams a request body into the upstream request with backpressure, counting bytes. */
function pumpBody(src: UpstreamSource, body: Readable, dst: Writable): void {
  const onDrain = () => body.resume();
  body.on('data', (chunk: Buffer) => {
    src.bytesReceived += chunk.length;
    if (!dst.write(chunk)) {
      body.pause();
      dst.once('drain', onDrain);
    }
  });
  body.on('end', () => dst.end());
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1

class PoolAgent extends http.Agent {
  draining = false;
  readonly #open: () => Duplex | Promise<Duplex>;

  constructor(open: () => Duplex | Promise<Duplex>) {
    // lifo: reuse the most recently used connection, so idle ones time out upstream instead of
    // being picked just as the server closes them.
    super({ keepAlive: true, scheduling: 'lifo', maxFreeSockets: 1024 });
    this.#open = open;
  }

  override createConnection(
    _options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | undefined {
    const r = this.#open();
    if (!isPromise<Duplex>(r)) return socketLike(r);
    r.then(
      (s) => callback!(null, socketLike(s)),
      (e: Error) => callback!(e, undefined as unknown as Duplex),
    );
    return undefined;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    if (this.draining) return false;
    return (super.keepSocketAlive as (s: Duplex) => boolean)(socket);
  }

  closeIdle(): void {
    for (const list of Object.values(this.freeSockets)) for (const s of list ?? []) s.destroy();
  }
}

export class Http1Pool implements UpstreamPool {
  readonly protocol = 'http1';
  readonly target: UpstreamTarget;
  readonly agent: PoolAgent;
  readonly #requestOptions: { host: string; port: number };

  constructor(target: UpstreamTarget, connector: UpstreamConnector) {
    this.target = target;
    this.agent = new PoolAgent(() => openConnection(connector, target));
    this.#requestOptions = { host: target.address, port: target.port };
  }

  request(src: UpstreamSource, handlers: UpstreamHandlers): UpstreamRequest {
    return new Http1Request(this, src, handlers);
  }

  drain(): void {
    this.agent.draining = true;
    this.agent.closeIdle();
  }

  close(): void {
    this.agent.destroy();
  }

  /** @internal */
  send(src: UpstreamSource): ClientRequest {
    const headers = src.headers;
    headers.host = src.authority;
    return http.request({
      agent: this.agent,
      host: this.#requestOptions.host,
      port: this.#requestOptions.port,
      method: src.method,
      path: src.path,
      headers: headers as http.OutgoingHttpHeaders,
      setHost: false,
      joinDuplicateHeaders: true,
    });
  }
}

class Http1Request implements UpstreamRequest {
  readonly #pool: Http1Pool;
  readonly #src: UpstreamSource;
  readonly #handlers: UpstreamHandlers;
  #req: ClientRequest | undefined;
  #res: IncomingMessage | undefined;
  #done = false;
  #retried = false;

  constructor(pool: Http1Pool, src: UpstreamSource, handlers: UpstreamHandlers) {
    this.#pool = pool;
    this.#src = src;
    this.#handlers = handlers;
    this.#start();
  }

  #start(): void {
    let req: ClientRequest;
    try {
      req = this.#pool.send(this.#src);
    } catch (e) {
      // Only a header node:http refuses (a filter's invalid value) gets here.
      this.#done = true;
      queueMicrotask(() => this.#handlers.onUpstreamError('protocol', e as Error));
      return;
    }
    this.#req = req;
    req.on('response', (res) => this.#onResponse(res));
    req.on('error', (err) => this.#onError(err));
    const body = this.#src.body;
    if (body) pumpBody(this.#src, body, req);
    else req.end();
  }

  #onResponse(res: IncomingMessage): void {
    if (this.#done) return;
    this.#res = res;
    const h = this.#handlers;
    h.onUpstreamHeaders(res.statusCode ?? 502, res.headers as HeaderMap, false);
    res.on('data', (chunk: Buffer) => {
      if (!this.#done) h.onUpstreamData(chunk);
    });
    res.on('end', () => {
      if (this.#done) return;
      this.#done = true;
      h.onUpstreamEnd(res.rawTrailers.length > 0 ? (res.trailers as HeaderMap) : undefined);
    });
    res.on('close', () => {
      // Closed before its end: the connection was reset mid-body.
      if (this.#done) return;
      this.#done = true;
      h.onUpstreamError('reset', undefined);
    });
  }

  #onError(err: NodeJS.ErrnoException): void {
    if (this.#done) return;
    const req = this.#req!;
    // A kept-alive connection the server closed just as we reused it: replay once, when there is
    // no body to replay (Envoy's pool would have noticed the close first).
    if (
      !this.#res &&
      !this.#retried &&
      req.reusedSocket &&
      this.#src.body === undefined &&
      (err.code === 'ECONNRESET' || err.code === 'EPIPE')
    ) {
      this.#retried = true;
      this.#start();
      return;
    }
    this.#done = true;
    const reason: UpstreamFailureReason =
      err instanceof UpstreamConnectError
        ? 'connect'
        : typeof err.code === 'string' && err.code.startsWith('HPE_')
          ? 'protocol'
          : 'reset';
    this.#handlers.onUpstreamError(reason, err);
  }

  pause(): void {
    this.#res?.pause();
  }

  resume(): void {
    this.#res?.resume();
  }

  abort(): void {
    this.#done = true;
    this.#req?.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL } = http2.constants;

/** Flow-control windows: Node's 64 KiB default caps a stream's throughput at one window per RTT. */
const STREAM_WINDOW = 1 << 20;
const SESSION_WINDOW = 16 << 20;

export class Http2Pool implements UpstreamPool {
  readonly protocol = 'http2';
  readonly target: UpstreamTarget;
  readonly #connector: UpstreamConnector;
  #session: ClientHttp2Session | undefined;
  #connecting: Promise<ClientHttp2Session> | undefined;
  #draining = false;
  readonly #sessions = new Set<ClientHttp2Session>();

  constructor(target: UpstreamTarget, connector: UpstreamConnector) {
    this.target = target;
    this.#connector = connector;
  }

  request(src: UpstreamSource, handlers: UpstreamHandlers): UpstreamRequest {
    const r = new Http2Request(src, handlers);
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) r.attach(s);
    else
      this.#connect().then(
        (session) => r.attach(session),
        (e: Error) => r.fail(e),
      );
    return r;
  }

  #connect(): Promise<ClientHttp2Session> {
    this.#connecting ??= (async () => {
      try {
        const stream = await openConnection(this.#connector, this.target);
        const session = http2.connect(`http://${this.target.address}:${this.target.port}`, {
          createConnection: () => stream,
          settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
        });
        session.on('error', () => {});
        session.on('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
        const forget = () => {
          this.#sessions.delete(session);
          if (this.#session === session) this.#session = undefined;
        };
        session.on('close', forget);
        // After GOAWAY no new streams may start on it; requests in flight finish.
        session.on('goaway', forget);
        this.#sessions.add(session);
        // Draining: serve the requests that waited for this session, then close it.
        if (this.#draining) setImmediate(() => session.close());
        else this.#session = session;
        return session;
      } finally {
        this.#connecting = undefined;
      }
    })();
    return this.#connecting;
  }

  drain(): void {
    this.#draining = true;
    this.#session = undefined;
    // Graceful: GOAWAY, streams in flight complete, then the session closes.
    for (const s of this.#sessions) s.close();
  }

  close(): void {
    this.#draining = true;
    this.#session = undefined;
    for (const s of this.#sessions) s.destroy();
    this.#sessions.clear();
  }
}

class Http2Request implements UpstreamRequest {
  readonly #src: UpstreamSource;
  readonly #handlers: UpstreamHandlers;
  #stream: ClientHttp2Stream | undefined;
  #done = false;
  #paused = false;
  #trailers: HeaderMap | undefined;

  constructor(src: UpstreamSource, handlers: UpstreamHandlers) {
    this.#src = src;
    this.#handlers = handlers;
  }

  fail(e: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#handlers.onUpstreamError('connect', e);
  }

  attach(session: ClientHttp2Session): void {
    if (this.#done) return;
    const src = this.#src;
    const h = src.headers;
    h[':method'] = src.method;
    h[':path'] = src.path;
    h[':authority'] = src.authority;
    h[':scheme'] = 'http';
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(h as http2.OutgoingHttpHeaders, { endStream: src.body === undefined });
    } catch (e) {
      this.#done = true;
      const code = (e as NodeJS.ErrnoException).code;
      this.#handlers.onUpstreamError(
        code === 'ERR_HTTP2_INVALID_CONNECTION_HEADERS' || code === 'ERR_INVALID_HTTP_TOKEN' ? 'protocol' : 'reset',
        e as Error,
      );
      return;
    }
    this.#stream = stream;
    if (this.#paused) stream.pause();
    stream.on('response', (headers: IncomingHttpHeaders, flags: number) => this.#onResponse(stream, headers, flags));
    stream.on('trailers', (trailers: IncomingHttpHeaders) => (this.#trailers = trailers as HeaderMap));
    stream.on('error', () => {});
    stream.on('close', () => {
      if (this.#done) return;
      this.#done = true;
      // Closed without END_STREAM: reset by the peer, or the session went away.
      this.#handlers.onUpstreamError(stream.rstCode === NGHTTP2_REFUSED_STREAM ? 'refused' : 'reset', undefined);
    });
    if (src.body) pumpBody(src, src.body, stream);
  }

  #onResponse(stream: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
    if (this.#done) return;
    const status = Number(headers[':status']);
    delete headers[':status'];
    if (flags & NGHTTP2_FLAG_END_STREAM) {
      // Trailers-only (a gRPC error): headers end the stream.
      this.#done = true;
      this.#handlers.onUpstreamHeaders(status, headers as HeaderMap, true);
      return;
    }
    this.#handlers.onUpstreamHeaders(status, headers as HeaderMap, false);
    // Body listeners only now: 'response' is emitted on a later tick than DATA frames that
    // arrived in the same read, which would otherwise overtake the headers.
    stream.on('data', (chunk: Buffer) => {
      if (!this.#done) this.#handlers.onUpstreamData(chunk);
    });
    stream.on('end', () => {
      if (this.#done) return;
      this.#done = true;
      this.#handlers.onUpstreamEnd(this.#trailers);
    });
  }

  pause(): void {
    this.#paused = true;
    this.#stream?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#stream?.resume();
  }

  abort(): void {
    this.#done = true;
    if (this.#stream && !this.#stream.destroyed) this.#stream.close(NGHTTP2_CANCEL);
  }
}
