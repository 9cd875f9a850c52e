// Tracing in the L7 engine: W3C traceparent validation, B3 input, a new span id per hop, the
// sampled flag propagated, errors exported even when unsampled, and the batching OTLP exporter
// (decoded by a real receiver with the vendored opentelemetry-proto files).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultFilters } from '../../../src/proxy/l7/engine.js';
import { parseTraceparent, tracingFilter, type FinishedSpan } from '../../../src/proxy/l7/filters/tracing.js';
import { OtlpTraceExporter } from '../../../src/observe/otlp-exporter.js';
import { startOtlpReceiver, type OtlpReceiver } from '../../fixtures/otlp/receiver.js';
import {
  cla,
  edsCluster,
  get,
  json,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  toCluster,
  vhost,
  type Echo,
  type Running,
} from './helpers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TP_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function parseOut(v: unknown): { trace: string; span: string; flags: string } {
  const m = TP_RE.exec(String(v));
  assert.ok(m, `upstream traceparent ${String(v)}`);
  return { trace: m[1]!, span: m[2]!, flags: m[3]! };
}

describe('traceparent validation (W3C Trace Context)', () => {
  const cases: [string, string, number][] = [
    ['valid, sampled', `00-${TRACE}-${PARENT}-01`, 1],
    ['valid, not sampled', `00-${TRACE}-${PARENT}-00`, 0],
    ['valid, other flags kept', `00-${TRACE}-${PARENT}-03`, 3],
    ['uppercase hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`, -1],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`, -1],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`, -1],
    ['version ff', `ff-${TRACE}-${PARENT}-01`, -1],
    ['version 00 with more', `00-${TRACE}-${PARENT}-01-extra`, -1],
    ['short trace id', `00-${TRACE.slice(2)}-${PARENT}-01`, -1],
    ['wrong separator', `00_${TRACE}-${PARENT}-01`, -1],
    ['non-hex flags', `00-${TRACE}-${PARENT}-0x`, -1],
    ['non-hex version', `0g-${TRACE}-${PARENT}-01`, -1],
    ['empty', '', -1],
    ['two headers joined', `00-${TRACE}-${PARENT}-01, 00-${TRACE}-${PARENT}-01`, -1],
    ['future version, longer', `01-${TRACE}-${PARENT}-03-whatever`, 1],
    ['future version, no dash after flags', `01-${TRACE}-${PARENT}-03x`, -1],
  ];
  for (const [name, value, want] of cases) it(name, () => assert.equal(parseTraceparent(value), want));
});

describe('tracing filter in the engine', () => {
  let echo: Echo;
  const engines: Running[] = [];
  const spans: FinishedSpan[] = [];
  const sink = { record: (s: FinishedSpan) => spans.push(s) };

  async function engineTo(port: number, samplingPercent: number, proxy = 'test'): Promise<Running> {
    const config = l7Config(
      [routeConfig('r', [vhost('v', ['*'], [{ ...toCluster('backend'), name: 'all' }])])],
      [edsCluster('backend')],
      [cla('backend', [{ port }])],
    );
    const e = await startEngine(config, 'r', {
      filters: [tracingFilter({ sink, samplingPercent, proxy }), ...defaultFilters()],
    });
    engines.push(e);
    return e;
  }

  before(async () => {
    echo = await startEcho('backend');
  });
  after(async () => {
    for (const e of engines) await e.close();
    await echo.close();
  });

  /** The spans recorded so far for `trace` (onComplete runs right after the response). */
  async function spansOf(trace: string, n: number): Promise<FinishedSpan[]> {
    for (let i = 0; i < 100; i++) {
      const got = spans.filter((s) => s.traceId === trace);
      if (got.length >= n) return got;
      await new Promise((r) => setTimeout(r, 10));
    }
    return spans.filter((s) => s.traceId === trace);
  }

  it('continues a sampled W3C trace with a new span id, keeps tracestate, records the span', async () => {
    const e = await engineTo(echo.port, 0);
    const r = await get(e.port, '/items?x=1', {
      headers: { host: 'shop.test', traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'congo=t61rcWkgMzE,rojo=1' },
    });
    assert.equal(r.status, 200);
    const sent = json(r).headers;
    const out = parseOut(sent.traceparent);
    assert.equal(out.trace, TRACE);
    assert.notEqual(out.span, PARENT);
    assert.equal(out.flags, '01');
    assert.equal(sent.tracestate, 'congo=t61rcWkgMzE,rojo=1');
    const [span] = await spansOf(TRACE, 1);
    assert.ok(span);
    assert.equal(span.spanId, out.span);
    assert.equal(span.parentSpanId, PARENT);
    assert.equal(span.traceFlags, 1);
    assert.equal(span.traceState, 'congo=t61rcWkgMzE,rojo=1');
    assert.equal(span.error, false);
    assert.equal(span.name, 'GET all');
    assert.equal(span.attributes['http.request.method'], 'GET');
    assert.equal(span.attributes['url.path'], '/items');
    assert.equal(span.attributes['http.response.status_code'], 200);
    assert.equal(span.attributes['server.address'], 'shop.test');
    assert.equal(span.attributes['upstream_cluster'], 'backend');
    assert.equal(span.attributes['upstream_address'], `127.0.0.1:${echo.port}`);
    assert.equal(span.attributes['trellis.proxy'], 'test');
    assert.ok(span.endMs >= span.startMs);
  });

  it('honours an unsampled flag: propagated as 00, nothing recorded for a 200', async () => {
    const e = await engineTo(echo.port, 100);
    const trace = 'a'.repeat(31) + '1';
    const r = await get(e.port, '/', { headers: { traceparent: `00-${trace}-${PARENT}-00` } });
    const out = parseOut(json(r).headers.traceparent);
    assert.equal(out.trace, trace);
    assert.equal(out.flags, '00');
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(spans.filter((s) => s.traceId === trace).length, 0);
  });

  it('ignores an invalid traceparent (and its tracestate): a new trace starts here', async () => {
    const e = await engineTo(echo.port, 100);
    const bad = `00-${TRACE.toUpperCase()}-${PARENT}-01`;
    const r = await get(e.port, '/', { headers: { traceparent: bad, tracestate: 'a=b' } });
    const sent = json(r).headers;
    const out = parseOut(sent.traceparent);
    assert.notEqual(out.trace, TRACE.toLowerCase());
    assert.equal(out.flags, '01'); // 100% sampling for new traces
    assert.equal(sent.tracestate, undefined);
    const [span] = await spansOf(out.trace, 1);
    assert.equal(span?.parentSpanId, undefined);
  });

  it('starts new traces at the configured rate: 100% sampled, 0% not', async () => {
    const all = await engineTo(echo.port, 100);
    const none = await engineTo(echo.port, 0);
    const a = parseOut(json(await get(all.port, '/')).headers.traceparent);
    const b = parseOut(json(await get(none.port, '/')).headers.traceparent);
    assert.equal(a.flags, '01');
    assert.equal(b.flags, '00');
    assert.notEqual(a.trace, b.trace);
  });

  describe('B3 input', () => {
    let e: Running;
    before(async () => {
      e = await engineTo(echo.port, 0);
    });
    const b3Cases: [string, Record<string, string>, string, string][] = [
      // name, headers, expected trace id, expected flags
      ['single header, sampled', { b3: `${TRACE}-${PARENT}-1` }, TRACE, '01'],
      ['single header, debug', { b3: `${TRACE}-${PARENT}-d-${'1'.repeat(16)}` }, TRACE, '01'],
      ['single header, not sampled', { b3: `${TRACE}-${PARENT}-0` }, TRACE, '00'],
      [
        'single header, 64-bit trace id padded',
        { b3: `${TRACE.slice(16)}-${PARENT}-1` },
        '0'.repeat(16) + TRACE.slice(16),
        '01',
      ],
      ['multi headers', { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' }, TRACE, '01'],
      ['multi headers, debug flag', { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-flags': '1' }, TRACE, '01'],
      ['multi headers, deferred: our rate (0%)', { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT }, TRACE, '00'],
    ];
    for (const [name, headers, trace, flags] of b3Cases)
      it(name, async () => {
        const out = parseOut(json(await get(e.port, '/', { headers })).headers.traceparent);
        assert.equal(out.trace, trace);
        assert.equal(out.flags, flags);
        assert.notEqual(out.span, PARENT);
        if (flags === '01') {
          const got = await spansOf(trace, 1);
          assert.equal(got.find((s) => s.spanId === out.span)?.parentSpanId, PARENT);
        }
      });
    it('a sampling decision alone starts a new trace with it', async () => {
      const out = parseOut(json(await get(e.port, '/', { headers: { b3: '1' } })).headers.traceparent);
      assert.equal(out.flags, '01');
      assert.equal((await spansOf(out.trace, 1))[0]?.parentSpanId, undefined);
    });
    it('traceparent wins over B3', async () => {
      const trace = 'b'.repeat(32);
      const out = parseOut(
        json(
          await get(e.port, '/', { headers: { traceparent: `00-${trace}-${PARENT}-00`, b3: `${TRACE}-${PARENT}-1` } }),
        ).headers.traceparent,
      );
      assert.equal(out.trace, trace);
      assert.equal(out.flags, '00');
    });
    it('invalid B3 ids are ignored', async () => {
      const out = parseOut(json(await get(e.port, '/', { headers: { b3: `${TRACE}-XYZ-1` } })).headers.traceparent);
      assert.notEqual(out.trace, TRACE);
    });
  });

  it('two hops: each makes a new span, the second one is the first one’s child', async () => {
    const inner = await engineTo(echo.port, 0, 'inner');
    const outer = await engineTo(inner.port, 0, 'outer');
    const trace = 'c'.repeat(32);
    const r = await get(outer.port, '/', { headers: { traceparent: `00-${trace}-${PARENT}-01` } });
    const atBackend = parseOut(json(r).headers.traceparent);
    const got = await spansOf(trace, 2);
    const o = got.find((s) => s.attributes['trellis.proxy'] === 'outer');
    const i = got.find((s) => s.attributes['trellis.proxy'] === 'inner');
    assert.ok(o && i);
    assert.equal(o.parentSpanId, PARENT);
    assert.equal(i.parentSpanId, o.spanId);
    assert.equal(atBackend.span, i.spanId);
    assert.notEqual(o.spanId, i.spanId);
  });

  it('0% sampling: 200s export nothing, a 503 and an upstream failure are exported (unsampled flag kept)', async () => {
    const e = await engineTo(echo.port, 0);
    const before = spans.length;
    for (let i = 0; i < 20; i++) assert.equal((await get(e.port, '/')).status, 200);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(spans.length, before);
    const r = await get(e.port, '/?status=503');
    assert.equal(r.status, 503);
    const out = parseOut(json(r).headers.traceparent);
    const [span] = await spansOf(out.trace, 1);
    assert.ok(span);
    assert.equal(span.error, true);
    assert.equal(span.traceFlags, 0);
    assert.equal(span.attributes['http.response.status_code'], 503);

    // Nothing listens there: connection failure, 503 UF.
    const dead = await engineTo(1, 0);
    const trace = 'd'.repeat(32);
    const f = await get(dead.port, '/', { headers: { traceparent: `00-${trace}-${PARENT}-00` } });
    assert.equal(f.status, 503);
    const [failed] = await spansOf(trace, 1);
    assert.ok(failed);
    assert.equal(failed.error, true);
    assert.equal(failed.parentSpanId, PARENT);
    assert.match(String(failed.attributes['response_flags']), /UF/);
  });
});

describe('OTLP/HTTP exporter', () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });

  const span = (i: number, extra: Partial<FinishedSpan> = {}): FinishedSpan => ({
    traceId: TRACE,
    spanId: (i + 1).toString(16).padStart(16, '0'),
    parentSpanId: PARENT,
    traceFlags: 1,
    traceState: 'rojo=1',
    name: `GET span-${i}`,
    startMs: 1_700_000_000_123.5,
    endMs: 1_700_000_000_125,
    error: false,
    attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 },
    ...extra,
  });

  it('POSTs protobuf to /v1/traces in batches of at most maxBatch, decodable as OTLP', async () => {
    receiver.requests.length = 0;
    receiver.spans.length = 0;
    const ex = new OtlpTraceExporter({
      endpoint: `${receiver.endpoint}/`,
      serviceName: 'trellis-node.test',
      maxBatch: 3,
      flushIntervalMs: 60_000,
    });
    for (let i = 0; i < 7; i++) ex.record(span(i, i === 6 ? { error: true, parentSpanId: undefined } : {}));
    // Two full batches go without waiting for the interval; the last one on flush.
    await receiver.waitFor((s) => s.length >= 6, 5_000);
    await ex.close();
    assert.equal(receiver.spans.length, 7);
    assert.deepEqual(
      receiver.requests.map((r) => r.spans),
      [3, 3, 1],
    );
    for (const r of receiver.requests) {
      assert.equal(r.contentType, 'application/x-protobuf');
      assert.equal(r.path, '/v1/traces');
    }
    const first = receiver.spans[0]!;
    assert.equal(first.traceId, TRACE);
    assert.equal(first.spanId, '0000000000000001');
    assert.equal(first.parentSpanId, PARENT);
    assert.equal(first.traceState, 'rojo=1');
    assert.equal(first.kind, 'SPAN_KIND_SERVER');
    assert.equal(first.status, 'STATUS_CODE_UNSET');
    assert.equal(first.flags & 0xff, 1);
    assert.equal(first.startNs, 1_700_000_000_123_500_000n);
    assert.equal(first.endNs, 1_700_000_000_125_000_000n);
    assert.equal(first.attributes['http.response.status_code'], 200);
    assert.equal(first.resource['service.name'], 'trellis-node.test');
    const last = receiver.spans[6]!;
    assert.equal(last.status, 'STATUS_CODE_ERROR');
    assert.equal(last.parentSpanId, '');
    assert.deepEqual(ex.stats(), { exported: 7, dropped: 0, failed: 0, queued: 0 });
  });

  it('bounds its queue: spans beyond maxQueue are dropped and counted, never blocking', async () => {
    receiver.requests.length = 0;
    receiver.spans.length = 0;
    const ex = new OtlpTraceExporter({
      endpoint: receiver.endpoint,
      serviceName: 'trellis-node.test',
      maxBatch: 100,
      maxQueue: 5,
      flushIntervalMs: 60_000,
    });
    for (let i = 0; i < 12; i++) ex.record(span(i));
    assert.deepEqual(ex.stats(), { exported: 0, dropped: 7, failed: 0, queued: 5 });
    await ex.flush();
    assert.equal(receiver.spans.length, 5);
    await ex.close();
    ex.record(span(99));
    assert.equal(ex.stats().dropped, 8);
  });

  it('sends on the interval, and counts failed batches (collector error, collector gone)', async () => {
    receiver.requests.length = 0;
    receiver.spans.length = 0;
    const ex = new OtlpTraceExporter({ endpoint: receiver.endpoint, serviceName: 'x', flushIntervalMs: 50 });
    ex.record(span(1));
    await receiver.waitFor((s) => s.length === 1, 5_000);
    receiver.status = 503;
    ex.record(span(2));
    ex.record(span(3));
    await ex.flush();
    receiver.status = 200;
    assert.equal(ex.stats().failed, 2);
    await ex.close();

    const gone = new OtlpTraceExporter({ endpoint: 'http://127.0.0.1:1', serviceName: 'x', timeoutMs: 2_000 });
    gone.record(span(4));
    await gone.close();
    assert.deepEqual(gone.stats(), { exported: 0, dropped: 0, failed: 1, queued: 0 });
  });

  it('close() does not hang on a collector that never answers', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const silent = createServer(() => {}); // accepts, never responds
    silent.on('connection', (c) => sockets.add(c));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as AddressInfo).port;
      const ex = new OtlpTraceExporter({ endpoint: `http://127.0.0.1:${port}`, serviceName: 'x' });
      ex.record(span(1));
      const t0 = Date.now();
      await ex.close(300);
      assert.ok(Date.now() - t0 < 2_000);
      assert.equal(ex.stats().exported, 0);
      assert.equal(ex.stats().queued, 0);
    } finally {
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});
