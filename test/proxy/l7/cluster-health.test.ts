// Cluster health in the L7 engine, over real sockets and real upstreams on 127.0.0.1: outlier
// detection (a fault fleet with one 503 host, growing ejection times), active HTTP and TCP health
// checks, Envoy's priority load and panic threshold (unit), priority failover and fail-back, and
// draining under a rolling replacement of every endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { PriorityLoadBalancer, type LbHost } from '../../../src/proxy/l7/load-balancer.js';
import type { ClusterState, HostState } from '../../../src/proxy/l7/cluster.js';
import type { EnvoyObject } from '../../../src/proxy/l7/config.js';
import { HostHealth, OutlierDetector, outlierSettings } from '../../../src/proxy/l7/outlier-detection.js';
import { healthCheckSettings } from '../../../src/proxy/l7/health-check.js';
import { loadDocuments } from '../../../src/config/load.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import { compileModel } from '../../../src/model/compile.js';
import { TYPE_URLS } from '../../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../../src/xds/translate/proxyless.js';
import { decodedAsClient } from '../../helpers/envoy-protos.js';
import {
  cla,
  closable,
  edsCluster,
  get,
  json,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  vhost,
  type Echo,
  type Running,
} from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms for at most `ms`; fails the test when it never holds. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

interface Member {
  readonly name: string;
  readonly port: number;
  /** Status of normal requests. */
  status: number;
  /** Status of GET /healthz. */
  health: number;
  count: number;
  hcCount: number;
  lastHcHeaders: http.IncomingHttpHeaders | undefined;
  close(): Promise<void>;
}

/** A backend answering `status` (and `health` on /healthz) with its name in x-backend. */
async function member(name: string, status = 200): Promise<Member> {
  const m: Member = {
    name,
    port: 0,
    status,
    health: 200,
    count: 0,
    hcCount: 0,
    lastHcHeaders: undefined,
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/healthz') {
      m.hcCount++;
      m.lastHcHeaders = req.headers;
      res.writeHead(m.health).end();
      return;
    }
    m.count++;
    res.writeHead(m.status, { 'x-backend': name, 'content-type': 'text/plain' }).end(name);
  });
  m.close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (m as { port: number }).port = (server.address() as AddressInfo).port;
  return m;
}

const ROUTES = routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'c' } }])]);

function config(
  endpoints: { port: number; priority?: number; health?: string }[],
  clusterExtra: EnvoyObject,
  assignment?: EnvoyObject,
) {
  return l7Config([ROUTES], [edsCluster('c', clusterExtra)], [assignment ?? cla('c', endpoints)]);
}

function cluster(proxy: Running): ClusterState {
  const c = proxy.engine.clusters.get('c');
  assert.ok(c);
  return c;
}

function hostOf(proxy: Running, port: number): HostState {
  const h = cluster(proxy).hosts.find((x) => x.port === port);
  assert.ok(h, `host ${port}`);
  return h;
}

/** `total` requests with `concurrency` clients; the status of each, in order of completion. */
async function load(port: number, total: number, concurrency: number, path = '/'): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  const deadline = Date.now() + 60_000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total && Date.now() < deadline) {
        next++;
        try {
          statuses.push((await get(port, path)).status);
        } catch {
          statuses.push(0);
        }
      }
    }),
  );
  return statuses;
}

// --- outlier detection -------------------------------------------------------------------------

