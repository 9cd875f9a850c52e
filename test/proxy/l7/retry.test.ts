// Retries (RouteAction / VirtualHost retry_policy), retry budgets and circuit breakers
// (Cluster circuit_breakers) in the L7 engine, over real sockets against real upstream servers
// on 127.0.0.1 that fail on purpose: 503s, connection resets, hangs past the per-try timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { EnvoyObject } from '../../../src/proxy/l7/config.js';
import { backOffMs, compileRetryPolicy } from '../../../src/proxy/l7/filters/retry.js';
import { L7ConfigError } from '../../../src/proxy/l7/config.js';
import {
  H2_OPTIONS,
  cla,
  closable,
  edsCluster,
  get,
  h2get,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  vhost,
} from './helpers.js';

type Mode = 'ok' | '503' | 'reset' | 'hang';

interface Faulty {
  port: number;
  /** Requests received. */
  count: number;
  /** Requests in flight. */
  active: number;
  /** How the next request is answered (by request number). */
  mode: (n: number) => Mode;
  close(): Promise<void>;
}

/** An HTTP/1.1 upstream answering each request as `mode(n)` says: 200, 503, a reset connection, or never (until closed). */
async function startFaulty(name: string, mode: (n: number) => Mode): Promise<Faulty> {
  const f: Faulty = { port: 0, count: 0, active: 0, mode, close: async () => {} };
  const server = http.createServer((req, res) => {
    const n = f.count++;
    f.active++;
    let finished = false;
    const done = () => {
      if (!finished) {
        finished = true;
        f.active--;
      }
    };
    res.on('close', done);
    req.resume();
    req.on('end', () => {
      const m = f.mode(n);
      if (m === 'ok') {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
        res.end(`ok from ${name}`);
      } else if (m === '503') {
        res.writeHead(503, { 'content-type': 'text/plain', 'x-backend': name });
        res.end('unavailable');
      } else if (m === 'reset') {
        req.socket.destroy();
      }
      // hang: no answer; the proxy's per-try timeout gives up on it.
    });
  });
  server.keepAliveTimeout = 5000;
  const close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  f.port = (server.address() as AddressInfo).port;
  f.close = close;
  return f;
}

function config(ports: number[], route: EnvoyObject, cluster: EnvoyObject = {}, vh: EnvoyObject = {}) {
  return l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'c', ...route } }], vh)])],
    [edsCluster('c', cluster)],
    [
      cla(
        'c',
        ports.map((port) => ({ port })),
      ),
    ],
  );
}

const ms = (n: number) => ({ seconds: Math.floor(n / 1000), nanos: (n % 1000) * 1_000_000 });

async function closeAll(items: { close(): Promise<void> }[]): Promise<void> {
  await Promise.all(items.map((i) => i.close()));
}

