// Distributed tracing (Envoy's tracing in the HTTP connection manager, W3C Trace Context
// propagation). First in the chain, so the hop's span covers every other filter and the router.
//
// Input, in order: a valid W3C `traceparent` (tracestate kept as received); else B3 (`b3` single
// header, or x-b3-traceid / x-b3-spanid / x-b3-sampled / x-b3-flags); else a new trace started
// here, sampled at the configured rate. A B3 sampling decision without ids starts a new trace with
// that decision. Every hop is a new span: the upstream request gets
// `traceparent: 00-<trace>-<new span>-<flags>`. An invalid traceparent is ignored (and its
// tracestate dropped, as W3C requires); B3 headers are forwarded as received.
//
// Export: sampled spans, and every request that ends in an error (5xx, reset, gRPC server error)
// even when unsampled ("every error trace kept"); such a span keeps its sampled flag as it was.
//
// Hot path: an unsampled request costs the header checks and one string (the new traceparent,
// written into a scratch buffer); no span object exists until a span is recorded at completion,
// rebuilt from the request's headers.
import type { SpanSink } from '../../../observe/span.js';
import { randomFillSync } from 'node:crypto';
import type { AccessLogRecord } from '../access-log.js';
import type { RequestContext } from '../context.js';
import type { HttpFilterFactory } from '../filter.js';

export const TRACING_FILTER_NAME = 'trellis.filters.http.tracing';

/** A finished span, as the filter hands it to a sink (the OTLP exporter). */
export type { FinishedSpan, SpanSink } from '../../../observe/span.js';

export interface TracingOptions {
  readonly sink: SpanSink;
  /** Percentage of new traces sampled (0..100); default 1. */
  readonly samplingPercent?: number;
  /** Which proxy made the span (the gateway/waypoint name), attribute trellis.proxy. */
  readonly proxy?: string;
}

// --- identifiers ------------------------------------------------------------------------------

const HEX = '0123456789abcdef';
const HEX_CODES = new Uint8Array(16).map((_, i) => HEX.charCodeAt(i));

/** Random bytes drawn in blocks: one randomFillSync per 512 span ids, not per request. */
const pool = Buffer.alloc(4096);
let poolPos = pool.length;