test('outlier detection: a fault fleet (3 hosts, one answering 503) ejects the bad host; failures only before', async () => {
  const fleet = [await member('good1'), await member('bad', 503), await member('good2')];
  const proxy = await startEngine(
    config(
      fleet.map((m) => ({ port: m.port })),
      // Envoy defaults otherwise: consecutive_5xx 5, enforcing 100%, max_ejection_percent 10% (the first ejection is always allowed).
      { outlier_detection: { interval: '1s', base_ejection_time: '30s' } },
    ),
    'rc',
  );
  try {
    const statuses = await load(proxy.port, 10_000, 16);
    const failed = statuses.filter((s) => s !== 200).length;
    const lastFailure = statuses.lastIndexOf(503);
    const rate = ((statuses.length - failed) / statuses.length) * 100;
    console.log(
      `outlier fault fleet: ${statuses.length} requests, ${failed} failed (success ${rate.toFixed(2)}%), ` +
        `last failure at #${lastFailure}, bad host got ${fleet[1]!.count}`,
    );
    assert.equal(statuses.length, 10_000);
    // 5 consecutive 503s eject; with 16 requests in flight a few more may already be on their way.
    assert.ok(failed >= 5 && failed <= 5 + 16, `failed ${failed}`);
    assert.equal(fleet[1]!.count, failed, 'every failure is the bad host, and it got nothing after');
    assert.ok(lastFailure < 200, `failures happen only before the ejection (last at ${lastFailure})`);
    assert.ok(rate >= 99.7, `success ${rate}`);
    const od = cluster(proxy).outlier!;
    assert.equal(od.stats.outlier_detection_ejections_active, 1);
    assert.equal(od.stats.ejections_enforced_total, 1);
    assert.equal(od.stats.ejections_enforced_consecutive_5xx, 1);
    assert.equal(hostOf(proxy, fleet[1]!.port).stats.health.ejected, true);
    // The good hosts shared the rest evenly (round robin over the healthy set).
    assert.ok(Math.abs(fleet[0]!.count - fleet[2]!.count) <= 20, `${fleet[0]!.count} vs ${fleet[2]!.count}`);
    // State survives a config update that keeps the cluster and endpoints (a new route object).
    proxy.engine.update(
      l7Config(
        [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'c' } }])])],
        [...proxy.engine.clusters.values()].map((c) => c.raw),
        [
          cla(
            'c',
            fleet.map((m) => ({ port: m.port })),
          ),
        ],
      ),
    );
    assert.equal(hostOf(proxy, fleet[1]!.port).stats.health.ejected, true);
    const after = await load(proxy.port, 300, 8);
    assert.deepEqual(new Set(after), new Set([200]));
  } finally {
    await proxy.close();
    await Promise.all(fleet.map((m) => m.close()));
  }
});

test('outlier detection with retries (retry_on 5xx): the fault fleet reaches 99.9% success', async () => {
  const fleet = [await member('good1'), await member('bad', 503), await member('good2')];
  const routes = routeConfig('rc', [
    vhost(
      'all',
      ['*'],
      [
        {
          match: { prefix: '/' },
          route: { cluster: 'c', retry_policy: { retry_on: '5xx', num_retries: { value: 2 } } },
        },
      ],
    ),
  ]);
  const proxy = await startEngine(
    l7Config(
      [routes],
      [edsCluster('c', { outlier_detection: { interval: '1s', base_ejection_time: '30s' } })],
      [
        cla(
          'c',
          fleet.map((m) => ({ port: m.port })),
        ),
      ],
    ),
    'rc',
  );
  try {
    const statuses = await load(proxy.port, 10_000, 16);
    const failed = statuses.filter((s) => s !== 200).length;
    const rate = ((statuses.length - failed) / statuses.length) * 100;
    console.log(
      `outlier + retries fault fleet: ${statuses.length} requests, ${failed} failed (success ${rate.toFixed(2)}%), ` +
        `bad host got ${fleet[1]!.count}, ejections ${proxy.engine.stats().c?.ejections_enforced_total}`,
    );
    assert.ok(rate >= 99.9, `success ${rate}`);
    assert.equal(proxy.engine.stats().c?.outlier_detection_ejections_active, 1);
  } finally {
    await proxy.close();
    await Promise.all(fleet.map((m) => m.close()));
  }
});

