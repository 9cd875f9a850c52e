// An incremental HTTP/1.1 response parser (RFC 9112) for upstream connections. node:http's
// client costs about as much CPU per request as the rest of the proxy together (ClientRequest,
// Agent bookkeeping, IncomingMessage streams); this parser hands status, headers, body slices
// and trailers straight to the router. Body slices are views into the socket's buffers.
import type { HeaderMap } from './headers.js';

export interface ResponseSink {
  /** `bodyless`: no body follows (HEAD, 204, 304, content-length: 0); onComplete comes next. */
  onHead(status: number, headers: HeaderMap, bodyless: boolean): void;
  onBody(chunk: Buffer): void;
  /** The response is complete; `keepAlive`: the connection may carry another request. */
  onComplete(trailers: HeaderMap | undefined, keepAlive: boolean): void;
}

export class ParseError extends Error {}

const enum State {
  Head,
  Fixed,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  UntilClose,
  Done,
}

const MAX_HEAD = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/** Headers whose repeats stay separate values (Set-Cookie cannot be joined with commas). */
const NEVER_JOINED = 'set-cookie';

export class ResponseParser {
  #state = State.Done;
  #sink: ResponseSink | undefined;
  #noBody = false;
  #remaining = 0;
  #keepAlive = true;
  /** Unconsumed bytes of an incomplete head, chunk-size line or trailer section. */
  #pending: Buffer | undefined;
  /** Trailer field lines received so far. */
  #trailerLines = '';

  /** Expects a response to a request with `method` (HEAD responses have no body). */
  start(sink: ResponseSink, method: string): void {
    this.#sink = sink;
    this.#noBody = method === 'HEAD';
    this.#state = State.Head;
    this.#pending = undefined;
    this.#keepAlive = true;
  }

  get idle(): boolean {
    return this.#state === State.Done;
  }

  /** The connection ended: completes a read-until-close body; otherwise the response was cut short. */
  end(): boolean {
    if (this.#state === State.UntilClose) {
      this.#finish(undefined);
      return true;
    }
    return this.#state === State.Done;
  }

