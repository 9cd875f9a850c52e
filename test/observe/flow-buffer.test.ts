// The per-node flow ring buffer: sequence numbers, reads after a seq, oldest-first drops, and
// GET /flows served from it over a real socket.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { DROPPED_HEADER, FlowBuffer, LAST_SEQ_HEADER, serveFlows } from '../../src/observe/flow-buffer.js';
import type { FlowRecord } from '../../src/observe/flows.js';
import { matchesFlow, parseFlowFilter } from '../../src/controlplane/flow-relay.js';

function rec(i: number, extra: Partial<FlowRecord> = {}): FlowRecord {
  return {
    time: new Date(1_700_000_000_000 + i).toISOString(),
    node: 'n',
    direction: 'inbound',
    verdict: 'FORWARDED',
    source: {},
    destination: { address: `10.0.0.1:${i}` },
    ...extra,
  };
}

test('seqs start at 1 and since() returns the records after a seq, oldest first', () => {
  const b = new FlowBuffer(4);
  assert.equal(b.lastSeq, 0);
  assert.deepEqual(b.since(0), []);
  for (let i = 1; i <= 3; i++) b.push(rec(i));
  assert.equal(b.lastSeq, 3);
  assert.deepEqual(
    b.since(0).map((f) => f.seq),
    [1, 2, 3],
  );
  assert.deepEqual(
    b.since(1).map((f) => [f.seq, f.record.destination.address]),
    [
      [2, '10.0.0.1:2'],
      [3, '10.0.0.1:3'],
    ],
  );
  assert.deepEqual(b.since(3), []);
  assert.deepEqual(b.since(99), []);
  assert.deepEqual(
    b.since(0, 2).map((f) => f.seq),
    [1, 2],
  );
  assert.equal(b.dropped, 0);
});

test('a full buffer drops the oldest and counts the drops; a reader behind gets what is left', () => {
  const b = new FlowBuffer(3);
  for (let i = 1; i <= 7; i++) b.push(rec(i));
  assert.equal(b.size, 3);
  assert.equal(b.dropped, 4);
  assert.equal(b.lastSeq, 7);
  assert.deepEqual(
    b.since(0).map((f) => f.seq),
    [5, 6, 7],
  );
  assert.deepEqual(
    b.since(2).map((f) => f.record.destination.address),
    ['10.0.0.1:5', '10.0.0.1:6', '10.0.0.1:7'],
  );
  assert.deepEqual(
    b.since(6).map((f) => f.seq),
    [7],
  );
  assert.throws(() => new FlowBuffer(0), RangeError);
});

test('GET /flows?since=N answers JSON lines with seq and type, and the cursor headers', async () => {
  const b = new FlowBuffer(2);
  for (let i = 1; i <= 3; i++) b.push(rec(i));
  const server = createServer((req, res) => serveFlows(b, req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const res = await fetch(`${base}/flows?since=2`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get(LAST_SEQ_HEADER), '3');
    assert.equal(res.headers.get(DROPPED_HEADER), '1');
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => [l.type, l.seq, (l.destination as { address: string }).address]),
      [['flow', 3, '10.0.0.1:3']],
    );
    const bad = await fetch(`${base}/flows?since=x`, { signal: AbortSignal.timeout(5000) });
    assert.equal(bad.status, 400);
    await bad.text();
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('relay filters: verdict, from/to by "ns/name", identity, service, http status class', () => {
  const denied = rec(1, {
    verdict: 'DENIED',
    source: { identity: 'spiffe://cluster.local/ns/shop/sa/frontend' },
    destination: { workload: 'WorkloadEntry/shop/orders', address: '127.0.0.1:7001' },
  });
  const l7 = rec(2, {
    source: { identity: 'spiffe://cluster.local/ns/shop/sa/gateway' },
    destination: { service: 'api.shop.svc.cluster.local:8080' },
    l7: { method: 'GET', path: '/call', status: 503, latencyMs: 1, flags: [] },
  });
  const f = (q: string) => {
    const p = parseFlowFilter(new URLSearchParams(q));
    assert.ok(typeof p !== 'string', String(p));
    return [denied, l7].filter((r) => matchesFlow(r, p)).map((r) => r.time);
  };
  assert.deepEqual(f('verdict=DENIED'), [denied.time]);
  assert.deepEqual(f('to=shop/orders'), [denied.time]);
  assert.deepEqual(f('from=shop/frontend'), [denied.time]);
  assert.deepEqual(f('to=shop/api'), [l7.time]);
  assert.deepEqual(f('from=sa/gateway'), [l7.time]);
  assert.deepEqual(f('http_status=5xx'), [l7.time]);
  assert.deepEqual(f('http_status=404'), []);
  assert.deepEqual(f(`since_time=${Date.parse(l7.time)}`), [l7.time]);
  assert.equal(typeof parseFlowFilter(new URLSearchParams('verdict=DROPPED')), 'string');
  assert.equal(typeof parseFlowFilter(new URLSearchParams('http_status=600')), 'string');
});

test('L7 records are stored as columns and built on read; an RBAC denial names its policy', () => {
  const b = new FlowBuffer(4);
  const origin = { node: 'node-a', worker: 1, role: 'waypoint' as const };
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  b.pushL7(
    origin,
    'FORWARDED',
    Date.parse('2026-11-24T00:00:00Z'),
    3,
    200,
    10,
    0,
    [],
    'GET',
    '/call',
    'spiffe://cluster.local/ns/shop/sa/frontend',
    '127.0.0.1',
    'api.shop.svc.cluster.local:8080',
    '127.0.0.1:9081',
    undefined,
    tp,
  );
  b.pushL7(
    origin,
    'DENIED',
    Date.parse('2026-11-24T00:00:01Z'),
    1,
    403,
    19,
    0,
    ['RBAC'],
    'POST',
    '/admin',
    undefined,
    '127.0.0.1',
    'api.shop.svc.cluster.local:8080',
    undefined,
    'rbac_access_denied_matched_policy[ns[shop]-policy[no-admin]-rule[0]]',
    undefined,
  );
  const [ok, denied] = b.since(0).map((f) => f.record);
  assert.deepEqual(
    { time: ok!.time, worker: ok!.worker, l7: ok!.l7, traceId: ok!.traceId, observationPoint: ok!.observationPoint },
    {
      time: '2026-11-24T00:00:00.000Z',
      worker: 1,
      l7: { method: 'GET', path: '/call', status: 200, latencyMs: 3, flags: [] },
      traceId: '0af7651916cd43dd8448eb211c80319c',
      observationPoint: 'waypoint',
    },
  );
  assert.equal(ok!.reason, undefined);
  assert.equal(denied!.verdict, 'DENIED');
  assert.equal(denied!.policy, 'ns[shop]-policy[no-admin]-rule[0]');
  assert.deepEqual(denied!.l7?.flags, ['RBAC']);
  // L4 records and L7 columns share one sequence and one capacity.
  b.push({ time: 'x', node: 'node-a', direction: 'inbound', verdict: 'FORWARDED', source: {}, destination: {} });
  b.pushL7(
    origin,
    'ERROR',
    0,
    0,
    0,
    0,
    0,
    ['UF'],
    'GET',
    '/',
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  );
  b.pushL7(
    origin,
    'FORWARDED',
    0,
    0,
    200,
    0,
    0,
    [],
    'GET',
    '/last',
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  );
  assert.deepEqual(
    b.since(0).map((f) => [f.seq, f.record.l7?.path ?? f.record.time]),
    [
      [2, '/admin'],
      [3, 'x'],
      [4, '/'],
      [5, '/last'],
    ],
  );
});