test('outlier detection: ejection time is base x times ejected, capped by max_ejection_time; hosts come back', async () => {
  const fleet = [await member('good1'), await member('bad', 503), await member('good2')];
  const proxy = await startEngine(
    config(
      fleet.map((m) => ({ port: m.port })),
      {
        outlier_detection: {
          consecutive_5xx: { value: 3 },
          interval: '0.05s',
          base_ejection_time: '0.3s',
          max_ejection_time: '0.7s',
        },
      },
    ),
    'rc',
  );
  try {
    const bad = hostOf(proxy, fleet[1]!.port).stats.health;
    const durations: number[] = [];
    let seenAt = 0;
    let stop = false;
    const traffic = Promise.all(
      Array.from({ length: 4 }, async () => {
        const end = Date.now() + 8000;
        while (!stop && Date.now() < end) await get(proxy.port, '/');
      }),
    );
    // Each new ejectedAt is a new ejection; the previous one lasted until its unejection.
    const end = Date.now() + 8000;
    while (durations.length < 4 && Date.now() < end) {
      if (bad.ejected && bad.ejectedAt !== seenAt) {
        if (seenAt !== 0) durations.push(bad.unejectedAt - seenAt);
        seenAt = bad.ejectedAt;
      }
      await sleep(2);
    }
    stop = true;
    await traffic;
    console.log(`ejection durations (ms): ${durations.join(', ')}`);
    assert.equal(durations.length, 4, `saw ${durations.length} completed ejections`);
    const [d1, d2, d3, d4] = durations as [number, number, number, number];
    // Back at the first 50 ms sweep after 300, 600, then 700 ms (the cap).
    assert.ok(d1 >= 300 && d1 < 450, `first ${d1}`);
    assert.ok(d2 >= 600 && d2 < 750, `second ${d2}`);
    assert.ok(d3 >= 700 && d3 < 880, `third (capped) ${d3}`);
    assert.ok(d4 >= 700 && d4 < 880, `fourth (capped) ${d4}`);
  } finally {
    await proxy.close();
    await Promise.all(fleet.map((m) => m.close()));
  }
});

test('outlier detector: Envoy defaults, gateway failures only when enforced, max ejection percent', () => {
  const { settings, unsupported } = outlierSettings({});
  assert.deepEqual(settings, {
    consecutive5xx: 5,
    consecutiveGateway: 5,
    enforcing5xx: 100,
    enforcingGateway: 0,
    intervalMs: 10_000,
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectionPercent: 10,
    unejectOnHealthCheck: true,
  });
  assert.deepEqual(unsupported, []);
  assert.deepEqual(outlierSettings({ enforcing_success_rate: { value: 100 } }).unsupported, ['enforcing_success_rate']);
  const mk = () => ({ health: new HostHealth() });
  const hosts = Array.from({ length: 10 }, mk);
  // Gateway errors alone: the 5xx detector still fires at 5 (gateway detection is not enforced by default).
  const od = new OutlierDetector(outlierSettings({ consecutive_5xx: { value: 50 } }).settings);
  try {
    od.setHosts(hosts);
    for (let i = 0; i < 10; i++) od.reportStatus(hosts[0]!, 503);
    assert.equal(hosts[0]!.health.ejected, false);
    assert.equal(od.stats.ejections_detected_consecutive_gateway_failure, 2);
    assert.equal(od.stats.ejections_enforced_total, 0);
    // A success resets the count.
    for (let i = 0; i < 49; i++) od.reportStatus(hosts[1]!, 500);
    od.reportStatus(hosts[1]!, 200);
    od.reportStatus(hosts[1]!, 500);
    assert.equal(hosts[1]!.health.ejected, false);
    for (let i = 0; i < 49; i++) od.reportStatus(hosts[1]!, 500);
    assert.equal(hosts[1]!.health.ejected, true);
    // 10% of 10 hosts: the second ejection would be 20%: overflow.
    for (let i = 0; i < 50; i++) od.reportStatus(hosts[2]!, 500);
    assert.equal(hosts[2]!.health.ejected, false);
    assert.equal(od.stats.ejections_overflow, 1);
    assert.equal(od.stats.outlier_detection_ejections_active, 1);
  } finally {
    od.stop();
  }
  const gw = new OutlierDetector(
    outlierSettings({ consecutive_5xx: { value: 0 }, enforcing_consecutive_gateway_failure: { value: 100 } }).settings,
  );
  try {
    gw.setHosts(hosts.slice(3));
    for (let i = 0; i < 20; i++) gw.reportStatus(hosts[3]!, 500);
    assert.equal(hosts[3]!.health.ejected, false, '500 is not a gateway error, consecutive_5xx 0 never fires');
    for (let i = 0; i < 4; i++) gw.reportLocalFailure(hosts[4]!, false);
    gw.reportLocalFailure(hosts[4]!, true);
    assert.equal(hosts[4]!.health.ejected, true, 'connect failures and timeouts are gateway errors');
  } finally {
    gw.stop();
  }
});

