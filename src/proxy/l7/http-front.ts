// The downstream side: byte streams in, Exchanges out. One node:http server (HTTP/1.1) and one
// node:http2 server (h2c and h2 over TLS) per engine, neither listening: connections are handed
// to them after sniffing the first bytes for the HTTP/2 client preface, which is how a TCP
// socket, a TLS socket and a tunnel's CONNECT stream are all served the same way.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { H1Exchange, H1UpgradeExchange, H2Exchange, type ConnInfo, type Exchange } from './exchange.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const kConn = Symbol('trellis.l7.conn');

type Tagged = { [kConn]?: ConnInfo };

/** Flow-control windows for downstream HTTP/2 (Node's 64 KiB default limits large bodies to a window per RTT). */
const STREAM_WINDOW = 1 << 20;
const SESSION_WINDOW = 16 << 20;

export interface FrontOptions {
  /** Time allowed for a new connection's first bytes (ms). */
  readonly firstByteTimeoutMs?: number;
}

export class HttpFront {
  readonly #onExchange: (ex: Exchange) => void;
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #connections = new Map<Duplex, ConnInfo>();
  readonly #sessions = new Map<ConnInfo, ServerHttp2Session>();
  /** The connection being handed to the HTTP/2 server ('session' is emitted synchronously). */
  #handing: ConnInfo | undefined;
  readonly #firstByteTimeoutMs: number;

  constructor(onExchange: (ex: Exchange) => void, options: FrontOptions = {}) {
    this.#onExchange = onExchange;
    this.#firstByteTimeoutMs = options.firstByteTimeoutMs ?? 30_000;
    this.#h1 = http.createServer(
      {
        // A proxy must not cut long uploads/streams; upstream timeouts are per route.
        requestTimeout: 0,
        keepAliveTimeout: 60_000,
        // Repeated headers are joined (", ") instead of the later ones being dropped.
        joinDuplicateHeaders: true,
        maxHeaderSize: 64 * 1024,
      },
      (req, res) => this.#onH1Request(req, res),
    );
    // Upgrade requests (WebSocket) leave node:http with their socket; the exchange splices it.
    this.#h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onH1Upgrade(req, socket, head),
    );
    this.#h1.on('clientError', (_err, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    this.#h2 = http2.createServer({
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      maxSessionMemory: 64,
    });
    this.#h2.on('session', (session: ServerHttp2Session) => this.#onH2Session(session));
    this.#h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) =>
      this.#onH2Stream(stream, headers),
    );
    this.#h2.on('sessionError', () => {});
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Serves a connection. `protocol` when already known (TLS ALPN "h2"); otherwise the first
   * bytes decide: the HTTP/2 preface means h2c with prior knowledge, anything else HTTP/1.1.
   */
  serve(stream: Duplex, conn: ConnInfo, protocol?: 'h2'): void {
    this.#connections.set(stream, conn);
    stream.once('close', () => {
      this.#connections.delete(stream);
      this.#sessions.delete(conn);
    });
    stream.on('error', () => {});
    if (protocol === 'h2') {
      this.#toH2(stream, conn);
      return;
    }
    let seen: Buffer | undefined;
    const timer = setTimeout(() => stream.destroy(), this.#firstByteTimeoutMs);
    timer.unref();
    const onData = (chunk: Buffer) => {
      seen = seen ? Buffer.concat([seen, chunk]) : chunk;
      const n = Math.min(seen.length, PREFACE.length);
      const h2 = seen.compare(PREFACE, 0, n, 0, n) === 0;
      if (h2 && seen.length < PREFACE.length) return; // a prefix of the preface: need more
      clearTimeout(timer);
      stream.removeListener('data', onData);
      stream.pause();
      stream.unshift(seen);
      if (h2) this.#toH2(stream, conn);
      else {
        (stream as Tagged)[kConn] = conn;
        this.#h1.emit('connection', stream);
        // node:http only resumes a socket it paused itself.
        stream.resume();
      }
    };
    stream.on('data', onData);
  }

  #toH2(stream: Duplex, conn: ConnInfo): void {
    this.#handing = conn;
    try {
      // The buffered preface is read by the session itself (no resume: that would feed it twice).
      this.#h2.emit('connection', stream);
    } finally {
      this.#handing = undefined;
    }
  }

  #onH2Session(session: ServerHttp2Session): void {
    const conn = this.#handing;
    if (!conn) {
      session.destroy();
      return;
    }
    (session as Tagged)[kConn] = conn;
    this.#sessions.set(conn, session);
    session.on('error', () => {});
    session.on('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
    conn.onIdle = () => session.close();
    if (conn.closing) session.close();
  }

  #onH1Upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const conn = (socket as Duplex & Tagged)[kConn];
    if (!conn) {
      socket.destroy();
      return;
    }
    conn.inflight++;
    this.#onExchange(new H1UpgradeExchange(req, socket, head, conn));
  }

  #onH1Request(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket as Duplex & Tagged;
    const conn = socket[kConn]!;
    conn.inflight++;
    conn.onIdle ??= () => socket.end();
    this.#onExchange(new H1Exchange(req, res, conn));
  }

  #onH2Stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const conn = (stream.session as (ServerHttp2Session & Tagged) | undefined)?.[kConn];
    if (!conn) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    conn.inflight++;
    this.#onExchange(new H2Exchange(stream, headers, conn));
  }

  /** Graceful: idle connections close now, busy ones after their responses; HTTP/2 gets GOAWAY. */
  closeConnections(filter: (conn: ConnInfo) => boolean = () => true): void {
    for (const [stream, conn] of this.#connections) {
      if (!filter(conn)) continue;
      conn.closing = true;
      const session = this.#sessions.get(conn);
      if (session) session.close();
      else if (conn.inflight === 0) stream.end();
    }
  }

  /** Connections (matching the filter) still open. */
  openConnections(filter: (conn: ConnInfo) => boolean = () => true): number {
    let n = 0;
    for (const conn of this.#connections.values()) if (filter(conn)) n++;
    return n;
  }

  destroyConnections(filter: (conn: ConnInfo) => boolean = () => true): void {
    for (const [stream, conn] of this.#connections) {
      if (!filter(conn)) continue;
      this.#sessions.get(conn)?.destroy();
      stream.destroy();
    }
  }
}
