// Config updates under load, rejected configs, close() draining, and the filter chain: async
// filters, local replies, response header hooks, access records, and the retry / circuit
// breaker extension points.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { L7ConfigError } from '../../../src/proxy/l7/config.js';
import { defaultFilters } from '../../../src/proxy/l7/engine.js';
import type { HttpFilterFactory } from '../../../src/proxy/l7/filter.js';
import type { AccessLogRecord } from '../../../src/proxy/l7/access-log.js';
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
} from './helpers.js';

function oneCluster(cluster: string, backend: Echo) {
  return l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster(cluster)])])],
    [edsCluster(cluster)],
    [cla(cluster, [{ port: backend.port }])],
  );
}

test('update() while requests are in flight: none fail, each finishes with its config, old pools close', async () => {
  const old = await startEcho('old', { delayMs: 300 });
  const fresh = await startEcho('fresh');
  let oldSockets = 0;
  const proxy = await startEngine(oneCluster('c-old', old), 'rc', {
    connector: (t) => {
      const s = net.connect(t.port, t.address);
      if (t.clusterName === 'c-old') {
        oldSockets++;
        s.once('close', () => oldSockets--);
      }
      return s;
    },
  });
  try {
    const inflight = Array.from({ length: 30 }, (_, i) => get(proxy.port, `/slow/${i}`));
    await sleep(100);
    assert.equal(proxy.engine.inflight, 30);
    proxy.engine.update(oneCluster('c-new', fresh));
    const after = await get(proxy.port, '/after');
    assert.equal(json(after).name, 'fresh', 'new requests use the new config');
    const results = await Promise.all(inflight);
    assert.ok(
      results.every((r) => r.status === 200 && json(r).name === 'old'),
      'requests in flight finish on the old config',
    );
    // The old cluster is gone: its pool closes its connections once they are idle.
    for (let i = 0; i < 50 && oldSockets > 0; i++) await sleep(10);
    assert.equal(oldSockets, 0);
    // Continuous updates under load.
    const stop = Date.now() + 500;
    let failures = 0;
    let done = 0;
    const load = Promise.all(
      Array.from({ length: 10 }, async () => {
        while (Date.now() < stop) {
          const r = await get(proxy.port, '/x');
          if (r.status !== 200) failures++;
          done++;
        }
      }),
    );
    let flip = false;
    while (Date.now() < stop) {
      proxy.engine.update(flip ? oneCluster('c-new', fresh) : oneCluster('c-new2', fresh));
      flip = !flip;
      await sleep(5);
    }
    await load;
    assert.equal(failures, 0);
    assert.ok(done > 50);
  } finally {
    await proxy.close();
    await old.close();
    await fresh.close();
  }
});

test('an unusable config is rejected (L7ConfigError) and the previous one keeps serving', async () => {
  const b = await startEcho('b');
  const proxy = await startEngine(oneCluster('c', b), 'rc');
  try {
    const bad = oneCluster('c', b);
    (bad.routes.get('rc')!.virtual_hosts as { routes: unknown[] }[])[0]!.routes.unshift({
      match: { safe_regex: { regex: '(unclosed' } },
      route: { cluster: 'c' },
    });
    assert.throws(() => proxy.engine.update(bad), L7ConfigError);
    const dup = l7Config(
      [routeConfig('rc', [vhost('a', ['x.com'], [toCluster('c')]), vhost('b', ['X.com'], [toCluster('c')])])],
      [],
      [],
    );
    assert.throws(() => proxy.engine.update(dup), /two virtual hosts/);
    assert.equal(json(await get(proxy.port, '/')).name, 'b');
  } finally {
    await proxy.close();
    await b.close();
  }
});

test('close() lets requests in flight finish, then stops serving', async () => {
  const slow = await startEcho('slow', { delayMs: 200 });
  const proxy = await startEngine(oneCluster('c', slow), 'rc');
  const pending = get(proxy.port, '/', { agent: false });
  await sleep(50);
  const closed = proxy.close();
  const r = await pending;
  assert.equal(r.status, 200);
  await closed;
  await assert.rejects(get(proxy.port, '/', { agent: false }));
  await slow.close();
});