// --- active health checks ----------------------------------------------------------------------

const HTTP_HC = {
  health_checks: [
    {
      timeout: '0.5s',
      interval: '0.05s',
      unhealthy_threshold: { value: 2 },
      healthy_threshold: { value: 2 },
      http_health_check: { path: '/healthz' },
    },
  ],
};

test('active HTTP health checks: a failing host gets no traffic and comes back after healthy_threshold', async () => {
  const fleet = [await member('a'), await member('b'), await member('c')];
  const proxy = await startEngine(
    config(
      fleet.map((m) => ({ port: m.port })),
      HTTP_HC,
    ),
    'rc',
  );
  try {
    await until(() => cluster(proxy).hosts.every((h) => h.stats.health.healthy), 3000, 'first checks');
    assert.equal(fleet[0]!.lastHcHeaders?.host, 'c', 'Host is the cluster name');
    assert.equal(fleet[0]!.lastHcHeaders?.['user-agent'], 'Envoy/HC');
    fleet[1]!.health = 503; // not in expected_statuses (200): unhealthy at once
    await until(() => !hostOf(proxy, fleet[1]!.port).stats.health.healthy, 3000, 'b unhealthy');
    const before = fleet[1]!.count;
    const statuses = await load(proxy.port, 60, 4);
    assert.deepEqual(new Set(statuses), new Set([200]));
    assert.equal(fleet[1]!.count, before, 'no traffic to the failing host');
    fleet[1]!.health = 200;
    const t0 = Date.now();
    await until(() => hostOf(proxy, fleet[1]!.port).stats.health.healthy, 3000, 'b healthy again');
    assert.ok(Date.now() - t0 >= 50, 'two successes (one interval apart) are needed');
    await load(proxy.port, 60, 4);
    assert.ok(fleet[1]!.count > before + 10, `b is back: ${fleet[1]!.count - before}`);
  } finally {
    await proxy.close();
    // After close, no more probes (one already on the wire at close may still land: let it).
    await sleep(50);
    const probes = fleet.map((m) => m.hcCount);
    await sleep(150);
    await Promise.all(fleet.map((m) => m.close()));
    assert.deepEqual(
      fleet.map((m) => m.hcCount),
      probes,
    );
  }
});

test('a passed active health check ends an outlier ejection (successful_active_health_check_uneject_host)', async () => {
  for (const uneject of [true, false]) {
    const fleet = [await member('good1'), await member('bad', 503), await member('good2')];
    const proxy = await startEngine(
      config(
        fleet.map((m) => ({ port: m.port })),
        {
          ...HTTP_HC,
          outlier_detection: {
            consecutive_5xx: { value: 3 },
            base_ejection_time: '30s',
            successful_active_health_check_uneject_host: uneject,
          },
        },
      ),
      'rc',
    );
    try {
      await until(() => cluster(proxy).hosts.every((h) => h.stats.health.healthy), 3000, 'first checks');
      const bad = hostOf(proxy, fleet[1]!.port).stats.health;
      await load(proxy.port, 30, 1);
      // Counted, not sampled: with uneject on, a passing check (every 50 ms) may already have
      // brought it back on a busy machine.
      assert.ok((cluster(proxy).outlier?.stats.ejections_enforced_total ?? 0) >= 1, 'bad was ejected');
      // /healthz of "bad" answers 200: the next check (50 ms) brings it back, or not.
      await sleep(300);
      assert.equal(bad.ejected, !uneject, `uneject ${uneject}`);
    } finally {
      await proxy.close();
      await Promise.all(fleet.map((m) => m.close()));
    }
  }
});

