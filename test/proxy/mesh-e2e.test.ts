// The data plane end to end: `trellis up -f examples/shop` (control plane, two node processes,
// four workloads), then real requests through gateway -> node A -> waypoint -> HBONE -> node B.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { loadCa } from '../../src/identity/ca-store.js';
import { pemEncode } from '../../src/identity/x509-builder.js';
import { Credentials, sniFor } from '../../src/proxy/hbone/credentials.js';
import { HbonePool, TunnelError } from '../../src/proxy/hbone/client.js';
import { createHboneServer } from '../../src/proxy/hbone/server.js';
import { httpGet, meshUp, waitFor, type MeshUp } from '../helpers/mesh-up.js';

const API = 'http://api.shop.svc.cluster.local:8080/';
const ORDERS = 'orders.shop.svc.cluster.local:7000';
const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;

let mesh: MeshUp;
let frontendProxy: string;

before(async () => {
  mesh = await meshUp();
  const m = /shop\/frontend\s.*HTTP_PROXY=(\S+)/.exec(mesh.stdout());
  assert.ok(m, mesh.stdout());
  frontendProxy = m[1]!;
});

after(async () => {
  await mesh?.stop();
});

test('on the wire: node-to-node traffic is TLS only; the same request is plaintext at the gateway (control)', async (t) => {
  if (process.getuid?.() !== 0 || (!existsSync('/usr/bin/tcpdump') && !existsSync('/usr/sbin/tcpdump'))) {
    t.skip('needs root and tcpdump (apt-get install tcpdump) to capture on loopback');
    return;
  }
  const pcap = join(mesh.stateDir, 'hbone.pcap');
  const dump = spawn(
    'tcpdump',
    ['-i', 'lo', '--immediate-mode', '-U', '-s', '0', '-w', pcap, 'tcp port 15008 or tcp port 8000'],
    {
      stdio: 'ignore',
    },
  );
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const marker = `trellis-marker-${Date.now()}`;
    const r = await httpGet(`http://127.0.0.1:8000/call?${marker}`, { host: 'shop.localhost' });
    assert.equal(r.status, 200);
    await new Promise((r2) => setTimeout(r2, 500));
  } finally {
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
  }
  const hbone = spawnSync('tcpdump', ['-r', pcap, '-A', 'tcp port 15008'], { encoding: 'latin1' }).stdout;
  const ingress = spawnSync('tcpdump', ['-r', pcap, '-A', 'tcp port 8000'], { encoding: 'latin1' }).stdout;
  assert.match(ingress, /trellis-marker-/, 'the control: the gateway port carries the request in clear');
  assert.doesNotMatch(hbone, /trellis-marker-|GET \/|HTTP\/1\.1|ping/, 'plaintext on the HBONE port');
  const raw = readFileSync(pcap);
  // First in this file, so the node-to-node sessions are new: a TLS handshake record (type 22)
  // and TLS application data records (type 23) crossed port 15008.
  assert.ok(raw.includes(Buffer.from([0x16, 0x03, 0x01])) || raw.includes(Buffer.from([0x16, 0x03, 0x03])));
  assert.ok(raw.includes(Buffer.from([0x17, 0x03, 0x03])));
});

test('gateway -> frontend (node A) -> waypoint -> api (A or B) -> orders (node B, TCP): one request through everything', async () => {
  const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
  assert.equal(r.status, 200, r.body);
  const body = JSON.parse(r.body) as {
    name: string;
    peer: string;
    upstream: { name: string; peer: string; upstream: string };
  };
  assert.equal(body.name, 'frontend');
  // The gateway's client is outside the mesh (no identity): no XFCC reaches the frontend.
  assert.equal(body.peer, null);
  // api sees its caller's SPIFFE ID (XFCC, set by the waypoint from the verified HBONE peer).
  assert.match(body.upstream.name, /^api-v[12]$/);
  assert.match(body.upstream.peer, new RegExp(`By=${ID('waypoint')};URI=${ID('frontend')}`));
  assert.equal(body.upstream.upstream, 'orders: ping');
  // Flow records on node B: the api -> orders tunnel, with both identities.
  await waitFor(() =>
    mesh
      .flows('node-b')
      .some(
        (f) =>
          f.direction === 'inbound' &&
          f.verdict === 'FORWARDED' &&
          (f.source as { identity?: string }).identity === ID('api') &&
          (f.destination as { identity?: string }).identity === ID('orders'),
      ),
  );
});

test('the HTTPRoute 90/10 split holds over 2,000 requests through the waypoint (and x-canary pins v2)', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const counts = new Map<string, number>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < 2000) {
      next++;
      const r = await httpGet(API, { proxy: frontendProxy, agent });
      assert.equal(r.status, 200, r.body);
      const name = (JSON.parse(r.body) as { name: string }).name;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  agent.destroy();
  const v2 = (counts.get('api-v2') ?? 0) / 2000;
  assert.ok(v2 > 0.075 && v2 < 0.125, `api-v2 got ${(v2 * 100).toFixed(1)}% (${JSON.stringify([...counts])})`);
  for (let i = 0; i < 5; i++) {
    const r = await httpGet(API, { proxy: frontendProxy, host: 'api.shop.svc.cluster.local:8080' });
    assert.equal(r.status, 200);
  }
});