test('filters: async and sync hooks, local replies, response headers, access records, per-config instances', async () => {
  const b = await startEcho('b');
  const created: number[] = [];
  const records: AccessLogRecord[] = [];
  const authz: HttpFilterFactory = {
    name: 'test-authz',
    create(view) {
      created.push(view.config.clusters.size);
      const state = Symbol('authz');
      return {
        // Async: a pretend external authorization call.
        async onRequest(ctx) {
          await sleep(5);
          if (ctx.headers['x-deny'] !== undefined) return { status: 403, body: 'denied', flag: 'UAEX' };
          ctx.filterState.set(state, 'checked');
          return undefined;
        },
        onResponseHeaders(ctx, status, headers) {
          headers['x-authz'] = String(ctx.filterState.get(state) ?? 'none');
          headers['x-status-seen'] = String(status);
        },
        onComplete(_ctx, record) {
          records.push(record);
        },
      };
    },
  };
  const tagger: HttpFilterFactory = {
    name: 'tagger',
    create: () => ({
      onRequest(ctx) {
        ctx.headers['x-route-name'] = ctx.route?.name ?? '-';
      },
    }),
  };
  const config = l7Config(
    [
      routeConfig('rc', [
        vhost('all', ['*'], [{ name: 'the-route', match: { prefix: '/' }, route: { cluster: 'b' } }]),
      ]),
    ],
    [edsCluster('b')],
    [cla('b', [{ port: b.port }])],
  );
  const proxy = await startEngine(config, 'rc', { filters: [authz, tagger, ...defaultFilters()] });
  try {
    const ok = await get(proxy.port, '/ok');
    assert.equal(ok.status, 200);
    assert.equal(json(ok).headers['x-route-name'], 'the-route');
    assert.equal(ok.headers['x-authz'], 'checked');
    assert.equal(ok.headers['x-status-seen'], '200');
    const denied = await get(proxy.port, '/no', { headers: { 'x-deny': '1' } });
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'denied');
    assert.equal(denied.headers['x-authz'], 'none', 'local replies pass through response filters');
    assert.equal(b.count, 1);
    proxy.engine.update(config);
    assert.deepEqual(created, [0, 1, 1], 'one filter instance per config version');
    await sleep(20);
    assert.deepEqual(
      records.map((r) => [r.path, r.status, r.responseFlags.join(), r.routeName]),
      [
        ['/ok', 200, '', 'the-route'],
        ['/no', 403, 'UAEX', 'the-route'],
      ],
    );
  } finally {
    await proxy.close();
    await b.close();
  }
});

test('extension points: a retry filter (onUpstreamFailure) and a circuit breaker (onUpstreamAttempt)', async () => {
  const b = await startEcho('b');
  // A port with nothing listening.
  const dead = http.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const attempts: string[] = [];
  let open = 0;
  const retry: HttpFilterFactory = {
    name: 'retry',
    create: () => ({
      onUpstreamAttempt(ctx, a) {
        attempts.push(`${a.attempt}:${a.host === `127.0.0.1:${deadPort}` ? 'dead' : 'live'}`);
        if (ctx.headers['x-breaker'] !== undefined && open++ >= 0)
          return { status: 503, body: 'upstream overflow', flag: 'UO', details: 'overflow' };
        return undefined;
      },
      onUpstreamFailure: (_ctx, f) => f.attempt < 3 && (f.reason === 'connect' || f.status === 503),
    }),
  };
  const config = l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster('c')])])],
    [edsCluster('c', { lb_policy: 'ROUND_ROBIN' })],
    [cla('c', [{ port: deadPort }, { port: b.port }])],
  );
  const proxy = await startEngine(config, 'rc', { filters: [retry, ...defaultFilters()] });
  try {
    for (let i = 0; i < 4; i++) assert.equal((await get(proxy.port, `/r${i}`)).status, 200);
    assert.ok(attempts.includes('1:dead') && attempts.includes('2:live'), attempts.join(' '));
    // A 503 from the backend is retried too (reason "status"), on the next host.
    const r503 = await get(proxy.port, '/x?status=503');
    assert.equal(r503.status, 503, 'the dead host and the 503 are both retried; attempts run out');
    const breaker = await get(proxy.port, '/b', { headers: { 'x-breaker': '1' } });
    assert.equal(breaker.status, 503);
    assert.equal(breaker.body, 'upstream overflow');
    await sleep(20);
    assert.deepEqual(proxy.logs.find((l) => l.path === '/b')?.responseFlags, ['UO']);
  } finally {
    await proxy.close();
    await b.close();
  }
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
