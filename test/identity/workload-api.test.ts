// The SPIFFE Workload API over a real Unix socket with real grpc-js clients.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { JwtSvidAuthority } from '../../src/identity/jwt-svid.js';
import { localCaClient, SecretManager, type CaClient } from '../../src/identity/secret-manager.js';
import { workloadSpiffeId } from '../../src/identity/spiffe-id.js';
import {
  endpointTarget,
  loadWorkloadApi,
  SECURITY_HEADER_MISSING,
  WorkloadApiClient,
  WorkloadApiError,
  type X509SvidUpdate,
} from '../../src/identity/workload-api/client.js';
import { WorkloadApiServer } from '../../src/identity/workload-api/server.js';

const TD = 'example.org';
const ID = workloadSpiffeId(TD, 'shop', 'cart');
const OTHER = workloadSpiffeId(TD, 'shop', 'payments');
const CLIENT_JS = new URL('../../src/identity/workload-api/client.js', import.meta.url).href;

interface Fixture {
  readonly dir: string;
  readonly socketPath: string;
  readonly ca: CertificateAuthority;
  readonly jwt: JwtSvidAuthority;
  readonly svids: SecretManager;
  readonly server: WorkloadApiServer;
  readonly client: WorkloadApiClient;
}

/** A CA client whose bundle can change (a root rollover). */
function rollingCa(ca: CertificateAuthority): CaClient & { extra: Buffer[] } {
  const c = {
    extra: [] as Buffer[],
    sign: localCaClient(ca).sign,
    bundle: () => [...ca.roots, ...c.extra],
  };
  return c;
}

