// npm run bench:xds — pushing one configuration change to 1,000 and 5,000 ADS clients (10,000 with
// TRELLIS_BENCH_XDS_MAX=10000), state-of-the-world and, when the server answers
// DeltaAggregatedResources, delta. The clients live in child processes
// (bench/xds-bench-client.ts), so this process measures the control plane alone. Anchor: the
// control plane compiling + translating the change (SnapshotCache.update), measured in the
// same run — the floor under any push. Also the raw loopback TCP floor for the same bytes.
import { namespaceOf, serviceFile } from './generated-mesh.js';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { loadDocuments, loadPaths } from '../src/config/load.js';
import { readConfigFile } from '../src/config/source/read-files.js';
import type { Resource } from '../src/config/resource.js';
import { SnapshotCache } from '../src/controlplane/snapshot-cache.js';
import { AdsServer, DEFAULT_DEBOUNCE_MS } from '../src/xds/server/ads-server.js';
import { loadXdsProtos } from '../src/xds/server/protos.js';
import { TYPE_URLS, type Snapshot } from '../src/xds/snapshot.js';
import type { BenchMode, ChildReport, FromChild, Profile, ToChild } from './xds-bench-client.js';

const SERVICES = Number(process.env.TRELLIS_BENCH_XDS_SERVICES ?? 500);
const NAMESPACES = 10;
const MAX_CLIENTS = Number(process.env.TRELLIS_BENCH_XDS_MAX ?? 5000);
const SIZES = [1000, 5000, 10000].filter((n) => n <= Math.max(1000, MAX_CLIENTS));
const CHILDREN = Math.max(1, Math.min(2, Number(process.env.TRELLIS_BENCH_XDS_CHILDREN ?? 2)));
const CHANNELS_PER_CHILD = Number(process.env.TRELLIS_BENCH_XDS_CHANNELS ?? 8);
const DEBOUNCE_MS = Number(process.env.TRELLIS_BENCH_XDS_DEBOUNCE_MS ?? DEFAULT_DEBOUNCE_MS);
const GLOBAL_TIMEOUT_MS = Number(process.env.TRELLIS_BENCH_XDS_TIMEOUT_MS ?? 120_000);
const SYNC_TIMEOUT_MS = 40_000;
const CONVERGE_TIMEOUT_MS = 20_000;
/** Targets (issue: control plane): every client has the change within this time. */
const TARGET_MS: Readonly<Record<number, number>> = { 1000: 1000, 5000: 5000 };

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const startedAt = now();

// ---------------------------------------------------------------------------------------
// Configuration: SERVICES Services, each with one WorkloadEntry and a GAMMA HTTPRoute splitting
// 90/10 between itself and the next service of its namespace (as bench:config generates).

const SHAPE = { services: SERVICES, namespaces: NAMESPACES };
const serviceFileOf = (i: number, ip: string, weights: readonly [number, number]): string =>
  serviceFile(SHAPE, i, { ip, weights });

const ipOf = (i: number): string => `10.${((i + 1) >> 16) & 255}.${((i + 1) >> 8) & 255}.${(i + 1) & 255}`;
const fileOf = (dir: string, i: number): string => join(dir, namespaceOf(SHAPE, i), `svc-${i}.yaml`);

function generate(dir: string): void {
  for (let n = 0; n < NAMESPACES; n++) mkdirSync(join(dir, `team-${n}`));
  for (let i = 0; i < SERVICES; i++) writeFileSync(fileOf(dir, i), serviceFileOf(i, ipOf(i), [90, 10]));
}

/** The resources after editing service i's file (re-read, as the config watcher does); the file is restored. */
function edited(dir: string, base: readonly Resource[], i: number, ip: string, weights: [number, number]): Resource[] {
  const file = fileOf(dir, i);
  const original = readFileSync(file, 'utf8');
  writeFileSync(file, serviceFileOf(i, ip, weights));
  const reread = loadDocuments(readConfigFile(file).documents);
  writeFileSync(file, original);
  if (reread.diagnostics.some((d) => d.severity === 'error')) throw new Error('edited file has errors');
  return [...base.filter((r) => r.source.file !== file), ...reread.resources];
}

