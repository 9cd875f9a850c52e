// Trellis rows of bench:proxy, each run by `trellis up` on a generated config with free ports:
//
// - 'Trellis L7 gateway (N workers)': the L7 engine as an ingress gateway in front of the origin
//   (a Mesh with one node, the origin as a MESH_EXTERNAL ServiceEntry, a Gateway and an
//   HTTPRoute), `trellis up --concurrency N`. Measured processes: the gateway's node process
//   tree (primary + workers) — not the control plane or `trellis up`, which are not in the
//   request path.
// - 'Trellis node A -> HBONE -> node B (TCP port | HTTP_PROXY)': two nodes (127.0.0.1 and
//   127.0.0.2, one worker each), the origin as a WorkloadEntry on node B (at 127.0.0.2, where
//   the origin also listens) behind a Service, and a client Workload on node A with a local
//   upstream port for it. The TCP port row loads that port; the HTTP_PROXY row loads node A's
//   outbound HTTP proxy for the client with absolute-form requests. Both rows share one
//   `trellis up`. Measured processes: both node process trees, also reported per node.
//
// startTwoNodeMesh is also what bench/proxy/node-proxies.ts (iperf3 through a tunnel, RSS with
// 1,000 tunnelled connections) runs, on a fresh mesh of its own.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { childrenMatching, descendants, freePort, logTail, startProcess, waitForListen, type Proc } from './procs.js';
import { NODE_B_ADDRESS, type BenchTarget, type Endpoint } from './targets.js';

const TRELLIS = fileURLToPath(new URL('../../../bin/trellis.js', import.meta.url));

/** `trellis up` prints this once every node is ready and every workload serves. */
const UP_READY = 'Ctrl-C stops everything.';

export interface NodePorts {
  hbone: number;
  outbound: number;
  inbound: number;
  metrics: number;
  health: number;
}

async function nodePorts(): Promise<NodePorts> {
  return {
    hbone: await freePort(),
    outbound: await freePort(),
    inbound: await freePort(),
    metrics: await freePort(),
    health: await freePort(),
  };
}

const portsYaml = (p: NodePorts): string =>
  `{ hbone: ${p.hbone}, outbound: ${p.outbound}, inbound: ${p.inbound}, metrics: ${p.metrics}, health: ${p.health} }`;

export interface TrellisMesh {
  /** The `trellis up` process. */
  readonly up: Proc;
  /** Node name → PID of its node process (the primary when it runs workers). */
  readonly nodes: ReadonlyMap<string, number>;
  readonly stateDir: string;
  /** Stops `trellis up` (which stops its nodes and control plane). Idempotent. */
  stop(): Promise<void>;
}

function failure(what: string, upLog: string, stateDir: string, nodes: readonly string[]): Error {
  const logs = nodes.map((n) => logTail(join(stateDir, 'logs', `${n}.log`), 5)).filter(Boolean);
  return new Error(`${what}${logTail(upLog)}${logs.map((l) => `\n  node log${l}`).join('')}`);
}

/**
 * `trellis up` on one generated config; resolves once it printed that everything is ready, every
 * port in `ports` listens, and each node runs its `concurrency` workers.
 */
