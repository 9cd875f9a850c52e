// Rotation: SVIDs renew at half their lifetime and swap atomically; no connection fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createSecureContext, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, type IssuedChain } from '../../src/identity/ca.js';
import { localCaClient, SecretManager, type CaClient, type Clock } from '../../src/identity/secret-manager.js';
import { tlsPem } from '../../src/identity/tls-credentials.js';
import { writeSvidFiles } from '../../src/identity/svid-files.js';

const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/api';
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/frontend';

test('continuous mTLS across several rotations: zero failed requests, and the served certificate changes', async () => {
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 3_600_000 });
  const svids = new SecretManager({ ca: localCaClient(ca), ttlMs: 2_000 });
  const first = tlsPem(await svids.get(SERVER_ID));
  const server = createServer({ ...first, requestCert: true, rejectUnauthorized: true }, (sock) => {
    sock.on('error', () => undefined);
    const peer = /URI:(spiffe:\/\/[^,\s]+)/.exec(sock.getPeerCertificate().subjectaltname ?? '')?.[1];
    sock.end(`${peer}\n`);
  });
  // The swap: every new SVID becomes the context for new handshakes; live connections keep theirs.
  const stopServerWatch = svids.watch(SERVER_ID, (s) => server.setSecureContext({ ...tlsPem(s) }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;

  let clientCtx = createSecureContext(tlsPem(await svids.get(CLIENT_ID)));
  const stopClientWatch = svids.watch(CLIENT_ID, (s) => (clientCtx = createSecureContext(tlsPem(s))));

  const request = () =>
    new Promise<{ peer: string; serverSerial: string }>((resolve, reject) => {
      const sock: TLSSocket = connect({
        host: '127.0.0.1',
        port,
        secureContext: clientCtx,
        servername: 'api.shop',
        checkServerIdentity: (_h, cert) =>
          cert.subjectaltname?.includes(`URI:${SERVER_ID}`) ? undefined : new Error(`server is ${cert.subjectaltname}`),
      });
      let data = '';
      sock.setTimeout(3000, () => sock.destroy(new Error('timeout')));
      sock.on('secureConnect', () => undefined);
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('end', () => resolve({ peer: data.trim(), serverSerial: sock.getPeerCertificate().serialNumber }));
      sock.on('error', reject);
    });

  let ok = 0;
  let failed = 0;
  const serials = new Set<string>();
  const deadline = Date.now() + 7_000; // ~4 rotations at 1 s each (half of 2 s)
  try {
    while (Date.now() < deadline) {
      try {
        const r = await request();
        assert.equal(r.peer, CLIENT_ID);
        serials.add(r.serverSerial);
        ok++;
      } catch {
        failed++;
      }
    }
  } finally {
    stopServerWatch();
    stopClientWatch();
    svids.close();
    server.close();
  }
  assert.equal(failed, 0, `${failed} of ${ok + failed} requests failed`);
  assert.ok(ok > 50, `only ${ok} requests`);
  assert.ok(serials.size >= 3, `the served certificate changed only ${serials.size - 1} times`);
});

test('SVID files are renewed in place, all three switching at once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-svidfiles-'));
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 3_600_000 });
  const svids = new SecretManager({ ca: localCaClient(ca), ttlMs: 1_000 });
  const seen: string[] = [];
  const stop = svids.watch(SERVER_ID, (s) => {
    writeSvidFiles(dir, s);
    seen.push(readlinkSync(join(dir, '..data')));
  });
  try {
    await new Promise((r) => setTimeout(r, 2_300));
    assert.ok(seen.length >= 3, `only ${seen.length} writes`);
    const cert = new X509Certificate(readFileSync(join(dir, 'cert-chain.pem')));
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    assert.ok(
      cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(key)),
      'certificate and key belong together',
    );
    assert.match(cert.subjectAltName ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api/);
  } finally {
    stop();
    svids.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

class FakeClock implements Clock {
  t = 1_000_000;
  timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const timer = { at: this.t + ms, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.filter((x) => !x.cancelled && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.t = next.at;
      next.cancelled = true;
      next.fn();
      await new Promise((r) => setImmediate(r));
    }
    this.t = end;
  }
}

test('renewal at half the lifetime with jitter; on CA failure the last good SVID keeps serving, with backoff', async () => {
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 3_600_000 });
  const clock = new FakeClock();
  let failing = false;
  let calls = 0;
  const client: CaClient = {
    sign: (req) => {
      calls++;
      if (failing) throw new Error('CA unreachable');
      return ca.sign({ ...req, now: new Date(clock.now()) }) as IssuedChain;
    },
    bundle: () => ca.roots,
  };
  const errors: string[] = [];
  const svids = new SecretManager({
    ca: client,
    ttlMs: 100_000,
    clock,
    jitter: 0.1,
    onError: (_id, e) => errors.push(e.message),
  });
  const first = await svids.get(SERVER_ID);
  assert.equal(svids.state(SERVER_ID).state, 'Available');
  assert.equal(calls, 1);
  // Lifetime 100 s plus 10 s backdating = 110 s; renewal at half of it minus up to 10% jitter:
  // 44-55 s after notBefore, i.e. 34-45 s from now.
  await clock.advance(33_500);
  assert.equal(calls, 1, 'not renewed before ~40% of its lifetime');
  await clock.advance(11_600);
  assert.equal(calls, 2, 'renewed by half its lifetime');
  const second = await svids.get(SERVER_ID);
  assert.notEqual(second, first);

  failing = true;
  await clock.advance(60_000);
  assert.ok(errors.length >= 1);
  const st = svids.state(SERVER_ID);
  assert.equal(st.state, 'Available', 'the last good SVID keeps serving while it is valid');
  const attemptsWhileFailing = calls;
  await clock.advance(10_000);
  assert.ok(calls - attemptsWhileFailing <= 5, 'retries back off');
  failing = false;
  await clock.advance(200_000);
  const recovered = svids.state(SERVER_ID);
  assert.equal(recovered.state, 'Available');
  assert.ok(recovered.state === 'Available' && recovered.snapshot.svid.notAfter.getTime() > clock.now());
  svids.close();
});

test('root rollover: a bundle with the old and new roots reaches watchers', async () => {
  const oldCa = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 3_600_000 });
  const newCa = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 3_600_000 });
  let roots: readonly Buffer[] = oldCa.roots;
  const svids = new SecretManager({ ca: { sign: (r) => oldCa.sign(r), bundle: () => roots }, ttlMs: 600_000 });
  const bundles: number[] = [];
  const stop = svids.watch(SERVER_ID, (s) => bundles.push(s.bundle.length));
  await svids.get(SERVER_ID);
  roots = [...oldCa.roots, ...newCa.roots];
  svids.refreshBundle();
  assert.deepEqual(bundles, [1, 2]);
  stop();
  svids.close();
});
