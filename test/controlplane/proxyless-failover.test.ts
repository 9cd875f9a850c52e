// Locality failover end to end: a grpc-js-xds client in zone-a uses the zone-a endpoint,
// fails over to zone-b when zone-a's backend goes away, and fails back when it returns.
// The client and its backends run in a child process (test/helpers/failover-client.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../helpers/run-cli.js';

function config(a: number, b: number): string {
  return `apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-a, namespace: demo }
spec: { address: 127.0.0.1, locality: eu/zone-a, labels: { app: echo }, ports: { grpc: ${a} } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-b, namespace: demo }
spec: { address: 127.0.0.1, locality: eu/zone-b, labels: { app: echo }, ports: { grpc: ${b} } }
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
`;
}

test(
  'locality failover and failback for a proxyless client (DestinationRule with outlier detection)',
  { timeout: 60_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-failover-'));
    const client = spawn(process.execPath, [join(REPO_ROOT, 'dist/test/helpers/failover-client.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: client.stdout });
    const next = () =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('the failover client did not answer')), 50_000);
        lines.once('line', (l) => {
          clearTimeout(t);
          resolve(JSON.parse(l) as Record<string, unknown>);
        });
      });
    let cp: ReturnType<typeof spawn> | undefined;
    try {
      const { ports } = (await next()) as { ports: { a: number; b: number } };
      writeFileSync(join(dir, 'mesh.yaml'), config(ports.a, ports.b));
      cp = spawn(
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
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      const xds = await new Promise<string>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error(`no start: ${out}`)), 15_000);
        cp!.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /xDS on (\S+),/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
      });
      client.stdin.write(`${xds}\n`);
      const { result } = (await next()) as {
        result: { before: string[]; failoverMs: number; during: string[]; failbackMs: number };
      };
      // Same zone first: every call stays in zone-a.
      assert.deepEqual([...new Set(result.before)], ['zone-a']);
      // zone-a gone: calls fail over to zone-b, and stay there.
      assert.ok(result.failoverMs >= 0, 'calls did not fail over to zone-b');
      assert.deepEqual([...new Set(result.during)], ['zone-b']);
      // zone-a back on the same address: calls fail back.
      assert.ok(result.failbackMs >= 0, 'calls did not fail back to zone-a');
    } finally {
      client.kill('SIGKILL');
      cp?.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