/** Runs `total` requests with `concurrency` clients in flight; bounded by the clients' own timeouts. */
async function load<T>(total: number, concurrency: number, one: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(total);
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      out[i] = await one(i);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

const agent = () => new http.Agent({ keepAlive: true, maxSockets: 256 });

test('retry policy compile: defaults, Envoy values, and what the engine refuses (NACK)', () => {
  const p = compileRetryPolicy({ retry_on: '5xx' }, 'r', false);
  assert.equal(p.numRetries, 1, 'num_retries defaults to 1');
  assert.equal(p.baseIntervalMs, 25, 'base_interval defaults to 25 ms');
  assert.equal(p.maxIntervalMs, 250, 'max_interval defaults to 10x base');
  assert.equal(p.perTryTimeoutMs, 0);
  assert.equal(p.hostReselects, 0);
  const q = compileRetryPolicy(
    {
      retry_on: 'gateway-error,retriable-status-codes,unavailable',
      num_retries: { value: 4 },
      per_try_timeout: '0.1s',
      retry_back_off: { base_interval: ms(10) },
      retriable_status_codes: [409, 429],
      retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
      host_selection_retry_max_attempts: '3',
    },
    'r',
    false,
  );
  assert.equal(q.numRetries, 4);
  assert.equal(q.perTryTimeoutMs, 100);
  assert.equal(q.maxIntervalMs, 100);
  assert.deepEqual(q.statusCodes, [409, 429]);
  assert.equal(q.hostReselects, 3);
  // Fully jittered exponential back-off: retry n waits in [0, (2^n - 1) * base), capped at max.
  for (let n = 1; n <= 6; n++) {
    const ceiling = Math.min((2 ** n - 1) * 10, 100);
    for (let i = 0; i < 200; i++) {
      const d = backOffMs(q, n);
      assert.ok(d >= 0 && d < ceiling, `retry ${n}: ${d} within [0, ${ceiling})`);
    }
  }
  // Unknown retry_on tokens are ignored, as Envoy does.
  assert.equal(compileRetryPolicy({ retry_on: '5xx,bogus' }, 'r', false).numRetries, 1);
  assert.throws(() => compileRetryPolicy({ retry_on: '5xx', num_retries: -1 }, 'r', false), L7ConfigError);
  assert.throws(
    () => compileRetryPolicy({ retry_on: '5xx', retry_back_off: { base_interval: '0s' } }, 'r', false),
    L7ConfigError,
  );
  assert.throws(
    () =>
      compileRetryPolicy(
        { retry_on: '5xx', retry_back_off: { base_interval: '1s', max_interval: '0.5s' } },
        'r',
        false,
      ),
    L7ConfigError,
  );
});

test('each retriable failure is retried on another host: 503, reset, per-try timeout; counters and flags', async () => {
  const ok = await startFaulty('ok', () => 'ok');
  const f503 = await startFaulty('503', () => '503');
  const reset = await startFaulty('reset', () => 'reset');
  const hang = await startFaulty('hang', () => 'hang');
  const ports = [f503.port, reset.port, hang.port, ok.port];
  const proxy = await startEngine(
    config(ports, {
      timeout: '5s',
      retry_policy: {
        retry_on: '5xx',
        num_retries: 3,
        per_try_timeout: ms(150),
        retry_back_off: { base_interval: ms(1) },
        retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
        host_selection_retry_max_attempts: 10,
      },
    }),
    'rc',
  );
  try {
    // Round robin with previous_hosts: every request ends on the healthy host within 4 attempts.
    for (let i = 0; i < 8; i++) {
      const r = await get(proxy.port, `/x${i}`);
      assert.equal(r.status, 200, `request ${i}: ${r.body}`);
      assert.equal(r.body, 'ok from ok');
    }
    assert.ok(f503.count > 0 && reset.count > 0 && hang.count > 0, 'every faulty host was tried');
    const s = proxy.engine.stats().c!;
    assert.ok(s.upstream_rq_retry! > 0, JSON.stringify(s));
    assert.equal(s.upstream_rq_per_try_timeout, hang.count, 'each hang was cut by the per-try timeout');
    assert.equal(ok.count, 8, 'each request reached the healthy host once');
    assert.ok(s.upstream_rq_retry_success! > 0 && s.upstream_rq_retry_success! <= 8, 'retried requests succeeded');
    assert.equal(s.upstream_rq_active, 0);
    assert.equal(s.upstream_rq_retry_active, 0);
  } finally {
    await closeAll([proxy, ok, f503, reset, hang]);
  }
});

test('retries run out: the last failure goes to the client with URX; no policy or num_retries 0: no retry', async () => {
  const bad = await startFaulty('bad', () => '503');
  const hang = await startFaulty('hang', () => 'hang');
  const proxy = await startEngine(
    l7Config(
      [
        routeConfig('rc', [
          vhost(
            'all',
            ['*'],
            [
              {
                match: { prefix: '/retry' },
                route: { cluster: 'bad', retry_policy: { retry_on: '5xx', num_retries: 2 } },
              },
              {
                match: { prefix: '/zero' },
                route: { cluster: 'bad', retry_policy: { retry_on: '5xx', num_retries: 0 } },
              },
              {
                match: { prefix: '/connect-only' },
                route: { cluster: 'bad', retry_policy: { retry_on: 'connect-failure', num_retries: 3 } },
              },
              {
                match: { prefix: '/hang' },
                route: {
                  cluster: 'hang',
                  timeout: '5s',
                  retry_policy: { retry_on: 'connect-failure', per_try_timeout: ms(100) },
                },
              },
              { match: { prefix: '/' }, route: { cluster: 'bad' } },
            ],
            // The virtual host's policy is the fallback only: the routes above carry their own.
            { retry_policy: { retry_on: '5xx', num_retries: 1 } },
          ),
        ]),
      ],
      [edsCluster('bad'), edsCluster('hang')],
      [cla('bad', [{ port: bad.port }]), cla('hang', [{ port: hang.port }])],
    ),
    'rc',
  );
  try {
    let before = bad.count;
    const r = await get(proxy.port, '/retry');
    assert.equal(r.status, 503);
    assert.equal(bad.count - before, 3, '1 + num_retries attempts');
    before = bad.count;
    assert.equal((await get(proxy.port, '/zero')).status, 503);
    assert.equal(bad.count - before, 1, 'num_retries 0: one attempt');
    before = bad.count;
    assert.equal((await get(proxy.port, '/connect-only')).status, 503);
    assert.equal(bad.count - before, 1, 'a 503 is not a connect failure');
    before = bad.count;
    assert.equal((await get(proxy.port, '/other')).status, 503);
    assert.equal(bad.count - before, 2, 'the virtual host policy applies (num_retries 1)');
    // A body that went upstream is never replayed.
    before = bad.count;
    const post = await get(proxy.port, '/retry', { method: 'POST', body: 'payload' });
    assert.equal(post.status, 503);
    assert.equal(bad.count - before, 1, 'a request with a body is not retried');
    // An empty body may retry.
    before = bad.count;
    await get(proxy.port, '/retry', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: '' });
    assert.equal(bad.count - before, 3, 'an empty chunked body is replayable');
    // The per-try timeout without a matching retry_on: 504 UT.
    const t0 = Date.now();
    const h = await get(proxy.port, '/hang');
    assert.equal(h.status, 504);
    console.log(`# per-try timeout answered after ${Date.now() - t0} ms (per_try_timeout 100 ms, route timeout 5 s)`);
    await new Promise((res) => setTimeout(res, 20));
    const flags = (path: string) => proxy.logs.find((l) => l.path === path)?.responseFlags ?? [];
    assert.ok(flags('/retry').includes('URX'), `URX: ${flags('/retry').join(',')}`);
    assert.ok(!flags('/zero').includes('URX'), 'no retries configured: no URX');
    assert.ok(flags('/hang').includes('UT'));
    assert.ok(proxy.engine.stats().bad!.upstream_rq_retry_limit_exceeded! >= 2);
  } finally {
    await closeAll([proxy, bad, hang]);
  }
});

