// A worker per core: `trellis up --concurrency 2` runs each node as a primary (the xDS stream,
// /metrics) and two workers; connections are dealt across the workers, a worker that dies
// is replaced while traffic keeps flowing, and the primary's /metrics adds the workers up.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { httpGet, meshUp, tcpExchangeVia, waitFor, type MeshUp } from '../helpers/mesh-up.js';

const ORDERS = 'orders.shop.svc.cluster.local:7000';
const API_SA = 'spiffe://cluster.local/ns/shop/sa/api';

let mesh: MeshUp;
let apiV1Proxy: string;

before(async () => {
  mesh = await meshUp(undefined, 60_000, ['--concurrency', '2']);
  const m = /shop\/api-v1\s.*HTTP_PROXY=(\S+)/.exec(mesh.stdout());
  assert.ok(m, mesh.stdout());
  apiV1Proxy = m[1]!;
});

after(async () => {
  await mesh?.stop();
});

/** Outbound flows node-a wrote for api-v1 -> orders. */
function ordersFlows(): Record<string, unknown>[] {
  return mesh
    .flows('node-a')
    .filter(
      (f) =>
        f.direction === 'outbound' &&
        (f.source as { identity?: string }).identity === API_SA &&
        (f.destination as { service?: string }).service?.startsWith('orders.'),
    );
}

/** The worker processes of a node: children of its primary (pids we started, through trellis up). */
function workerPids(node: string): number[] {
  const pids = execFileSync('pgrep', ['-f', `trellis.js node --name ${node} `], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map(Number);
  const parentOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
  return pids.filter((p) => pids.includes(parentOf(p)));
}

test('connections are dealt across both workers, and /metrics adds the workers up', async () => {
  assert.equal(workerPids('node-a').length, 2);
  const before = ordersFlows().length;
  for (let i = 0; i < 20; i++) {
    const r = await tcpExchangeVia(apiV1Proxy, ORDERS, `ping ${i}\n`);
    assert.equal(r.status, 200);
    assert.equal(r.reply, `orders: ping ${i}\n`);
  }
  await waitFor(() => ordersFlows().length >= before + 20);
  const flows = ordersFlows().slice(before);
  const byWorker = new Map<unknown, number>();
  for (const f of flows) byWorker.set(f.worker, (byWorker.get(f.worker) ?? 0) + 1);
  // Round-robin: each worker took its share of the 20 connections.
  assert.deepEqual([...byWorker.keys()].sort(), [0, 1], JSON.stringify([...byWorker]));
  for (const n of byWorker.values()) assert.ok(n >= 5, JSON.stringify([...byWorker]));

  const metrics = (await httpGet('http://127.0.0.1:15020/metrics')).body;
  const line = metrics
    .split('\n')
    .find(
      (l) =>
        l.startsWith('istio_tcp_connections_closed_total{reporter="source"') &&
        l.includes(`source_principal="${API_SA}"`) &&
        l.includes('destination_service="orders.'),
    );
  assert.ok(line, metrics);
  const closed = Number(line.split(' ').at(-1));
  // Every close the workers wrote a flow record for is counted once, whichever worker it was.
  assert.equal(closed, ordersFlows().length);
});

test('a worker that dies is replaced; traffic keeps flowing through the other meanwhile', async () => {
  const [victim] = workerPids('node-a');
  assert.ok(victim);
  process.kill(victim, 'SIGKILL');
  // A connection dealt to a worker at the instant it dies is lost with it (node:cluster's
  // primary never hears back about it), as with any crash. Once the primary has seen the exit,
  // and while the replacement starts, the surviving worker takes every connection.
  const log = () => readFileSync(join(mesh.stateDir, 'logs', 'node-a.log'), 'utf8');
  await waitFor(() => log().includes('worker exited; replacing it'));
  for (let i = 0; i < 10; i++) {
    const r = await tcpExchangeVia(apiV1Proxy, ORDERS, `again ${i}\n`);
    assert.equal(r.status, 200, `connection ${i} after the worker died`);
  }
  await waitFor(() => {
    const pids = workerPids('node-a');
    return pids.length === 2 && !pids.includes(victim);
  }, 15_000);
  // The replacement (worker 2) received the configuration and serves.
  await waitFor(() => /"worker":"2","msg":"outbound proxy listening"/.test(log()), 15_000);
  const before = ordersFlows().length;
  for (let i = 0; i < 10; i++) assert.equal((await tcpExchangeVia(apiV1Proxy, ORDERS, `new ${i}\n`)).status, 200);
  await waitFor(() => ordersFlows().length >= before + 10);
  assert.ok(
    ordersFlows()
      .slice(before)
      .some((f) => f.worker === 2),
  );
});

test('Ctrl-C stops the primaries and their workers', async () => {
  const pids = [...workerPids('node-a'), ...workerPids('node-b')];
  assert.equal(pids.length, 4);
  await mesh.stop();
  const alive = pids.filter((p) => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  });
  assert.deepEqual(alive, []);
});
