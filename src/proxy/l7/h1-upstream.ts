// HTTP/1.1 upstream connection pool on raw connector streams: keep-alive connections reused
// LIFO, one request at a time per connection (no pipelining, as Envoy), requests waiting for a
// connection queued and served by whichever connection frees up or opens first. The cluster's
// ConnectionLimits bound the connections opened and the requests waiting (circuit breakers).
import type { Duplex } from 'node:stream';
import { ConnectionLimits, type LimitedPool } from './conn-limits.js';
import { isPromise } from './filter.js';
import { ParseError, ResponseParser, type ResponseSink } from './h1-parser.js';
import type { HeaderMap } from './headers.js';
import {
  openConnection,
  type UpstreamFailureReason,
  type UpstreamHandlers,
  type UpstreamPool,
  type UpstreamRequest,
  type UpstreamSource,
} from './upstream-pool.js';
import type { UpstreamConnector, UpstreamTarget } from './upstream.js';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0]/;
const BAD_TARGET = /[\s\0]/;
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
/** Methods whose requests carry a body by convention: an empty one gets content-length: 0. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

export class Http1Pool implements UpstreamPool, LimitedPool {
  readonly protocol = 'http1';
  readonly target: UpstreamTarget;
  readonly #connector: UpstreamConnector;
  readonly #limits: ConnectionLimits;
  readonly #free: H1Connection[] = [];
  /** Waiting requests, aborted ones included (skipped when dequeued). */
  readonly #pending: H1Request[] = [];
  /** Waiting requests not aborted. */
  #queued = 0;
  readonly #all = new Set<H1Connection>();
  #connecting = 0;
  #draining = false;

  constructor(target: UpstreamTarget, connector: UpstreamConnector, limits = new ConnectionLimits()) {
    this.target = target;
    this.#connector = connector;
    this.#limits = limits;
  }

  request(src: UpstreamSource, handlers: UpstreamHandlers): UpstreamRequest {
    const r = new H1Request(this, src, handlers);
    this.dispatch(r);
    return r;
  }

  /** @internal Gives the request a free connection, or queues it and opens one. */
  dispatch(r: H1Request): void {
    const c = this.#free.pop();
    if (c) {
      c.assign(r);
      return;
    }
    // No ready connection: the request waits (pending), if the cluster allows one more.
    if (!this.#limits.enqueue()) {
      r.fail('overflow', undefined);
      return;
    }
    r.queued = true;
    this.#queued++;
    this.#pending.push(r);
    if (this.#connecting < this.#queued) this.#open();
  }

  /** @internal An aborted waiting request gives its pending slot back at once. */
  unqueue(r: H1Request): void {
    if (!r.queued) return;
    r.queued = false;
    this.#queued--;
    this.#limits.dequeue();
  }

  /** A connection slot of the cluster freed: open connections for requests still waiting. */
  capacityFreed(): void {
    while (!this.#draining && this.#connecting < this.#queued && this.#open());
  }

  /** Opens a connection if the cluster's max_connections allows; false when refused. */
  #open(): boolean {
    if (!this.#limits.tryOpen(this, this.#all.size + this.#connecting === 0)) return false;
    this.#connecting++;
    let opened: Duplex | Promise<Duplex>;
    try {
      opened = openConnection(this.#connector, this.target);
    } catch (e) {
      this.#connectFailed(e as Error);
      return true;
    }
    if (isPromise<Duplex>(opened))
      opened.then(
        (s) => this.#connected(s),
        (e: Error) => this.#connectFailed(e),
      );
    else this.#connected(opened);
    return true;
  }

  #connected(stream: Duplex): void {
    this.#connecting--;
    const c = new H1Connection(stream, this);
    this.#all.add(c);
    if (this.#draining && this.#pending.length === 0) c.destroy();
    else this.release(c);
  }

  #connectFailed(e: Error): void {
    this.#connecting--;
    // One connection was opened per waiting request: its failure fails the oldest one.
    if (this.#queued > this.#connecting) this.#nextPending()?.fail('connect', e);
    this.#limits.closed(this);
  }

  #nextPending(): H1Request | undefined {
    let r = this.#pending.shift();
    while (r && r.aborted) r = this.#pending.shift();
    if (r) this.unqueue(r);
    return r;
  }

  /** @internal A connection is free: serve a waiting request or keep it. */
  release(c: H1Connection): void {
    const next = this.#nextPending();
    if (next) c.assign(next);
    else if (this.#draining) c.destroy();
    else this.#free.push(c);
  }

  /** @internal */
  forget(c: H1Connection): void {
    if (!this.#all.delete(c)) return;
    const i = this.#free.indexOf(c);
    if (i >= 0) this.#free.splice(i, 1);
    // The slot goes to this pool's waiting requests first (a busy connection closed under them).
    this.#limits.closed(this);
  }

  drain(): void {
    this.#draining = true;
    this.#limits.forget(this);
    for (const c of this.#free.splice(0)) c.destroy();
  }

  close(): void {
    this.#draining = true;
    this.#limits.forget(this);
    for (const r of this.#pending.splice(0)) {
      this.unqueue(r);
      if (!r.aborted) r.fail('reset', undefined);
    }
    for (const c of [...this.#all]) c.destroy();
  }
}

/** One request on its way through a connection. */
class H1Request implements UpstreamRequest {
  readonly pool: Http1Pool;
  readonly src: UpstreamSource;
  readonly handlers: UpstreamHandlers;
  conn: H1Connection | undefined;
  /** Waiting for a connection (counted as pending by the cluster's limits). */
  queued = false;
  aborted = false;
  done = false;
  gotHead = false;
  /** The request (head and body) is fully written. */
  sent = false;
  bodyStarted = false;
  /** Sent on a connection that had served before (a reset may be the keep-alive race). */
  reused = false;
  retried = false;

  constructor(pool: Http1Pool, src: UpstreamSource, handlers: UpstreamHandlers) {
    this.pool = pool;
    this.src = src;
    this.handlers = handlers;
  }

  fail(reason: UpstreamFailureReason, e: Error | undefined): void {
    if (this.done || this.aborted) return;
    this.done = true;
    this.handlers.onUpstreamError(reason, e);
  }

  pause(): void {
    if (this.conn?.current === this) this.conn.stream.pause();
  }

  resume(): void {
    if (this.conn?.current === this) this.conn.stream.resume();
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.pool.unqueue(this);
    // A connection with a request half done cannot be reused.
    if (this.conn?.current === this) this.conn.destroy();
  }
}

class H1Connection implements ResponseSink {
  readonly stream: Duplex;
  readonly #pool: Http1Pool;
  readonly #parser = new ResponseParser();
  current: H1Request | undefined;
  #used = false;
  #closed = false;
  #complete = false;
  #keepAlive = false;
  #trailers: HeaderMap | undefined;
  readonly #resumeBody = () => this.current?.src.body?.resume();

  constructor(stream: Duplex, pool: Http1Pool) {
    this.stream = stream;
    this.#pool = pool;
    stream.on('data', (d: Buffer) => this.#onData(d));
    stream.on('end', () => this.#onEnd());
    stream.on('error', () => this.#onClose());
    stream.on('close', () => this.#onClose());
  }

  assign(r: H1Request): void {
    if (r.aborted) {
      this.#pool.release(this);
      return;
    }
    const reused = this.#used;
    this.#used = true;
    this.current = r;
    r.conn = this;
    r.reused = reused;
    this.#parser.start(this, r.src.method);
    let head: string;
    try {
      head = serializeHead(r.src);
    } catch (e) {
      this.current = undefined;
      r.conn = undefined;
      this.#pool.release(this);
      r.fail('protocol', e as Error);
      return;
    }
    // Buffers only: a tunnel stream's writev (HTTP/2 CONNECT) does not honour a string's
    // encoding in a mixed batch, and the head is latin1.
    this.stream.write(Buffer.from(head, 'latin1'));
    const body = r.src.body;
    if (!body) {
      r.sent = true;
      return;
    }
    this.#pumpBody(r, body, r.src.headers['content-length'] === undefined);
  }

  /** Streams the body; resumed explicitly, as a tap (the mirror filter) may have paused it. */
  #pumpBody(r: H1Request, body: NonNullable<UpstreamSource['body']>, chunked: boolean): void {
    r.bodyStarted = true;
    const stream = this.stream;
    body.on('data', (chunk: Buffer) => {
      if (this.current !== r) return;
      r.src.bytesReceived += chunk.length;
      let ok: boolean;
      if (chunked) {
        if (chunk.length === 0) return;
        stream.cork();
        stream.write(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'));
        stream.write(chunk);
        ok = stream.write(CRLF);
        stream.uncork();
      } else ok = stream.write(chunk);
      if (!ok) {
        body.pause();
        stream.once('drain', this.#resumeBody);
      }
    });
    body.on('end', () => {
      if (this.current !== r) return;
      if (chunked) stream.write(LAST_CHUNK);
      r.sent = true;
      // The response may have completed before the body did: now the connection is free.
      if (this.#complete) this.#afterResponse();
    });
    body.resume();
  }

  #onData(d: Buffer): void {
    const r = this.current;
    if (!r) {
      // Bytes on an idle connection: nothing can be trusted on it any more.
      this.destroy();
      return;
    }
    try {
      this.#parser.execute(d);
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      // Failed first, so that closing the connection does not replay the request.
      r.fail('protocol', e);
      this.destroy();
      return;
    }
    if (this.#complete) this.#afterResponse();
  }

  // Parser callbacks: the request may have been aborted (and the connection destroyed) by the
  // handler of a previous callback for the same bytes.
  onHead(status: number, headers: HeaderMap, bodyless: boolean): void {
    const r = this.current;
    if (!r || r.aborted) return;
    r.gotHead = true;
    // No body (HEAD, 204, 304, content-length: 0): the headers end the response.
    if (bodyless) r.done = true;
    r.handlers.onUpstreamHeaders(status, headers, bodyless);
  }

  onBody(chunk: Buffer): void {
    const r = this.current;
    if (r && !r.aborted) r.handlers.onUpstreamData(chunk);
  }

  onComplete(trailers: HeaderMap | undefined, keepAlive: boolean): void {
    this.#complete = true;
    this.#keepAlive = keepAlive;
    this.#trailers = trailers;
  }

  /** The response is complete: report it, then reuse or close the connection. */
  #afterResponse(): void {
    const r = this.current;
    if (!r) return;
    if (!r.done && !r.aborted) {
      r.done = true;
      r.handlers.onUpstreamEnd(this.#trailers);
    }
    // A request still sending its body (the server answered early) cannot share the connection.
    if (!r.sent && !r.aborted) {
      this.destroy();
      return;
    }
    this.#complete = false;
    this.#trailers = undefined;
    this.current = undefined;
    r.conn = undefined;
    if (!this.#keepAlive || this.#closed || r.aborted) {
      this.destroy();
      return;
    }
    // A paused response (slow client) leaves the stream paused: idle connections must read to
    // notice the server closing them.
    this.stream.resume();
    this.#pool.release(this);
  }

  #onEnd(): void {
    // Read-until-close bodies end here.
    if (this.current && this.#parser.end() && this.#complete) {
      this.#keepAlive = false;
      this.#afterResponse();
      return;
    }
    this.#onClose();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.forget(this);
    const r = this.current;
    this.current = undefined;
    if (!this.stream.destroyed) this.stream.destroy();
    if (!r || r.done || r.aborted) return;
    r.conn = undefined;
    // The server closed a kept-alive connection as we reused it (no byte of response): replay a
    // request without a body once, on another connection.
    if (!r.gotHead && !r.retried && !r.bodyStarted && r.reused) {
      r.retried = true;
      this.#pool.dispatch(r);
      return;
    }
    r.fail('reset', undefined);
  }

  destroy(): void {
    this.stream.destroy();
    this.#onClose();
  }
}

/** Request line and header section; throws on what would break the framing (CR/LF in values...). */
function serializeHead(src: UpstreamSource): string {
  if (BAD_TARGET.test(src.path) || !TOKEN.test(src.method)) throw new Error('invalid request line');
  if (BAD_VALUE.test(src.authority)) throw new Error('invalid authority');
  let head = `${src.method} ${src.path} HTTP/1.1\r\nhost: ${src.authority}\r\n`;
  const h = src.headers;
  for (const name in h) {
    const v = h[name];
    if (v === undefined) continue;
    if (!TOKEN.test(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`);
    if (typeof v === 'string') {
      if (BAD_VALUE.test(v)) throw new Error(`invalid value for header ${name}`);
      head += `${name}: ${v}\r\n`;
    } else {
      for (const x of v) {
        if (BAD_VALUE.test(x)) throw new Error(`invalid value for header ${name}`);
        head += `${name}: ${x}\r\n`;
      }
    }
  }
  if (src.body) {
    if (h['content-length'] === undefined) head += 'transfer-encoding: chunked\r\n';
  } else if (h['content-length'] === undefined && BODY_METHODS.has(src.method)) head += 'content-length: 0\r\n';
  return `${head}\r\n`;
}
