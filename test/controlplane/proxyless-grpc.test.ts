// trellis controlplane serving real @grpc/grpc-js-xds clients: weighted split, header
// routing, endpoint changes, and a rejected config that leaves the last good one serving.
import { echoService, startControlPlane } from '../helpers/controlplane.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { runCliAsync } from '../helpers/run-cli.js';

async function backend(name: string): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(echoService, {
    who: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { name }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, server };
}

function config(ports: { v1: number; v2: number }, weights: [number, number]): string {
  const we = (name: string, version: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: echo, version: ${version} }, ports: { grpc: ${port} } }
`;
  const svc = (name: string, selector: string) => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { ${selector} }
  ports: [{ name: grpc, port: 8080, targetPort: grpc }]
`;
  return `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${we('echo-v1', 'v1', ports.v1)}${we('echo-v2', 'v2', ports.v2)}${svc('echo', 'app: echo')}${svc('echo-v1', 'app: echo, version: v1')}${svc('echo-v2', 'app: echo, version: v2')}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo-split, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 8080 }]
  rules:
    - matches: [{ headers: [{ name: x-canary, value: always }] }]
      backendRefs: [{ name: echo-v2, port: 8080 }]
    - backendRefs:
        - { name: echo-v1, port: 8080, weight: ${weights[0]} }
        - { name: echo-v2, port: 8080, weight: ${weights[1]} }
`;
}

type EchoClient = grpc.Client & {
  who: (
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r?: { name: string }) => void,
  ) => void;
};

function call(client: EchoClient, headers: Record<string, string> = {}): Promise<string> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise((resolve, reject) =>
    client.who({}, md, { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r!.name))),
  );
}

test(
  'proxyless gRPC through trellis controlplane: 90/10 split, header routing, endpoint change, rejected config',
  { timeout: 90_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cp-'));
    const v1 = await backend('v1');
    const v2 = await backend('v2');
    const v3 = await backend('v3');
    writeFileSync(join(dir, 'mesh.yaml'), config({ v1: v1.port, v2: v2.port }, [90, 10]));
    const cp = await startControlPlane(dir);
    const { register } = (await import('@grpc/grpc-js-xds')) as { register: () => void };
    register();
    // The client's CSDS (grpc admin services), advertised in its node metadata for proxy-status.
    const admin = new grpc.Server();
    grpc.addAdminServicesToServer(admin);
    const adminPort = await new Promise<number>((resolve, reject) =>
      admin.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const bootstrap = {
      xds_servers: [{ server_uri: cp.xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: {
        id: 'proxyless-test',
        cluster: 'test',
        locality: {},
        metadata: { TRELLIS_CSDS_ADDRESS: `127.0.0.1:${adminPort}` },
      },
    };
    const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
    const client = new Client('xds:///echo.demo.svc.cluster.local:8080', grpc.credentials.createInsecure(), {
      'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
    }) as unknown as EchoClient;
    try {
      // 90/10 over 2,000 calls lands within ±3 points.
      const counts: Record<string, number> = {};
      for (let i = 0; i < 2000; i++) {
        const who = await call(client);
        counts[who] = (counts[who] ?? 0) + 1;
      }
      const v2Share = ((counts.v2 ?? 0) / 2000) * 100;
      assert.ok(Math.abs(v2Share - 10) <= 3, `v2 got ${v2Share.toFixed(1)}% (counts ${JSON.stringify(counts)})`);

      // Header routing: only matching calls go to v2.
      for (let i = 0; i < 50; i++) assert.equal(await call(client, { 'x-canary': 'always' }), 'v2');

      // The control plane shows this client SYNCED on every type.
      const clients = (await (await fetch(`${cp.admin}/debug/clients`)).json()) as {
        nodeId: string;
        types: { status: string }[];
      }[];
      const me = clients.find((c) => c.nodeId === 'proxyless-test')!;
      assert.ok(me.types.length >= 4 && me.types.every((t) => t.status === 'SYNCED'), JSON.stringify(me.types));
      const ps = await runCliAsync(['proxy-status', '--server', cp.admin]);
      assert.match(ps.stdout, /^NAME\s+CLUSTER\s+CDS\s+LDS\s+EDS\s+RDS\s+SDS/m);
      assert.match(
        ps.stdout,
        /^proxyless-test\s+test\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED\s+NOT SENT\s+gRPC Node Pure JS \S+\s+\d+ ACKED$/m,
      );

      // An endpoint change in config (echo-v1 moves to the v3 server) changes where calls go within a second.
      writeFileSync(join(dir, 'mesh.yaml'), config({ v1: v3.port, v2: v2.port }, [100, 0]));
      const changedAt = Date.now();
      let switched = -1;
      while (Date.now() - changedAt < 5_000) {
        if ((await call(client)) === 'v3') {
          switched = Date.now() - changedAt;
          break;
        }
      }
      assert.ok(switched >= 0 && switched < 1_000, `calls reached the new endpoint after ${switched} ms`);

      // A broken config is rejected: the last good one keeps serving, and the rejection is visible.
      writeFileSync(
        join(dir, 'mesh.yaml'),
        config({ v1: v1.port, v2: v2.port }, [90, 10]).replace('weight: 90', 'weight: -90'),
      );
      await new Promise((r) => setTimeout(r, 600));
      for (let i = 0; i < 20; i++) assert.equal(await call(client), 'v3');
      const state = (await (await fetch(`${cp.admin}/debug/config`)).json()) as {
        rejected: { errors: { field: string }[] } | null;
      };
      assert.equal(state.rejected?.errors[0]?.field, 'spec.rules[1].backendRefs[0].weight');
    } finally {
      admin.forceShutdown();
      client.close();
      cp.proc.kill('SIGTERM');
      for (const b of [v1, v2, v3]) b.server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