test('active TCP health checks (connect only) exclude a host that refuses connections; bad config is reported', async () => {
  const up = await member('up');
  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const proxy = await startEngine(
    config([{ port: up.port }, { port: deadPort }], {
      // Panic off: with one of two hosts failing (50% healthy) the default 50% is not panic anyway.
      health_checks: [
        { timeout: '0.3s', interval: '0.05s', unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} },
      ],
    }),
    'rc',
  );
  try {
    await until(() => hostOf(proxy, up.port).stats.health.healthy, 3000, 'up healthy');
    await sleep(200);
    assert.equal(hostOf(proxy, deadPort).stats.health.healthy, false);
    const statuses = await load(proxy.port, 40, 4);
    assert.deepEqual(new Set(statuses), new Set([200]), 'no connection failures: the dead host is excluded');
    assert.equal(up.count, 40);
  } finally {
    await proxy.close();
    await up.close();
  }
  assert.match(String(healthCheckSettings('c', [{ timeout: '1s', interval: '1s' }])), /threshold/);
  assert.match(
    String(
      healthCheckSettings('c', [
        { timeout: '1s', interval: '1s', unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: {} },
      ]),
    ),
    /only http_health_check and tcp_health_check/,
  );
  const s = healthCheckSettings('c', [
    { timeout: '1s', interval: '1s', unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: { path: '/h' } },
  ]);
  assert.ok(s && typeof s === 'object');
  assert.deepEqual(s.http?.expected, [[200, 201]], 'default expected status: 200 only');
});

// --- priority load and panic -------------------------------------------------------------------

interface TH extends LbHost {
  readonly name: string;
  healthy: boolean;
}

function levels(spec: number[][]): { priority: number; hosts: TH[] }[] {
  return spec.map((healthy, p) => ({
    priority: p,
    hosts: healthy.map((h, i) => ({
      name: `p${p}h${i}`,
      key: `10.0.${p}.${i}:80`,
      weight: 1,
      stats: { active: 0 },
      healthy: h === 1,
    })),
  }));
}

function priorityLb(spec: number[][], panicThreshold = 50) {
  const ls = levels(spec);
  const source = { epoch: 0 };
  const lb = new PriorityLoadBalancer<TH>(
    'ROUND_ROBIN',
    ls,
    {},
    {
      panicThreshold,
      overprovisioningFactor: 140,
      isHealthy: (h) => h.healthy,
      source,
    },
  );
  return { lb, ls, source };
}

test('priority load (overprovisioning 1.4) and panic threshold, as Envoy computes them', () => {
  // All healthy: everything to priority 0.
  assert.deepEqual(priorityLb([[1, 1], [1]]).lb.loads, [100, 0]);
  // Half of P0 healthy: 70% there, the rest spills to P1.
  assert.deepEqual(priorityLb([[1, 0], [1]]).lb.loads, [70, 30]);
  // P0 all down: P1 takes all; none in panic (total health 100).
  const down = priorityLb([[0, 0], [1]]);
  assert.deepEqual(down.lb.loads, [0, 100]);
  assert.deepEqual(down.lb.panic, [false, false]);
  // One level, 1 of 3 healthy (33% < 50%): panic, every host is used.
  const panic = priorityLb([[1, 0, 0]]);
  assert.deepEqual(panic.lb.panic, [true]);
  const names = new Set(Array.from({ length: 30 }, () => panic.lb.pick(undefined)!.name));
  assert.equal(names.size, 3);
  // Panic threshold 0: only the healthy host; nothing healthy: no host.
  const noPanic = priorityLb([[1, 0, 0]], 0);
  assert.deepEqual(new Set(Array.from({ length: 30 }, () => noPanic.lb.pick(undefined)!.name)), new Set(['p0h0']));
  assert.equal(priorityLb([[0, 0]], 0).lb.pick(undefined), undefined);
  // 2 of 3 healthy (66%): no panic, only the two.
  const ok = priorityLb([[1, 1, 0]]);
  assert.deepEqual(new Set(Array.from({ length: 30 }, () => ok.lb.pick(undefined)!.name)), new Set(['p0h0', 'p0h1']));
  // Everything down, two levels: total panic, load by host count.
  assert.deepEqual(priorityLb([[0, 0, 0], [0]]).lb.loads, [75, 25]);
  // Health changes are seen on the next pick after the epoch moves.
  const live = priorityLb([[1, 1], [1]]);
  live.ls[0]!.hosts.forEach((h) => (h.healthy = false));
  assert.equal(live.lb.pick(undefined)!.name.startsWith('p0'), true, 'no recompute without an epoch change');
  live.source.epoch++;
  assert.equal(live.lb.pick(undefined)!.name, 'p1h0');
  assert.deepEqual(live.lb.loads, [0, 100]);
});

