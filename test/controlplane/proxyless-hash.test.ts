// DestinationRule consistentHash end to end: a grpc-js-xds client sends every call with the
// same x-user header to the same backend, and different users spread over both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { echoService, startControlPlane } from '../helpers/controlplane.js';

async function backend(name: string): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(echoService, {
    who: (_c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { name }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, server };
}

type EchoClient = grpc.Client & {
  who: (
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r?: { name: string }) => void,
  ) => void;
};

test('consistentHash on a header: one user, one backend', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-hash-'));
  const backends = [await backend('b1'), await backend('b2')];
  const we = (name: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: echo }, ports: { grpc: ${port} } }
`;
  writeFileSync(
    join(dir, 'mesh.yaml'),
    `apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec: { selector: { app: echo }, ports: [{ name: grpc, port: 8080, targetPort: grpc }] }
${we('b1', backends[0]!.port)}${we('b2', backends[1]!.port)}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: demo }
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: x-user } } }
`,
  );
  const cp = await startControlPlane(dir);
  const { register } = (await import('@grpc/grpc-js-xds')) as { register: () => void };
  register();
  const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
  const client = new Client('xds:///echo.demo.svc.cluster.local:8080', grpc.credentials.createInsecure(), {
    'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify({
      xds_servers: [{ server_uri: cp.xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'hash-client', locality: {} },
    }),
  }) as unknown as EchoClient;
  const call = (user: string) =>
    new Promise<string>((resolve, reject) => {
      const md = new grpc.Metadata();
      md.set('x-user', user);
      client.who({}, md, { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r!.name)));
    });
  try {
    const byUser = new Map<string, Set<string>>();
    for (let u = 0; u < 30; u++) {
      for (let k = 0; k < 5; k++) {
        const who = await call(`user-${u}`);
        if (!byUser.has(`user-${u}`)) byUser.set(`user-${u}`, new Set());
        byUser.get(`user-${u}`)!.add(who);
      }
    }
    for (const [user, seen] of byUser) assert.equal(seen.size, 1, `${user} reached ${[...seen].join(', ')}`);
    const used = new Set([...byUser.values()].flatMap((s) => [...s]));
    assert.deepEqual([...used].sort(), ['b1', 'b2'], 'users spread over both backends');
  } finally {
    client.close();
    await new Promise((r) => setTimeout(r, 200));
    cp.proc.kill('SIGTERM');
    for (const b of backends) b.server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});
