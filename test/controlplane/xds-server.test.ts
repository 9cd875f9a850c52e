// xDS-enabled gRPC servers (grpc-js-xds XdsServer) configured by Trellis: server Listeners,
// STRICT mTLS from SVIDs delivered as files (trellis ca init / ca issue), the SPIFFE SAN check
// on the client, and AuthorizationPolicy enforced as RBAC on the server.
import { echoService, startControlPlane } from '../helpers/controlplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { grpcBootstrap } from '../../src/xds/bootstrap/grpc-bootstrap.js';
import { runCliAsync } from '../helpers/run-cli.js';

// grpc-js-xds reads this when it loads: the RBAC filter is off by default (gRFC A41).
process.env.GRPC_XDS_EXPERIMENTAL_RBAC = 'true';
type XdsModule = {
  register: () => void;
  XdsServer: new (opts?: Record<string, unknown>) => grpc.Server;
  XdsServerCredentials: new (fallback: grpc.ServerCredentials) => grpc.ServerCredentials;
  XdsChannelCredentials: new (fallback: grpc.ChannelCredentials) => grpc.ChannelCredentials;
};
const xds = (await import('@grpc/grpc-js-xds')) as unknown as XdsModule;
xds.register();

const BOOTSTRAP_KEY = 'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config';
type Reply = { name: string; peer: string };
type EchoClient = grpc.Client & {
  who: (
    req: unknown,
    md: grpc.Metadata,
    o: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r?: Reply) => void,
  ) => void;
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))),
  ]);
}

async function cli(args: string[]): Promise<void> {
  const r = await runCliAsync(args);
  assert.equal(r.code, 0, `trellis ${args.join(' ')}: ${r.stderr}${r.stdout}`);
}

/** A CA and one SVID directory per identity, written by `trellis ca init` / `trellis ca issue`. */
async function issue(dir: string, sas: readonly string[]): Promise<Record<string, string>> {
  const ca = join(dir, 'ca');
  await cli(['ca', 'init', '--trust-domain', 'cluster.local', '--out', ca]);
  const out: Record<string, string> = {};
  for (const sa of sas) {
    out[sa] = join(dir, `svid-${sa}`);
    await cli(['ca', 'issue', '--ca', ca, '--spiffe-id', `spiffe://cluster.local/ns/demo/sa/${sa}`, '--out', out[sa]]);
  }
  return out;
}

interface Started {
  readonly server: grpc.Server;
  readonly calls: string[];
}

/** An XdsServer on 127.0.0.1:PORT that answers with its name and the caller's URI SAN. */
async function xdsServer(name: string, port: number, xdsAddress: string, certDir: string): Promise<Started> {
  const calls: string[] = [];
  const bootstrap = grpcBootstrap({ nodeId: `server-${name}`, xdsAddress, certDir, refreshInterval: '5s' });
  const server = new xds.XdsServer({ [BOOTSTRAP_KEY]: JSON.stringify(bootstrap) });
  server.addService(echoService, {
    who: (call: grpc.ServerUnaryCall<unknown, Reply>, cb: grpc.sendUnaryData<Reply>) => {
      const peer = call.getAuthContext()?.sslPeerCertificate?.subjectaltname ?? '';
      calls.push(peer);
      cb(null, { name, peer });
    },
  });
  // bindAsync calls back once the Listener (and its routes) arrived and the port serves.
  // On a timeout the server (and its xDS client) must still go, or the process never exits.
  await within(
    new Promise<void>((resolve, reject) =>
      server.bindAsync(
        `127.0.0.1:${port}`,
        new xds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()),
        (e) => (e ? reject(e) : resolve()),
      ),
    ),
    15_000,
    `XdsServer ${name} serving`,
  ).catch((e: unknown) => {
    server.forceShutdown();
    throw e;
  });
  return { server, calls };
}

function xdsClient(target: string, nodeId: string, xdsAddress: string, certDir: string): EchoClient {
  const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
  const bootstrap = grpcBootstrap({ nodeId, xdsAddress, certDir, refreshInterval: '5s' });
  return new Client(target, new xds.XdsChannelCredentials(grpc.credentials.createInsecure()), {
    [BOOTSTRAP_KEY]: JSON.stringify(bootstrap),
  }) as unknown as EchoClient;
}

function call(client: EchoClient, ms = 5000): Promise<Reply> {
  return new Promise((resolve, reject) =>
    client.who({}, new grpc.Metadata(), { deadline: Date.now() + ms }, (e, r) => (e ? reject(e) : resolve(r!))),
  );
}

async function callError(client: EchoClient, ms = 3000): Promise<grpc.ServiceError> {
  try {
    const r = await call(client, ms);
    assert.fail(`call succeeded: ${JSON.stringify(r)}`);
  } catch (e) {
    return e as grpc.ServiceError;
  }
}

