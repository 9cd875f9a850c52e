// Load balancing: the policies on their own (exact round robin shares, smooth weighting, power
// of two choices, consistent hashing stability), then through the engine over real backends
// (round robin, least request, ring hash on a header, priorities and health status).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLoadBalancer, type LbHost, type LbPolicy } from '../../../src/proxy/l7/load-balancer.js';
import { hash32 } from '../../../src/proxy/l7/hash-policy.js';
import {
  cla,
  edsCluster,
  get,
  json,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  vhost,
  type Echo,
} from './helpers.js';

function hosts(weights: number[]): (LbHost & { name: string })[] {
  return weights.map((weight, i) => ({ name: `h${i}`, key: `10.0.0.${i}:80`, weight, stats: { active: 0 } }));
}

function counts(policy: LbPolicy, hs: (LbHost & { name: string })[], n: number, hash?: (i: number) => number) {
  const lb = createLoadBalancer(policy, hs);
  const c = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const h = lb.pick(hash?.(i)) as (typeof hs)[number];
    c.set(h.name, (c.get(h.name) ?? 0) + 1);
  }
  return hs.map((h) => c.get(h.name) ?? 0);
}

test('round robin: equal weights rotate evenly; weights give exact, smooth shares', () => {
  assert.deepEqual(counts('ROUND_ROBIN', hosts([1, 1, 1]), 300), [100, 100, 100]);
  assert.deepEqual(counts('ROUND_ROBIN', hosts([3, 1]), 400), [300, 100]);
  // Smooth (nginx): weights 5,1,1 interleave as a a b a c a a, not a a a a a b c.
  const hs = hosts([5, 1, 1]);
  const lb = createLoadBalancer('ROUND_ROBIN', hs);
  const seq = Array.from({ length: 7 }, () => (lb.pick(undefined) as (typeof hs)[number]).name).join(' ');
  const firstIsA = seq.startsWith('h0');
  // The rotation starts at a random host only for equal weights; weighted starts at zero credit.
  assert.ok(firstIsA);
  assert.equal(seq, 'h0 h0 h1 h0 h2 h0 h0');
});

test('random: weighted shares within 3%', () => {
  const [a, b] = counts('RANDOM', hosts([9, 1]), 20_000);
  assert.ok(Math.abs(a! / 20_000 - 0.9) < 0.03, String(a));
  assert.equal(a! + b!, 20_000);
});

test('least request: power of two choices avoids the busy host', () => {
  const hs = hosts([1, 1]);
  hs[0]!.stats.active = 10;
  assert.deepEqual(counts('LEAST_REQUEST', hs, 1000), [0, 1000]);
  const three = hosts([1, 1, 1]);
  three[0]!.stats.active = 5;
  three[1]!.stats.active = 5;
  // The idle host wins every pair it is in (2/3 of the pairs).
  const [x, y, z] = counts('LEAST_REQUEST', three, 3000);
  assert.ok(z! > 1800 && x! + y! < 1200, `${x} ${y} ${z}`);
});

for (const policy of ['RING_HASH', 'MAGLEV'] as const) {
  test(`${policy}: a key keeps its host; removing a host moves its keys and few others`, () => {
    const all = hosts([1, 1, 1, 1, 1]);
    const before = createLoadBalancer(policy, all);
    const after = createLoadBalancer(policy, all.slice(0, 4));
    let others = 0;
    let othersMoved = 0;
    const perHost = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const h = hash32(`user-${i}`);
      const a = before.pick(h) as (typeof all)[number];
      assert.equal(before.pick(h), a, 'deterministic');
      perHost.set(a.name, (perHost.get(a.name) ?? 0) + 1);
      const b = after.pick(h) as (typeof all)[number];
      assert.notEqual(b.name, 'h4');
      if (a.name !== 'h4') {
        others++;
        if (b.name !== a.name) othersMoved++;
      }
    }
    // Roughly even spread (each of 5 hosts 20% +- 8%), and a consistent hash: most keys of
    // the remaining hosts stay (a modulo hash would move 80% of them).
    for (const n of perHost.values()) assert.ok(Math.abs(n / 10_000 - 0.2) < 0.08, String([...perHost]));
    assert.ok(othersMoved / others < 0.15, `${othersMoved} of ${others} moved`);
  });
}

