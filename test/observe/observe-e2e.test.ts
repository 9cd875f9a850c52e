// trellis observe end to end: `trellis up` on a copy of the shop, requests through the gateway
// (gateway -> frontend -> api via the waypoint -> orders) and a connection the policies deny
// (frontend -> orders), then the CLI reads the nodes' buffered records through the control
// plane's relay: L7 records of the gateway and waypoint, the DENIED L4 record with the policy
// that decided, server-side filters, and -o jsonl that `trellis policy replay --flows` reads.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FlowRecord } from '../../src/observe/flows.js';
import { httpGet, meshUp, tcpExchangeVia, waitFor, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT, runCliAsync } from '../helpers/run-cli.js';

const ORDERS = 'orders.shop.svc.cluster.local:7000';
const CALLS = 3;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

/** One GET through the gateway carrying a W3C traceparent (fetch cannot set Host). */
function tracedCall(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: 8000,
        path: '/call',
        timeout: 5000,
        headers: { host: 'shop.localhost', traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function parse(stdout: string): FlowRecord[] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as FlowRecord);
}

test(
  'trellis observe shows L7 and L4 flow records from every node, filtered by the relay',
  { timeout: 180_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-observe-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    let mesh: MeshUp | undefined;
    try {
      mesh = await meshUp(dir);
      const frontendProxy = /shop\/frontend\s.*HTTP_PROXY=([^\s,]+)/.exec(mesh.stdout())![1]!;
      for (let i = 0; i < CALLS; i++) {
        const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
        assert.equal(r.status, 200, r.body);
      }
      assert.equal(await tracedCall(), 200);
      const denied = await tcpExchangeVia(frontendProxy, ORDERS, 'ping\n').catch(() => ({ status: 0, reply: '' }));
      assert.notEqual(denied.status, 200);

      // The denied record is written when the destination node refuses: wait for it in the log.
      await waitFor(
        () =>
          [...mesh!.flows('node-a'), ...mesh!.flows('node-b')].some(
            (f) => f.verdict === 'DENIED' && f.direction === 'inbound',
          ),
        10_000,
      );

      const all = await runCliAsync(['observe', '-o', 'jsonl', '--since', '1m']);
      assert.equal(all.code, 0, all.stderr);
      const flows = parse(all.stdout);

      // L7: one record per request at the gateway and at the waypoint.
      const gateway = flows.filter((f) => f.observationPoint === 'gateway' && f.l7);
      assert.ok(gateway.length >= CALLS, all.stdout);
      for (const f of gateway.slice(0, CALLS)) {
        assert.equal(f.l7!.method, 'GET');
        assert.equal(f.l7!.path, '/call');
        assert.equal(f.l7!.status, 200);
        assert.equal(f.verdict, 'FORWARDED');
      }
      assert.ok(
        gateway.some((f) => f.traceId === TRACE_ID),
        `no gateway record with trace id ${TRACE_ID}:\n${all.stdout}`,
      );
      const waypoint = flows.filter((f) => f.observationPoint === 'waypoint' && f.l7);
      assert.ok(waypoint.length >= CALLS, `no waypoint L7 records in:\n${all.stdout}`);
      for (const f of waypoint) {
        assert.equal(f.l7!.method, 'GET');
        assert.equal(f.l7!.status, 200);
        assert.equal(typeof f.l7!.latencyMs, 'number');
        assert.ok(f.l7!.latencyMs >= 0);
        assert.match(f.source.identity ?? '', /^spiffe:\/\//);
      }

      // L4: the denied connection, with the policies in force named.
      const deniedFlows = flows.filter((f) => f.verdict === 'DENIED' && f.direction === 'inbound');
      assert.equal(deniedFlows.length, 1, all.stdout);
      const d = deniedFlows[0]!;
      assert.equal(d.observationPoint, 'node-inbound');
      assert.equal(d.destination.workload, 'WorkloadEntry/shop/orders');
      assert.match(d.source.identity ?? '', /\/sa\/frontend$/);
      assert.match(`${d.policy ?? ''} ${d.reason ?? ''}`, /orders-allow-api/);

      // Server-side filters narrow.
      const onlyDenied = await runCliAsync(['observe', '-o', 'jsonl', '--verdict', 'DENIED']);
      assert.equal(onlyDenied.code, 0, onlyDenied.stderr);
      const dn = parse(onlyDenied.stdout);
      assert.ok(dn.length >= 1 && dn.length < flows.length);
      assert.ok(dn.every((f) => f.verdict === 'DENIED'));
      const toOrders = await runCliAsync(['observe', '-o', 'jsonl', '--to', 'shop/orders']);
      assert.equal(toOrders.code, 0, toOrders.stderr);
      const to = parse(toOrders.stdout);
      assert.ok(to.length >= 1 && to.length < flows.length);
      assert.ok(to.some((f) => f.verdict === 'DENIED'));
      for (const f of to)
        assert.ok(
          f.destination.workload === 'WorkloadEntry/shop/orders' ||
            /\/ns\/shop\/sa\/orders$/.test(f.destination.identity ?? '') ||
            (f.destination.service ?? '').startsWith('orders.shop.'),
          JSON.stringify(f),
        );
      const ok200 = await runCliAsync(['observe', '-o', 'jsonl', '--http-status', '2xx']);
      const ok = parse(ok200.stdout);
      assert.ok(ok.length >= 2 * CALLS && ok.every((f) => f.l7?.status === 200), ok200.stdout);

      // Human output: one line per flow.
      const human = await runCliAsync(['observe', '--verdict', 'DENIED']);
      assert.equal(human.code, 0, human.stderr);
      assert.match(
        human.stdout,
        /shop\/frontend .*-> shop\/orders .*node-inbound DENIED \(TCP hbone\).*orders-allow-api/,
      );

      // Usage errors name the flag.
      const bad = await runCliAsync(['observe', '--http-status', '6xx']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--http-status/);
      const badSince = await runCliAsync(['observe', '--since', 'yesterday']);
      assert.equal(badSince.code, 2);
      assert.match(badSince.stderr, /--since/);

      // The jsonl output is what policy replay reads.
      const file = join(dir, '..', `${dir.split('/').pop()}.observed.jsonl`);
      writeFileSync(file, all.stdout);
      try {
        const replay = await runCliAsync(['policy', 'replay', '--flows', file, '--with', dir, '-o', 'json']);
        assert.equal(replay.code, 0, replay.stderr);
        const result = JSON.parse(replay.stdout) as { replayed: number };
        assert.ok(result.replayed > 0, replay.stdout);
      } finally {
        rmSync(file, { force: true });
      }
    } finally {
      await mesh?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'trellis observe -f follows new records, once each, from a node running two workers',
  { timeout: 180_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-observe-f-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    let mesh: MeshUp | undefined;
    const cli = { child: undefined as ReturnType<typeof spawn> | undefined };
    try {
      mesh = await meshUp(dir, 60_000, ['--concurrency', '2']);
      let out = '';
      cli.child = spawn(
        process.execPath,
        [join(REPO_ROOT, 'bin/trellis.js'), 'observe', '-f', '-o', 'jsonl', '--http-status', '2xx'],
        { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      cli.child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      const exited = new Promise<number | null>((r) => cli.child!.once('exit', (code) => r(code)));
      // Let the first read happen, then make traffic the follow loop must pick up.
      await new Promise((r) => setTimeout(r, 1_000));
      for (let i = 0; i < CALLS; i++) {
        const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
        assert.equal(r.status, 200, r.body);
      }
      const atGateway = (): FlowRecord[] => parse(out).filter((f) => f.observationPoint === 'gateway');
      await waitFor(
        () => atGateway().length >= CALLS && parse(out).some((f) => f.observationPoint === 'waypoint'),
        15_000,
      );
      // A few more polls: nothing may come twice.
      await new Promise((r) => setTimeout(r, 1_500));
      assert.equal(atGateway().length, CALLS, out);
      assert.ok(
        atGateway().every((f) => f.l7?.path === '/call' && typeof f.worker === 'number'),
        out,
      );
      cli.child.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 5_000))]);
      assert.equal(code, 0);
    } finally {
      if (cli.child && cli.child.exitCode === null) cli.child.kill('SIGKILL');
      await mesh?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