function meshConfig(ports: { echo: number; impostor: number }, extra = ''): string {
  const workload = (name: string, sa: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, serviceAccount: ${sa}, labels: { app: ${name} }, ports: { grpc: ${port} } }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { app: ${name} }
  ports: [{ name: grpc, port: 8080, targetPort: grpc }]
`;
  return `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec: { trustDomain: cluster.local, mtls: { mode: STRICT } }
---
apiVersion: v1
kind: Namespace
metadata: { name: demo }
${workload('echo', 'echo', ports.echo)}${workload('impostor', 'impostor', ports.impostor)}${extra}`;
}

test(
  'trellis controlplane configures XdsServers: STRICT mTLS with SVID files, SPIFFE ID seen by the server, SAN check on the client',
  { timeout: 90_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-xds-server-'));
    const config = join(dir, 'config');
    const closers: (() => void)[] = [];
    try {
      const svids = await issue(dir, ['echo', 'frontend', 'not-impostor']);
      const ports = { echo: await freePort(), impostor: await freePort() };
      mkdirSync(config);
      writeFileSync(join(config, 'mesh.yaml'), meshConfig(ports));
      const cp = await startControlPlane(config);
      closers.push(() => void cp.proc.kill('SIGTERM'));

      const echo = await xdsServer('echo', ports.echo, cp.xds, svids.echo!);
      closers.push(() => echo.server.forceShutdown());
      // The impostor serves with a certificate for another identity than the mesh says it has.
      const impostor = await xdsServer('impostor', ports.impostor, cp.xds, svids['not-impostor']!);
      closers.push(() => impostor.server.forceShutdown());

      const client = xdsClient('xds:///echo.demo.svc.cluster.local:8080', 'client-frontend', cp.xds, svids.frontend!);
      closers.push(() => client.close());
      for (let i = 0; i < 5; i++) {
        const r = await call(client, 10_000);
        assert.equal(r.name, 'echo');
        assert.equal(r.peer, 'URI:spiffe://cluster.local/ns/demo/sa/frontend');
      }

      const wrong = xdsClient('xds:///impostor.demo.svc.cluster.local:8080', 'client-2', cp.xds, svids.frontend!);
      closers.push(() => wrong.close());
      const e = await callError(wrong);
      assert.ok(
        e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED,
        `SAN mismatch: ${e.code} ${e.details}`,
      );
      assert.deepEqual(impostor.calls, [], 'the impostor never got a call');

      // A plaintext (non-xDS-credentials) client cannot reach the STRICT server.
      const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
      const plain = new Client(`127.0.0.1:${ports.echo}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
      closers.push(() => plain.close());
      const pe = await callError(plain);
      assert.ok(pe.code === grpc.status.UNAVAILABLE || pe.code === grpc.status.DEADLINE_EXCEEDED, `${pe.code}`);
      assert.equal(echo.calls.length, 5);
    } finally {
      for (const c of closers.reverse()) c();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'AuthorizationPolicy DENY on a principal: its calls get PERMISSION_DENIED, another principal is served',
  { timeout: 90_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-xds-rbac-'));
    const closers: (() => void | Promise<void>)[] = [];
    try {
      const svids = await issue(dir, ['echo', 'good', 'bad']);
      const ports = { echo: await freePort(), impostor: await freePort() };
      const config = join(dir, 'config');
      mkdirSync(config);
      writeFileSync(
        join(config, 'mesh.yaml'),
        meshConfig(
          ports,
          `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-bad, namespace: demo }
spec:
  selector: { matchLabels: { app: echo } }
  action: DENY
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/bad"] } }] }]
`,
        ),
      );
      // Through trellis controlplane: the model carries the policy, translated to RBAC.
      const cp = await startControlPlane(config);
      closers.push(() => void cp.proc.kill('SIGTERM'));
      const xdsAddress = cp.xds;

      const echo = await xdsServer('echo', ports.echo, xdsAddress, svids.echo!);
      closers.push(() => echo.server.forceShutdown());
      const good = xdsClient('xds:///echo.demo.svc.cluster.local:8080', 'client-good', xdsAddress, svids.good!);
      const bad = xdsClient('xds:///echo.demo.svc.cluster.local:8080', 'client-bad', xdsAddress, svids.bad!);
      closers.push(
        () => good.close(),
        () => bad.close(),
      );

      assert.equal((await call(good, 10_000)).peer, 'URI:spiffe://cluster.local/ns/demo/sa/good');
      const e = await callError(bad, 10_000);
      assert.equal(e.code, grpc.status.PERMISSION_DENIED, `${e.code} ${e.details}`);
      assert.equal(e.details, 'Unauthorized RPC rejected');
      assert.equal((await call(good)).name, 'echo');
      assert.deepEqual(echo.calls, [
        'URI:spiffe://cluster.local/ns/demo/sa/good',
        'URI:spiffe://cluster.local/ns/demo/sa/good',
      ]);
    } finally {
      for (const c of closers.reverse()) await c();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
