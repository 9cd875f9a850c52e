// PeerAuthentication enforced by the node processes, over real sockets: `trellis up` on a copy of
// examples/shop whose orders workload (node-b) is PERMISSIVE, while the rest of namespace shop
// stays STRICT. The plaintext inbound port of orders takes plaintext (flow record tls "none"),
// under the same L4 policy with no principal (so only the ipBlocks rule can admit it); mTLS
// through the mesh still works; a STRICT port has no plaintext listener (connection refused);
// and turning orders STRICT on disk closes its plaintext listener and the connections on it.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadPaths } from '../../src/config/load.js';
import { compileModel } from '../../src/model/compile.js';
import { inboundPlaintextPorts } from '../../src/model/upstreams.js';
import {
  configStatus,
  httpGet,
  meshUp,
  nextGeneration,
  proxyProblems,
  writeAtomic,
  type MeshUp,
} from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

// Plaintext clients bind their own loopback source address, so the policy can tell them apart:
// ALLOWED is in the orders policy's ipBlocks, DENIED is not.
const ALLOWED = '127.0.0.9';
const DENIED = '127.0.0.8';

const ordersPeerAuthn = (mode: string) => `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: orders
  namespace: shop
spec:
  selector:
    matchLabels:
      app: orders
  mtls:
    mode: ${mode}
`;

let mesh: MeshUp | undefined;
let configDir: string;
let basePolicy: string;
/** orders' plaintext inbound port (from the `trellis up` summary). */
let ordersPlain = 0;

function policyWith(mode: string): string {
  return basePolicy + ordersPeerAuthn(mode);
}

before(
  async () => {
    configDir = mkdtempSync(join(tmpdir(), 'trellis-peerauthn-e2e-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), configDir, { recursive: true });
    const file = join(configDir, 'policy.yaml');
    // orders also admits one plaintext source by address (a principal rule cannot match plaintext).
    basePolicy = readFileSync(file, 'utf8').replace(
      / {2}name: orders-allow-api\n[\s\S]*? {2}rules:\n/,
      `$&    - from:\n        - source:\n            ipBlocks: ['${ALLOWED}/32']\n`,
    );
    assert.match(basePolicy, new RegExp(`ipBlocks: \\['${ALLOWED.replace(/\./g, '\\.')}/32'\\]`));
    writeAtomic(file, policyWith('PERMISSIVE'));
    mesh = await meshUp(configDir, 90_000);
    const m = /shop\/orders\s.*plaintext 127\.0\.0\.2:(\d+) -> 127\.0\.0\.2:9090 \(PERMISSIVE\)/.exec(mesh.stdout());
    assert.ok(m, mesh.stdout());
    ordersPlain = Number(m[1]);
  },
  { timeout: 12 * 60_000 },
);

after(async () => {
  await mesh?.stop();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

/** Connects from `from`, sends a line, collects what comes back until the connection closes (bounded). */
function exchange(
  port: number,
  from: string,
  line: string,
  timeoutMs = 8000,
): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.2', localAddress: from });
    let data = '';
    let error: string | undefined;
    const timer = setTimeout(() => s.destroy(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      data += d;
      if (data.includes('\n')) s.end();
    });
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(error === undefined ? { data } : { data, error });
    });
    s.write(line);
  });
}

