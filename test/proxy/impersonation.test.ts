// Impersonation attempts at a node's HBONE port, end to end: `trellis up -f examples/shop`, then
// HTTP/2 CONNECT tunnels to orders (127.0.0.2:9090, on node-b, whose policy admits only the api
// service account) from clients holding: another service account's valid SVID (RBAC denial naming
// the policy); a self-signed certificate claiming api's SPIFFE ID; an expired SVID of api from the
// mesh CA; an SVID for api's path from the mesh CA's key but in another trust domain. None reaches
// orders (no FORWARDED flow from "api"), each has a DENIED flow record with its reason, and a
// genuine api SVID is the control that gets through. openssl s_client shows what a raw TLS peer
// sees: the node presents orders' SVID chained to the mesh CA, and a client without a
// certificate completes no session.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateKey, type CertificateAuthority } from '../../src/identity/ca.js';
import { loadCa } from '../../src/identity/ca-store.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  encodeName,
  extKeyUsage,
  keyIdentifier,
  keyUsage,
  KeyUsage,
  pemEncode,
  subjectAltName,
  subjectKeyIdentifier,
  subjectOf,
} from '../../src/identity/x509-builder.js';
import { sniFor } from '../../src/proxy/hbone/credentials.js';
import { meshUp, proxyProblems, type MeshUp } from '../helpers/mesh-up.js';

const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;
const HOUR = 3_600_000;
const NODE_B_HBONE = '127.0.0.2:15008';
const ORDERS = '127.0.0.2:9090';
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let mesh: MeshUp | undefined;
let ca: CertificateAuthority;
let tmp: string;

before(
  async () => {
    tmp = mkdtempSync(join(tmpdir(), 'trellis-impersonation-'));
    mesh = await meshUp(undefined, 90_000);
    ca = loadCa(join(mesh.stateDir, 'ca'));
  },
  { timeout: 12 * 60_000 },
);

after(async () => {
  await mesh?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface ClientCert {
  readonly cert: string;
  readonly key: string;
}

function pemOf(chain: readonly Buffer[], key: KeyObject): ClientCert {
  return {
    cert: chain.map((d) => pemEncode(d)).join(''),
    key: key.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** A leaf built like CertificateAuthority.sign, signed by `signer` (or by itself). */
function craftLeaf(uri: string, signer: { name: Buffer; key: KeyObject } | 'self'): ClientCert {
  const key = generateKey();
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const subject = signer === 'self' ? encodeName([['CN', 'api']]) : encodeName([]);
  const signingKey = signer === 'self' ? key : signer.key;
  const issuer = signer === 'self' ? subject : signer.name;
  const now = Date.now();
  const der = buildCertificate(
    {
      issuer,
      subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + HOUR),
      spki,
      extensions: [
        basicConstraints(false),
        keyUsage([KeyUsage.digitalSignature]),
        extKeyUsage(true, true),
        subjectAltName([uri], [], true),
        subjectKeyIdentifier(keyIdentifier(spki)),
        authorityKeyIdentifier(keyIdentifier(createPublicKey(signingKey).export({ type: 'spki', format: 'der' }))),
      ],
    },
    signingKey,
  );
  return pemOf([der], key);
}

/** One CONNECT to orders through node-b's HBONE port; what came of it (bounded). */
async function tunnel(client: ClientCert, line = 'ping\n'): Promise<{ outcome: string; reply: string }> {
  const session = h2connect(`https://${NODE_B_HBONE}`, {
    ...client,
    servername: sniFor(ID('orders')),
    // The client side is not under test: what matters is what the node accepts.
    rejectUnauthorized: false,
    ALPNProtocols: ['h2'],
  });
  session.on('error', () => undefined);
  let reply = '';
  const outcome = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), 8000);
    const done = (o: string) => {
      clearTimeout(timer);
      resolve(o);
    };
    const s = session.request({ ':method': 'CONNECT', ':authority': ORDERS });
    s.on('error', (e) => done(`error ${e.message}`));
    s.on('response', (h) => {
      const status = Number(h[':status']);
      if (status !== 200) return done(`status ${status} ${String(h['trellis-reason'] ?? '')}`);
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        reply += d;
        if (reply.includes('\n')) done('status 200');
      });
      s.write(line);
    });
    session.on('close', () => done('closed'));
  });
  session.destroy();
  return { outcome, reply };
}