function randomByte(): number {
  if (poolPos === pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  return pool[poolPos++]!;
}

/** The outgoing traceparent is assembled here and read out as one latin1 string. */
const scratch = Buffer.alloc(55);
scratch.write('00-', 0, 'latin1');
scratch[35] = 0x2d;
scratch[52] = 0x2d;

/** Writes `n` random bytes as hex at `at`, never all zeros (W3C forbids all-zero ids). */
function writeRandomHex(at: number, n: number): void {
  let any = 0;
  for (let i = 0; i < n; i++) {
    const b = randomByte();
    any |= b;
    scratch[at + 2 * i] = HEX_CODES[b >> 4]!;
    scratch[at + 2 * i + 1] = HEX_CODES[b & 15]!;
  }
  if (any === 0) scratch[at + 2 * n - 1] = 0x31;
}

function writeFlags(flags: number): void {
  scratch[53] = HEX_CODES[(flags >> 4) & 15]!;
  scratch[54] = HEX_CODES[flags & 15]!;
}

/** Copies a 32-hex trace id, or a 16-hex (64-bit B3) one left-padded with zeros, into the scratch. */
function writeTraceId(s: string, from: number, len: number): void {
  let at = 3;
  if (len === 16) {
    scratch.fill(0x30, 3, 19);
    at = 19;
  }
  for (let i = 0; i < len; i++) scratch[at + i] = s.charCodeAt(from + i);
}

function readOut(): string {
  return scratch.toString('latin1', 0, 55);
}

// --- parsing ------------------------------------------------------------------------------------

/** Lowercase hex digit value, -1 otherwise. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** s[from, from+len) is lowercase hex and not all zeros. */
function validId(s: string, from: number, len: number): boolean {
  let nonZero = false;
  for (let i = from; i < from + len; i++) {
    const c = s.charCodeAt(i);
    if (hexValue(c) < 0) return false;
    if (c !== 48) nonZero = true;
  }
  return nonZero;
}

/**
 * W3C traceparent: the trace flags (0..255) when valid, -1 otherwise. Version 00 is exactly 55
 * characters; a higher version (not ff) is parsed as 00 when it starts the same way and, if
 * longer, continues with "-" (the spec's forward compatibility). For a higher version only the
 * sampled bit is kept, since its other flags may mean something else.
 */
export function parseTraceparent(s: string): number {
  if (s.length < 55) return -1;
  const v1 = hexValue(s.charCodeAt(0));
  const v2 = hexValue(s.charCodeAt(1));
  if (v1 < 0 || v2 < 0) return -1;
  const version = v1 * 16 + v2;
  if (version === 0xff) return -1;
  if (version === 0 ? s.length !== 55 : s.length > 55 && s.charCodeAt(55) !== 0x2d) return -1;
  if (s.charCodeAt(2) !== 0x2d || s.charCodeAt(35) !== 0x2d || s.charCodeAt(52) !== 0x2d) return -1;
  if (!validId(s, 3, 32) || !validId(s, 36, 16)) return -1;
  const f1 = hexValue(s.charCodeAt(53));
  const f2 = hexValue(s.charCodeAt(54));
  if (f1 < 0 || f2 < 0) return -1;
  const flags = f1 * 16 + f2;
  return version === 0 ? flags : flags & 1;
}

/** B3 sampling state: 1 sampled (also debug), 0 not, -1 deferred/absent, -2 invalid. */
function b3Sampling(s: string | undefined): number {
  switch (s) {
    case undefined:
    case '':
      return -1;
    case '1':
    case 'd':
    case 'true':
      return 1;
    case '0':
    case 'false':
      return 0;
    default:
      return -2;
  }
}

/** A B3 context as read at completion (allocation is fine there). */
interface B3Context {
  readonly traceId: string;
  readonly spanId: string;
}

const isB3TraceId = (s: string | undefined): s is string =>
  s !== undefined && (s.length === 32 || s.length === 16) && validId(s, 0, s.length);
const isB3SpanId = (s: string | undefined): s is string => s !== undefined && s.length === 16 && validId(s, 0, 16);

/** The B3 context of the request headers (single header first), if any. */
function readB3(headers: RequestContext['headers']): B3Context | undefined {
  const single = headers.b3;
  if (typeof single === 'string') {
    const [t, sp] = single.split('-');
    if (isB3TraceId(t) && isB3SpanId(sp)) return { traceId: t.padStart(32, '0'), spanId: sp };
    return undefined;
  }
  const t = headers['x-b3-traceid'];
  const sp = headers['x-b3-spanid'];
  if (typeof t === 'string' && typeof sp === 'string' && isB3TraceId(t) && isB3SpanId(sp))
    return { traceId: t.padStart(32, '0'), spanId: sp };
  return undefined;
}

/**
 * B3 input. A context with ids: writes its trace id into the scratch and returns its sampling
 * (1, 0, or -1 when deferred). A sampling decision without ids: 10 + the decision (a new trace).
 * Nothing usable (absent or invalid): -3. Numbers, not objects: this runs per request.
 */
function fromB3(headers: RequestContext['headers']): number {
  const single = headers.b3;
  if (typeof single === 'string') {
    // {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]], or the sampling state alone.
    if (single.length <= 1) {
      const s = b3Sampling(single);
      return s === -2 ? -3 : s + 10; // a decision without ids: new trace, this decision
    }
    const d1 = single.indexOf('-');
    const tLen = d1;
    if ((tLen !== 16 && tLen !== 32) || !validId(single, 0, tLen)) return -3;
    if (!validId(single, d1 + 1, 16)) return -3;
    const end = d1 + 17;
    let sampling = -1;
    if (single.length > end) {
      if (single.charCodeAt(end) !== 0x2d) return -3;
      const c = single.charCodeAt(end + 1);
      sampling = c === 0x31 || c === 0x64 ? 1 : c === 0x30 ? 0 : -2;
      if (sampling === -2) return -3;
    }
    writeTraceId(single, 0, tLen);
    return sampling;
  }
  const t = headers['x-b3-traceid'];
  const sp = headers['x-b3-spanid'];
  const sampledHeader = headers['x-b3-sampled'];
  let sampling = b3Sampling(typeof sampledHeader === 'string' ? sampledHeader : undefined);
  if (headers['x-b3-flags'] === '1') sampling = 1; // debug implies sampled
  if (typeof t === 'string' && typeof sp === 'string') {
    if (!isB3TraceId(t) || !isB3SpanId(sp) || sampling === -2) return -3;
    writeTraceId(t, 0, t.length);
    return sampling;
  }
  if (sampling >= 0) return sampling + 10;
  return -3;
}

// --- the filter ---------------------------------------------------------------------------------

/** Spans we recorded for: an error status or reset, or a gRPC server-side failure. */
const UPSTREAM_RESETS = new Set(['UF', 'UC', 'UR', 'UT', 'UPE', 'UH', 'NC']);
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

function isError(ctx: RequestContext, r: AccessLogRecord): boolean {
  if (r.status === 0 || r.status >= 500) return true;
  if (r.responseFlags.length > 0) for (const f of r.responseFlags) if (UPSTREAM_RESETS.has(f)) return true;
  return ctx.isGrpc && r.grpcStatus !== undefined && GRPC_SERVER_ERRORS.has(r.grpcStatus);
}

export function tracingFilter(opts: TracingOptions): HttpFilterFactory {
  const rate = Math.min(100, Math.max(0, opts.samplingPercent ?? 1)) / 100;
  const sink = opts.sink;
  const proxy = opts.proxy;
  // The traceparent a request arrived with, when it was a valid one: its parent id is needed at
  // completion (the header itself is overwritten). B3 headers stay as received, so need nothing.
  const inbound = new WeakMap<RequestContext, string>();
  return {
    name: TRACING_FILTER_NAME,
    create() {
      return {
        onRequest(ctx) {
          const h = ctx.headers;
          const tp = h.traceparent;
          let flags = -1;
          if (typeof tp === 'string') {
            flags = parseTraceparent(tp);
            if (flags >= 0) {
              for (let i = 0; i < 32; i++) scratch[3 + i] = tp.charCodeAt(3 + i);
              inbound.set(ctx, tp);
            }
          }
          if (flags < 0) {
            // No (valid) W3C context: its tracestate belongs to nothing we continue.
            if (h.tracestate !== undefined) delete h.tracestate;
            let sampling = -1;
            let continued = false;
            if (h.b3 !== undefined || h['x-b3-traceid'] !== undefined || h['x-b3-sampled'] !== undefined) {
              const r = fromB3(h);
              if (r >= -1 && r <= 1) {
                continued = true;
                sampling = r;
              } else if (r >= 10) sampling = r - 10;
            }
            if (!continued) writeRandomHex(3, 16);
            if (sampling < 0) sampling = Math.random() < rate ? 1 : 0;
            flags = sampling;
          }
          writeRandomHex(36, 8);
          writeFlags(flags);
          h.traceparent = readOut();
          return undefined;
        },
        onComplete(ctx, record) {
          const tp = ctx.headers.traceparent;
          if (typeof tp !== 'string' || tp.length !== 55) return;
          const f2 = hexValue(tp.charCodeAt(54));
          const sampled = (f2 & 1) === 1;
          const error = isError(ctx, record);
          if (!sampled && !error) return;
          recordSpan(ctx, record, tp, error);
        },
      };
    },
  };

  function recordSpan(ctx: RequestContext, record: AccessLogRecord, tp: string, error: boolean): void {
    const traceId = tp.slice(3, 35);
    let parentSpanId: string | undefined;
    let traceState: string | undefined;
    const from = inbound.get(ctx);
    if (from !== undefined) {
      parentSpanId = from.slice(36, 52);
      const ts = ctx.headers.tracestate;
      traceState = typeof ts === 'string' ? ts : Array.isArray(ts) ? ts.join(',') : undefined;
    } else {
      const b3 = readB3(ctx.headers);
      if (b3 && b3.traceId === traceId) parentSpanId = b3.spanId;
    }
    const attributes: Record<string, string | number> = {
      'http.request.method': record.method,
      'url.path': pathOnly(record.path),
      'http.response.status_code': record.status,
      'server.address': record.authority,
      'network.protocol.version': record.protocol === 'HTTP/2' ? '2' : '1.1',
      'guid:x-request-id': record.requestId,
    };
    if (record.peerIdentity) attributes['trellis.peer.identity'] = record.peerIdentity;
    if (record.peerAddress) attributes['client.address'] = record.peerAddress;
    if (record.responseFlags.length > 0) attributes['response_flags'] = record.responseFlags.join(',');
    if (record.upstreamCluster) attributes['upstream_cluster'] = record.upstreamCluster;
    if (record.upstreamHost) attributes['upstream_address'] = record.upstreamHost;
    if (record.routeName) attributes['trellis.route'] = record.routeName;
    if (record.grpcStatus !== undefined) attributes['rpc.grpc.status_code'] = record.grpcStatus;
    if (proxy) attributes['trellis.proxy'] = proxy;
    sink.record({
      traceId,
      spanId: tp.slice(36, 52),
      parentSpanId,
      traceFlags: hexValue(tp.charCodeAt(53)) * 16 + hexValue(tp.charCodeAt(54)),
      traceState,
      // OpenTelemetry's HTTP server span name: method and route (here: the route's name, else the authority).
      name: `${record.method} ${record.routeName ?? record.authority}`,
      startMs: record.startTime,
      endMs: record.startTime + record.durationMs,
      error,
      attributes,
    });
  }
}

function pathOnly(p: string): string {
  const q = p.indexOf('?');
  return q < 0 ? p : p.slice(0, q);
}