test('priority failover: priority 1 takes over when priority 0 fails its health checks, and gives back', async () => {
  const p0 = [await member('p0a'), await member('p0b')];
  const p1 = await member('p1');
  const proxy = await startEngine(
    config(
      [
        { port: p0[0]!.port, priority: 0 },
        { port: p0[1]!.port, priority: 0 },
        { port: p1.port, priority: 1 },
      ],
      HTTP_HC,
    ),
    'rc',
  );
  const names = async (n: number) => {
    const c = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await get(proxy.port, '/');
      assert.equal(r.status, 200);
      const name = String(r.headers['x-backend']);
      c.set(name, (c.get(name) ?? 0) + 1);
    }
    return c;
  };
  try {
    await until(() => cluster(proxy).hosts.every((h) => h.stats.health.healthy), 3000, 'first checks');
    assert.equal((await names(40)).get('p1'), undefined, 'all healthy: priority 0 only');
    p0[0]!.health = 500;
    await until(() => !hostOf(proxy, p0[0]!.port).stats.health.healthy, 3000, 'p0a unhealthy');
    // P0 health min(100, 1.4 x 1/2) = 70%: P1 gets 30%.
    const split = await names(400);
    const share = (split.get('p1') ?? 0) / 400;
    console.log(`half of priority 0 down: priority 1 share ${(share * 100).toFixed(1)}% (expected 30%)`);
    assert.ok(share > 0.2 && share < 0.4, `p1 share ${share}`);
    assert.equal(split.get('p0a'), undefined);
    p0[1]!.health = 500;
    await until(() => !hostOf(proxy, p0[1]!.port).stats.health.healthy, 3000, 'p0b unhealthy');
    assert.deepEqual([...(await names(40)).keys()], ['p1'], 'priority 0 down: all to priority 1');
    p0[0]!.health = 200;
    p0[1]!.health = 200;
    await until(() => cluster(proxy).hosts.every((h) => h.stats.health.healthy), 3000, 'recovery');
    const back = await names(40);
    assert.equal(back.get('p1'), undefined, 'fail back to priority 0');
  } finally {
    await proxy.close();
    await Promise.all([...p0, p1].map((m) => m.close()));
  }
});

test('outlier ejection drives failover: an ejected priority 0 host sends its share to priority 1', async () => {
  const p0 = await member('p0', 503);
  const p1 = await member('p1');
  const proxy = await startEngine(
    config(
      [
        { port: p0.port, priority: 0 },
        { port: p1.port, priority: 1 },
      ],
      {
        outlier_detection: { interval: '10s', base_ejection_time: '30s', max_ejection_percent: { value: 100 } },
      },
    ),
    'rc',
  );
  try {
    const statuses = await load(proxy.port, 100, 1);
    assert.deepEqual(statuses.slice(0, 5), [503, 503, 503, 503, 503]);
    assert.deepEqual(new Set(statuses.slice(5)), new Set([200]));
    assert.equal(p1.count, 95);
  } finally {
    await proxy.close();
    await Promise.all([p0, p1].map((m) => m.close()));
  }
});

// --- draining ----------------------------------------------------------------------------------

