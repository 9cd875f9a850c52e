// One downstream request/response, whatever the protocol: the RequestContext filters see, the
// inputs route matching and hashing read, the source the upstream pools build requests from,
// and the response side the router writes to. H1Exchange wraps node:http's req/res,
// H2Exchange a node:http2 server stream.
import { normalizePath } from './path-normalize.js';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex, Readable } from 'node:stream';
import type { ActiveConfig } from './active-config.js';
import type { DownstreamProtocol, PeerInfo, RequestContext } from './context.js';
import type { HashInput } from './hash-policy.js';
import { cookieValue, joined, stripHopByHop, type HeaderMap } from './headers.js';
import type { RouteEntry, RouteMatchInput } from './route-table.js';
import type { UpstreamSource } from './upstream-pool.js';

/** Per downstream connection. */
export interface ConnInfo {
  readonly routeConfig: string;
  readonly peer: PeerInfo;
  readonly scheme: 'http' | 'https';
  readonly sink: ExchangeSink;
  /** Requests in flight on the connection. */
  inflight: number;
  /** Shutting down: no keep-alive after the responses in flight. */
  closing: boolean;
  /** Called when closing and the last request is done. */
  onIdle: (() => void) | undefined;
}

export interface ExchangeSink {
  /** The stream is done (response finished, reset or client gone); called once. */
  complete(ex: Exchange): void;
}

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;