test('gRPC retry_on reads grpc-status of a trailers-only answer; x-envoy-attempt-count', async () => {
  let n = 0;
  const attempts: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    attempts.push(String(headers['x-envoy-attempt-count']));
    stream.on('error', () => {});
    stream.resume();
    // Every other request's first attempt is UNAVAILABLE (trailers-only), then it succeeds.
    if (n++ % 2 === 0) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14' }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  const close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const proxy = await startEngine(
    l7Config(
      [
        routeConfig('rc', [
          vhost(
            'all',
            ['*'],
            [
              {
                match: { prefix: '/demo.Echo/Internal' },
                route: { cluster: 'g', retry_policy: { retry_on: 'internal', num_retries: 2 } },
              },
              {
                match: { prefix: '/' },
                route: { cluster: 'g', retry_policy: { retry_on: 'unavailable,cancelled', num_retries: 2 } },
              },
            ],
            { include_request_attempt_count: true },
          ),
        ]),
      ],
      [edsCluster('g', H2_OPTIONS)],
      [cla('g', [{ port }])],
    ),
    'rc',
  );
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  session.on('error', () => {});
  try {
    const grpcHeaders = { 'content-type': 'application/grpc', te: 'trailers' };
    for (let i = 0; i < 4; i++) {
      const r = await h2get(session, '/demo.Echo/Say', grpcHeaders);
      assert.equal(r.trailers?.['grpc-status'] ?? r.headers['grpc-status'], '0', `call ${i}`);
    }
    assert.deepEqual(attempts, ['1', '2', '1', '2', '1', '2', '1', '2']);
    // UNAVAILABLE is not "internal": no retry.
    n = 0;
    const r = await h2get(session, '/demo.Echo/Internal', grpcHeaders);
    assert.equal(r.headers['grpc-status'], '14');
  } finally {
    session.close();
    await proxy.close();
    await close();
  }
});