async function flow(node: string, match: (f: Obj) => boolean, timeoutMs = 10_000): Promise<Obj> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = mesh!.flows(node).find((f) => match(f as Obj));
    if (hit) return hit as Obj;
    if (Date.now() > deadline)
      assert.fail(`no matching flow record on ${node}; records: ${JSON.stringify(mesh!.flows(node).slice(-10))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test(
  'a PERMISSIVE port accepts plaintext on its node port; the flow record says tls "none"',
  { timeout: 30_000 },
  async () => {
    const r = await exchange(ordersPlain, ALLOWED, 'plain-hello\n');
    assert.deepEqual(r, { data: 'orders: plain-hello\n' }, proxyProblems(mesh!));
    const f = await flow(
      'node-b',
      (x) =>
        x.tls === 'none' && x.verdict === 'FORWARDED' && x.source?.address === ALLOWED && x.bytesSent !== undefined,
    );
    assert.equal(f.direction, 'inbound');
    assert.equal(f.via, 'plaintext');
    assert.equal(f.source.identity, undefined, 'a plaintext peer has no identity');
    assert.equal(f.destination.identity, ID('orders'));
    assert.equal(f.destination.workload, 'WorkloadEntry/shop/orders');
    assert.equal(f.destination.address, '127.0.0.2:9090');
    assert.equal(f.bytesReceived, 'plain-hello\n'.length);
    assert.equal(f.bytesSent, 'orders: plain-hello\n'.length);
  },
);

test(
  'plaintext gets the same L4 policy with no principal: principal rules never match it (DENIED, policy named)',
  { timeout: 30_000 },
  async () => {
    const r = await exchange(ordersPlain, DENIED, 'plain-hello\n');
    assert.equal(r.data, '');
    assert.doesNotMatch(r.error ?? '', /timeout/);
    const f = await flow('node-b', (x) => x.tls === 'none' && x.verdict === 'DENIED' && x.source?.address === DENIED);
    assert.match(String(f.reason), /no ALLOW policy matched.*shop\/orders-allow-api/);
    assert.equal(f.via, 'plaintext');
  },
);

test('the same PERMISSIVE port still takes mTLS (HBONE) from the mesh', { timeout: 30_000 }, async () => {
  const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
  assert.equal(r.status, 200, r.body);
  assert.equal((JSON.parse(r.body) as { upstream: { upstream: string } }).upstream.upstream, 'orders: ping');
  const f = await flow(
    'node-b',
    (x) =>
      x.direction === 'inbound' &&
      x.verdict === 'FORWARDED' &&
      x.via === 'hbone' &&
      x.source?.identity === ID('api') &&
      x.destination?.identity === ID('orders'),
  );
  assert.equal(f.tls, undefined, 'mTLS flows keep their shape');
});

test('a STRICT port has no plaintext listener: a plaintext client is refused', { timeout: 30_000 }, async () => {
  // api-v2 (node-b, 127.0.0.2:9082) is STRICT by the namespace policy: the port it would get is closed.
  const model = compileModel(loadPaths([configDir]).resources);
  const nodeB = model.nodes.find((n) => n.name === 'node-b')!;
  const local = model.workloads.filter((w) => nodeB.workloads.includes(w.id));
  const ports = inboundPlaintextPorts(
    nodeB,
    local,
    model.gateways.filter((g) => nodeB.gateways.includes(g.id)),
  );
  assert.equal(ports.get('WorkloadEntry/shop/orders:9090'), ordersPlain, 'the summary and the model agree');
  const apiV2 = ports.get('WorkloadEntry/shop/api-v2:9082');
  assert.ok(apiV2);
  assert.doesNotMatch(mesh!.stdout(), /shop\/api-v2\s.*plaintext/);
  const r = await exchange(apiV2, ALLOWED, 'hello\n');
  assert.deepEqual(r, { data: '', error: 'ECONNREFUSED' });
});

test(
  'orders flipped to STRICT on disk: its plaintext listener closes, with the connections on it',
  { timeout: 60_000 },
  async () => {
    // A plaintext connection open across the change.
    const open: Socket = connect({ port: ordersPlain, host: '127.0.0.2', localAddress: ALLOWED });
    open.on('error', () => undefined);
    const closed = new Promise<void>((r) => open.once('close', () => r()));
    await new Promise<void>((resolve, reject) => {
      open.setEncoding('utf8');
      open.once('data', () => resolve());
      open.once('error', reject);
      open.write('before\n');
    });
    const gen = (await configStatus()).generation;
    writeAtomic(join(configDir, 'policy.yaml'), policyWith('STRICT'));
    await nextGeneration(gen, 10_000);
    const deadline = Date.now() + 15_000;
    let last: { data: string; error?: string } | undefined;
    for (;;) {
      last = await exchange(ordersPlain, ALLOWED, 'after\n', 3000);
      if (last.error === 'ECONNREFUSED') break;
      if (Date.now() > deadline)
        assert.fail(`still served after the flip: ${JSON.stringify(last)}\n${proxyProblems(mesh!)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await Promise.race([
      closed,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the open plaintext connection was not cut')), 5000),
      ),
    ]);
    // mTLS is untouched by the flip.
    const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
    assert.equal(r.status, 200, r.body);
  },
);