/** x-request-id: a random per-process prefix and a counter, UUID-shaped (crypto per request shows in profiles). */
const ID_PREFIX = (() => {
  const hex = Array.from({ length: 20 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-`;
})();
let idCounter = 0;

function nextRequestId(): string {
  idCounter = (idCounter + 1) % 0x1000000000000;
  return ID_PREFIX + idCounter.toString(16).padStart(12, '0');
}

export abstract class Exchange implements RequestContext, RouteMatchInput, HashInput, UpstreamSource {
  readonly method: string;
  readonly scheme: string;
  authority: string;
  path: string;
  /** :path as received (for the access log). */
  readonly originalPath: string;
  readonly headers: HeaderMap;
  abstract readonly protocol: DownstreamProtocol;
  readonly peer: PeerInfo;
  readonly routeConfig: string;
  readonly isGrpc: boolean;
  readonly requestId: string;
  readonly startTime: number;
  readonly conn: ConnInfo;

  /** Set by the engine before filters run. */
  config!: ActiveConfig;
  route: RouteEntry | undefined = undefined;
  upstreamCluster: string | undefined = undefined;
  upstreamHost: string | undefined = undefined;
  flags: string[] | undefined = undefined;
  details: string | undefined = undefined;
  status = 0;
  grpcStatus: number | undefined = undefined;
  bytesReceived = 0;
  bytesSent = 0;
  /** Response headers sent. */
  responseStarted = false;
  /** Response fully written by us. */
  ended = false;
  /** The transport closed the stream (after `ended`, or an abort). */
  closed = false;
  /** Called when the client goes away before the response is complete. */
  onAbort: (() => void) | undefined = undefined;
  #filterState: Map<unknown, unknown> | undefined;
  #pathOnly: string | undefined;
  #query: Map<string, string> | undefined;

  constructor(conn: ConnInfo, method: string, authority: string, path: string, headers: HeaderMap) {
    this.conn = conn;
    this.peer = conn.peer;
    this.routeConfig = conn.routeConfig;
    this.scheme = conn.scheme;
    this.method = method;
    this.authority = authority;
    this.path = normalizePath(path);
    this.originalPath = path;
    this.startTime = Date.now();
    // Connection manager duties (Envoy's HCM): hop-by-hop headers out, request id, forwarded proto.
    stripHopByHop(headers);
    if (headers.expect !== undefined) delete headers.expect;
    const ct = headers['content-type'];
    this.isGrpc = typeof ct === 'string' && ct.startsWith('application/grpc');
    const rid = headers['x-request-id'];
    if (typeof rid === 'string' && rid !== '') this.requestId = rid;
    else headers['x-request-id'] = this.requestId = nextRequestId();
    if (headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = conn.scheme;
    this.headers = headers;
  }

  // --- RequestContext / matching inputs -------------------------------------------------------

  get filterState(): Map<unknown, unknown> {
    return (this.#filterState ??= new Map());
  }

  addResponseFlag(flag: string): void {
    if (!this.flags) this.flags = [flag];
    else if (!this.flags.includes(flag)) this.flags.push(flag);
  }

  get pathOnly(): string {
    if (this.#pathOnly === undefined) {
      const q = this.path.indexOf('?');
      this.#pathOnly = q < 0 ? this.path : this.path.slice(0, q);
    }
    return this.#pathOnly;
  }

  header(name: string): string | undefined {
    if (name.charCodeAt(0) === 58 /* ':' */) {
      switch (name) {
        case ':method':
          return this.method;
        case ':authority':
          return this.authority;
        case ':path':
          return this.path;
        case ':scheme':
          return this.scheme;
        default:
          return undefined;
      }
    }
    return joined(this.headers[name]);
  }

  queryParam(name: string): string | undefined {
    if (this.#query === undefined) {
      this.#query = new Map();
      const q = this.path.indexOf('?');
      if (q >= 0) {
        for (const pair of this.path.slice(q + 1).split('&')) {
          if (pair === '') continue;
          const eq = pair.indexOf('=');
          const key = eq < 0 ? pair : pair.slice(0, eq);
          if (!this.#query.has(key)) this.#query.set(key, eq < 0 ? '' : pair.slice(eq + 1));
        }
      }
    }
    return this.#query.get(name);
  }

  cookie(name: string): string | undefined {
    return cookieValue(this.headers.cookie, name);
  }

  get sourceIp(): string | undefined {
    return this.peer.address;
  }

  // --- response side ---------------------------------------------------------------------------

  /**
   * The request body, or undefined when the request has none, or had an empty one that has
   * ended (such a request can be replayed: retries ask for a body-less request, as bodies are
   * streamed upstream and never buffered).
   */
  abstract get body(): Readable | undefined;

  /**
   * Sends the response headers after the onResponseHeaders filters. `trailers`: the body may be
   * followed by trailers (HTTP/2 keeps the stream open for them). False when the headers were
   * refused as invalid (nothing sent).
   */
  respond(status: number, headers: HeaderMap, endStream: boolean, trailers: boolean): boolean {
    if (this.closed) return true;
    for (const f of this.config.chain.onResponseHeaders) {
      try {
        f.onResponseHeaders!(this, status, headers);
      } catch {
        // A failing filter must not take the proxy down (this runs in socket callbacks).
      }
    }
    try {
      this.sendHeaders(status, headers, endStream, trailers && !endStream);
    } catch {
      // node:http / nghttp2 refused a header (an upstream's invalid name or value): nothing
      // was sent, so the caller can still answer with an error.
      return false;
    }
    this.status = status;
    this.responseStarted = true;
    if (this.isGrpc) this.#noteGrpcStatus(headers);
    if (endStream) this.ended = true;
    return true;
  }

  /** Ends the response body, with trailers when given. */
  finish(trailers: HeaderMap | undefined): void {
    if (this.ended || this.closed) return;
    this.ended = true;
    if (trailers && this.isGrpc) this.#noteGrpcStatus(trailers);
    this.endResponse(trailers);
  }

  #noteGrpcStatus(h: HeaderMap): void {
    const g = h['grpc-status'];
    if (typeof g === 'string') this.grpcStatus = Number(g);
  }

  /** Called by the transport when the stream is closed, completed or not. */
  protected transportClosed(): void {
    if (this.closed) return;
    this.closed = true;
    // Our own reset (an error after the response started) is not a client abort.
    if (!this.ended && !this.resetLocally) {
      this.addResponseFlag('DC');
      this.onAbort?.();
    }
    this.conn.inflight--;
    this.conn.sink.complete(this);
    if (this.conn.closing && this.conn.inflight === 0) this.conn.onIdle?.();
  }

  protected abstract sendHeaders(status: number, headers: HeaderMap, endStream: boolean, trailers: boolean): void;
  /** Writes body bytes; false when the client is not keeping up (wait for onDrain). */
  abstract write(chunk: Buffer): boolean;
  abstract onDrain(cb: () => void): void;
  protected abstract endResponse(trailers: HeaderMap | undefined): void;
  /** Aborts the response midway (the client sees a reset, not a truncated success). */
  abstract reset(): void;
  /** reset() was called. */
  protected resetLocally = false;
}

/** Absolute-form request targets ("GET http://host/path HTTP/1.1", what proxies get). */
function splitAbsolute(url: string): [authority: string, path: string] | undefined {
  const m = /^https?:\/\/([^/?#]*)([^#]*)/i.exec(url);
  return m ? [m[1]!, m[2] || '/'] : undefined;
}

export class H1Exchange extends Exchange {
  readonly protocol = 'HTTP/1.1';
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #hasBody: boolean;

  constructor(req: IncomingMessage, res: ServerResponse, conn: ConnInfo) {
    const headers = req.headers as HeaderMap;
    let authority = (headers.host as string | undefined) ?? '';
    let path = req.url ?? '/';
    if (path.charCodeAt(0) !== 47 /* '/' */ && path !== '*') {
      const abs = splitAbsolute(path);
      if (abs) [authority, path] = abs;
    }
    // Host travels as the authority; the upstream pool sets Host (HTTP/1.1) or :authority (HTTP/2).
    if (headers.host !== undefined) delete headers.host;
    const cl = headers['content-length'];
    const hasBody = headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
    super(conn, req.method ?? 'GET', authority, path, headers);
    this.#req = req;
    this.#res = res;
    this.#hasBody = hasBody;
    res.on('close', () => this.transportClosed());
  }

  get body(): Readable | undefined {
    if (!this.#hasBody) return undefined;
    const req = this.#req;
    return req.readableEnded && this.bytesReceived === 0 ? undefined : req;
  }

  protected sendHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    const res = this.#res;
    if (res.destroyed) return;
    if (this.conn.closing) res.shouldKeepAlive = false;
    res.writeHead(status, headers as Record<string, string | string[]>);
    if (endStream) res.end();
  }

  write(chunk: Buffer): boolean {
    if (this.ended || this.#res.destroyed) return true;
    this.bytesSent += chunk.length;
    return this.#res.write(chunk);
  }

  onDrain(cb: () => void): void {
    this.#res.once('drain', cb);
  }

  protected endResponse(trailers: HeaderMap | undefined): void {
    const res = this.#res;
    if (res.destroyed) return;
    // Trailers reach an HTTP/1.1 client only on a chunked response.
    if (trailers && res.chunkedEncoding) res.addTrailers(trailers as Record<string, string>);
    res.end();
  }

  reset(): void {
    this.resetLocally = true;
    this.#res.destroy();
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0]/;

/**
 * An HTTP/1.1 request with an Upgrade header (WebSocket), handed over by node:http with its raw
 * socket. Until a 101 it is an ordinary exchange whose response is written on the socket (and
 * the connection then closes); after the upstream's 101, splice() joins the client's socket and
 * the upstream connection byte for byte until either side closes.
 */
export class H1UpgradeExchange extends Exchange {
  readonly protocol = 'HTTP/1.1';
  /** The Upgrade token asked for, lowercase ("websocket"). */
  readonly upgrade: string;
  readonly #socket: Duplex;
  /** Bytes the client sent after the request head. */
  #head: Buffer;
  #spliced = false;

  constructor(req: IncomingMessage, socket: Duplex, head: Buffer, conn: ConnInfo) {
    const headers = req.headers as HeaderMap;
    const upgrade = (joined(headers.upgrade) ?? '').trim().toLowerCase();
    let authority = (headers.host as string | undefined) ?? '';
    let path = req.url ?? '/';
    if (path.charCodeAt(0) !== 47 /* '/' */ && path !== '*') {
      const abs = splitAbsolute(path);
      if (abs) [authority, path] = abs;
    }
    if (headers.host !== undefined) delete headers.host;
    super(conn, req.method ?? 'GET', authority, path, headers);
    this.upgrade = upgrade;
    this.#socket = socket;
    this.#head = head;
    socket.on('error', ignore);
    socket.once('close', () => {
      // A spliced connection closing is the normal end of the stream, not a client abort.
      if (this.#spliced) this.ended = true;
      this.transportClosed();
    });
  }

  /** The bytes after the head belong to the upgraded protocol, never to a request body. */
  get body(): Readable | undefined {
    return undefined;
  }

  protected sendHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    const socket = this.#socket;
    if (socket.destroyed) return;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      if (!TOKEN.test(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`);
      for (const x of typeof v === 'string' ? [v] : v) {
        if (BAD_VALUE.test(x)) throw new Error(`invalid value for header ${name}`);
        head += `${name}: ${x}\r\n`;
      }
    }
    // Anything but a switch of protocols is the last response on this connection.
    if (status !== 101) head += 'connection: close\r\n';
    socket.write(Buffer.from(`${head}\r\n`, 'latin1'));
    if (endStream) socket.end();
  }

  write(chunk: Buffer): boolean {
    if (this.ended || this.#socket.destroyed) return true;
    this.bytesSent += chunk.length;
    return this.#socket.write(chunk);
  }

  onDrain(cb: () => void): void {
    this.#socket.once('drain', cb);
  }

  protected endResponse(): void {
    if (!this.#socket.destroyed) this.#socket.end();
  }

  reset(): void {
    this.resetLocally = true;
    this.#socket.destroy();
  }

  /**
   * After the 101 went out: relays bytes both ways with backpressure (`rest`: what the upstream
   * sent after its 101 head) until either side closes; no timeout applies. The stream then
   * counts as complete (not a client abort).
   */
  splice(upstream: Duplex, rest: Buffer | undefined, onClose: () => void): void {
    if (this.#spliced) return;
    this.#spliced = true;
    const down = this.#socket;
    if (down.destroyed || this.closed) {
      upstream.destroy();
      onClose();
      return;
    }
    if (rest && rest.length > 0) {
      this.bytesSent += rest.length;
      down.write(rest);
    }
    const early = this.#head;
    this.#head = Buffer.alloc(0);
    if (early.length > 0) {
      this.bytesReceived += early.length;
      upstream.write(early);
    }
    const resumeUp = () => upstream.resume();
    const resumeDown = () => down.resume();
    upstream.on('data', (c: Buffer) => {
      this.bytesSent += c.length;
      if (!down.write(c)) {
        upstream.pause();
        down.once('drain', resumeUp);
      }
    });
    down.on('data', (c: Buffer) => {
      this.bytesReceived += c.length;
      if (!upstream.write(c)) {
        down.pause();
        upstream.once('drain', resumeDown);
      }
    });
    // Half-closes travel; a close of either side ends the pair (after flushing what was written).
    upstream.on('end', () => down.end());
    down.on('end', () => upstream.end());
    upstream.on('error', ignore);
    let done = false;
    const finish = (other: Duplex) => {
      if (done) return;
      done = true;
      this.ended = true;
      other.end();
      setTimeout(() => other.destroy(), 1000).unref();
      onClose();
    };
    upstream.once('close', () => finish(down));
    down.once('close', () => finish(upstream));
    if (upstream.destroyed) finish(down);
    // node:http may leave the socket it handed over paused.
    down.resume();
  }
}

export class H2Exchange extends Exchange {
  readonly protocol = 'HTTP/2';
  readonly #stream: ServerHttp2Stream;
  #trailers: HeaderMap | undefined;
  #head = false;

  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, conn: ConnInfo) {
    const h = headers as HeaderMap;
    const method = (h[':method'] as string | undefined) ?? 'GET';
    const path = (h[':path'] as string | undefined) ?? '/';
    const authority = (h[':authority'] as string | undefined) ?? (h.host as string | undefined) ?? '';
    delete h[':method'];
    delete h[':path'];
    delete h[':authority'];
    delete h[':scheme'];
    if (h.host !== undefined) delete h.host;
    super(conn, method, authority, path, h);
    this.#stream = stream;
    this.#head = method === 'HEAD';
    // A stream reset by the client emits 'error'; the close handler does the work.
    stream.on('error', ignore);
    stream.on('close', () => this.transportClosed());
    // A client reset while our writes wait for window emits 'aborted' but never 'close'.
    // Our own close() emits 'aborted' too: destroying then would drop its RST_STREAM.
    stream.on('aborted', () => {
      if (this.resetLocally) return;
      this.transportClosed();
      stream.destroy();
    });
  }

  get body(): Readable | undefined {
    const stream = this.#stream;
    if (stream.endAfterHeaders) return undefined;
    return stream.readableEnded && this.bytesReceived === 0 ? undefined : stream;
  }

  protected sendHeaders(status: number, headers: HeaderMap, endStream: boolean, trailers: boolean): void {
    const stream = this.#stream;
    if (stream.destroyed || stream.headersSent) return;
    headers[':status'] = String(status);
    const end = endStream || this.#head;
    stream.respond(headers as http2.OutgoingHttpHeaders, { endStream: end, waitForTrailers: trailers && !end });
    if (trailers && !end) stream.once('wantTrailers', () => this.#sendTrailers());
  }

  #sendTrailers(): void {
    const t = this.#trailers;
    // No trailers arrived: Node sends an empty DATA frame with END_STREAM for {}.
    this.#stream.sendTrailers((t ?? {}) as http2.OutgoingHttpHeaders);
  }

  write(chunk: Buffer): boolean {
    const stream = this.#stream;
    if (this.ended || stream.destroyed || this.#head || stream.writableEnded) return true;
    this.bytesSent += chunk.length;
    return stream.write(chunk);
  }

  onDrain(cb: () => void): void {
    this.#stream.once('drain', cb);
  }

  protected endResponse(trailers: HeaderMap | undefined): void {
    const stream = this.#stream;
    if (stream.destroyed || stream.writableEnded) return;
    this.#trailers = trailers;
    stream.end();
  }

  reset(): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    this.resetLocally = true;
    stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}

function ignore(): void {}