/** One per service: its listener, that listener's route config, the route's clusters and their load assignments. */
function profiles(snapshot: Snapshot): Profile[] {
  const out: Profile[] = [];
  const routes = snapshot.resources(TYPE_URLS.route);
  const clusters = snapshot.resources(TYPE_URLS.cluster);
  for (const l of snapshot.resources(TYPE_URLS.listener).values()) {
    const routeName = findStrings(l.body, 'route_config_name')[0];
    const route = routeName === undefined ? undefined : routes.get(routeName);
    if (!route) continue; // not a client listener with RDS (e.g. an inbound server listener)
    const clusterNames = [
      ...new Set([...findStrings(route.body, 'cluster'), ...findStrings(route.body, 'weighted_clusters', 'name')]),
    ].sort();
    const edsNames = clusterNames.map((c) => findStrings(clusters.get(c)?.body, 'service_name')[0] ?? c);
    out.push([
      [TYPE_URLS.listener, [l.name]],
      [TYPE_URLS.route, [route.name]],
      [TYPE_URLS.cluster, clusterNames],
      [TYPE_URLS.endpoint, edsNames],
    ]);
  }
  return out;
}

/** String values of `key` anywhere in a tree (or, with `inner`, of `inner` anywhere below `key`). */
function findStrings(value: unknown, key: string, inner?: string, out: string[] = [], below = false): string[] {
  if (Array.isArray(value)) for (const v of value) findStrings(v, key, inner, out, below);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const hit = inner === undefined ? k === key : below && k === inner;
      if (hit && typeof v === 'string') out.push(v);
      findStrings(v, key, inner, out, below || (inner !== undefined && k === key));
    }
  }
  return out;
}

/** What the change altered: the new version of each changed type (SotW) and the changed names (delta). */
function diff(before: Snapshot, after: Snapshot): { sotw: Record<string, string>; delta: Record<string, string[]> } {
  const sotw: Record<string, string> = {};
  const delta: Record<string, string[]> = {};
  for (const type of Object.values(TYPE_URLS)) {
    if (before.version(type) === after.version(type)) continue;
    sotw[type] = after.version(type);
    const a = before.resources(type);
    const b = after.resources(type);
    const names = new Set<string>();
    for (const [n, r] of b) if (a.get(n)?.version !== r.version) names.add(n);
    for (const n of a.keys()) if (!b.has(n)) names.add(n);
    delta[type] = [...names];
  }
  return { sotw, delta };
}

// ---------------------------------------------------------------------------------------
// Child processes.

class Child {
  readonly proc: ChildProcess;
  readonly #queue: FromChild[] = [];
  #waiter: ((m: FromChild) => void) | undefined;
  last: Extract<FromChild, { ev: 'progress' }> | undefined;
  exited = false;

  constructor() {
    this.proc = fork(fileURLToPath(new URL('./xds-bench-client.js', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // e.g. TRELLIS_BENCH_XDS_CHILD_ARGS=--cpu-prof to profile the clients.
      execArgv: (process.env.TRELLIS_BENCH_XDS_CHILD_ARGS ?? '').split(' ').filter(Boolean),
    });
    this.proc.on('exit', () => (this.exited = true));
    this.proc.on('message', (raw) => {
      const m = raw as FromChild;
      if (m.ev === 'progress') {
        this.last = m;
        return;
      }
      if (this.#waiter) {
        const w = this.#waiter;
        this.#waiter = undefined;
        w(m);
      } else this.#queue.push(m);
    });
  }

  send(msg: ToChild): void {
    this.proc.send(msg);
  }

  /** The next message with event `ev` (others are dropped; 'fatal' throws). */
  async next<E extends FromChild['ev']>(ev: E, timeoutMs: number): Promise<Extract<FromChild, { ev: E }>> {
    const deadline = now() + timeoutMs;
    for (;;) {
      const m =
        this.#queue.shift() ??
        (await new Promise<FromChild | undefined>((resolve) => {
          const t = setTimeout(
            () => {
              this.#waiter = undefined;
              resolve(undefined);
            },
            Math.max(0, deadline - now()),
          );
          this.#waiter = (x) => {
            clearTimeout(t);
            resolve(x);
          };
        }));
      if (!m) throw new Error(`no '${ev}' from a client process within ${timeoutMs} ms${this.#progress()}`);
      if (m.ev === 'fatal') throw new Error(`client process failed: ${m.message}`);
      if (m.ev === ev) return m as Extract<FromChild, { ev: E }>;
    }
  }