async function setup(
  t: TestContext,
  opts: { ttlMs?: number; caClient?: (ca: CertificateAuthority) => CaClient; uid?: number; gid?: number } = {},
): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-wl-'));
  const ca = CertificateAuthority.createRoot({ trustDomain: TD, ttlMs: 3600_000 });
  const jwt = await JwtSvidAuthority.create(TD);
  const svids = new SecretManager({
    ca: opts.caClient ? opts.caClient(ca) : localCaClient(ca),
    ttlMs: opts.ttlMs ?? 600_000,
  });
  const socketPath = join(dir, 'shop', 'cart', 'agent.sock');
  const server = await WorkloadApiServer.start({
    socketPath,
    spiffeId: ID,
    svids,
    jwt,
    trustDomain: TD,
    jwtTtlMs: 60_000,
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  const client = new WorkloadApiClient(`unix://${socketPath}`, { timeoutMs: 5000 });
  t.after(async () => {
    client.close();
    await server.close();
    svids.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, socketPath, ca, jwt, svids, server, client };
}

/** A raw generated client that sends whatever metadata it is given (or none). */
function rawClient(t: TestContext, socketPath: string): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
  const { SpiffeWorkloadAPI } = loadWorkloadApi();
  const c = new SpiffeWorkloadAPI(`unix://${socketPath}`, grpc.credentials.createInsecure());
  t.after(() => c.close());
  return c as unknown as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

test('FetchX509SVID: the SVID, its key and the bundle parse with node:crypto and match the identity and CA', async (t) => {
  const f = await setup(t);
  const u = await f.client.fetchX509Svid();
  assert.equal(u.svids.length, 1);
  const s = u.svids[0]!;
  assert.equal(s.spiffeId, ID);
  assert.equal(s.chain.length, 1);
  const leaf = new X509Certificate(s.chain[0]!);
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  assert.ok(leaf.checkPrivateKey(s.privateKey), 'the key belongs to the leaf');
  assert.equal(s.privateKey.asymmetricKeyType, 'ec');
  assert.deepEqual(
    createPublicKey(s.privateKey).export({ type: 'spki', format: 'der' }),
    leaf.publicKey.export({ type: 'spki', format: 'der' }),
  );
  assert.equal(s.bundle.length, 1);
  assert.ok(s.bundle[0]!.equals(f.ca.roots[0]!), 'the bundle is the CA root');
  assert.ok(leaf.verify(new X509Certificate(s.bundle[0]!).publicKey), 'the leaf chains to the bundle');
  assert.equal(u.federatedBundles.size, 0);
});

test('FetchX509SVID pushes a new SVID on rotation, on the same stream', async (t) => {
  const f = await setup(t, { ttlMs: 3000 });
  const updates: X509SvidUpdate[] = [];
  const errors: Error[] = [];
  let second: () => void = () => {};
  const gotTwo = new Promise<void>((r) => (second = r));
  const w = f.client.watchX509Svid(
    (u) => {
      updates.push(u);
      if (updates.length === 2) second();
    },
    (e) => errors.push(e),
  );
  t.after(() => w.cancel());
  // 3 s SVIDs renew at half their lifetime minus jitter (~1.3-1.7 s).
  await withTimeout(gotTwo, 6000, 'a rotated SVID');
  const [a, b] = updates.map((u) => new X509Certificate(u.svids[0]!.chain[0]!));
  assert.notEqual(a!.serialNumber, b!.serialNumber);
  assert.ok(Date.parse(b!.validTo) >= Date.parse(a!.validTo));
  assert.equal(updates[1]!.svids[0]!.spiffeId, ID);
  assert.ok(b!.checkPrivateKey(updates[1]!.svids[0]!.privateKey));
  assert.equal(b!.checkPrivateKey(updates[0]!.svids[0]!.privateKey), false, 'a new key with the new SVID');
  assert.deepEqual(errors, []);
});

test('a bundle change (root rollover) is pushed to FetchX509SVID and FetchX509Bundles streams', async (t) => {
  let caClient: ReturnType<typeof rollingCa> | undefined;
  const f = await setup(t, { caClient: (ca) => (caClient = rollingCa(ca)) });
  const bundles: Map<string, Buffer[]>[] = [];
  const svidBundles: number[] = [];
  let wait: () => void = () => {};
  const both = new Promise<void>((r) => (wait = r));
  const check = (): void => {
    if (bundles.length === 2 && svidBundles.length === 2) wait();
  };
  const w1 = f.client.watchX509Bundles((b) => {
    bundles.push(b);
    check();
  });
  const w2 = f.client.watchX509Svid((u) => {
    svidBundles.push(u.svids[0]!.bundle.length);
    check();
  });
  t.after(() => {
    w1.cancel();
    w2.cancel();
  });
  await withTimeout(
    (async () => {
      while (bundles.length < 1 || svidBundles.length < 1) await new Promise((r) => setTimeout(r, 20));
    })(),
    5000,
    'the first bundle',
  );
  const next = CertificateAuthority.createRoot({ trustDomain: TD, ttlMs: 3600_000 });
  caClient!.extra.push(next.roots[0]!);
  f.svids.refreshBundle();
  await withTimeout(both, 5000, 'the new bundle');
  assert.deepEqual([...bundles[0]!.keys()], [`spiffe://${TD}`]);
  assert.ok(bundles[0]!.get(`spiffe://${TD}`)![0]!.equals(f.ca.roots[0]!));
  assert.equal(bundles[1]!.get(`spiffe://${TD}`)!.length, 2);
  assert.ok(bundles[1]!.get(`spiffe://${TD}`)![1]!.equals(next.roots[0]!));
  assert.deepEqual(svidBundles, [1, 2]);
});

test('requests without the security header fail with InvalidArgument "security header missing from request"', async (t) => {
  const f = await setup(t);
  const raw = rawClient(t, f.socketPath);
  const unary = (md: grpc.Metadata): Promise<grpc.ServiceError | null> =>
    new Promise((resolve) =>
      raw['FetchJWTSVID']!({ audience: ['x'] }, md, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null) =>
        resolve(err),
      ),
    );
  const e1 = await unary(new grpc.Metadata());
  assert.equal(e1?.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(e1?.details, SECURITY_HEADER_MISSING);
  const wrongCase = new grpc.Metadata();
  wrongCase.set('workload.spiffe.io', 'True'); // the value is case sensitive
  assert.equal((await unary(wrongCase))?.code, grpc.status.INVALID_ARGUMENT);

  for (const method of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) {
    const err = await withTimeout(
      new Promise<grpc.ServiceError>((resolve, reject) => {
        const call = raw[method]!({}, new grpc.Metadata()) as grpc.ClientReadableStream<unknown>;
        call.on('data', () => reject(new Error(`${method} answered without the header`)));
        call.on('error', resolve);
      }),
      5000,
      `${method} to fail`,
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, method);
    assert.equal(err.details, SECURITY_HEADER_MISSING, method);
  }
  const v = await new Promise<grpc.ServiceError | null>((resolve) =>
    raw['ValidateJWTSVID']!({ audience: 'a', svid: 'x.y.z' }, new grpc.Metadata(), (err: grpc.ServiceError | null) =>
      resolve(err),
    ),
  );
  assert.equal(v?.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(v?.details, SECURITY_HEADER_MISSING);
});

test('JWT-SVID: fetch, validate through the API, wrong audience rejected, other identities refused', async (t) => {
  const f = await setup(t);
  const svid = await f.client.fetchJwtSvid('spiffe://example.org/ns/shop/sa/orders');
  assert.equal(svid.spiffeId, ID);
  assert.equal(svid.token.split('.').length, 3);

  const ok = await f.client.validateJwtSvid(svid.token, 'spiffe://example.org/ns/shop/sa/orders');
  assert.equal(ok.spiffeId, ID);
  assert.equal(ok.claims['sub'], ID);
  assert.deepEqual(ok.claims['aud'], ['spiffe://example.org/ns/shop/sa/orders']);
  assert.equal(typeof ok.claims['exp'], 'number');
  assert.ok((ok.claims['exp'] as number) * 1000 > Date.now());

  await assert.rejects(f.client.validateJwtSvid(svid.token, 'someone-else'), (e: unknown) => {
    assert.ok(e instanceof WorkloadApiError);
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
    assert.match(e.details, /aud/);
    return true;
  });
  await assert.rejects(f.client.validateJwtSvid('not-a-jwt', 'a'), { code: grpc.status.INVALID_ARGUMENT });
  await assert.rejects(f.client.validateJwtSvid(svid.token, ''), { code: grpc.status.INVALID_ARGUMENT });
  // A token signed by another authority of the same trust domain does not verify.
  const rogue = await (await JwtSvidAuthority.create(TD)).issue(ID, ['a'], 60_000);
  await assert.rejects(f.client.validateJwtSvid(rogue.token, 'a'), (e: unknown) => {
    assert.equal((e as WorkloadApiError).code, grpc.status.INVALID_ARGUMENT);
    assert.match((e as WorkloadApiError).details, /signature/);
    return true;
  });

  // Asking for the own SPIFFE ID explicitly is fine; any other is PermissionDenied.
  assert.equal((await f.client.fetchJwtSvid(['a', 'b'], ID)).spiffeId, ID);
  await assert.rejects(f.client.fetchJwtSvid('a', OTHER), { code: grpc.status.PERMISSION_DENIED });
  await assert.rejects(f.client.fetchJwtSvid([]), (e: unknown) => {
    assert.equal((e as WorkloadApiError).code, grpc.status.INVALID_ARGUMENT);
    assert.match((e as WorkloadApiError).details, /audience/);
    return true;
  });
});

test('FetchJWTBundles: the JWKS by trust-domain SPIFFE ID, pushed again after a key rotation', async (t) => {
  const f = await setup(t);
  const first = await f.client.fetchJwtBundles();
  assert.deepEqual([...first.keys()], [`spiffe://${TD}`]);
  assert.deepEqual(first.get(`spiffe://${TD}`), f.jwt.jwks());

  const seen: number[] = [];
  let wait: () => void = () => {};
  const two = new Promise<void>((r) => (wait = r));
  const w = f.client.watchJwtBundles((b) => {
    seen.push(b.get(`spiffe://${TD}`)!.keys.length);
    if (seen.length === 2) wait();
  });
  t.after(() => w.cancel());
  await withTimeout(
    (async () => {
      while (seen.length < 1) await new Promise((r) => setTimeout(r, 20));
    })(),
    5000,
    'the first JWT bundle',
  );
  await f.jwt.rotate();
  f.server.bundlesChanged();
  await withTimeout(two, 5000, 'the rotated JWT bundle');
  assert.deepEqual(seen, [1, 2]);
  // A token from the new key validates with the published bundle.
  const svid = await f.client.fetchJwtSvid('a');
  assert.equal((await f.client.validateJwtSvid(svid.token, 'a')).spiffeId, ID);
});

test('socket lifecycle: 0600 socket in a 0700 directory, stale sockets replaced, live ones and files refused', async (t) => {
  const f = await setup(t);
  assert.equal(lstatSync(f.socketPath).mode & 0o777, 0o600);
  assert.ok(lstatSync(f.socketPath).isSocket());
  assert.equal(statSync(join(f.dir, 'shop', 'cart')).mode & 0o777, 0o700);
  assert.equal(statSync(join(f.dir, 'shop')).mode & 0o777, 0o711);

  const base = { svids: f.svids, jwt: f.jwt, spiffeId: ID, trustDomain: TD, jwtTtlMs: 60_000 };
  // A live socket is not stolen.
  await assert.rejects(WorkloadApiServer.start({ ...base, socketPath: f.socketPath }), /in use/);
  // A regular file is not deleted.
  const file = join(f.dir, 'file.sock');
  writeFileSync(file, 'x');
  await assert.rejects(WorkloadApiServer.start({ ...base, socketPath: file }), /not a socket/);
  assert.ok(existsSync(file));

  // A stale socket (its server died without cleaning up) is replaced.
  const stale = join(f.dir, 'stale.sock');
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await withTimeout(new Promise((r) => child.stdout!.once('data', r)), 5000, 'the stale-socket child');
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await withTimeout(exited, 5000, 'the child to exit');
  assert.ok(lstatSync(stale).isSocket(), 'the killed server left its socket');
  const s2 = await WorkloadApiServer.start({ ...base, socketPath: stale });
  const c2 = new WorkloadApiClient(stale, { timeoutMs: 5000 });
  assert.equal((await c2.fetchX509Svid()).svids[0]!.spiffeId, ID);
  c2.close();
  await s2.close();
  assert.equal(existsSync(stale), false, 'close() removes the socket');

  // Bad options are refused before anything is created.
  await assert.rejects(WorkloadApiServer.start({ ...base, socketPath: 'relative.sock' }), /absolute/);
  await assert.rejects(
    WorkloadApiServer.start({ ...base, spiffeId: OTHER.replace(TD, 'other.org'), socketPath: join(f.dir, 'x.sock') }),
    /trust domain/,
  );
  await assert.rejects(
    WorkloadApiServer.start({ ...base, socketPath: join(f.dir, 'a'.repeat(120), 'agent.sock') }),
    /at most 107/,
  );
});

test('close() ends open streams with Unavailable and removes the socket and the directories it made', async (t) => {
  const f = await setup(t);
  const errors: Error[] = [];
  let got: () => void = () => {};
  const first = new Promise<void>((r) => (got = r));
  const errored = new Promise<void>((r) => {
    const w = f.client.watchX509Svid(
      () => got(),
      (e) => {
        errors.push(e);
        w.cancel();
        r();
      },
    );
  });
  await withTimeout(first, 5000, 'the first SVID');
  await withTimeout(f.server.close(), 5000, 'close()');
  await withTimeout(errored, 5000, 'the stream to end');
  assert.equal((errors[0] as WorkloadApiError).code, grpc.status.UNAVAILABLE);
  assert.equal(existsSync(f.socketPath), false);
  assert.equal(existsSync(join(f.dir, 'shop')), false);
});

test('endpoint addresses: unix:///path, a bare path, tcp://ip:port; SPIFFE_ENDPOINT_SOCKET is the fallback', () => {
  assert.equal(endpointTarget('unix:///run/trellis/agent.sock'), 'unix:///run/trellis/agent.sock');
  assert.equal(endpointTarget('/run/trellis/agent.sock'), 'unix:///run/trellis/agent.sock');
  assert.equal(endpointTarget('tcp://127.0.0.1:8000'), '127.0.0.1:8000');
  assert.throws(() => endpointTarget('unix://host/agent.sock'), /no host/);
  assert.throws(() => endpointTarget('tcp://127.0.0.1:8000/foo'), /tcp:\/\/ip:port/);
  assert.throws(() => endpointTarget('http://x'), /scheme/);
  const saved = process.env['SPIFFE_ENDPOINT_SOCKET'];
  try {
    process.env['SPIFFE_ENDPOINT_SOCKET'] = 'unix:///tmp/x.sock';
    const c = new WorkloadApiClient();
    assert.equal(c.target, 'unix:///tmp/x.sock');
    c.close();
    delete process.env['SPIFFE_ENDPOINT_SOCKET'];
    assert.throws(() => new WorkloadApiClient(), /SPIFFE_ENDPOINT_SOCKET/);
  } finally {
    if (saved === undefined) delete process.env['SPIFFE_ENDPOINT_SOCKET'];
    else process.env['SPIFFE_ENDPOINT_SOCKET'] = saved;
  }
});

// ---------------------------------------------------------------------------------------
// Attestation by file permissions, with real processes running as other uids.

const NOBODY = 65534;
const STRANGER = 12345;

interface ChildResult {
  uid: number;
  connect: string;
  spiffeId?: string;
  error?: { code?: number; details?: string };
}

/** Runs a node process as `uid` that connects to `socketPath` and tries FetchX509SVID. */
function asUid(uid: number, socketPath: string): Promise<ChildResult> {
  const script = `
    import net from 'node:net';
    const { WorkloadApiClient } = await import(process.env.CLIENT_JS);
    const sock = process.env.SOCK;
    const res = { uid: process.getuid() };
    res.connect = await new Promise((r) => {
      const s = net.connect(sock);
      s.on('connect', () => { s.destroy(); r('ok'); });
      s.on('error', (e) => r(e.code));
    });
    const c = new WorkloadApiClient('unix://' + sock, { timeoutMs: 3000 });
    try {
      res.spiffeId = (await c.fetchX509Svid()).svids[0].spiffeId;
    } catch (e) {
      res.error = { code: e.code, details: e.details ?? e.message };
    }
    c.close();
    console.log(JSON.stringify(res));
  `;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script],
      { uid, gid: uid, env: { CLIENT_JS, SOCK: socketPath, PATH: process.env['PATH'] ?? '' }, timeout: 15_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`child as uid ${uid} failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as ChildResult);
      },
    );
  });
}

test('attestation: only the socket owner uid gets the SVID; another uid gets EACCES', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to create sockets owned by other uids and run processes as them');
    return;
  }
  // The per-workload layout: <dir>/<namespace>/<serviceAccount>/agent.sock, socket and
  // directory owned by the workload's uid.
  const f = await setup(t, { uid: NOBODY, gid: NOBODY });
  chmodSync(f.dir, 0o711); // mkdtemp makes it 0700; the node's socket root is traversable
  const sockStat = lstatSync(f.socketPath);
  assert.equal(sockStat.uid, NOBODY);
  assert.equal(sockStat.mode & 0o777, 0o600);
  const dirStat = statSync(join(f.dir, 'shop', 'cart'));
  assert.equal(dirStat.uid, NOBODY);
  assert.equal(dirStat.mode & 0o777, 0o700);

  const owner = await asUid(NOBODY, f.socketPath);
  assert.equal(owner.connect, 'ok');
  assert.equal(owner.spiffeId, ID);
  const stranger = await asUid(STRANGER, f.socketPath);
  assert.equal(stranger.connect, 'EACCES');
  assert.equal(stranger.spiffeId, undefined);
  assert.equal(stranger.error?.code, grpc.status.UNAVAILABLE);

  // The socket's own mode is a barrier too: in a directory everyone may enter, a 0600
  // socket owned by nobody still refuses uid 12345.
  const shared = join(f.dir, 'shared');
  mkdirSync(shared, { mode: 0o755 });
  chmodSync(shared, 0o755);
  const sockPath = join(shared, 'agent.sock');
  const s2 = await WorkloadApiServer.start({
    socketPath: sockPath,
    spiffeId: ID,
    svids: f.svids,
    jwt: f.jwt,
    trustDomain: TD,
    jwtTtlMs: 60_000,
    uid: NOBODY,
    gid: NOBODY,
  });
  t.after(() => s2.close());
  assert.equal(lstatSync(sockPath).uid, NOBODY);
  assert.equal(statSync(shared).uid, 0, 'an existing directory is left as it is');
  assert.equal((await asUid(STRANGER, sockPath)).connect, 'EACCES');
  assert.equal((await asUid(NOBODY, sockPath)).spiffeId, ID);
});