  /** Feeds bytes; throws ParseError on a malformed response or bytes after a complete one. */
  execute(data: Buffer): void {
    let buf = data;
    let pos = 0;
    if (this.#pending) {
      buf = Buffer.concat([this.#pending, data]);
      this.#pending = undefined;
    }
    while (pos < buf.length) {
      switch (this.#state) {
        case State.Head: {
          const end = buf.indexOf(CRLFCRLF, pos);
          if (end < 0) {
            if (buf.length - pos > MAX_HEAD) throw new ParseError('response head too large');
            this.#pending = buf.subarray(pos);
            return;
          }
          this.#head(buf.toString('latin1', pos, end));
          pos = end + 4;
          break;
        }
        case State.Fixed: {
          const n = Math.min(this.#remaining, buf.length - pos);
          this.#sink!.onBody(buf.subarray(pos, pos + n));
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#finish(undefined);
          break;
        }
        case State.ChunkSize: {
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) {
            if (buf.length - pos > 1024) throw new ParseError('chunk size line too long');
            this.#pending = buf.subarray(pos);
            return;
          }
          const line = buf.toString('latin1', pos, eol);
          const semi = line.indexOf(';');
          const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new ParseError(`bad chunk size ${JSON.stringify(hex)}`);
          this.#remaining = parseInt(hex, 16);
          pos = eol + 2;
          if (this.#remaining === 0) {
            this.#state = State.Trailers;
            this.#trailerLines = '';
          } else this.#state = State.ChunkData;
          break;
        }
        case State.ChunkData: {
          const n = Math.min(this.#remaining, buf.length - pos);
          this.#sink!.onBody(buf.subarray(pos, pos + n));
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = State.ChunkDataEnd;
          break;
        }
        case State.ChunkDataEnd: {
          if (buf.length - pos < 2) {
            this.#pending = buf.subarray(pos);
            return;
          }
          if (buf[pos] !== 13 || buf[pos + 1] !== 10) throw new ParseError('missing CRLF after chunk');
          pos += 2;
          this.#state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) {
            if (buf.length - pos + this.#trailerLines.length > MAX_HEAD) throw new ParseError('trailers too large');
            this.#pending = buf.subarray(pos);
            return;
          }
          const line = buf.toString('latin1', pos, eol);
          pos = eol + 2;
          if (line !== '') {
            this.#trailerLines += this.#trailerLines ? `\r\n${line}` : line;
            break;
          }
          let trailers: HeaderMap | undefined;
          if (this.#trailerLines) {
            trailers = {};
            parseFields(this.#trailerLines, 0, trailers);
          }
          this.#finish(trailers);
          break;
        }
        case State.UntilClose: {
          this.#sink!.onBody(pos === 0 ? buf : buf.subarray(pos));
          return;
        }
        case State.Done:
          throw new ParseError('data after the response');
      }
    }
  }

  #head(text: string): void {
    const eol = text.indexOf('\r\n');
    const statusLine = eol < 0 ? text : text.slice(0, eol);
    // "HTTP/1.1 200 OK"
    if (statusLine.length < 12 || !statusLine.startsWith('HTTP/1.') || statusLine.charCodeAt(12) > 32)
      throw new ParseError(`bad status line ${JSON.stringify(statusLine.slice(0, 40))}`);
    const status = Number(statusLine.slice(9, 12));
    if (!(status >= 100 && status <= 999)) throw new ParseError(`bad status ${statusLine.slice(9, 12)}`);
    const http10 = statusLine.charCodeAt(7) === 48; /* '0' */
    // A plain object: V8 handles it several times faster than a null-prototype one here.
    const headers: HeaderMap = {};
    const framing = parseFields(text, eol < 0 ? text.length : eol + 2, headers);
    if (status < 200) {
      // 1xx informational: another head follows (101 would be an upgrade we never ask for).
      if (status === 101) throw new ParseError('unexpected 101 Switching Protocols');
      return;
    }
    const connection = framing.connection;
    if (connection !== undefined) {
      const tokens = connection.toLowerCase();
      if (tokens === 'close') this.#keepAlive = false;
      else if (tokens !== 'keep-alive') {
        if (tokens.includes('close')) this.#keepAlive = false;
        else if (http10 && !tokens.includes('keep-alive')) this.#keepAlive = false;
        // Other names listed are hop-by-hop too.
        for (const t of tokens.split(',')) {
          const name = t.trim();
          if (name && name !== 'close' && name !== 'keep-alive' && Object.hasOwn(headers, name)) delete headers[name];
        }
      }
    } else if (http10) this.#keepAlive = false;
    const sink = this.#sink!;
    if (this.#noBody || status === 204 || status === 304) {
      sink.onHead(status, headers, true);
      this.#finish(undefined);
      return;
    }
    if (framing.transferEncoding !== undefined) {
      // Chunked must be the final coding; anything else reads until close (RFC 9112 6.3).
      if (/(?:^|,)\s*chunked\s*$/i.test(framing.transferEncoding)) this.#state = State.ChunkSize;
      else {
        this.#state = State.UntilClose;
        this.#keepAlive = false;
      }
      // A content-length next to transfer-encoding is ignored and must not be forwarded.
      if (Object.hasOwn(headers, 'content-length')) delete headers['content-length'];
      sink.onHead(status, headers, false);
      return;
    }
    if (framing.contentLength !== undefined) {
      const cl = framing.contentLength;
      if (!/^\d{1,15}$/.test(cl)) throw new ParseError('bad content-length');
      this.#remaining = Number(cl);
      sink.onHead(status, headers, this.#remaining === 0);
      if (this.#remaining === 0) this.#finish(undefined);
      else this.#state = State.Fixed;
      return;
    }
    this.#state = State.UntilClose;
    this.#keepAlive = false;
    sink.onHead(status, headers, false);
  }

  #finish(trailers: HeaderMap | undefined): void {
    this.#state = State.Done;
    const sink = this.#sink!;
    this.#sink = undefined;
    sink.onComplete(trailers, this.#keepAlive);
  }
}

/** Frequent response header names by length: matched in place, they need no new string. */
const KNOWN = new Map<number, string[]>();
for (const n of [
  'date',
  'etag',
  'vary',
  'server',
  'expires',
  'trailer',
  'location',
  'connection',
  'keep-alive',
  'set-cookie',
  'grpc-status',
  'content-type',
  'grpc-message',
  'accept-ranges',
  'cache-control',
  'last-modified',
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'x-request-id',
  'x-envoy-upstream-service-time',
]) {
  const list = KNOWN.get(n.length);
  if (list) list.push(n);
  else KNOWN.set(n.length, [n]);
}

/** The interned lowercase name when text[start, end) is a known header name (any case). */
function knownName(text: string, start: number, end: number): string | undefined {
  const candidates = KNOWN.get(end - start);
  if (!candidates) return undefined;
  next: for (const known of candidates) {
    for (let i = 0; i < known.length; i++) {
      const c = text.charCodeAt(start + i);
      // ASCII letters fold to lowercase with 0x20; other bytes must match exactly.
      if (c !== known.charCodeAt(i) && (c | 0x20) !== known.charCodeAt(i)) continue next;
    }
    return known;
  }
  return undefined;
}

interface Framing {
  connection: string | undefined;
  transferEncoding: string | undefined;
  contentLength: string | undefined;
}

/**
 * Header field lines of `text` from `pos` -> map (lowercase names; repeats joined with ", "
 * except Set-Cookie). The connection-level fields (Connection, Keep-Alive, Transfer-Encoding...)
 * are returned apart and left out of the map: they are hop-by-hop. Lines are walked with
 * indexOf rather than split: the head is a fresh string every time, and split was the parser's
 * largest cost.
 */
function parseFields(text: string, pos: number, out: HeaderMap): Framing {
  const framing: Framing = { connection: undefined, transferEncoding: undefined, contentLength: undefined };
  const len = text.length;
  while (pos < len) {
    let eol = text.indexOf('\r\n', pos);
    if (eol < 0) eol = len;
    const colon = text.indexOf(':', pos);
    if (colon <= pos || colon > eol) throw new ParseError('malformed header line');
    // Names and values are validated once more where they are written downstream (node:http,
    // nghttp2); a refused one becomes a 502 there.
    if (text.charCodeAt(colon - 1) <= 32) throw new ParseError('whitespace before colon');
    const name = knownName(text, pos, colon) ?? text.slice(pos, colon).toLowerCase();
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    const value = text.slice(vs, ve);
    pos = eol + 2;
    switch (name) {
      case 'connection':
        framing.connection = framing.connection === undefined ? value : `${framing.connection}, ${value}`;
        continue;
      case 'transfer-encoding':
        framing.transferEncoding =
          framing.transferEncoding === undefined ? value : `${framing.transferEncoding}, ${value}`;
        continue;
      case 'keep-alive':
      case 'proxy-connection':
      case 'upgrade':
        continue;
      case 'content-length':
        // Repeated identical values are tolerated (RFC 9110 8.6); different ones are an error.
        if (framing.contentLength !== undefined && framing.contentLength !== value)
          throw new ParseError('conflicting content-length');
        framing.contentLength = value;
        out[name] = value;
        continue;
    }
    const cur = out[name];
    // Inherited names (constructor, __proto__...) are not headers yet: define them as own ones.
    if (cur === undefined) out[name] = value;
    else if (!Object.hasOwn(out, name))
      Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
    else if (name === NEVER_JOINED) out[name] = typeof cur === 'string' ? [cur, value] : [...cur, value];
    else out[name] = `${typeof cur === 'string' ? cur : cur.join(', ')}, ${value}`;
  }
  return framing;
}