test('draining: a removed endpoint finishes its requests in flight and gets no new ones', async () => {
  const slow = await startEcho('slow', { delayMs: 300 });
  const other = await startEcho('other');
  const proxy = await startEngine(config([{ port: slow.port }], {}), 'rc');
  try {
    const inflight = get(proxy.port, '/');
    await until(() => slow.active === 1, 2000, 'request at the slow backend');
    const old = hostOf(proxy, slow.port).stats;
    proxy.engine.update(config([{ port: other.port }], {}));
    assert.equal(old.draining, true);
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(json(r).name, 'slow');
    for (let i = 0; i < 10; i++) assert.equal(json(await get(proxy.port, '/')).name, 'other');
    assert.equal(slow.count, 1);
    assert.equal(old.active, 0);
  } finally {
    await proxy.close();
    await Promise.all([slow.close(), other.close()]);
  }
});

test('draining: rolling replacement of every endpoint under load (3,000 requests, 16 concurrent) fails nothing', async () => {
  let backends: Echo[] = await Promise.all([0, 1, 2].map((i) => startEcho(`gen0-${i}`, { delayMs: 2 })));
  const retired: Echo[] = [];
  const proxy = await startEngine(
    config(
      backends.map((b) => ({ port: b.port })),
      {},
    ),
    'rc',
  );
  try {
    const loadDone = load(proxy.port, 3000, 16);
    let finished = false;
    void loadDone.then(() => (finished = true));
    const t0 = Date.now();
    // Replace one endpoint at a time, twice over (6 replacements), while the load runs.
    for (let round = 1; round <= 2; round++) {
      for (let i = 0; i < 3 && !finished; i++) {
        await sleep(60);
        const fresh = await startEcho(`gen${round}-${i}`, { delayMs: 2 });
        const old = backends[i]!;
        const oldShared = hostOf(proxy, old.port).stats;
        backends = backends.map((b, j) => (j === i ? fresh : b));
        proxy.engine.update(
          config(
            backends.map((b) => ({ port: b.port })),
            {},
          ),
        );
        // Requests in flight on the old endpoint finish; then it goes away.
        await until(() => oldShared.active === 0 && old.active === 0, 5000, `drain of ${old.name}`);
        const countAtRemoval = old.count;
        await sleep(20);
        assert.equal(old.count, countAtRemoval, `${old.name} got requests after its removal`);
        await old.close();
        retired.push(old);
      }
    }
    const statuses = await loadDone;
    const failed = statuses.filter((s) => s !== 200).length;
    console.log(
      `rolling replacement: ${retired.length} endpoints replaced during ${statuses.length} requests ` +
        `in ${Date.now() - t0} ms, ${failed} failed`,
    );
    assert.equal(statuses.length, 3000);
    assert.ok(retired.length >= 3, `only ${retired.length} replacements happened during the load`);
    assert.equal(failed, 0);
  } finally {
    await proxy.close();
    await Promise.all(backends.map((b) => b.close()));
  }
});

// --- translation -------------------------------------------------------------------------------

const decoded = (body: Readonly<Record<string, unknown>>): EnvoyObject => decodedAsClient(body) as EnvoyObject;

