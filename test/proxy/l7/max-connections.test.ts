// Circuit breaker max_connections / max_pending_requests, enforced by the upstream pools: a real
// HTTP/1.1 upstream on loopback holds requests until told; with max_connections 2 and
// max_pending_requests 1, two requests are in flight on two connections, a third waits for a
// connection (and completes once one frees), a fourth is refused at once (503, UO).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cla, closable, edsCluster, get, l7Config, routeConfig, startEngine, vhost } from './helpers.js';

interface Holding {
  port: number;
  /** Requests received, by path, each with its release. */
  held: { path: string; release: () => void }[];
  /** Connections accepted so far, and open now. */
  accepted: number;
  open: number;
  close(): Promise<void>;
}

async function startHolding(): Promise<Holding> {
  const h: Holding = { port: 0, held: [], accepted: 0, open: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    h.held.push({ path: req.url ?? '', release: () => res.end(`done ${req.url ?? ''}`) });
  });
  server.on('connection', (s) => {
    h.accepted++;
    h.open++;
    s.on('close', () => h.open--);
  });
  h.close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.port = (server.address() as AddressInfo).port;
  return h;
}

/** Waits (bounded) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

test('max_connections 2, max_pending_requests 1: 2 in flight, 1 pending served when a connection frees, the 4th 503 UO', async () => {
  const up = await startHolding();
  const config = l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'held' } }])])],
    [edsCluster('held', { circuit_breakers: { thresholds: [{ max_connections: 2, max_pending_requests: 1 }] } })],
    [cla('held', [{ port: up.port }])],
  );
  const proxy = await startEngine(config, 'rc');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  try {
    // Pending includes requests waiting for a connection to be established (Envoy): send the
    // first two one after the other so each gets its own connection.
    const r1 = get(proxy.port, '/1', { agent });
    await until(() => up.held.length === 1, 'request 1 at the upstream');
    const r2 = get(proxy.port, '/2', { agent });
    await until(() => up.held.length === 2, 'request 2 at the upstream');
    assert.equal(up.accepted, 2);

    const r3 = get(proxy.port, '/3', { agent });
    await until(() => proxy.engine.stats().held?.upstream_rq_pending_active === 1, 'request 3 pending');
    assert.equal(up.held.length, 2, 'the pending request is not at the upstream');
    assert.equal(up.accepted, 2, 'no third connection');

    const t0 = process.hrtime.bigint();
    const r4 = await get(proxy.port, '/4', { agent });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`# overflow answered in ${ms.toFixed(1)} ms while the upstream holds its requests`);
    assert.equal(r4.status, 503);
    assert.equal(r4.headers['x-envoy-overloaded'], 'true');
    assert.match(r4.body, /overflow/);
    assert.equal(up.held.length, 2);

    let stats = proxy.engine.stats().held!;
    assert.equal(stats.upstream_cx_active, 2);
    assert.equal(stats.upstream_rq_pending_active, 1);
    assert.equal(stats.upstream_rq_pending_overflow, 1);
    assert.ok(stats.upstream_cx_overflow! >= 1, `upstream_cx_overflow ${stats.upstream_cx_overflow}`);

    // A connection frees: the pending request goes out on it, not on a new connection.
    up.held[0]!.release();
    assert.equal((await r1).status, 200);
    await until(() => up.held.length === 3, 'request 3 at the upstream');
    assert.equal(up.held[2]!.path, '/3');
    assert.equal(up.accepted, 2, 'served on a kept-alive connection');
    up.held[1]!.release();
    up.held[2]!.release();
    const [b2, b3] = await Promise.all([r2, r3]);
    assert.equal(b2.status, 200);
    assert.equal(b3.status, 200);
    assert.equal(b3.body, 'done /3');

    await until(() => proxy.logs.length === 4, 'access logs');
    assert.deepEqual(proxy.logs.find((l) => l.path === '/4')?.responseFlags, ['UO']);
    stats = proxy.engine.stats().held!;
    assert.equal(stats.upstream_rq_pending_active, 0);
    assert.equal(stats.upstream_rq_active, 0);
  } finally {
    agent.destroy();
    await proxy.close();
    await up.close();
  }
});

test('a closed connection gives its slot to a waiting request (max_connections 1)', async () => {
  const up = await startHolding();
  const config = l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'one' } }])])],
    [edsCluster('one', { circuit_breakers: { thresholds: [{ max_connections: 1 }] } })],
    [cla('one', [{ port: up.port }])],
  );
  const proxy = await startEngine(config, 'rc');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  try {
    const r1 = get(proxy.port, '/1', { agent });
    await until(() => up.held.length === 1, 'request 1');
    const r2 = get(proxy.port, '/2', { agent });
    await until(() => proxy.engine.stats().one?.upstream_rq_pending_active === 1, 'request 2 pending');
    // The upstream goes away: request 1's connection closes, and its slot lets request 2 open one.
    await up.close();
    const b1 = await r1;
    assert.equal(b1.status, 503);
    const b2 = await r2;
    // The freed slot let request 2 open a connection (refused: the upstream is gone): UF, not UO.
    assert.equal(b2.status, 503);
    await until(() => proxy.logs.length === 2, 'access logs');
    assert.notDeepEqual(proxy.logs.find((l) => l.path === '/2')?.responseFlags, ['UO']);
    assert.equal(proxy.engine.stats().one!.upstream_cx_active, 0);
  } finally {
    agent.destroy();
    await proxy.close();
    await up.close();
  }
});
