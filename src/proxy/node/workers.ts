// Envoy's threading model, with processes: one primary holds the node's single xDS stream and
// hands every warmed state to one worker per core; each worker runs the whole node process
// (HBONE listener and pool, outbound proxies, L7 engines with their own upstream pools), so
// nothing on the request path is shared. Listening sockets go through node:cluster, whose
// primary accepts and deals connections round-robin, which keeps them balanced across workers
// (Node 20 has no SO_REUSEPORT). The primary also serves /metrics (the workers' counters added
// up) and /healthz/ready (ready once every worker applied a configuration).
import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { MetricsRegistry, type FamilySnapshot } from '../../observe/metrics-registry.js';
import { FlowBuffer, serveFlows } from '../../observe/flow-buffer.js';
import type { FlowRecord } from '../../observe/flows.js';
import { XdsClient, type XdsState } from '../xds-client.js';
import { NodeProcess, type NodeProcessOptions } from './node-process.js';
import { nodeConfig, secretNamesFor, type Bind, type NodeConfig } from './node-config.js';

type Series = FamilySnapshot[];
type ToWorker =
  | { type: 'state'; state: XdsState }
  | { type: 'metrics'; id: number }
  | { type: 'flows'; id: number; since: number }
  | { type: 'shutdown' };
type ToPrimary =
  | { type: 'listening' }
  | { type: 'applied' }
  | { type: 'metrics'; id: number; series: Series }
  | { type: 'flows'; id: number; records: FlowRecord[]; last: number };

type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface NodeWorkersOptions {
  readonly node: string;
  readonly xds: string;
  readonly concurrency: number;
  readonly metricsListen?: Bind;
  readonly log: Log;
}

/** A worker that dies on its own is replaced, at most this many times per minute. */
const MAX_RESTARTS_PER_MINUTE = 5;
const METRICS_TIMEOUT_MS = 2_000;
const WORKER_STOP_MS = 4_000;
const SHUTDOWN_TIMEOUT_MS = WORKER_STOP_MS + 1_000;

export function isNodeWorker(): boolean {
  return cluster.isWorker;
}

/** The primary: xDS, the worker set, metrics and readiness. */
export class NodeWorkers {
  readonly #opts: NodeWorkersOptions;
  readonly #xds: XdsClient;
  readonly #workers = new Set<Worker>();
  readonly #applied = new Set<Worker>();
  readonly #pendingMetrics = new Map<number, (s: Series) => void>();
  /**
   * The node's flow records, pulled from the workers' buffers when someone reads /flows (no
   * per-record IPC), renumbered here so the node has one sequence. Per worker: its last seq pulled.
   */
  readonly #flows = new FlowBuffer();
  readonly #flowCursors = new Map<Worker, number>();
  readonly #pendingFlows = new Map<number, (m: { records: FlowRecord[]; last: number }) => void>();
  #pulling: Promise<void> | undefined;
  #state: XdsState | undefined;
  #config: NodeConfig | undefined;
  #metricsServer: Server | undefined;
  #restarts: number[] = [];
  #nextWorker = 0;
  #nextRequest = 0;
  #closing = false;
  #allApplied: (() => void) | undefined;