test('policy: the waypoint admits only frontend to api (L7); frontend may not reach orders (DENIED flow record with the reason); nor api around the waypoint', async () => {
  const res = await connectVia(frontendProxy, ORDERS);
  assert.equal(res.status, 403, res.raw);
  await waitFor(() =>
    mesh
      .flows('node-b')
      .some(
        (f) =>
          f.verdict === 'DENIED' &&
          (f.source as { identity?: string }).identity === ID('frontend') &&
          String(f.reason).includes('no ALLOW policy matched'),
      ),
  );
  // The waypoint enforces the policy attached to Service api: only frontend may call it.
  const apiV1Proxy = /shop\/api-v1\s.*HTTP_PROXY=(\S+)/.exec(mesh.stdout())![1]!;
  const fromApi = await httpGet(API, { proxy: apiV1Proxy });
  assert.equal(fromApi.status, 403, fromApi.body);
  assert.match(fromApi.body, /RBAC: access denied/);
  // api-v2's own address: its node admits only the waypoint.
  const direct = await httpGet('http://127.0.0.2:9082/', { proxy: frontendProxy });
  assert.equal(direct.status, 403, direct.body);
});

test('a peer with a certificate from another CA is refused by the node (flow record: untrusted-issuer)', async () => {
  const rogueCa = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 86_400_000 });
  const svid = rogueCa.issue({ spiffeId: ID('api'), ttlMs: 3_600_000 });
  const session = h2connect('https://127.0.0.2:15008', {
    cert: svid.chain.map((d) => pemEncode(d)).join(''),
    key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    servername: sniFor(ID('orders')),
    rejectUnauthorized: false,
    ALPNProtocols: ['h2'],
  });
  session.on('error', () => undefined);
  const outcome = await new Promise<string>((resolve) => {
    const s = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.2:9090' });
    s.on('response', (h) => resolve(`status ${String(h[':status'])}`));
    s.on('error', (e) => resolve(`error ${e.message}`));
    session.on('close', () => resolve('closed'));
    setTimeout(() => resolve('timeout'), 5000);
  });
  session.destroy();
  assert.notEqual(outcome, 'status 200');
  await waitFor(() => mesh.flows('node-b').some((f) => f.verdict === 'DENIED' && f.reason === 'untrusted-issuer'));
});

test('a server presenting a valid SVID of the wrong service is refused before any byte is tunnelled', async () => {
  const ca = loadCa(join(mesh.stateDir, 'ca'));
  const pem = (sa: string) => {
    const s = ca.issue({ spiffeId: ID(sa), ttlMs: 3_600_000 });
    return {
      identity: ID(sa),
      chain: s.chain.map((d) => pemEncode(d)).join(''),
      key: s.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    };
  };
  const bundle = ca.roots.map((d) => pemEncode(d)).join('');
  // The impostor holds a valid SVID (frontend's) and presents it whatever name is asked for.
  class Impostor extends Credentials {
    override contextForSni(): ReturnType<Credentials['contextForSni']> {
      return super.contextForSni(sniFor(ID('frontend')));
    }
    override identityForSni(): string {
      return ID('frontend');
    }
  }
  const rogueCreds = new Impostor();
  rogueCreds.setBundle(bundle, 'cluster.local');
  rogueCreds.add(pem('frontend'));
  let tunnels = 0;
  const rogue = createHboneServer({
    credentials: () => rogueCreds,
    onTunnel: () => tunnels++,
    onRefused: () => undefined,
  });
  await new Promise<void>((r) => rogue.listen(25008, '127.0.0.3', r));
  const clientCreds = new Credentials();
  clientCreds.setBundle(bundle, 'cluster.local');
  clientCreds.add(pem('api'));
  const pool = new HbonePool(() => clientCreds);
  try {
    await assert.rejects(
      pool.open({
        peer: '127.0.0.3:25008',
        authority: '127.0.0.2:9090',
        sourceIdentity: ID('api'),
        destinationIdentity: ID('orders'),
      }),
      (e: unknown) => {
        assert.ok(e instanceof TunnelError, String(e));
        assert.equal(e.reason, 'unexpected-identity', e.message);
        return true;
      },
    );
    assert.equal(tunnels, 0);
  } finally {
    pool.close();
    await new Promise((r) => rogue.close(r));
  }
});

function connectVia(proxy: string, target: string): Promise<{ status: number; raw: string }> {
  const [host, port] = proxy.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method: 'CONNECT', path: target, timeout: 5000 });
    req.on('connect', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, raw: JSON.stringify(res.headers) });
    });
    req.on('error', reject);
    req.end();
  });
}