test('proof: fault fleet (503 / reset / hang past per_try_timeout), 10,000 requests, success rate >= 99.9%', async () => {
  // Each upstream fails one request in five in its own way, at random.
  const faults: [string, Mode][] = [
    ['a', '503'],
    ['b', 'reset'],
    ['c', 'hang'],
  ];
  const fleet = await Promise.all(
    faults.map(([name, fault]) => startFaulty(name, () => (Math.random() < 0.2 ? fault : 'ok'))),
  );
  const proxy = await startEngine(
    config(
      fleet.map((f) => f.port),
      {
        timeout: '10s',
        retry_policy: {
          retry_on: '5xx',
          num_retries: 5,
          // Well above this loaded machine's normal latency: only the hangs hit it.
          per_try_timeout: ms(400),
          retry_back_off: { base_interval: ms(2) },
          retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
          host_selection_retry_max_attempts: 3,
        },
      },
      { lb_policy: 'RANDOM', circuit_breakers: { thresholds: [{ max_retries: 1000 }] } },
    ),
    'rc',
  );
  const a = agent();
  try {
    const total = 10_000;
    const t0 = Date.now();
    const results = await load(total, 32, (i) =>
      get(proxy.port, `/req/${i}`, { agent: a }).then(
        (r) => r.status,
        () => 0,
      ),
    );
    const elapsed = Date.now() - t0;
    const okCount = results.filter((s) => s === 200).length;
    const rate = okCount / total;
    const s = proxy.engine.stats().c!;
    const attempts = fleet.reduce((n, f) => n + f.count, 0);
    console.log(
      `# fault fleet: ${okCount}/${total} succeeded (${(rate * 100).toFixed(3)}%), ${attempts} upstream attempts, ` +
        `${s.upstream_rq_retry} retries, ${s.upstream_rq_per_try_timeout} per-try timeouts, ` +
        `${s.upstream_rq_retry_overflow} retry overflows, ${elapsed} ms`,
    );
    const failures = new Map<string, number>();
    for (const l of proxy.logs)
      if (l.status !== 200) {
        const k = `${l.status} ${l.responseFlags.join(',')}`;
        failures.set(k, (failures.get(k) ?? 0) + 1);
      }
    if (failures.size > 0) console.log(`# failures: ${JSON.stringify([...failures])}`);
    assert.ok(rate >= 0.999, `success rate ${rate}`);
    assert.ok(s.upstream_rq_retry! > 0 && s.upstream_rq_per_try_timeout! > 0);
    assert.equal(s.upstream_rq_active, 0, 'no attempt left counted in flight');
    assert.equal(s.upstream_rq_retry_active, 0, 'no retry slot leaked');
  } finally {
    a.destroy();
    await closeAll([proxy, ...fleet]);
  }
});