test('DestinationRule outlierDetection, translated as istiod does, ejects in the engine (decoded resources)', async () => {
  const fleet = [await member('good1'), await member('bad', 503), await member('good2')];
  const we = (m: Member) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${m.name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: echo }, ports: { http: ${m.port} } }
`;
  const yaml = `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${fleet.map(we).join('')}---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 8080, targetPort: http }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: demo }
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
`;
  const parsed = parseYamlFile('mesh.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  const snap = proxylessSnapshot(compileModel(loaded.resources));
  const map = (t: string) => new Map([...snap.resources(t)].map(([name, r]) => [name, decoded(r.body)]));
  const l7 = { routes: map(TYPE_URLS.route), clusters: map(TYPE_URLS.cluster), endpoints: map(TYPE_URLS.endpoint) };
  const name = 'outbound|8080||echo.demo.svc.cluster.local';
  const c = l7.clusters.get(name)!;
  const od = c.outlier_detection as Record<string, { value: number } | undefined>;
  assert.equal(od.consecutive_5xx?.value, 3);
  assert.equal(od.enforcing_consecutive_5xx?.value, 100);
  assert.equal(od.max_ejection_percent?.value, 50);
  assert.equal(od.enforcing_success_rate?.value, 0);
  // minHealthPercent unset: panic threshold 0, as istiod sets it.
  assert.equal((c.common_lb_config as { healthy_panic_threshold: { value: number } }).healthy_panic_threshold.value, 0);
  const proxy = await startEngine(l7, 'echo.demo.svc.cluster.local:8080');
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++)
      statuses.push((await get(proxy.port, '/', { headers: { host: 'echo.demo.svc.cluster.local:8080' } })).status);
    assert.equal(statuses.filter((x) => x === 503).length, 3, statuses.join(' '));
    assert.deepEqual(new Set(statuses.slice(statuses.lastIndexOf(503) + 1)), new Set([200]));
    assert.equal(proxy.engine.clusters.get(name)?.outlier?.stats.ejections_enforced_total, 1);
  } finally {
    await proxy.close();
    await Promise.all(fleet.map((m) => m.close()));
  }
});

test('locality failover from the translation: the local zone host is ejected, the same region takes over', async () => {
  const fleet = [await member('zone-a', 503), await member('zone-b'), await member('west')];
  const locs = ['us-east/us-east-1a', 'us-east/us-east-1b', 'us-west/us-west-1a'];
  const yaml = `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${fleet
  .map(
    (m, i) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${m.name}, namespace: demo }
spec: { address: 127.0.0.1, locality: ${locs[i]}, labels: { app: echo }, ports: { http: ${m.port} } }
`,
  )
  .join('')}---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 8080, targetPort: http }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: demo }
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s }
`;
  const parsed = parseYamlFile('mesh.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  const snap = proxylessSnapshot(compileModel(loaded.resources), {
    clientLocality: { region: 'us-east', zone: 'us-east-1a' },
  });
  const map = (t: string) => new Map([...snap.resources(t)].map(([name, r]) => [name, decoded(r.body)]));
  const l7 = { routes: map(TYPE_URLS.route), clusters: map(TYPE_URLS.cluster), endpoints: map(TYPE_URLS.endpoint) };
  const proxy = await startEngine(l7, 'echo.demo.svc.cluster.local:8080');
  try {
    const c = proxy.engine.clusters.get('outbound|8080||echo.demo.svc.cluster.local')!;
    assert.deepEqual(
      c.levels.map((l) => l.hosts.map((h) => h.port)),
      fleet.map((m) => [m.port]),
      'zone, region, rest: priorities 0, 1, 2',
    );
    const names: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await get(proxy.port, '/', { headers: { host: 'echo.demo.svc.cluster.local:8080' } });
      names.push(`${r.status} ${String(r.headers['x-backend'])}`);
    }
    assert.equal(names[0], '503 zone-a');
    assert.deepEqual(new Set(names.slice(1)), new Set(['200 zone-b']), names.join(', '));
    assert.equal(fleet[2]!.count, 0);
  } finally {
    await proxy.close();
    await Promise.all(fleet.map((m) => m.close()));
  }
});

test('draining is bounded: a request that never finishes on a removed endpoint is cut at the drain timeout', async () => {
  const sockets = new Set<net.Socket>();
  const hang = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.resume(); // reads the request, never answers
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  const hangPort = (hang.address() as AddressInfo).port;
  const other = await startEcho('other');
  const proxy = await startEngine(config([{ port: hangPort }], {}), 'rc');
  try {
    const t0 = Date.now();
    const pending = get(proxy.port, '/').then(
      (r) => r.status,
      () => 0,
    );
    await until(() => sockets.size === 1, 2000, 'request at the hanging backend');
    const old = hostOf(proxy, hangPort).stats;
    old.drain(200); // the engine's own drain (on removal) uses 60 s
    proxy.engine.update(config([{ port: other.port }], {}));
    const status = await pending;
    const took = Date.now() - t0;
    assert.ok(status === 503 || status === 0, `status ${status}`);
    assert.ok(took >= 200 && took < 2000, `cut after ${took} ms`);
    assert.equal(json(await get(proxy.port, '/')).name, 'other');
  } finally {
    await proxy.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hang.close(() => r()));
    await other.close();
  }
});
