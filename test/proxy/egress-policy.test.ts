// Egress NetworkPolicy enforced by the source's node: `trellis up` on a copy of the shop. Without
// an egress policy, frontend's CONNECT to orders reaches orders' node (node-b), whose
// AuthorizationPolicy denies it inbound. With a NetworkPolicy isolating frontend for egress and
// allowing only the api pods (on their pod ports), the same CONNECT is answered 403 by frontend's
// own node (node-a) before anything is dialled, with an outbound DENIED flow naming the rule,
// while frontend -> api (through the waypoint) keeps working.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  configStatus,
  httpGet,
  meshUp,
  nextGeneration,
  proxyProblems,
  tcpExchangeVia,
  waitFor,
  writeAtomic,
  type MeshUp,
} from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ORDERS = 'orders.shop.svc.cluster.local:7000';
const API = 'api.shop.svc.cluster.local:8080';
const FRONTEND = 'spiffe://cluster.local/ns/shop/sa/frontend';
const RULE = 'NetworkPolicy/shop/frontend-egress/egress[0]';
const UPSTREAM_PORT = 17000;

// Kubernetes egress ports are the destination POD ports (after the Service's DNAT): api-v1 9081, api-v2 9082.
const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend-egress
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: frontend
  policyTypes: [Egress]
  egress:
    - to:
        - podSelector:
            matchLabels:
              app: api
      ports:
        - protocol: TCP
          port: 9081
          endPort: 9082
`;

/** Connects to a local port, writes a line, resolves what came back once the node closes the connection (bounded). */
function closedWithout(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`127.0.0.1:${port} stayed open`));
    }, 5_000);
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('error', () => undefined); // a reset is a close too
    s.once('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.write(line);
  });
}

type Flow = Record<string, unknown> & {
  direction?: string;
  verdict?: string;
  reason?: string;
  source?: { identity?: string };
  destination?: { workload?: string; service?: string; address?: string };
};

const fromFrontend = (f: Flow): boolean => f.source?.identity === FRONTEND;
const ordersInbound = (f: Flow): boolean =>
  f.direction === 'inbound' && f.destination?.workload === 'WorkloadEntry/shop/orders' && fromFrontend(f);
const egressDenied = (f: Flow): boolean =>
  f.direction === 'outbound' && f.verdict === 'DENIED' && fromFrontend(f) && /^egress denied/.test(f.reason ?? '');

test('an egress NetworkPolicy is enforced at the source node, before connecting', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-egress-'));
  cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
  // frontend also gets a plain-TCP upstream port to orders (Workload spec.upstreams).
  const frontendYaml = readFileSync(join(dir, 'frontend.yaml'), 'utf8');
  const withUpstream = frontendYaml.replace(
    'kind: Workload\nmetadata:\n  name: frontend\n  namespace: shop\nspec:\n  node: node-a\n',
    (spec) =>
      `${spec}  upstreams:\n    - { host: orders.shop.svc.cluster.local, port: 7000, localPort: ${UPSTREAM_PORT} }\n`,
  );
  assert.notEqual(withUpstream, frontendYaml, 'frontend.yaml no longer has the Workload this test extends');
  writeFileSync(join(dir, 'frontend.yaml'), withUpstream);
  let mesh: MeshUp | undefined;
  try {
    mesh = await meshUp(dir);
    const m = mesh;
    const frontendProxy = /shop\/frontend\s.*HTTP_PROXY=([^\s,]+)/.exec(m.stdout())![1]!;
    const flows = (node: string, from = 0): Flow[] => m.flows(node).slice(from) as Flow[];

    // 1. No egress policy: the CONNECT leaves node-a and is denied inbound at orders' node.
    const before = await tcpExchangeVia(frontendProxy, ORDERS, 'ping\n');
    assert.equal(before.status, 403);
    await waitFor(() => flows('node-b').some(ordersInbound), 10_000);
    const deniedAtB = flows('node-b').filter(ordersInbound);
    assert.equal(deniedAtB.length, 1, JSON.stringify(deniedAtB));
    assert.equal(deniedAtB[0]!.verdict, 'DENIED');
    assert.deepEqual(flows('node-a').filter(egressDenied), []);

    // 2. The policy, applied to the running mesh.
    const generation = (await configStatus()).generation;
    writeAtomic(join(dir, 'egress-policy.yaml'), POLICY);
    await nextGeneration(generation, 10_000);
    const seenA = m.flows('node-a').length;
    // The nodes take the push: CONNECT until node-a itself refuses (bounded).
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (!flows('node-a', seenA).some(egressDenied)) {
      if (Date.now() > deadline) assert.fail(`node-a never enforced the egress policy\n${proxyProblems(m)}`);
      status = (await tcpExchangeVia(frontendProxy, ORDERS, 'ping\n')).status;
      if (!flows('node-a', seenA).some(egressDenied)) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(status, 403);
    const denied = flows('node-a', seenA).filter(egressDenied).at(-1)!;
    assert.ok(denied.reason!.includes(RULE), denied.reason);
    assert.equal(denied.destination?.service, 'orders.shop.svc.cluster.local');
    // Decided at the source: orders' pod address, and nothing more reached node-b from frontend.
    assert.equal(denied.destination?.address, '127.0.0.2:9090');
    const lastB = m.flows('node-b').length;
    const again = await tcpExchangeVia(frontendProxy, ORDERS, 'ping\n');
    assert.equal(again.status, 403);
    await new Promise((r) => setTimeout(r, 300)); // a record node-b would write, had it been reached
    assert.deepEqual(flows('node-b', lastB).filter(ordersInbound), []);

    // 3. Absolute-form HTTP through the same proxy: 403 with a short body naming the rule.
    const http = await httpGet(`http://${ORDERS}/`, { proxy: frontendProxy });
    assert.equal(http.status, 403);
    assert.equal(http.headers['trellis-reason'], 'egress-denied');
    assert.ok(http.body.includes(RULE), http.body);

    // 4. The upstream port: the node closes the connection without a byte, and records why.
    const upstreamDenied = (f: Flow) => egressDenied(f) && f.destination?.service === 'orders.shop.svc.cluster.local';
    const seenUp = m.flows('node-a').length;
    const got = await closedWithout(UPSTREAM_PORT, 'ping\n');
    assert.equal(got, '');
    await waitFor(() => flows('node-a', seenUp).some(upstreamDenied), 5_000);

    // 5. What the policy allows still works: frontend -> api (through the waypoint), on fresh connections.
    const toApi = await tcpExchangeVia(frontendProxy, API, 'GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n');
    assert.equal(toApi.status, 200);
    const call = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost', timeoutMs: 8000 });
    assert.equal(call.status, 200, `${call.body}\n${proxyProblems(m)}`);
    assert.deepEqual(
      flows('node-a', seenA).filter(
        (f) => egressDenied(f) && f.destination?.service !== 'orders.shop.svc.cluster.local',
      ),
      [],
    );
  } finally {
    await mesh?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
