// HTTP/2 upstream pool: one session per endpoint multiplexing every stream (what gRPC needs),
// reconnected after GOAWAY or close; the first requests wait for the connection (pending, bounded
// by the cluster's max_pending_requests). The session counts as one of the cluster's connections;
// being the pool's only one, it may always be opened (Envoy).
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { ConnectionLimits, type LimitedPool } from './conn-limits.js';
import type { HeaderMap } from './headers.js';
import {
  openConnection,
  type UpstreamHandlers,
  type UpstreamPool,
  type UpstreamRequest,
  type UpstreamSource,
} from './upstream-pool.js';
import type { UpstreamConnector, UpstreamTarget } from './upstream.js';

const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL } = http2.constants;

/** Flow-control windows: Node's 64 KiB default caps a stream's throughput at one window per RTT. */
const STREAM_WINDOW = 1 << 20;
const SESSION_WINDOW = 16 << 20;

export class Http2Pool implements UpstreamPool, LimitedPool {
  readonly protocol = 'http2';
  readonly target: UpstreamTarget;
  readonly #connector: UpstreamConnector;
  readonly #limits: ConnectionLimits;
  #session: ClientHttp2Session | undefined;
  #connecting: Promise<ClientHttp2Session> | undefined;
  #draining = false;
  readonly #sessions = new Set<ClientHttp2Session>();

  constructor(target: UpstreamTarget, connector: UpstreamConnector, limits = new ConnectionLimits()) {
    this.target = target;
    this.#connector = connector;
    this.#limits = limits;
  }

  request(src: UpstreamSource, handlers: UpstreamHandlers): UpstreamRequest {
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) {
      const r = new Http2Request(src, handlers, undefined);
      r.attach(s);
      return r;
    }
    const r = new Http2Request(src, handlers, this.#limits);
    if (!this.#limits.enqueue()) {
      r.overflow();
      return r;
    }
    this.#connect().then(
      (session) => r.attach(session),
      (e: Error) => r.fail(e),
    );
    return r;
  }

  /** Never refused a session (it is the pool's only one): nothing waits for a slot. */
  capacityFreed(): void {}

  #connect(): Promise<ClientHttp2Session> {
    this.#connecting ??= (async () => {
      this.#limits.tryOpen(this, true);
      let counted = true;
      const release = () => {
        if (!counted) return;
        counted = false;
        this.#limits.closed();
      };
      try {
        let stream;
        try {
          stream = await openConnection(this.#connector, this.target);
        } catch (e) {
          release();
          throw e;
        }
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
        session.on('close', release);
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
  /** The limits the request counts as pending in, until it gets a stream or ends. */
  #pendingIn: ConnectionLimits | undefined;
  #stream: ClientHttp2Stream | undefined;
  #done = false;
  #paused = false;
  #trailers: HeaderMap | undefined;

  constructor(src: UpstreamSource, handlers: UpstreamHandlers, pendingIn: ConnectionLimits | undefined) {
    this.#src = src;
    this.#handlers = handlers;
    this.#pendingIn = pendingIn;
  }

  #unqueue(): void {
    this.#pendingIn?.dequeue();
    this.#pendingIn = undefined;
  }

  /** max_pending_requests reached: refused before waiting (not counted as pending). */
  overflow(): void {
    this.#pendingIn = undefined;
    this.#done = true;
    this.#handlers.onUpstreamError('overflow', undefined);
  }

  fail(e: Error): void {
    this.#unqueue();
    if (this.#done) return;
    this.#done = true;
    this.#handlers.onUpstreamError('connect', e);
  }

  attach(session: ClientHttp2Session): void {
    this.#unqueue();
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
    this.#unqueue();
    this.#done = true;
    if (this.#stream && !this.#stream.destroyed) this.#stream.close(NGHTTP2_CANCEL);
  }
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
  // A tap (the mirror filter) may have paused it: flowing only once we consume.
  body.resume();
}
