// Workload upstream ports over real sockets: `trellis up` on a copy of examples/shop whose
// node-a workloads get local plain-TCP ports for orders (on node-b). api-v1's connection goes
// over HBONE as the api identity, which orders' policy allows; frontend's is denied by
// node-b and closed; an upstream naming no service is refused by node-a. Flow records show each.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { meshUp, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ORDERS = 'orders.shop.svc.cluster.local';
const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let mesh: MeshUp | undefined;
let configDir: string;
const ports = { allowed: 0, denied: 0, unknown: 0 };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Adds upstreams to the Workloads named in `byWorkload` (in the copy's YAML files). */
function addUpstreams(dir: string, file: string, byWorkload: Record<string, Obj[]>): void {
  const path = join(dir, file);
  const docs = parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJS() as Obj);
  for (const d of docs) {
    const ups = d.kind === 'Workload' ? byWorkload[d.metadata.name as string] : undefined;
    if (ups) d.spec.upstreams = ups;
  }
  writeFileSync(path, docs.map((d) => stringify(d)).join('---\n'));
}

/** Connects, sends a line, and collects what comes back until the connection closes (bounded). */
function exchange(port: number, line: string, timeoutMs = 8000): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let data = '';
    let error: string | undefined;
    const timer = setTimeout(() => s.destroy(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      data += d;
      if (data.includes('\n')) s.end();
    });
    s.on('error', (e) => (error = e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(error === undefined ? { data } : { data, error });
    });
    s.write(line);
  });
}

/** The first flow record of a node that matches, waiting for it to be written (bounded). */
async function flow(node: string, match: (f: Obj) => boolean, timeoutMs = 10_000): Promise<Obj> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = mesh!.flows(node).find((f) => match(f as Obj));
    if (hit) return hit as Obj;
    if (Date.now() > deadline)
      assert.fail(`no matching flow record on ${node}; records: ${JSON.stringify(mesh!.flows(node), null, 1)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(
  async () => {
    configDir = mkdtempSync(join(tmpdir(), 'trellis-upstreams-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), configDir, { recursive: true });
    ports.allowed = await freePort();
    ports.denied = await freePort();
    ports.unknown = await freePort();
    // api-v1 and frontend run on node-a; orders runs on node-b.
    addUpstreams(configDir, 'api.yaml', {
      'api-v1': [
        { host: ORDERS, port: 7000, localPort: ports.allowed },
        { host: 'nothing.shop.svc.cluster.local', port: 7000, localPort: ports.unknown },
      ],
    });
    addUpstreams(configDir, 'frontend.yaml', { frontend: [{ host: ORDERS, port: 7000, localPort: ports.denied }] });
    // meshUp waits for any other test's mesh (the example's ports are fixed) before starting.
    mesh = await meshUp(configDir, 90_000);
  },
  { timeout: 12 * 60_000 },
);

after(async () => {
  await mesh?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

test('an allowed upstream port reaches orders over HBONE as the workload identity', { timeout: 30_000 }, async () => {
  const r = await exchange(ports.allowed, 'ping\n');
  assert.deepEqual(r, { data: 'orders: ping\n' });
  const out = await flow(
    'node-a',
    (f) => f.direction === 'outbound' && f.verdict === 'FORWARDED' && f.source?.identity === ID('api'),
  );
  assert.equal(out.via, 'hbone');
  assert.equal(out.source.workload, 'WorkloadEntry/shop/api-v1');
  assert.equal(out.destination.identity, ID('orders'));
  assert.equal(out.destination.service, ORDERS);
  assert.equal(out.destination.address, '127.0.0.2:9090');
  assert.equal(out.bytesSent, 5);
  assert.equal(out.bytesReceived, 'orders: ping\n'.length);
  const inbound = await flow(
    'node-b',
    (f) => f.direction === 'inbound' && f.verdict === 'FORWARDED' && f.source?.identity === ID('api'),
  );
  assert.equal(inbound.destination.workload, 'WorkloadEntry/shop/orders');
});

test('an upstream port whose identity policy denies is closed, with a DENIED flow', { timeout: 30_000 }, async () => {
  const r = await exchange(ports.denied, 'ping\n');
  assert.equal(r.data, '');
  assert.doesNotMatch(r.error ?? '', /timeout/);
  const out = await flow(
    'node-a',
    (f) => f.direction === 'outbound' && f.verdict === 'DENIED' && f.source?.identity === ID('frontend'),
  );
  assert.equal(out.via, 'hbone');
  assert.equal(out.source.workload, 'WorkloadEntry/shop/frontend');
  assert.equal(out.destination.service, ORDERS);
  await flow(
    'node-b',
    (f) => f.direction === 'inbound' && f.verdict === 'DENIED' && f.source?.identity === ID('frontend'),
  );
});

test('an upstream port naming no service is closed by the node, with an ERROR flow', { timeout: 30_000 }, async () => {
  const r = await exchange(ports.unknown, 'ping\n');
  assert.equal(r.data, '');
  assert.doesNotMatch(r.error ?? '', /timeout/);
  const out = await flow(
    'node-a',
    (f) => f.verdict === 'ERROR' && f.destination?.service === 'nothing.shop.svc.cluster.local:7000',
  );
  assert.equal(out.direction, 'outbound');
  assert.equal(out.reason, 'no-such-service');
  assert.equal(out.source.identity, ID('api'));
});
