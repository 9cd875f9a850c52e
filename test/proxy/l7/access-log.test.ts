// Access logs in the L7 engine: one JSON line per request with Envoy's keys, the chosen fields
// only, through the buffered writer to a real file; nothing at all when the filter is absent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultFilters } from '../../../src/proxy/l7/engine.js';
import { accessLogFilter, ACCESS_LOG_FIELDS, type AccessLogField } from '../../../src/proxy/l7/filters/access-log.js';
import { AccessLogWriter } from '../../../src/observe/access-log-writer.js';
import { tracingFilter } from '../../../src/proxy/l7/filters/tracing.js';
import { cla, edsCluster, get, l7Config, routeConfig, startEcho, startEngine, toCluster, vhost } from './helpers.js';
import type { Echo, Running } from './helpers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('access log filter', () => {
  let echo: Echo;
  let dir: string;
  const engines: Running[] = [];

  function config(port: number) {
    return l7Config(
      [routeConfig('r', [vhost('shop', ['*'], [{ name: 'items', ...toCluster('backend', { prefix: '/items' }) }])])],
      [edsCluster('backend')],
      [cla('backend', [{ port }])],
    );
  }

  async function engineWith(path: string | undefined, fields?: AccessLogField[]) {
    const writer = path ? new AccessLogWriter({ path, flushIntervalMs: 10 }) : undefined;
    const e = await startEngine(config(echo.port), 'r', {
      filters: [
        tracingFilter({ sink: { record: () => undefined }, samplingPercent: 0, proxy: 'gateway/test' }),
        ...defaultFilters(),
        ...(writer ? [accessLogFilter({ sink: (l) => writer.write(l), fields, proxy: 'gateway/test' })] : []),
      ],
    });
    engines.push(e);
    return { e, writer };
  }

  function lines(path: string): Record<string, unknown>[] {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  before(async () => {
    echo = await startEcho('backend');
    dir = mkdtempSync(join(tmpdir(), 'trellis-access-log-'));
  });
  after(async () => {
    for (const e of engines) await e.close();
    await echo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes one JSON line per request with all of Envoy default keys', async () => {
    const path = join(dir, 'all.log');
    const { e, writer } = await engineWith(path);
    const r = await get(e.port, '/items/1?q=2', {
      headers: {
        host: 'shop.test',
        'user-agent': 'access-log-test/1',
        'x-forwarded-for': '10.1.2.3',
        traceparent: `00-${TRACE}-00f067aa0ba902b7-01`,
      },
    });
    assert.equal(r.status, 200);
    const miss = await get(e.port, '/nothing', { headers: { host: 'shop.test' } });
    assert.equal(miss.status, 404);
    await writer!.close();
    const got = lines(path);
    assert.equal(got.length, 2);
    const [ok, nr] = got as [Record<string, unknown>, Record<string, unknown>];
    assert.deepEqual(Object.keys(ok), [...ACCESS_LOG_FIELDS]);
    assert.equal(ok.method, 'GET');
    assert.equal(ok.path, '/items/1?q=2');
    assert.equal(ok.protocol, 'HTTP/1.1');
    assert.equal(ok.response_code, 200);
    assert.equal(ok.response_flags, '-');
    assert.equal(ok.authority, 'shop.test');
    assert.equal(ok.user_agent, 'access-log-test/1');
    assert.match(String(ok.x_forwarded_for), /^10\.1\.2\.3/);
    assert.equal(ok.upstream_cluster, 'backend');
    assert.equal(ok.upstream_host, `127.0.0.1:${echo.port}`);
    assert.equal(ok.route_name, 'items');
    assert.equal(ok.trace_id, TRACE);
    assert.equal(ok.proxy, 'gateway/test');
    assert.equal(typeof ok.request_id, 'string');
    assert.ok(Number(ok.bytes_sent) > 0);
    assert.equal(ok.bytes_received, 0);
    assert.equal(typeof ok.duration, 'number');
    assert.equal(typeof ok.upstream_service_time, 'number');
    assert.ok(!Number.isNaN(Date.parse(String(ok.start_time))));
    assert.equal(nr.response_code, 404);
    assert.equal(nr.response_flags, 'NR');
    assert.equal(nr.upstream_cluster, null);
    assert.equal(nr.upstream_service_time, null);
  });

  it('writes only the chosen fields, in their order', async () => {
    const path = join(dir, 'some.log');
    const { e, writer } = await engineWith(path, ['response_code', 'method', 'path']);
    for (let i = 0; i < 5; i++) assert.equal((await get(e.port, `/items/${i}`)).status, 200);
    await writer!.close();
    const got = lines(path);
    assert.equal(got.length, 5);
    for (const [i, l] of got.entries()) assert.deepEqual(l, { response_code: 200, method: 'GET', path: `/items/${i}` });
    assert.equal(writer!.dropped, 0);
  });

  it('is off by default: an engine without the filter writes nothing', async () => {
    const path = join(dir, 'none.log');
    const { e } = await engineWith(undefined);
    assert.equal((await get(e.port, '/items/1')).status, 200);
    assert.equal(existsSync(path), false);
  });
});

describe('access log writer', () => {
  it('drops and counts lines over its bound, never blocking, and flushes the rest on close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-access-log-w-'));
    try {
      const path = join(dir, 'bounded.log');
      const w = new AccessLogWriter({ path, maxBufferedBytes: 1000, flushIntervalMs: 1000 });
      const line = 'x'.repeat(99); // 100 bytes with its newline
      let accepted = 0;
      for (let i = 0; i < 25; i++) if (w.write(line)) accepted++;
      assert.equal(accepted, 10);
      assert.equal(w.dropped, 15);
      await w.close();
      assert.equal(w.write(line), false);
      assert.equal(readFileSync(path, 'utf8'), `${line}\n`.repeat(10));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('appends whole lines from several writers sharing one file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-access-log-w-'));
    try {
      const path = join(dir, 'shared.log');
      const writers = [0, 1, 2].map(() => new AccessLogWriter({ path, flushIntervalMs: 1 }));
      for (let n = 0; n < 2000; n++) writers[n % 3]!.write(JSON.stringify({ n, pad: 'y'.repeat(200) }));
      await Promise.all(writers.map((w) => w.close()));
      const seen = readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as { n: number }).n);
      assert.deepEqual(
        seen.sort((a, b) => a - b),
        Array.from({ length: 2000 }, (_, i) => i),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