export async function trellisUp(o: {
  dir: string;
  yaml: string;
  concurrency: number;
  nodes: readonly string[];
  ports: readonly Endpoint[];
  /** More `trellis up` flags (e.g. --observability off). */
  extraArgs?: readonly string[];
}): Promise<TrellisMesh> {
  const configDir = join(o.dir, 'trellis-config');
  const stateDir = join(o.dir, 'trellis-state');
  mkdirSync(configDir, { recursive: true });
  writeFileSync(join(configDir, 'mesh.yaml'), o.yaml);
  const xds = await freePort();
  const admin = await freePort();
  const up = await startProcess({
    name: 'trellis-up',
    command: process.execPath,
    args: [
      TRELLIS,
      'up',
      '-f',
      configDir,
      '--state-dir',
      stateDir,
      '--xds-listen',
      `127.0.0.1:${xds}`,
      '--admin-listen',
      `127.0.0.1:${admin}`,
      '--concurrency',
      String(o.concurrency),
      ...(o.extraArgs ?? []),
    ],
    log: join(o.dir, 'trellis-up.log'),
    cwd: o.dir,
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await up.stop(10_000);
  };
  try {
    const deadline = performance.now() + 45_000;
    while (!(existsSync(up.log) && readFileSync(up.log, 'utf8').includes(UP_READY))) {
      if (up.exited()) throw failure(`trellis up exited (${up.exitInfo()}) before ready`, up.log, stateDir, o.nodes);
      if (performance.now() > deadline) throw failure('trellis up not ready after 45 s', up.log, stateDir, o.nodes);
      await sleep(100);
    }
    // Listening, checked without connecting: a connection to an upstream port would open a
    // tunnel to the server behind it (an iperf3 server takes it for a test).
    for (const p of o.ports) await waitForListen(p.host, p.port, up, 10_000);
    const nodes = new Map<string, number>();
    for (const name of o.nodes) {
      const pids = childrenMatching(up.pid, (argv) => {
        const i = argv.indexOf('--name');
        return argv.includes('node') && i >= 0 && argv[i + 1] === name;
      });
      if (pids.length !== 1) throw new Error(`node process of ${name}: found ${pids.length} under trellis up`);
      nodes.set(name, pids[0]!);
    }
    if (o.concurrency > 1) {
      // The workers are forked as the node starts; wait until each node has all of them.
      const until = performance.now() + 15_000;
      for (const [name, pid] of nodes) {
        while (descendants([pid]).filter((s) => s.pid !== pid && s.state !== 'Z').length < o.concurrency) {
          if (performance.now() > until)
            throw failure(`node ${name}: fewer than ${o.concurrency} workers`, up.log, stateDir, o.nodes);
          await sleep(100);
        }
      }
    }
    return { up, nodes, stateDir, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------
// The L7 engine as a gateway.

function gatewayConfig(originPort: number, gatewayPort: number, ports: NodePorts): string {
  return `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: bench }
spec:
  nodes:
    - name: bench
      address: 127.0.0.1
      ports: ${portsYaml(ports)}
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

/** The gateway row with `workers` worker processes (`trellis up --concurrency workers`). */
export function trellisGateway(
  workers: number,
  more: { name?: string; extraArgs?: readonly string[] } = {},
): BenchTarget {
  return {
    name: more.name ?? `Trellis L7 gateway (${workers} worker${workers === 1 ? '' : 's'})`,
    async start(origin, tmp) {
      const port = await freePort();
      const mesh = await trellisUp({
        dir: tmp,
        yaml: gatewayConfig(origin.port, port, await nodePorts()),
        concurrency: workers,
        nodes: ['bench'],
        ports: [{ host: '127.0.0.1', port }],
        ...(more.extraArgs ? { extraArgs: more.extraArgs } : {}),
      });
      return { url: `http://127.0.0.1:${port}/`, pids: [mesh.nodes.get('bench')!], stop: () => mesh.stop() };
    },
  };
}

// ---------------------------------------------------------------------------------------
// Two nodes: node A (client side, 127.0.0.1) -> HBONE -> node B (server side, 127.0.0.2).

export const NODE_A_ADDRESS = '127.0.0.1';

/** A server on node B (listening on NODE_B_ADDRESS:port), declared as a WorkloadEntry behind a Service. */
export interface Backend {
  /** Workload, Service and service account name; the service host is <name>.bench.svc.cluster.local. */
  name: string;
  port: number;
  /** The Service's port (the upstream's `port`). */
  servicePort: number;
  protocol: 'http' | 'tcp';
}

export const serviceHost = (name: string): string => `${name}.bench.svc.cluster.local`;

function twoNodeConfig(a: NodePorts, b: NodePorts, backends: readonly Backend[], local: ReadonlyMap<string, number>) {
  const docs = [
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: bench }
spec:
  mtls: { mode: STRICT }
  nodes:
    - { name: node-a, address: ${NODE_A_ADDRESS}, ports: ${portsYaml(a)} }
    - { name: node-b, address: ${NODE_B_ADDRESS}, ports: ${portsYaml(b)} }`,
    `apiVersion: v1
kind: Namespace
metadata: { name: bench }`,
    // The client: no command (the bench's load generators stand in for it), only its identity
    // and its upstream ports on node A.
    `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: client, namespace: bench }
spec: { address: ${NODE_A_ADDRESS}, serviceAccount: client, labels: { app: client } }`,
    `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: client, namespace: bench }
spec:
  node: node-a
  upstreams:
${backends
  .map(
    (s) =>
      `    - { host: ${serviceHost(s.name)}, port: ${s.servicePort}, localPort: ${local.get(s.name)}, localAddress: ${NODE_A_ADDRESS} }`,
  )
  .join('\n')}`,
  ];
  for (const s of backends)
    docs.push(
      `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${s.name}, namespace: bench }