async function flow(match: (f: Obj) => boolean, timeoutMs = 10_000): Promise<Obj> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = mesh!.flows('node-b').find((f) => match(f as Obj));
    if (hit) return hit as Obj;
    if (Date.now() > deadline)
      assert.fail(
        `no matching flow record on node-b; last records: ${JSON.stringify(mesh!.flows('node-b').slice(-8))}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitFlowCount(match: (f: Obj) => boolean, atLeast: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (mesh!.flows('node-b').filter((f) => match(f as Obj)).length < atLeast) {
    if (Date.now() > deadline) assert.fail(`fewer than ${atLeast} matching flow records on node-b`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** No tunnel from "api" ever reached orders (the impostors all claim to be api). */
function assertNoApiDelivery(): void {
  const delivered = mesh!
    .flows('node-b')
    .filter((f) => f.direction === 'inbound' && f.verdict === 'FORWARDED' && (f.source as Obj)?.identity === ID('api'));
  assert.deepEqual(delivered, [], 'an impostor reached orders');
}

test('(1) a valid SVID of another service account (frontend): RBAC denies, the flow record names the policy', async () => {
  const svid = ca.issue({ spiffeId: ID('frontend'), ttlMs: HOUR });
  const r = await tunnel(pemOf(svid.chain, svid.privateKey));
  assert.match(r.outcome, /^status 403 denied: no ALLOW policy matched/, proxyProblems(mesh!, ['node-b']));
  assert.equal(r.reply, '');
  const f = await flow((x) => x.verdict === 'DENIED' && x.source?.identity === ID('frontend'));
  assert.equal(f.direction, 'inbound');
  assert.equal(f.via, 'hbone');
  assert.match(String(f.reason), /shop\/orders-allow-api/);
  assert.equal(f.destination.identity, ID('orders'));
  assert.equal(f.destination.workload, 'WorkloadEntry/shop/orders');
});

test("(2) a self-signed certificate carrying api's SPIFFE ID: no session (untrusted-issuer), nothing reaches orders", async () => {
  const r = await tunnel(craftLeaf(ID('api'), 'self'));
  assert.notEqual(r.outcome, 'status 200');
  assert.equal(r.reply, '');
  const f = await flow((x) => x.verdict === 'DENIED' && x.reason === 'untrusted-issuer');
  assert.equal(f.source.identity, undefined, 'an unverified peer is given no identity');
  assertNoApiDelivery();
});

test('(3) an expired SVID of api issued by the mesh CA: refused (expired)', async () => {
  // Issued two hours ago for one hour (the CA's clock injected).
  const svid = ca.issue({ spiffeId: ID('api'), ttlMs: HOUR, now: new Date(Date.now() - 2 * HOUR) });
  assert.ok(svid.notAfter.getTime() < Date.now());
  const r = await tunnel(pemOf(svid.chain, svid.privateKey));
  assert.notEqual(r.outcome, 'status 200');
  assert.equal(r.reply, '');
  await flow((x) => x.verdict === 'DENIED' && x.reason === 'expired');
  assertNoApiDelivery();
});

test("(4) an SVID for api's path signed with the mesh CA's key but in another trust domain: refused", async () => {
  const caKey = createPrivateKey(ca.toPem().caKey);
  const signer = { name: subjectOf(ca.intermediates[0] ?? ca.roots[0]!), key: caKey };
  const r = await tunnel(craftLeaf('spiffe://evil.example/ns/shop/sa/api', signer));
  assert.notEqual(r.outcome, 'status 200');
  assert.equal(r.reply, '');
  await flow((x) => x.verdict === 'DENIED' && x.reason === 'wrong-trust-domain');
  assertNoApiDelivery();
});

test('control: a genuine api SVID from the mesh CA is tunnelled to orders', async () => {
  const svid = ca.issue({ spiffeId: ID('api'), ttlMs: HOUR });
  const r = await tunnel(pemOf(svid.chain, svid.privateKey));
  assert.deepEqual(r, { outcome: 'status 200', reply: 'orders: ping\n' });
  await flow((x) => x.verdict === 'FORWARDED' && x.source?.identity === ID('api'));
});

const opensslMissing = spawnSync('openssl', ['version'], { timeout: 10_000 }).status !== 0;

test(
  "openssl s_client: node-b presents orders' SVID (verifies against the mesh root); without a client certificate no session survives",
  { skip: opensslMissing ? 'openssl is not installed' : false, timeout: 30_000 },
  async () => {
    const root = join(tmp, 'root.pem');
    writeFileSync(root, ca.roots.map((d) => pemEncode(d)).join(''));
    const before = mesh!
      .flows('node-b')
      .filter((f) => f.verdict === 'DENIED' && f.reason === 'malformed-certificate').length;
    // -ign_eof: s_client stays until the server closes, so its exit shows the node hung up on it.
    const r = spawnSync(
      'openssl',
      [
        's_client',
        '-connect',
        NODE_B_HBONE,
        '-servername',
        sniFor(ID('orders')),
        '-alpn',
        'h2',
        '-CAfile',
        root,
        '-verify_return_error',
        '-showcerts',
        '-ign_eof',
      ],
      { input: '', encoding: 'utf8', timeout: 15_000 },
    );
    assert.equal(r.error, undefined, `s_client did not finish: ${String(r.error)}`);
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/, r.stdout + r.stderr);
    assert.match(r.stdout, /ALPN protocol: h2/);
    const leafPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
    assert.ok(leafPem, r.stdout);
    assert.match(new X509Certificate(leafPem).subjectAltName ?? '', new RegExp(`URI:${ID('orders')}`));
    // The node refused the certificate-less peer: a DENIED flow with the verify reason.
    await waitFlowCount((x) => x.verdict === 'DENIED' && x.reason === 'malformed-certificate', before + 1);
  },
);