  #progress(): string {
    const p = this.last;
    return p ? ` (synced ${p.synced}, stream errors ${p.errors}${p.firstError ? `, first: ${p.firstError}` : ''})` : '';
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    try {
      this.send({ cmd: 'stop' });
    } catch {
      // IPC channel already closed
    }
    const deadline = now() + 2000;
    while (!this.exited && now() < deadline) await sleep(20);
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

const children = new Set<Child>();
process.on('exit', () => {
  for (const c of children) if (!c.exited) c.proc.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------
// One round: N clients of one mode against a fresh control plane, one change.

interface Round {
  readonly mode: BenchMode;
  readonly n: number;
  status: 'running' | 'ok' | 'n/a' | 'failed';
  reason: string;
  syncMs?: number;
  syncClientCpuMs?: number;
  syncServerCpuMs?: number;
  updateMs?: number;
  compileMs?: number;
  translateMs?: number;
  convergeMs?: number[];
  affected?: number;
  converged?: number;
  serverBytes?: number;
  serverResponses?: number;
  serverResources?: number;
  clientBytes?: number;
  clientResponses?: number;
  clientResources?: number;
  clientsWithResponses?: number;
  cpuMs?: number;
  childCpuMs?: number;
  heapPerClient?: number;
  rssPerClient?: number;
  netFloorMs?: number;
  streamErrors?: number;
}

const rounds: Round[] = [];
let deltaProbe: { available: boolean; why: string } | undefined;

/** Does the server serve DeltaAggregatedResources, or answer UNIMPLEMENTED? */
async function probeDelta(port: number): Promise<{ available: boolean; why: string }> {
  const protos = loadXdsProtos();
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const call = client.makeBidiStreamRequest<object, Buffer>(
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
      (m) => protos.serialize('envoy.service.discovery.v3.DeltaDiscoveryRequest', m),
      (b) => b,
    );
    const result = await new Promise<{ available: boolean; why: string }>((resolve) => {
      const t = setTimeout(() => resolve({ available: true, why: 'stream accepted' }), 1500);
      call.on('data', () => {
        clearTimeout(t);
        resolve({ available: true, why: 'answered' });
      });
      call.on('error', (e: grpc.ServiceError) => {
        clearTimeout(t);
        resolve({
          available: false,
          why: e.code === grpc.status.UNIMPLEMENTED ? 'UNIMPLEMENTED' : `${grpc.status[e.code]}: ${e.details}`,
        });
      });
      call.write({
        node: { id: 'trellis-bench-probe' },
        type_url: TYPE_URLS.listener,
        resource_names_subscribe: ['trellis-bench-probe'],
      });
    });
    call.cancel();
    return result;
  } finally {
    client.close();
  }
}

function gc(): void {
  global.gc?.();
  global.gc?.();
}

/** Waits until the server has received no request for `stableMs`. */
async function quiet(server: AdsServer, stableMs: number, maxMs: number): Promise<void> {
  const deadline = now() + maxMs;
  let last = server.stats().requests;
  let since = now();
  while (now() < deadline) {
    await sleep(25);
    const r = server.stats().requests;
    if (r !== last) {
      last = r;
      since = now();
    } else if (now() - since >= stableMs) return;
  }
}

async function runRound(
  round: Round,
  base: readonly Resource[],
  warm: readonly Resource[],
  change: readonly Resource[],
  profs: Profile[],
): Promise<void> {
  // A fresh control plane; two warm-up changes before any client connects.
  const cache = new SnapshotCache();
  cache.update(base, 1);
  cache.update(warm, 2);
  cache.update(base, 3);
  const server = new AdsServer();
  const kids: Child[] = [];
  try {
    const port = await server.start({ source: cache, address: '127.0.0.1:0', debounceMs: DEBOUNCE_MS });
    if (round.mode === 'delta') {
      deltaProbe ??= await probeDelta(port);
      if (!deltaProbe.available) {
        round.status = 'n/a';
        round.reason = `DeltaAggregatedResources: ${deltaProbe.why}`;
        return;
      }
    }
    for (let c = 0; c < CHILDREN; c++) {
      const child = new Child();
      children.add(child);
      kids.push(child);
    }
    const ready = await Promise.all(kids.map((k) => k.next('ready', 15_000)));
    await sleep(DEBOUNCE_MS + 50);
    gc();
    const mem0 = process.memoryUsage();

    // Connect and sync every client.
    const syncCpu0 = process.cpuUsage();
    const t = now();
    const per = Math.ceil(round.n / kids.length);
    kids.forEach((k, i) =>
      k.send({
        cmd: 'start',
        port,
        mode: round.mode,
        prefix: `bench-${round.mode}-${round.n}`,
        first: i * per,
        count: Math.min(per, round.n - i * per),
        channels: CHANNELS_PER_CHILD,
        profiles: profs,
      }),
    );
    const synced = await Promise.all(kids.map((k) => k.next('synced', SYNC_TIMEOUT_MS)));
    round.syncMs = now() - t;
    round.syncClientCpuMs = synced.reduce((s, m) => s + m.cpuMs, 0);
    const syncCpu = process.cpuUsage(syncCpu0);
    round.syncServerCpuMs = (syncCpu.user + syncCpu.system) / 1000;
    // Every ACK processed by the server (and, for SotW, every type of every stream SYNCED).
    await quiet(server, 200, 5000);
    if (server.stats().connectedStreams !== round.n)
      throw new Error(`${server.stats().connectedStreams} streams connected, expected ${round.n}`);
    if (round.mode === 'sotw') {
      const notSynced = server.clients().filter((c) => c.types.some((x) => x.status !== 'SYNCED')).length;
      if (notSynced > 0) throw new Error(`${notSynced} streams not SYNCED on the server`);
    }
    gc();
    const mem1 = process.memoryUsage();
    round.heapPerClient = (mem1.heapUsed - mem0.heapUsed) / round.n;
    round.rssPerClient = (mem1.rss - mem0.rss) / round.n;

    // The change: service 0's route weights and its endpoint's address.
    kids.forEach((k) => k.send({ cmd: 'arm' }));
    await Promise.all(kids.map((k) => k.next('armed', 5000)));
    const before = cache.snapshot('')!;
    const s0 = server.stats();
    const cpu0 = process.cpuUsage();
    const t0 = now();
    cache.update(change, 4);
    round.updateMs = now() - t0;
    round.compileMs = cache.pushes.at(-1)?.compileMs;
    round.translateMs = cache.pushes.at(-1)?.translateMs;
    const expect = diff(before, cache.snapshot('')!);
    kids.forEach((k) => k.send({ cmd: 'expect', t0, ...expect }));
    let convergeError: unknown;
    try {
      await Promise.all(kids.map((k) => k.next('converged', CONVERGE_TIMEOUT_MS)));
    } catch (e) {
      convergeError = e;
    }
    await quiet(server, 250, 3000);
    const cpu = process.cpuUsage(cpu0);
    const s1 = server.stats();
    round.cpuMs = (cpu.user + cpu.system) / 1000;
    round.serverBytes = s1.bytesSent - s0.bytesSent;
    round.serverResponses = s1.responses - s0.responses;
    round.serverResources = s1.resourcesSent - s0.resourcesSent;
    kids.forEach((k) => k.send({ cmd: 'report' }));
    const reports: ChildReport[] = (await Promise.all(kids.map((k) => k.next('report', 10_000)))).map((m) => m.report);
    round.convergeMs = reports.flatMap((r) => r.convergeMs);
    round.affected = reports.reduce((s, r) => s + r.affected, 0);
    round.converged = round.convergeMs.length;
    round.clientBytes = reports.reduce((s, r) => s + r.bytes, 0);
    round.clientResponses = reports.reduce((s, r) => s + r.responses, 0);
    round.clientResources = reports.reduce((s, r) => s + r.resources, 0);
    round.clientsWithResponses = reports.reduce((s, r) => s + r.clientsWithResponses, 0);
    round.childCpuMs = reports.reduce((s, r) => s + r.cpuMs, 0);
    round.streamErrors = reports.reduce((s, r) => s + r.errors, 0);

    // The raw floor: the same bytes in as many writes over one loopback TCP connection.
    if (round.mode === 'sotw' && round.clientBytes > 0) {
      round.netFloorMs = await netFloor(kids[0]!, ready[0]!.sinkPort, round.clientBytes, round.clientResponses);
    }
    if (convergeError) throw convergeError;
    round.status = 'ok';
  } finally {
    await Promise.all(kids.map((k) => k.stop()));
    for (const k of kids) children.delete(k);
    await server.close();
  }
}

async function netFloor(child: Child, port: number, bytes: number, writes: number): Promise<number> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.setNoDelay(true);
  try {
    child.send({ cmd: 'sink', bytes });
    await child.next('sinkReady', 5000);
    const size = Math.max(1, Math.round(bytes / Math.max(1, writes)));
    const chunk = Buffer.alloc(size, 7);
    const t0 = now();
    let left = bytes;
    while (left > 0) {
      const n = Math.min(left, size);
      socket.write(n === size ? chunk : chunk.subarray(0, n));
      left -= n;
    }
    const done = await child.next('sinkDone', 10_000);
    return done.at - t0;
  } finally {
    socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------
// The table.

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}
function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}
const ms = (x: number): string => `${x.toFixed(1)} ms`;
const kib = (x: number): string => `${(x / 1024).toFixed(1)} KiB`;
const size = (x: number): string => (x >= 1048576 ? `${(x / 1048576).toFixed(2)} MiB` : kib(x));
const int = (x: number): string => Math.round(x).toLocaleString('en-US');

function table(): { text: string; failed: boolean } {
  const anchorRuns = rounds.map((r) => r.updateMs).filter((x): x is number => x !== undefined);
  const anchor = anchorRuns.length > 0 ? median(anchorRuns) : undefined;
  const ratio = (x: number): string => (anchor ? (x / anchor).toFixed(2) : '');
  const rows: [string, string, string, string][] = [
    [
      `anchor: SnapshotCache.update of the change (median of ${anchorRuns.length})`,
      anchor === undefined ? 'n/a' : ms(anchor),
      '',
      anchor === undefined ? '' : '1.00',
    ],
  ];
  let failed = false;
  for (const r of rounds) {
    const label = `${r.mode === 'sotw' ? 'SotW' : 'delta'} ${int(r.n)}`;
    const target = TARGET_MS[r.n];
    const targetText = target ? `< ${int(target)} ms` : '';
    if (r.status === 'n/a') {
      rows.push([`${label}: change -> every client has it`, 'n/a', targetText, 'n/a']);
      rows.push([`${label}: bytes pushed, resources per client`, 'n/a', '', 'n/a']);
      continue;
    }
    if (r.status !== 'ok') failed = true;
    if (r.syncMs !== undefined) rows.push([`${label}: connect + initial LDS/RDS/CDS/EDS sync`, ms(r.syncMs), '', '']);
    const conv = r.convergeMs ?? [];
    if (conv.length > 0) {
      const all = r.converged === r.affected;
      const max = Math.max(...conv);
      rows.push([`${label}: change -> new versions ACKed, p50`, ms(median(conv)), '', ratio(median(conv))]);
      rows.push([
        `${label}: change -> new versions ACKed, p99`,
        ms(percentile(conv, 0.99)),
        '',
        ratio(percentile(conv, 0.99)),
      ]);
      rows.push([
        `${label}: change -> new versions ACKed, max (${int(r.converged ?? 0)}/${int(r.affected ?? 0)} clients)`,
        ms(max),
        targetText,
        target ? (all && max < target ? 'met' : 'MISSED') : ratio(max),
      ]);
    } else if (r.affected !== undefined && r.affected > 0) {
      rows.push([`${label}: change -> new versions ACKed`, `0/${int(r.affected)} clients`, targetText, 'MISSED']);
    }
    if (r.serverBytes !== undefined && r.clientBytes !== undefined) {
      // The server's own count; what the clients decoded if the server does not count this protocol.
      const bytes = r.serverBytes > 0 || r.clientBytes === 0 ? r.serverBytes : r.clientBytes;
      const reached = r.clientsWithResponses ?? 0;
      rows.push([
        `${label}: bytes pushed${r.serverBytes > 0 || r.clientBytes === 0 ? '' : ' (received)'}; per client; per client reached`,
        `${size(bytes)}; ${int(bytes / r.n)} B; ${reached > 0 ? int(bytes / reached) : 0} B`,
        '',
        '',
      ]);
      rows.push([
        `${label}: resources / responses per client; clients reached`,
        `${(r.clientResources! / r.n).toFixed(3)} / ${(r.clientResponses! / r.n).toFixed(3)}; ${int(reached)}`,
        '',
        '',
      ]);
    }
    if (r.netFloorMs !== undefined)
      rows.push([`${label}: raw loopback TCP, same bytes and writes`, ms(r.netFloorMs), '', ratio(r.netFloorMs)]);
    if (r.cpuMs !== undefined)
      rows.push([`${label}: control-plane CPU for the push (incl. update)`, ms(r.cpuMs), '', ratio(r.cpuMs)]);
    if (r.heapPerClient !== undefined)
      rows.push([
        `${label}: server memory per client, heap / RSS (RSS is noisy)`,
        `${kib(r.heapPerClient)} / ${kib(r.rssPerClient ?? 0)}`,
        '',
        '',
      ]);
    if (r.status !== 'ok')
      rows.push([`${label}: ${r.status === 'running' ? 'INTERRUPTED' : 'FAILED'} (see below)`, '', '', '']);
  }
  const w = [72, 28, 11, 8];
  const lines = [
    ['measure', 'Trellis', 'target', 'ratio'].map((h, i) => h.padEnd(w[i]!)).join(' | '),
    w.map((n) => '-'.repeat(n)).join('-|-'),
    ...rows.map((row) => row.map((c, i) => c.padEnd(w[i]!)).join(' | ')),
  ];
  const notes: string[] = [];
  for (const r of rounds) {
    const label = `${r.mode} ${int(r.n)}`;
    if (r.status === 'failed' || r.status === 'running') notes.push(`${label}: ${r.reason}`);
    else if (r.status === 'n/a') notes.push(`${label}: not measured (${r.reason})`);
    if (r.updateMs !== undefined)
      notes.push(
        `${label}: update ${ms(r.updateMs)} = compile ${ms(r.compileMs ?? 0)} + translate ${ms(r.translateMs ?? 0)} + check/notify; initial sync cost the server ${ms(r.syncServerCpuMs ?? 0)} CPU, the clients ${ms(r.syncClientCpuMs ?? 0)}`,
      );
    if (r.childCpuMs !== undefined)
      notes.push(
        `${label}: push: server sent ${int(r.serverResponses ?? 0)} responses / ${int(r.serverResources ?? 0)} resources / ${int(r.serverBytes ?? 0)} B, clients received ${int(r.clientResponses ?? 0)} / ${int(r.clientResources ?? 0)} / ${int(r.clientBytes ?? 0)} B using ${ms(r.childCpuMs)} CPU${r.streamErrors ? `; ${r.streamErrors} stream errors` : ''}`,
      );
  }
  return { text: [...lines, '', ...notes.map((n) => `  ${n}`)].join('\n'), failed };
}

// ---------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-xds-'));
let header = '';
const globalTimer = setTimeout(() => {
  const current = rounds.find((r) => r.status === 'running');
  if (current) current.reason = `interrupted by the global timeout of ${GLOBAL_TIMEOUT_MS} ms`;
  console.log(header);
  console.log(table().text);
  console.log(
    `\nbench:xds: global timeout after ${(GLOBAL_TIMEOUT_MS / 1000).toFixed(0)} s; printed what was measured`,
  );
  for (const c of children) if (!c.exited) c.proc.kill('SIGKILL');
  if (!process.env.TRELLIS_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}, GLOBAL_TIMEOUT_MS);

try {
  generate(dir);
  const loaded = loadPaths([dir]);
  if (loaded.diagnostics.some((d) => d.severity === 'error'))
    throw new Error(`generated config has errors: ${JSON.stringify(loaded.diagnostics.slice(0, 3))}`);
  const base = loaded.resources;
  const warm = edited(dir, base, Math.floor(SERVICES / 2), '10.250.0.2', [80, 20]);
  const change = edited(dir, base, 0, '10.250.0.1', [70, 30]);
  const first = new SnapshotCache();
  first.update(base, 1);
  const profs = profiles(first.snapshot('')!);
  if (profs.length !== SERVICES) throw new Error(`expected ${SERVICES} client listeners, got ${profs.length}`);
  loadXdsProtos();

  header = [
    '',
    `bench:xds — ${SERVICES} Services + WorkloadEntries + GAMMA HTTPRoutes (${base.length} resources); each client: one ADS stream and node id, subscribed to one service (1 listener, 1 route config, 2 clusters, 2 load assignments), ACKing at once.`,
    `Change: service 0's route weights 90/10 -> 70/30 and its endpoint's address, via SnapshotCache.update. Debounce ${DEBOUNCE_MS} ms. Clients in ${CHILDREN} process(es) x ${CHANNELS_PER_CHILD} HTTP/2 connections.`,
    `Ratios are against the anchor. node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
    '',
  ].join('\n');
  for (const mode of ['sotw', 'delta'] as const) {
    for (const n of SIZES) {
      const round: Round = { mode, n, status: 'running', reason: '' };
      rounds.push(round);
      try {
        await runRound(round, base, warm, change, profs);
      } catch (e) {
        round.status = 'failed';
        round.reason = e instanceof Error ? e.message : String(e);
      }
      if (round.status === 'n/a') {
        // No delta: every size is n/a for the same reason.
        for (const m of SIZES.filter((x) => x !== n)) rounds.push({ mode, n: m, status: 'n/a', reason: round.reason });
        break;
      }
    }
  }
  clearTimeout(globalTimer);
  const { text, failed } = table();
  console.log(header);
  console.log(text);
  console.log(`\n  total ${((now() - startedAt) / 1000).toFixed(1)} s`);
  if (failed) process.exitCode = 1;
} finally {
  clearTimeout(globalTimer);
  for (const c of children) if (!c.exited) c.proc.kill('SIGKILL');
  if (!process.env.TRELLIS_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  else console.log(dir);
}
