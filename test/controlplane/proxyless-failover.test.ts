// Locality failover end to end: a grpc-js-xds client in zone-a uses the zone-a endpoint,
// fails over to zone-b when zone-a's backend goes away, and fails back when it returns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};
const service = {
  who: {
    path: '/demo.Echo/Who',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

async function backend(name: string, port = 0): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(service, {
    who: (_c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { name }),
  });
  const p = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, bound) =>
      e ? reject(e) : resolve(bound),
    ),
  );
  return { port: p, server };
}

type EchoClient = grpc.Client & {
  who: (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { name: string }) => void) => void;
};

function who(client: EchoClient): Promise<string> {
  return new Promise((resolve) =>
    client.who({}, { deadline: Date.now() + 2000 }, (e, r) => resolve(e ? `error:${e.code}` : r!.name)),
  );
}

async function until(client: EchoClient, want: string, withinMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < withinMs) {
    if ((await who(client)) === want) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 50));
  }
  return -1;
}

test(
  'locality failover and failback for a proxyless client (DestinationRule with outlier detection)',
  { timeout: 60_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-failover-'));
    let a = await backend('zone-a');
    const b = await backend('zone-b');
    writeFileSync(
      join(dir, 'mesh.yaml'),
      `apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-a, namespace: demo }
spec: { address: 127.0.0.1, locality: eu/zone-a, labels: { app: echo }, ports: { grpc: ${a.port} } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-b, namespace: demo }
spec: { address: 127.0.0.1, locality: eu/zone-b, labels: { app: echo }, ports: { grpc: ${b.port} } }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec: { selector: { app: echo }, ports: [{ name: grpc, port: 8080, targetPort: grpc }] }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: demo }
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s }
`,
    );
    const cp = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/trellis.js'),
        'controlplane',
        '--config',
        dir,
        '--xds-listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
      ],
      {
        stdio: ['ignore', 'pipe', 'ignore'], // stderr (JSON logs) left unread would keep this process alive
      },
    );
    let client: EchoClient | undefined;
    try {
      const xds = await new Promise<string>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error(`no start: ${out}`)), 15_000);
        cp.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /xDS on (\S+),/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
      });
      const { register } = (await import('@grpc/grpc-js-xds')) as { register: () => void };
      register();
      const bootstrap = {
        xds_servers: [{ server_uri: xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
        node: { id: 'zone-a-client', cluster: 'test', locality: { region: 'eu', zone: 'zone-a' } },
      };
      const Client = grpc.makeGenericClientConstructor(service, 'Echo');
      client = new Client('xds:///echo.demo.svc.cluster.local:8080', grpc.credentials.createInsecure(), {
        'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
      }) as unknown as EchoClient;

      // Same zone first: every call stays in zone-a.
      for (let i = 0; i < 50; i++) assert.equal(await who(client), 'zone-a');
      // zone-a goes away: calls fail over to zone-b.
      const portA = a.port;
      a.server.forceShutdown();
      const failover = await until(client, 'zone-b', 10_000);
      assert.ok(failover >= 0, 'calls did not fail over to zone-b');
      for (let i = 0; i < 20; i++) assert.equal(await who(client), 'zone-b');
      // zone-a comes back on the same address: calls fail back.
      a = await backend('zone-a', portA);
      const failback = await until(client, 'zone-a', 20_000);
      assert.ok(failback >= 0, 'calls did not fail back to zone-a');
    } finally {
      client?.close();
      cp.kill('SIGTERM');
      a.server.forceShutdown();
      b.server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