test('proof: retry storm, 200 clients in flight, every upstream failing: retries bounded by the budget', async () => {
  const fleet = await Promise.all(['a', 'b', 'c'].map((n) => startFaulty(n, () => '503')));
  const proxy = await startEngine(
    config(
      fleet.map((f) => f.port),
      { retry_policy: { retry_on: '5xx', num_retries: 3, retry_back_off: { base_interval: ms(5) } } },
      {
        circuit_breakers: {
          thresholds: [
            { priority: 'DEFAULT', retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 3 } },
          ],
        },
      },
    ),
    'rc',
  );
  const a = agent();
  try {
    const total = 4000;
    const results = await load(total, 200, (i) =>
      get(proxy.port, `/storm/${i}`, { agent: a }).then(
        (r) => r.status,
        () => 0,
      ),
    );
    const attempts = fleet.reduce((n, f) => n + f.count, 0);
    const s = proxy.engine.stats().c!;
    const ratio = attempts / total;
    console.log(
      `# retry storm: ${total} requests, ${attempts} upstream attempts (${ratio.toFixed(3)} per request; ` +
        `num_retries alone would allow 4.000), ${s.upstream_rq_retry} retries, ${s.upstream_rq_retry_overflow} refused by the budget`,
    );
    assert.ok(
      results.every((st) => st === 503),
      'every request fails (all upstreams do)',
    );
    assert.equal(attempts, total + s.upstream_rq_retry!, 'every attempt is a request or a counted retry');
    // Retries may be at most 20% of the requests in flight (retries included): <= 25% of first attempts.
    assert.ok(attempts <= total * 1.25 + 3, `attempts ${attempts} within the budget bound ${total * 1.25 + 3}`);
    assert.ok(s.upstream_rq_retry_overflow! > 0, 'the budget refused retries');
    assert.equal(s.upstream_rq_retry_active, 0, 'no retry slot leaked');
  } finally {
    a.destroy();
    await closeAll([proxy, ...fleet]);
  }
});

test('proof: circuit breaker overflow answers 503 UO with x-envoy-overloaded at once, without an attempt', async () => {
  const slow = await startEcho('slow', { delayMs: 800 });
  const breakerConfig = () =>
    l7Config(
      [
        routeConfig('rc', [
          vhost(
            'all',
            ['*'],
            [
              { match: { prefix: '/req' }, route: { cluster: 'by-requests' } },
              { match: { prefix: '/' }, route: { cluster: 'by-pending' } },
            ],
          ),
        ]),
      ],
      [
        edsCluster('by-requests', { circuit_breakers: { thresholds: [{ max_requests: 2 }] } }),
        edsCluster('by-pending', {
          circuit_breakers: { thresholds: [{ max_connections: 1, max_pending_requests: 1 }] },
        }),
      ],
      [cla('by-requests', [{ port: slow.port }]), cla('by-pending', [{ port: slow.port }])],
    );
  const proxy = await startEngine(breakerConfig(), 'rc');
  const a = agent();
  try {
    // by-requests: two requests in flight; by-pending (max_connections 1): one in flight on the
    // only connection, one waiting for it (pending, counted before the connection is up: sent in turn).
    for (const [prefix, cluster, atUpstream] of [
      ['/req', 'by-requests', 2],
      ['/pend', 'by-pending', 1],
    ] as const) {
      const first = get(proxy.port, `${prefix}/1`, { agent: a });
      for (let i = 0; i < 100 && slow.active < 1; i++) await new Promise((r) => setTimeout(r, 10));
      const inflight = [first, get(proxy.port, `${prefix}/2`, { agent: a })];
      // Wait (bounded) until the admitted requests are at the upstream (or pending).
      for (let i = 0; i < 100 && slow.active < atUpstream; i++) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < 100 && atUpstream === 1 && !proxy.engine.stats()[cluster]?.upstream_rq_pending_active; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(slow.active, atUpstream);
      // A new config version (new objects, same clusters) keeps counting the requests in flight.
      proxy.engine.update(breakerConfig());
      const before = slow.count;
      const t0 = process.hrtime.bigint();
      const over = await get(proxy.port, `${prefix}/3`, { agent: a });
      const tookMs = Number(process.hrtime.bigint() - t0) / 1e6;
      console.log(`# ${cluster}: overflow answered in ${tookMs.toFixed(1)} ms (upstream latency 800 ms)`);
      assert.equal(over.status, 503);
      assert.equal(over.headers['x-envoy-overloaded'], 'true');
      assert.equal(slow.count, before, 'no upstream attempt');
      assert.equal(slow.active, atUpstream, 'answered while the admitted requests are still at the upstream');
      const done = await Promise.all(inflight);
      assert.deepEqual(
        done.map((r) => r.status),
        [200, 200],
      );
      assert.equal(proxy.engine.stats()[cluster]!.upstream_rq_pending_overflow, 1);
    }
    await new Promise((r) => setTimeout(r, 20));
    const log = proxy.logs.find((l) => l.path === '/req/3');
    assert.deepEqual(log?.responseFlags, ['UO']);
    // Slots are given back: the cluster serves again.
    assert.equal((await get(proxy.port, '/req/4', { agent: a })).status, 200);
    assert.equal(proxy.engine.stats()['by-requests']!.upstream_rq_active, 0);
  } finally {
    a.destroy();
    await closeAll([proxy, slow]);
  }
});

