// Node-proxy measures of bench:proxy that are not request/response rows, on a fresh two-node
// mesh of their own (bench/proxy/trellis.ts, startTwoNodeMesh; one worker per node):
//
// - memory: RSS and PSS of node A's and node B's process trees idle (after start and one
//   request through the tunnel), with `tunnels` open tunnelled connections (client sockets to
//   node A's local upstream port for a hold server on node B that accepts and keeps them; all
//   counted as accepted there, i.e. established end to end), and again after closing them.
// - iperf3 through a tunnel: an iperf3 server at node B's workload address, the client against
//   node A's local upstream port (iperf3's control and data connections both go through it),
//   with each node's vCPU over the run.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import http from 'node:http';
import { runIperfClient, startIperfServer } from './iperf.js';
import { memory, sampleTree, vcpu } from './procs.js';
import { BODY_BYTES, NODE_B_ADDRESS, type Origin } from './targets.js';
import { NODE_A_ADDRESS, startTwoNodeMesh, type Backend, type TwoNodeMesh } from './trellis.js';

export interface NodeMemory {
  rssBytes: number;
  pssBytes: number;
}

export interface MemoryResult {
  tunnels: number;
  /** Per node ('node A', 'node B'). */
  idle: Record<string, NodeMemory>;
  open: Record<string, NodeMemory>;
  closed: Record<string, NodeMemory>;
  /** Time from the first connect to the last accept at the hold server. */
  establishMs: number;
  /** Connections the hold server still had when `open` was sampled. */
  heldAtSample: number;
}

export interface IperfRun {
  bitsPerSecond: number;
  vcpu: Record<string, number>;
}

export interface NodeProxyResults {
  memory?: MemoryResult;
  memoryError?: string;
  iperf: IperfRun[];
  iperfError?: string;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

interface HoldServer {
  server: Server;
  port: number;
  held(): number;
  close(): Promise<void>;
}

/** Accepts connections on host and keeps them open, reading and discarding whatever arrives. */
async function startHoldServer(host: string): Promise<HoldServer> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.resume();
  });
  server.maxConnections = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0, backlog: 2048 }, resolve);
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('hold server: no port');
  return {
    server,
    port: addr.port,
    held: () => sockets.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => s.destroy(new Error(`connect timeout after ${timeoutMs} ms`)), timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One GET through a local upstream port; the origin's 1 KB body must come back. */
function probeGet(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: NODE_A_ADDRESS, port, path: '/', agent: false, timeout: 5000 }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () =>
        res.statusCode === 200 && n === BODY_BYTES
          ? resolve()
          : reject(new Error(`probe: status ${res.statusCode}, ${n} B`)),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('probe: timeout')));
    req.on('error', reject);
  });
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

function perNode(m: TwoNodeMesh): Record<string, NodeMemory> {
  return { 'node A': memory([m.nodeA]), 'node B': memory([m.nodeB]) };
}

async function measureMemory(m: TwoNodeMesh, hold: HoldServer, tunnels: number): Promise<MemoryResult> {
  const port = m.local.get('hold')!;
  await probeGet(m.local.get('origin')!);
  await sleep(2000);
  const idle = perNode(m);
  const clients: Socket[] = [];
  try {
    const t0 = performance.now();
    // In batches: each connection is a new tunnel (an HTTP/2 CONNECT stream) through both nodes.
    for (let i = 0; i < tunnels; i += 50) {
      const batch = Array.from({ length: Math.min(50, tunnels - i) }, () => connectOnce(NODE_A_ADDRESS, port, 10_000));
      clients.push(...(await Promise.all(batch)));
    }
    if (!(await waitUntil(() => hold.held() >= tunnels, 30_000)))
      throw new Error(`only ${hold.held()} of ${tunnels} connections reached the hold server on node B within 30 s`);
    const establishMs = performance.now() - t0;
    await sleep(2000);
    const heldAtSample = hold.held();
    const open = perNode(m);
    for (const c of clients) c.destroy();
    clients.length = 0;
    await waitUntil(() => hold.held() === 0, 15_000);
    await sleep(2000);
    return { tunnels, idle, open, closed: perNode(m), establishMs, heldAtSample };
  } finally {
    for (const c of clients) c.destroy();
  }
}

export async function measureNodeProxies(o: {
  origin: Origin;
  iperf3: string;
  dir: string;
  doMemory: boolean;
  doIperf: boolean;
  tunnels: number;
  runs: number;
  iperfSeconds: number;
  log: (msg: string) => void;
}): Promise<NodeProxyResults> {
  const out: NodeProxyResults = { iperf: [] };
  if (!o.origin.altHosts?.includes(NODE_B_ADDRESS)) {
    const e = `the origin does not listen on ${NODE_B_ADDRESS}`;
    return { iperf: [], ...(o.doMemory ? { memoryError: e } : {}), ...(o.doIperf ? { iperfError: e } : {}) };
  }
  let hold: HoldServer | undefined;
  let iperfServer: Awaited<ReturnType<typeof startIperfServer>> | undefined;
  let mesh: TwoNodeMesh | undefined;
  try {
    hold = await startHoldServer(NODE_B_ADDRESS);
    if (o.doIperf) iperfServer = await startIperfServer({ iperf3: o.iperf3, dir: o.dir, host: NODE_B_ADDRESS });
    const backends: Backend[] = [
      { name: 'origin', port: o.origin.port, servicePort: 80, protocol: 'http' },
      { name: 'hold', port: hold.port, servicePort: 9000, protocol: 'tcp' },
      ...(iperfServer ? [{ name: 'iperf', port: iperfServer.port, servicePort: 5201, protocol: 'tcp' } as const] : []),
    ];
    o.log('  node proxies: starting a fresh two-node mesh');
    mesh = await startTwoNodeMesh(o.dir, backends);
    if (o.doMemory) {
      o.log(`  node proxies: RSS idle and with ${o.tunnels} tunnelled connections`);
      try {
        out.memory = await measureMemory(mesh, hold, o.tunnels);
      } catch (e) {
        out.memoryError = message(e);
      }
    }
    if (iperfServer) {
      const port = mesh.local.get('iperf')!;
      for (let i = 0; i < o.runs; i++) {
        o.log(`  node proxies: iperf3 through HBONE, run ${i + 1}/${o.runs}`);
        try {
          const a = sampleTree([mesh.nodeA]);
          const b = sampleTree([mesh.nodeB]);
          const bps = await runIperfClient({
            iperf3: o.iperf3,
            dir: o.dir,
            host: NODE_A_ADDRESS,
            port,
            seconds: o.iperfSeconds,
            label: `iperf3-hbone-${i}`,
          });
          const cpu = { 'node A': vcpu(a, sampleTree([mesh.nodeA])), 'node B': vcpu(b, sampleTree([mesh.nodeB])) };
          out.iperf.push({ bitsPerSecond: bps, vcpu: cpu });
        } catch (e) {
          out.iperfError = `run ${i + 1}: ${message(e)}`;
          break;
        }
      }
    }
  } catch (e) {
    if (o.doMemory && !out.memory) out.memoryError ??= message(e);
    if (o.doIperf && out.iperf.length === 0) out.iperfError ??= message(e);
  } finally {
    await mesh?.stop();
    await iperfServer?.proc.stop(2000);
    await hold?.close();
  }
  return out;
}
