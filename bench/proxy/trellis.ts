// Trellis rows of bench:proxy: the L7 engine as an ingress gateway in front of the origin,
// run by `trellis up` on a generated config (a Mesh with one node, the origin as a
// MESH_EXTERNAL ServiceEntry, a Gateway and an HTTPRoute).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './procs.js';
import { startServer, type BenchTarget } from './targets.js';

const TRELLIS = fileURLToPath(new URL('../../../bin/trellis.js', import.meta.url));

function config(originPort: number, gatewayPort: number, base: number): string {
  return `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: bench }
spec:
  nodes:
    - name: bench
      address: 127.0.0.1
      ports: { hbone: ${base}, outbound: ${base + 1}, inbound: ${base + 2}, metrics: ${base + 3}, health: ${base + 4} }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: origin, namespace: bench }
spec:
  hosts: [origin.bench]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP, targetPort: ${originPort} }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: bench }
spec:
  gatewayClassName: trellis
  listeners: [{ name: http, port: ${gatewayPort}, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: origin, namespace: bench }
spec:
  parentRefs: [{ name: edge }]
  rules:
    - backendRefs: [{ group: networking.istio.io, kind: Hostname, name: origin.bench, port: 80 }]
`;
}

export const trellisGateway: BenchTarget = {
  name: 'Trellis L7 (gateway)',
  async start(origin, tmp) {
    const port = await freePort();
    const xds = await freePort();
    const admin = await freePort();
    const base = 26000 + (port % 1000) * 5;
    const dir = join(tmp, 'trellis-config');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'mesh.yaml'), config(origin.port, port, base));
    const p = await startServer({
      name: 'trellis-up',
      command: process.execPath,
      args: [
        TRELLIS,
        'up',
        '-f',
        dir,
        '--state-dir',
        join(tmp, 'trellis-state'),
        '--xds-listen',
        `127.0.0.1:${xds}`,
        '--admin-listen',
        `127.0.0.1:${admin}`,
      ],
      tmp,
      port,
      timeoutMs: 40_000,
    });
    return { url: `http://127.0.0.1:${port}/`, pids: [p.pid], stop: () => p.stop() };
  },
};