test('malformed circuit_breakers or retry_policy are refused by update() (NACK); the old config stays', async () => {
  const b = await startEcho('b');
  const proxy = await startEngine(config([b.port], {}), 'rc');
  try {
    assert.throws(
      () =>
        proxy.engine.update(
          config([b.port], {}, { circuit_breakers: { thresholds: [{ retry_budget: { budget_percent: 150 } }] } }),
        ),
      L7ConfigError,
    );
    assert.throws(
      () =>
        proxy.engine.update(
          config([b.port], { retry_policy: { retry_on: '5xx', retry_back_off: { base_interval: '0s' } } }),
        ),
      L7ConfigError,
    );
    assert.equal((await get(proxy.port, '/')).status, 200);
  } finally {
    await closeAll([proxy, b]);
  }
});

test('gRPC timeouts: grpc-timeout (capped by grpc_timeout_header_max) replaces the route timeout; no timeout set: streams are not cut', async () => {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.resume();
    const path = String(headers[':path']);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    // A server stream: a message every 100 ms for ~600 ms, then the trailers.
    let i = 0;
    const tick = setInterval(
      () => {
        if (stream.destroyed) {
          clearInterval(tick);
          return;
        }
        stream.write(Buffer.from([0, 0, 0, 0, 1, 0x30 + (i % 10)]));
        if (++i === 6) {
          clearInterval(tick);
          stream.end();
        }
      },
      path.includes('Fast') ? 1 : 100,
    );
  });
  const close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const proxy = await startEngine(
    l7Config(
      [
        routeConfig('rc', [
          vhost(
            'all',
            ['*'],
            [
              {
                match: { prefix: '/header/' },
                route: { cluster: 'g', timeout: ms(200), max_stream_duration: { grpc_timeout_header_max: '0s' } },
              },
              {
                match: { prefix: '/capped/' },
                route: { cluster: 'g', max_stream_duration: { grpc_timeout_header_max: ms(150) } },
              },
              { match: { prefix: '/' }, route: { cluster: 'g' } },
            ],
          ),
        ]),
      ],
      [edsCluster('g', H2_OPTIONS)],
      [cla('g', [{ port }])],
    ),
    'rc',
  );
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  session.on('error', () => {});
  const grpc = { 'content-type': 'application/grpc', te: 'trailers' };
  const status = (r: { headers: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders }) =>
    String(r.trailers?.['grpc-status'] ?? r.headers['grpc-status']);
  try {
    // No route timeout: a 600 ms stream completes.
    assert.equal(status(await h2get(session, '/plain/Stream', grpc)), '0');
    // grpc-timeout 2S replaces the 200 ms route timeout.
    assert.equal(status(await h2get(session, '/header/Stream', { ...grpc, 'grpc-timeout': '2S' })), '0');
    // grpc-timeout 100m cuts the stream (the response started: a reset, or DEADLINE_EXCEEDED).
    const cut = await h2get(session, '/header/Stream', { ...grpc, 'grpc-timeout': '100m' }).then(
      (r) => status(r),
      () => 'reset',
    );
    assert.ok(cut === 'reset' || cut === '4' || cut === 'undefined', cut);
    // No grpc-timeout, cap 150 ms: the cap applies.
    const capped = await h2get(session, '/capped/Stream', grpc).then(
      (r) => status(r),
      () => 'reset',
    );
    assert.notEqual(capped, '0', 'cut by the 150 ms cap');
    assert.equal(status(await h2get(session, '/capped/Fast', grpc)), '0');
  } finally {
    session.close();
    await proxy.close();
    await close();
  }
});