async function withBackends(names: string[], fn: (bs: Echo[]) => Promise<void>, delays: number[] = []): Promise<void> {
  const bs = await Promise.all(names.map((n, i) => startEcho(n, { delayMs: delays[i] })));
  try {
    await fn(bs);
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
}

function clusterOver(bs: Echo[], clusterExtra: Record<string, unknown>, routeExtra: Record<string, unknown> = {}) {
  return l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'c', ...routeExtra } }])])],
    [edsCluster('c', clusterExtra)],
    [
      cla(
        'c',
        bs.map((b) => ({ port: b.port })),
      ),
    ],
  );
}

test('through the engine: round robin spreads exactly, least request favours the fast backend', async () => {
  await withBackends(['a', 'b', 'c'], async (bs) => {
    const proxy = await startEngine(clusterOver(bs, { lb_policy: 'ROUND_ROBIN' }), 'rc');
    try {
      for (let i = 0; i < 30; i++) await Promise.all(Array.from({ length: 10 }, () => get(proxy.port, '/')));
      assert.deepEqual(
        bs.map((b) => b.count),
        [100, 100, 100],
      );
    } finally {
      await proxy.close();
    }
  });
  // One slow backend (100 ms) and two fast ones, 30 concurrent clients for ~1 s: the slow one
  // holds requests, so least request sends it far fewer than a third.
  await withBackends(
    ['slow', 'fast1', 'fast2'],
    async (bs) => {
      const proxy = await startEngine(clusterOver(bs, { lb_policy: 'LEAST_REQUEST' }), 'rc');
      try {
        const until = Date.now() + 1000;
        await Promise.all(
          Array.from({ length: 30 }, async () => {
            while (Date.now() < until) await get(proxy.port, '/');
          }),
        );
        const total = bs.reduce((s, b) => s + b.count, 0);
        assert.ok(bs[0]!.count / total < 0.15, `slow got ${bs[0]!.count} of ${total}`);
      } finally {
        await proxy.close();
      }
    },
    [100, 0, 0],
  );
});

test('through the engine: ring hash on a header sticks; priorities and health status pick the hosts', async () => {
  await withBackends(['a', 'b', 'c', 'd'], async (bs) => {
    const proxy = await startEngine(
      clusterOver(bs, { lb_policy: 'RING_HASH' }, { hash_policy: [{ header: { header_name: 'x-user' } }] }),
      'rc',
    );
    try {
      const seen = new Map<string, Set<string>>();
      for (let round = 0; round < 3; round++) {
        for (let u = 0; u < 20; u++) {
          const name = json(await get(proxy.port, '/', { headers: { 'x-user': `u${u}` } })).name;
          seen.set(`u${u}`, (seen.get(`u${u}`) ?? new Set()).add(name));
        }
      }
      for (const [user, names] of seen) assert.equal(names.size, 1, `${user} moved: ${[...names]}`);
      assert.ok(new Set([...seen.values()].map((s) => [...s][0])).size > 1, 'users spread over hosts');
    } finally {
      await proxy.close();
    }
  });
  await withBackends(['p0-unhealthy', 'p0-draining', 'p1', 'p2'], async (bs) => {
    const config = l7Config(
      [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'c' } }])])],
      [edsCluster('c')],
      [
        cla('c', [
          { port: bs[0]!.port, priority: 0, health: 'UNHEALTHY' },
          { port: bs[1]!.port, priority: 0, health: 'DRAINING' },
          // proto-loader gives numbers as strings and enums possibly as numbers.
          { port: bs[2]!.port, priority: 1, health: '1' },
          { port: bs[3]!.port, priority: 2 },
        ]),
      ],
    );
    const proxy = await startEngine(config, 'rc');
    try {
      for (let i = 0; i < 10; i++) assert.equal(json(await get(proxy.port, '/')).name, 'p1');
    } finally {
      await proxy.close();
    }
  });
});