  constructor(opts: NodeWorkersOptions) {
    this.#opts = opts;
    this.#xds = new XdsClient({
      server: opts.xds,
      nodeId: opts.node,
      secretNames: (s) => secretNamesFor(opts.node, s),
      onUpdate: (s) => this.#update(s),
      log: (level, msg, fields) => opts.log(level, msg, fields),
    });
  }

  get config(): NodeConfig | undefined {
    return this.#config;
  }

  #update(state: XdsState): void {
    try {
      // Read once here so a state no worker could use is reported by one process, not N.
      this.#config = nodeConfig(this.#opts.node, state);
    } catch (e) {
      this.#opts.log('error', 'configuration rejected; workers keep the last good one', { error: String(e) });
      return;
    }
    this.#state = state;
    this.#applied.clear();
    for (const w of this.#workers) this.#send(w, { type: 'state', state });
  }

  #send(w: Worker, m: ToWorker): void {
    if (w.isConnected()) w.send(m);
  }

  #fork(): void {
    const w = cluster.fork({ TRELLIS_NODE_WORKER: String(this.#nextWorker++) });
    this.#workers.add(w);
    w.on('message', (m: ToPrimary) => {
      // Sent once the worker listens for messages ('online' comes earlier, and a state sent then is lost).
      if (m.type === 'listening') {
        if (this.#state) this.#send(w, { type: 'state', state: this.#state });
      } else if (m.type === 'applied') {
        this.#applied.add(w);
        if (this.#ready()) this.#allApplied?.();
      } else if (m.type === 'metrics') this.#pendingMetrics.get(m.id)?.(m.series);
      else if (m.type === 'flows') this.#pendingFlows.get(m.id)?.(m);
    });
    w.once('exit', (code, signal) => {
      this.#workers.delete(w);
      this.#flowCursors.delete(w);
      this.#applied.delete(w);
      if (this.#closing) return;
      const now = Date.now();
      this.#restarts = this.#restarts.filter((t) => now - t < 60_000);
      if (this.#restarts.length >= MAX_RESTARTS_PER_MINUTE) {
        this.#opts.log('error', 'worker exited; too many restarts in a minute, not replacing it', {
          pid: w.process.pid,
          code,
          signal,
        });
        return;
      }
      this.#restarts.push(now);
      this.#opts.log('error', 'worker exited; replacing it', { pid: w.process.pid, code, signal });
      this.#fork();
    });
  }

  #ready(): boolean {
    return this.#state !== undefined && this.#workers.size > 0 && [...this.#workers].every((w) => this.#applied.has(w));
  }

  /** Forks the workers; resolves once every worker applied a first configuration (or after `warmMs`). */
  async start(warmMs = 10_000): Promise<void> {
    // Advanced serialization carries Maps and Buffers (the xDS state) without a JSON round trip.
    cluster.setupPrimary({ serialization: 'advanced' });
    const allApplied = new Promise<void>((resolve) => (this.#allApplied = resolve));
    for (let i = 0; i < this.#opts.concurrency; i++) this.#fork();
    this.#xds.start();
    if (this.#opts.metricsListen) await this.#serveMetrics(this.#opts.metricsListen);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([allApplied, new Promise((r) => (timer = setTimeout(r, warmMs)))]);
    clearTimeout(timer);
  }

  async #serveMetrics(bind: Bind): Promise<void> {
    const server = createServer((req, res) => {
      if (req.url === '/metrics') {
        void this.metrics().then((text) => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
          res.end(text);
        });
      } else if (req.url?.startsWith('/flows') && (req.url.length === 6 || req.url[6] === '?')) {
        void this.#pullFlows().then(() => serveFlows(this.#flows, req, res));
      } else if (req.url === '/healthz/ready') {
        const ready = this.#ready();
        res.writeHead(ready ? 200 : 503);
        res.end(ready ? 'ready\n' : 'warming\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(bind.port, bind.address, () => resolve());
    });
    this.#metricsServer = server;
  }

  /** The workers' series (counters and histograms) added up, in the Prometheus text format. */
  async metrics(): Promise<string> {
    const total = new MetricsRegistry();
    await Promise.all(
      [...this.#workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            const id = this.#nextRequest++;
            const timer = setTimeout(() => {
              this.#pendingMetrics.delete(id);
              resolve();
            }, METRICS_TIMEOUT_MS);
            this.#pendingMetrics.set(id, (series) => {
              clearTimeout(timer);
              this.#pendingMetrics.delete(id);
              total.merge(series);
              resolve();
            });
            this.#send(w, { type: 'metrics', id });
          }),
      ),
    );
    return total.render();
  }

  /** Appends what the workers recorded since the last pull (one pull at a time; bounded by METRICS_TIMEOUT_MS). */
  #pullFlows(): Promise<void> {
    this.#pulling ??= this.#pullOnce().finally(() => (this.#pulling = undefined));
    return this.#pulling;
  }

  async #pullOnce(): Promise<void> {
    const batches = await Promise.all(
      [...this.#workers].map(
        (w) =>
          new Promise<FlowRecord[]>((resolve) => {
            const id = this.#nextRequest++;
            const timer = setTimeout(() => {
              this.#pendingFlows.delete(id);
              resolve([]);
            }, METRICS_TIMEOUT_MS);
            this.#pendingFlows.set(id, ({ records, last }) => {
              clearTimeout(timer);
              this.#pendingFlows.delete(id);
              if (this.#workers.has(w)) this.#flowCursors.set(w, last);
              resolve(records);
            });
            this.#send(w, { type: 'flows', id, since: this.#flowCursors.get(w) ?? 0 });
          }),
      ),
    );
    // Interleaved by time across workers; seqs are the order of arrival here.
    const merged = batches.flat();
    if (batches.length > 1) merged.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    for (const r of merged) this.#flows.push(r);
  }

  /** Asks every worker to drain and stop (bounded), then stops xDS. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#xds.close();
    await Promise.all(
      [...this.#workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.process.exitCode !== null) return resolve();
            const timer = setTimeout(() => w.process.kill('SIGKILL'), SHUTDOWN_TIMEOUT_MS);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            this.#send(w, { type: 'shutdown' });
          }),
      ),
    );
    if (this.#metricsServer) {
      const s = this.#metricsServer;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    }
  }
}

/** A worker: a node process fed by the primary; it stops when told to or when the primary goes away. */
/** `tracing`, `more`: a worker parses the same argv as its primary (cluster.fork), so it passes its own. */
export function runNodeWorker(
  node: string,
  worker: number,
  log: Log,
  tracing?: NodeProcessOptions['tracing'],
  more: Pick<NodeProcessOptions, 'accessLog' | 'observability' | 'capture'> = {},
): void {
  const np = new NodeProcess({ node, log, worker, ...(tracing ? { tracing } : {}), ...more });
  np.startCapture().catch((e: Error) => log('error', 'capture listener not started', { error: e.message }));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // Bounded: a drain that cannot finish must not leave an orphan behind.
    setTimeout(() => process.exit(1), WORKER_STOP_MS).unref();
    void np.close().then(() => process.exit(0));
  };
  // Ctrl-C reaches the whole process group: the primary decides when workers stop.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  process.on('disconnect', stop);
  process.on('message', (m: ToWorker) => {
    if (m.type === 'state')
      void np.applyState(m.state).then(() => process.send?.({ type: 'applied' } satisfies ToPrimary));
    else if (m.type === 'metrics')
      process.send?.({ type: 'metrics', id: m.id, series: np.metricsSnapshot() } satisfies ToPrimary);
    else if (m.type === 'flows') {
      const got = np.flows.since(m.since);
      const last = got.length ? got[got.length - 1]!.seq : np.flows.lastSeq;
      process.send?.({ type: 'flows', id: m.id, records: got.map((f) => f.record), last } satisfies ToPrimary);
    } else if (m.type === 'shutdown') stop();
  });
  process.send?.({ type: 'listening' } satisfies ToPrimary);
}