spec: { address: ${NODE_B_ADDRESS}, serviceAccount: ${s.name}, labels: { app: ${s.name} }, ports: { ${s.protocol}: ${s.port} } }`,
      `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: ${s.name}, namespace: bench }
spec: { node: node-b }`,
      `apiVersion: v1
kind: Service
metadata: { name: ${s.name}, namespace: bench }
spec:
  selector: { app: ${s.name} }
  ports: [{ name: ${s.protocol}, port: ${s.servicePort}, targetPort: ${s.protocol} }]`,
    );
  return `${docs.join('\n---\n')}\n`;
}

export interface TwoNodeMesh {
  readonly mesh: TrellisMesh;
  readonly nodeA: number;
  readonly nodeB: number;
  /** Backend name → node A's local upstream port for it (on NODE_A_ADDRESS). */
  readonly local: ReadonlyMap<string, number>;
  /** Node A's outbound HTTP proxy for the client workload (HTTP_PROXY), on NODE_A_ADDRESS. */
  readonly httpProxyPort: number;
  stop(): Promise<void>;
}

/** `trellis up --concurrency 1` of the two-node config with these backends on node B. */
export async function startTwoNodeMesh(dir: string, backends: readonly Backend[]): Promise<TwoNodeMesh> {
  const a = await nodePorts();
  const b = await nodePorts();
  const local = new Map<string, number>();
  for (const s of backends) local.set(s.name, await freePort());
  const mesh = await trellisUp({
    dir,
    yaml: twoNodeConfig(a, b, backends, local),
    concurrency: 1,
    nodes: ['node-a', 'node-b'],
    // The client is node A's only workload: its outbound proxy gets node A's outbound port.
    ports: [...local.values(), a.outbound].map((port) => ({ host: NODE_A_ADDRESS, port })),
  });
  return {
    mesh,
    nodeA: mesh.nodes.get('node-a')!,
    nodeB: mesh.nodes.get('node-b')!,
    local,
    httpProxyPort: a.outbound,
    stop: () => mesh.stop(),
  };
}

let shared: { refs: number; mesh: Promise<TwoNodeMesh> } | undefined;

/** A row of the node A -> node B path; both rows share one mesh, stopped when both stopped. */
function nodePath(via: 'TCP port' | 'HTTP_PROXY'): BenchTarget {
  return {
    name: `Trellis node A -> HBONE -> node B (${via})`,
    async start(origin, tmp) {
      if (!origin.altHosts?.includes(NODE_B_ADDRESS))
        throw new Error(`the origin does not listen on ${NODE_B_ADDRESS} (node B's workload address)`);
      const s = (shared ??= {
        refs: 0,
        mesh: startTwoNodeMesh(tmp, [{ name: 'origin', port: origin.port, servicePort: 80, protocol: 'http' }]),
      });
      s.refs++;
      let stopped = false;
      const release = async (): Promise<void> => {
        if (stopped) return;
        stopped = true;
        if (--s.refs > 0) return;
        if (shared === s) shared = undefined;
        await s.mesh.then((m) => m.stop()).catch(() => undefined);
      };
      let m: TwoNodeMesh;
      try {
        m = await s.mesh;
      } catch (e) {
        await release();
        throw e;
      }
      const common = {
        pids: [m.nodeA, m.nodeB],
        groups: [
          { name: 'node A', pids: [m.nodeA] },
          { name: 'node B', pids: [m.nodeB] },
        ],
        stop: release,
      };
      return via === 'TCP port'
        ? { url: `http://${NODE_A_ADDRESS}:${m.local.get('origin')}/`, ...common }
        : { url: `http://${NODE_A_ADDRESS}:${m.httpProxyPort}/`, path: `http://${serviceHost('origin')}/`, ...common };
    },
  };
}

export const nodePathTcp = nodePath('TCP port');
export const nodePathHttpProxy = nodePath('HTTP_PROXY');
