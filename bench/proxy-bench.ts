// npm run bench:proxy — HTTP/1.1 proxies in front of one origin (nginx returning 1 KB), on
// loopback: full-load throughput and latency (wrk), latency and proxy CPU/RSS at a fixed
// 1,000 req/s of 1 KB POSTs (bench/proxy/fixed-rate.ts, open loop), and raw loopback TCP
// (iperf3). Anchors, measured in the same run: no proxy ("direct"), HAProxy, nginx, Caddy.
// Trellis rows (bench/proxy/trellis.ts) follow: the L7 engine as a gateway with 1 and N
// workers, and the node A -> HBONE -> node B path through a local upstream port and through
// node A's HTTP proxy. Then, on a fresh two-node mesh (bench/proxy/node-proxies.ts): iperf3
// through an HBONE tunnel, and node-proxy RSS idle and with 1,000 tunnelled connections.
//
// Env: BENCH_RUNS (3), BENCH_DURATION (5s, wrk), BENCH_CONNECTIONS (50), BENCH_RATE (1000 req/s),
// BENCH_RATE_DURATION (10s), BENCH_IPERF_SECONDS (5), BENCH_TUNNELS (1000), BENCH_TARGETS (names,
// comma-separated, case-insensitive: rows and the parts 'Trellis iperf3 via HBONE', 'Trellis node
// proxy memory'), BENCH_TIMEOUT (s, whole run), TRELLIS_BENCH_KEEP=1 keeps the temp dir. --json:
// results as JSON on stdout (progress always goes to stderr).
import { measureNodeProxies, type NodeProxyResults } from './proxy/node-proxies.js';
import { nodePathHttpProxy, nodePathTcp, trellisGateway } from './proxy/trellis.js';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FixedRateConfig, FixedRateResult } from './proxy/fixed-rate.js';
import { runIperf } from './proxy/iperf.js';
import {
  alive,
  installCleanupHandlers,
  logTail,
  memory,
  registerTempDir,
  sampleTree,
  startProcess,
  vcpu,
} from './proxy/procs.js';
import {
  BODY_BYTES,
  NODE_B_ADDRESS,
  TARGETS as ANCHORS,
  WORKERS,
  startOrigin,
  type BenchTarget,
  type RunningOrigin,
  type RunningTarget,
} from './proxy/targets.js';
import { ensureTools, MissingToolsError, type Tools } from './proxy/tools.js';
import { runWrk, type WrkResult } from './proxy/wrk.js';
import { median } from './stats.js';

function envNumber(name: string, fallback: number, unit = ''): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(unit && raw.endsWith(unit) ? raw.slice(0, -unit.length) : raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`bench:proxy: ${name}=${raw} is not a positive number`);
    process.exit(2);
  }
  return n;
}

const RUNS = Math.max(1, Math.round(envNumber('BENCH_RUNS', 3)));
// Whole seconds: wrk's -d and iperf3's -t take integers.
const DURATION_S = Math.max(1, Math.round(envNumber('BENCH_DURATION', 5, 's')));
const CONNECTIONS = Math.round(envNumber('BENCH_CONNECTIONS', 50));
const THREADS = Math.min(availableParallelism(), CONNECTIONS);
const RATE = envNumber('BENCH_RATE', 1000);
const RATE_DURATION_S = envNumber('BENCH_RATE_DURATION', 10, 's');
const IPERF_S = Math.max(1, Math.round(envNumber('BENCH_IPERF_SECONDS', 5, 's')));
const TUNNELS = Math.round(envNumber('BENCH_TUNNELS', 1000));
const WARMUP_S = 1;
const JSON_OUT = process.argv.includes('--json');
const FIXED_RATE_JS = fileURLToPath(new URL('./proxy/fixed-rate.js', import.meta.url));

const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

// ---------------------------------------------------------------------------------------

interface RateRun {
  result: FixedRateResult;
  vcpu: number;
  /** Peak over the run's 1 s samples. */
  rssBytes: number;
  pssBytes: number;
  /** The same per group of the target's processes (RunningTarget.groups). */
  groups: { name: string; vcpu: number; rssBytes: number; pssBytes: number }[];
}

interface Row {
  target: BenchTarget;
  dir: string;
  status: 'pending' | 'ok' | 'failed';
  reason: string;
  running?: RunningTarget;
  wrk: WrkResult[];
  rate: RateRun[];
  /** Measures that threw (the run is missing from the medians). */
  failures: string[];
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** One GET and one POST must answer 200 with the origin's 1 KB body before a target is measured. */
async function probe(t: RunningTarget): Promise<void> {
  const u = new URL(t.url);
  for (const method of ['GET', 'POST']) {
    const body = method === 'POST' ? Buffer.alloc(BODY_BYTES, 'a') : undefined;
    const res = await new Promise<{ status: number; bytes: number }>((resolve, reject) => {
      const req = http.request(
        {
          host: u.hostname,
          port: u.port || 80,
          method,
          path: t.path ?? `${u.pathname}${u.search}`,
          headers: { ...t.headers, ...(body ? { 'content-length': body.length } : {}) },
          agent: false,
          timeout: 5000,
        },
        (r) => {
          let bytes = 0;
          r.on('data', (c: Buffer) => (bytes += c.length));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, bytes }));
          r.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
    if (res.status !== 200 || res.bytes !== BODY_BYTES)
      throw new Error(
        `probe ${method} ${t.path ?? t.url}: status ${res.status}, ${res.bytes} B (want 200, ${BODY_BYTES} B)`,
      );
  }
}

function checkAlive(row: Row): void {
  const dead = row.running?.pids.filter((p) => !alive(p)) ?? [];
  if (dead.length > 0) throw new Error(`process ${dead.join(', ')} is gone`);
}

async function startRow(row: Row, origin: RunningOrigin): Promise<void> {
  mkdirSync(row.dir, { recursive: true });
  try {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('start() did not finish within 60 s')), 60_000);
    });
    row.running = await Promise.race([row.target.start(origin, row.dir), timeout]).finally(() => clearTimeout(timer));
    await probe(row.running);
    row.status = 'ok';
  } catch (e) {
    row.status = 'failed';
    row.reason = `start: ${message(e)}`;
  }
}

async function measureWrk(row: Row, tools: Tools, label: string, durationS: number): Promise<WrkResult> {
  checkAlive(row);
  const t = row.running!;
  return runWrk({
    wrk: tools.wrk,
    url: t.url,
    headers: t.headers,
    path: t.path,
    threads: THREADS,
    connections: CONNECTIONS,
    durationS,
    dir: row.dir,
    label,
  });
}

/** The fixed-rate generator in its own process; the target's CPU (/proc) over exactly its sending window. */
async function measureRate(row: Row, run: number): Promise<RateRun> {
  checkAlive(row);
  const t = row.running!;
  const leadMs = 1000; // node start-up of the generator
  const startAt = Date.now() + leadMs;
  const config: FixedRateConfig = {
    url: t.url,
    path: t.path,
    headers: t.headers,
    rate: RATE,
    durationS: RATE_DURATION_S,
    bodyBytes: BODY_BYTES,
    expectBodyBytes: BODY_BYTES,
    connections: CONNECTIONS,
    maxInFlight: 1000,
    timeoutMs: 5000,
    startAt,
  };
  const out = join(row.dir, `fixed-rate-${run}.log`);
  const gen = await startProcess({
    name: 'fixed-rate',
    command: process.execPath,
    args: [FIXED_RATE_JS, JSON.stringify(config)],
    log: out,
  });
  try {
    await sleep(Math.max(0, startAt - Date.now()));
    const groups = t.groups ?? [];
    const a = sampleTree(t.pids);
    const ga = groups.map((g) => sampleTree(g.pids));
    const end = startAt + RATE_DURATION_S * 1000;
    const mem: { rssBytes: number; pssBytes: number }[] = [];
    const gmem = groups.map((): { rssBytes: number; pssBytes: number }[] => []);
    while (Date.now() < end - 50) {
      await sleep(Math.min(1000, end - Date.now()));
      mem.push(memory(t.pids));
      groups.forEach((g, i) => gmem[i]!.push(memory(g.pids)));
    }
    const b = sampleTree(t.pids);
    const gb = groups.map((g) => sampleTree(g.pids));
    if (!(await gen.wait(20_000))) throw new Error('fixed-rate generator did not finish');
    const text = readFileSync(out, 'utf8');
    const line = text
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{'));
    if (gen.exitInfo() !== 'exit code 0' || !line) throw new Error(`fixed-rate ${gen.exitInfo()}${logTail(out)}`);
    // No processes (a target that runs nothing of its own): no CPU/RSS figures rather than zeros.
    const none = t.pids.length === 0 || mem.length === 0;
    return {
      result: JSON.parse(line) as FixedRateResult,
      vcpu: none ? NaN : vcpu(a, b),
      rssBytes: none ? NaN : Math.max(...mem.map((m) => m.rssBytes)),
      pssBytes: none ? NaN : Math.max(...mem.map((m) => m.pssBytes)),
      groups: groups.map((g, i) => ({
        name: g.name,
        vcpu: vcpu(ga[i]!, gb[i]!),
        rssBytes: Math.max(...gmem[i]!.map((m) => m.rssBytes)),
        pssBytes: Math.max(...gmem[i]!.map((m) => m.pssBytes)),
      })),
    };
  } finally {
    await gen.stop(1000);
  }
}

// ---------------------------------------------------------------------------------------
// Results

interface Summary {
  name: string;
  status: Row['status'];
  reason: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  vsNginx: number;
  vsCaddy: number;
  rateP50Ms: number;
  rateP99Ms: number;
  addedP99Ms: number;
  vcpu: number;
  rssBytes: number;
  pssBytes: number;
  wrkErrors: number;
  rateErrors: number;
  /** Per group (RunningTarget.groups): medians over the fixed-rate runs. */
  groups: { name: string; vcpu: number; rssBytes: number; pssBytes: number }[];
  runs: { wrk: WrkResult[]; fixedRate: RateRun[] };
  failures: string[];
}

function summarize(rows: readonly Row[]): Summary[] {
  const base = rows.map((r) => ({
    row: r,
    rps: median(r.wrk.map((w) => w.rps)),
    rateP99Ms: median(r.rate.map((x) => x.result.p99Ms)),
  }));
  const find = (name: string) => base.find((b) => b.row.target.name === name && b.row.status === 'ok');
  const nginxRps = find('nginx')?.rps ?? NaN;
  const caddyRps = find('Caddy')?.rps ?? NaN;
  const directP99 = find('direct')?.rateP99Ms ?? NaN;
  return base.map(({ row: r, rps, rateP99Ms }) => ({
    name: r.target.name,
    status: r.status,
    reason: r.reason,
    rps,
    p50Ms: median(r.wrk.map((w) => w.p50Ms)),
    p99Ms: median(r.wrk.map((w) => w.p99Ms)),
    vsNginx: rps / nginxRps,
    vsCaddy: rps / caddyRps,
    rateP50Ms: median(r.rate.map((x) => x.result.p50Ms)),
    rateP99Ms,
    addedP99Ms: rateP99Ms - directP99,
    vcpu: median(r.rate.map((x) => x.vcpu)),
    rssBytes: median(r.rate.map((x) => x.rssBytes)),
    pssBytes: median(r.rate.map((x) => x.pssBytes)),
    wrkErrors: r.wrk.reduce((s, w) => s + w.errors, 0),
    rateErrors: r.rate.reduce((s, x) => s + x.result.errors, 0),
    groups: (r.rate[0]?.groups ?? []).map((g) => {
      const of = (k: 'vcpu' | 'rssBytes' | 'pssBytes'): number =>
        median(r.rate.flatMap((x) => x.groups.filter((y) => y.name === g.name).map((y) => y[k])));
      return { name: g.name, vcpu: of('vcpu'), rssBytes: of('rssBytes'), pssBytes: of('pssBytes') };
    }),
    runs: { wrk: r.wrk, fixedRate: r.rate },
    failures: r.failures,
  }));
}

const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const fin = (x: number, f: (x: number) => string): string => (Number.isFinite(x) ? f(x) : '');
const ms = (x: number): string => fin(x, (v) => `${v.toFixed(v < 10 ? 2 : 1)} ms`);
const mib = (x: number): string => fin(x, (v) => `${(v / 1048576).toFixed(1)} MiB`);
const gbit = (bps: number): string => `${(bps / 1e9).toFixed(bps < 1e10 ? 2 : 1)} Gbit/s`;

/** Lines of a table with a header row, padded columns. */
function grid(heads: readonly string[], rows: readonly string[][]): string[] {
  const w = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [
    heads.map((h, i) => h.padEnd(w[i]!)).join(' | '),
    w.map((n) => '-'.repeat(n)).join('-|-'),
    ...rows.map((r) => heads.map((_, i) => (r[i] ?? '').padEnd(w[i]!)).join(' | ')),
  ];
}

function table(
  sums: readonly Summary[],
  iperfBps: readonly number[],
  nodes: NodeProxyResults | undefined,
  header: string,
): string {
  const heads = [
    'target',
    'req/s',
    'p50',
    'p99',
    '÷ nginx',
    '÷ Caddy',
    `${int(RATE)}/s p99`,
    'added p99',
    `vCPU @${int(RATE)}/s`,
    'RSS',
    'errors',
  ];
  const rows: string[][] = [];
  const direct = median(iperfBps);
  if (iperfBps.length > 0) rows.push([`anchor: iperf3 TCP loopback (median of ${iperfBps.length})`, gbit(direct)]);
  const tunnelBps = median(nodes?.iperf.map((r) => r.bitsPerSecond) ?? []);
  if (nodes && (nodes.iperf.length > 0 || nodes.iperfError))
    rows.push([
      `Trellis iperf3 via node A -> HBONE -> node B (median of ${nodes.iperf.length})`,
      nodes.iperf.length === 0
        ? 'FAILED'
        : `${gbit(tunnelBps)}${Number.isFinite(direct) ? ` = ${(tunnelBps / direct).toFixed(2)} x loopback` : ''}`,
    ]);
  for (const s of sums) {
    if (s.status !== 'ok') {
      rows.push([s.name, s.status === 'pending' ? 'not run' : 'FAILED']);
      continue;
    }
    const errors = s.wrkErrors + s.rateErrors;
    rows.push([
      s.name === 'direct' ? 'direct (no proxy)' : s.name,
      fin(s.rps, (v) => `${int(v)}/s`),
      ms(s.p50Ms),
      ms(s.p99Ms),
      fin(s.vsNginx, (v) => v.toFixed(2)),
      fin(s.vsCaddy, (v) => v.toFixed(2)),
      ms(s.rateP99Ms),
      s.name === 'direct' ? '' : fin(s.addedP99Ms, (v) => `${v >= 0 ? '+' : ''}${ms(v)}`),
      fin(s.vcpu, (v) => v.toFixed(3)),
      mib(s.rssBytes),
      errors > 0 || s.failures.length > 0 ? `${int(errors)} FLAGGED` : '0',
    ]);
  }
  const notes: string[] = [];
  for (const s of sums) {
    if (s.status !== 'ok') {
      notes.push(`${s.name}: ${s.reason}`);
      continue;
    }
    const rps = s.runs.wrk.map((w) => int(w.rps)).join(' / ');
    const p99 = s.runs.fixedRate.map((x) => x.result.p99Ms.toFixed(2)).join(' / ');
    const lag = Math.max(...s.runs.fixedRate.map((x) => x.result.sendLagP99Ms));
    const pss = fin(s.pssBytes, (v) => `, PSS ${mib(v)}`);
    notes.push(
      `${s.name}: req/s per run ${rps}; ${int(RATE)}/s p99 per run ${p99} ms (p50 ${ms(s.rateP50Ms)}; generator send lag p99 <= ${ms(lag)})${pss}`,
    );
    if (s.groups.length > 0)
      notes.push(
        `${s.name}: at ${int(RATE)}/s per process tree: ${s.groups
          .map((g) => `${g.name} vCPU ${g.vcpu.toFixed(3)}, RSS ${mib(g.rssBytes)} (PSS ${mib(g.pssBytes)})`)
          .join('; ')}`,
      );
    for (const [i, w] of s.runs.wrk.entries())
      if (w.errors > 0)
        notes.push(
          `${s.name}: wrk run ${i + 1}: ${w.badStatus} non-2xx/3xx, socket errors connect ${w.socketErrors.connect} read ${w.socketErrors.read} write ${w.socketErrors.write} timeout ${w.socketErrors.timeout} (of ${int(w.requests)})`,
        );
    for (const [i, x] of s.runs.fixedRate.entries())
      if (x.result.errors > 0)
        notes.push(`${s.name}: fixed-rate run ${i + 1}: errors ${JSON.stringify(x.result.errorKinds)}`);
    for (const f of s.failures) notes.push(`${s.name}: FAILED ${f}`);
  }
  if (nodes && nodes.iperf.length > 0)
    notes.push(
      `Trellis iperf3 via HBONE: Gbit/s per run ${nodes.iperf.map((r) => (r.bitsPerSecond / 1e9).toFixed(2)).join(' / ')}; vCPU over each run ${nodes.iperf
        .map((r) => `node A ${(r.vcpu['node A'] ?? NaN).toFixed(2)} + node B ${(r.vcpu['node B'] ?? NaN).toFixed(2)}`)
        .join(' / ')}`,
    );
  if (nodes?.iperfError) notes.push(`Trellis iperf3 via HBONE: FAILED ${nodes.iperfError}`);
  const out = [header, '', ...grid(heads, rows), '', ...notes.map((n) => `  ${n}`)];
  if (nodes?.memory || nodes?.memoryError) out.push('', ...memoryTable(nodes));
  out.push('', ...reading(sums, nodes));
  return out.join('\n');
}

const NODE_RSS_TARGET = 40e6;
const L7_RSS_TARGET = 60e6;

function memoryTable(nodes: NodeProxyResults): string[] {
  const head = `Node proxy memory (fresh two-node mesh, 1 worker per node; target: at most 40 MB = ${mib(NODE_RSS_TARGET)} per node proxy at ${int(RATE)} req/s; ztunnel 12 MB)`;
  const m = nodes.memory;
  if (!m) return [head, `  FAILED ${nodes.memoryError ?? ''}`];
  const open = `${int(m.tunnels)} tunnels`;
  const rows = ['node A', 'node B'].map((n) => [
    n === 'node A' ? 'node A (client side)' : 'node B (server side)',
    mib(m.idle[n]?.rssBytes ?? NaN),
    mib(m.idle[n]?.pssBytes ?? NaN),
    mib(m.open[n]?.rssBytes ?? NaN),
    mib(m.open[n]?.pssBytes ?? NaN),
    mib((m.open[n]?.rssBytes ?? NaN) - (m.idle[n]?.rssBytes ?? NaN)),
    mib(m.closed[n]?.rssBytes ?? NaN),
  ]);
  return [
    head,
    '',
    ...grid(
      ['node proxy', 'idle RSS', 'idle PSS', `${open} RSS`, `${open} PSS`, 'RSS added', 'RSS after closing them'],
      rows,
    ),
    '',
    `  idle: after start and one request through the tunnel. ${int(m.tunnels)} TCP connections to node A's local upstream port, each a tunnel to a hold server on node B; all ${int(m.tunnels)} accepted there after ${int(m.establishMs)} ms, ${int(m.heldAtSample)} still open when sampled.`,
  ];
}

/** The issue's targets against this run's figures: met / not met, by how much. */
function reading(sums: readonly Summary[], nodes: NodeProxyResults | undefined): string[] {
  const ok = (met: boolean): string => (met ? 'met' : 'NOT met');
  const out: string[] = ['Against the targets:'];
  const live = sums.filter((s) => s.status === 'ok');
  for (const s of live.filter((x) => x.name.startsWith('Trellis L7 gateway'))) {
    if (Number.isFinite(s.vsCaddy) && Number.isFinite(s.vsNginx))
      out.push(
        `  ${s.name}, full load: ${s.vsCaddy.toFixed(2)} x Caddy (target >= 1.00: ${ok(s.vsCaddy >= 1)}), ${s.vsNginx.toFixed(2)} x nginx (target >= 0.60: ${ok(s.vsNginx >= 0.6)})`,
      );
    out.push(
      `  ${s.name}, ${int(RATE)}/s: vCPU ${s.vcpu.toFixed(3)} (target <= 0.25: ${ok(s.vcpu <= 0.25)}), RSS ${mib(s.rssBytes)} / PSS ${mib(s.pssBytes)} (target <= 60 MB = ${mib(L7_RSS_TARGET)}: ${ok(s.rssBytes <= L7_RSS_TARGET)} by RSS, ${ok(s.pssBytes <= L7_RSS_TARGET)} by PSS)`,
    );
  }
  for (const s of live.filter((x) => x.groups.length > 0)) {
    if (Number.isFinite(s.addedP99Ms))
      out.push(
        `  ${s.name}: the two node proxies add ${ms(s.addedP99Ms)} p99 at ${int(RATE)}/s (target <= 0.5 ms: ${ok(s.addedP99Ms <= 0.5)}; ztunnel pair 0.20 ms)`,
      );
    for (const g of s.groups)
      out.push(
        `    ${g.name}: vCPU ${g.vcpu.toFixed(3)} (target <= 0.15: ${ok(g.vcpu <= 0.15)}), RSS ${mib(g.rssBytes)} (target <= 40 MB: ${ok(g.rssBytes <= NODE_RSS_TARGET)})`,
      );
  }
  const m = nodes?.memory;
  if (m)
    for (const n of ['node A', 'node B'])
      out.push(
        `  ${n} RSS idle ${mib(m.idle[n]?.rssBytes ?? NaN)}, with ${int(m.tunnels)} tunnels ${mib(m.open[n]?.rssBytes ?? NaN)} (40 MB target: ${ok((m.open[n]?.rssBytes ?? Infinity) <= NODE_RSS_TARGET)})`,
      );
  if (out.length === 1) out.push('  (no Trellis row measured)');
  return out;
}

function versions(tools: Tools): string {
  const first = (cmd: string, args: string[], re: RegExp): string => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
    return re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? '?';
  };
  return [
    `nginx ${first(tools.nginx, ['-v'], /nginx\/(\S+)/)}`,
    `HAProxy ${first(tools.haproxy, ['-v'], /version (\S+)/)}`,
    `Caddy ${first(tools.caddy, ['version'], /v?(\d+\.\d+\.\d+)/)}`,
    `wrk ${first(tools.wrk, ['-v'], /wrk (\S+)/)}`,
    `iperf3 ${first(tools.iperf3, ['--version'], /iperf (\S+)/)}`,
  ].join(', ');
}

// ---------------------------------------------------------------------------------------

installCleanupHandlers();
let tools: Tools;
try {
  tools = ensureTools(log);
} catch (e) {
  if (!(e instanceof MissingToolsError)) throw e;
  console.error(e.message);
  process.exit(2);
}

const TARGETS = [
  ...ANCHORS,
  trellisGateway(1),
  ...(WORKERS > 1 ? [trellisGateway(WORKERS)] : []),
  nodePathTcp,
  nodePathHttpProxy,
];
// Parts that are not rows: selectable by name like the rows.
const IPERF_HBONE = 'Trellis iperf3 via HBONE';
const NODE_MEMORY = 'Trellis node proxy memory';
const wanted = (process.env.BENCH_TARGETS ?? '')
  .split(',')
  .map((s) => s.trim().toLowerCase())
  .filter(Boolean);
const known = [...TARGETS.map((t) => t.name), IPERF_HBONE, NODE_MEMORY];
const unknown = wanted.filter((w) => !known.some((k) => k.toLowerCase() === w));
if (unknown.length > 0) {
  console.error(`bench:proxy: unknown target(s) ${unknown.join(', ')}; known: ${known.join(', ')}`);
  process.exit(2);
}
const selected = (name: string): boolean => wanted.length === 0 || wanted.includes(name.toLowerCase());
const DO_IPERF_HBONE = selected(IPERF_HBONE);
const DO_NODE_MEMORY = selected(NODE_MEMORY);
const tmp = mkdtempSync(join(tmpdir(), 'trellis-bench-proxy-'));
registerTempDir(tmp);
const rows: Row[] = TARGETS.filter((t) => selected(t.name)).map((target) => ({
  target,
  dir: join(tmp, slug(target.name)),
  status: 'pending',
  reason: '',
  wrk: [],
  rate: [],
  failures: [],
}));
const iperfBps: number[] = [];
let iperfError = '';
let nodeProxies: NodeProxyResults | undefined;

const toolVersions = versions(tools);
const header = [
  '',
  `bench:proxy — origin: nginx, 1 worker, ${BODY_BYTES} B body; proxies: ${WORKERS} workers (Trellis: as named), keep-alive to the origin, no cache/compression/access log. All on loopback (node B and its workloads on ${NODE_B_ADDRESS}).`,
  `Full load: wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION_S}s --latency (GET). Fixed rate: ${int(RATE)} req/s x ${RATE_DURATION_S} s of ${BODY_BYTES} B POSTs, open loop (latency from due time). Median of ${RUNS} runs, targets interleaved.`,
  `÷ nginx, ÷ Caddy: req/s over that anchor's req/s. Added p99: fixed-rate p99 minus direct's. vCPU (process CPU time / wall time) and peak RSS: the target's processes (for "direct", the origin's; for Trellis, the node process trees in the path, not the control plane) during the fixed-rate run.`,
  `Node A -> HBONE -> node B: two node proxies (1 worker each), HTTP/2 CONNECT over mTLS between them; the load enters node A at a local upstream port (TCP) or node A's HTTP proxy (absolute-form requests), node B delivers to the origin.`,
  `node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}; ${toolVersions}`,
].join('\n');

function report(): void {
  const sums = summarize(rows);
  if (JSON_OUT) {
    const meta = {
      runs: RUNS,
      durationS: DURATION_S,
      connections: CONNECTIONS,
      threads: THREADS,
      rate: RATE,
      rateDurationS: RATE_DURATION_S,
      bodyBytes: BODY_BYTES,
      proxyWorkers: WORKERS,
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      tools: toolVersions,
    };
    const iperf = {
      runsBitsPerSecond: iperfBps,
      medianBitsPerSecond: median(iperfBps),
      error: iperfError || undefined,
    };
    const clean = (x: unknown): unknown => (typeof x === 'number' && !Number.isFinite(x) ? null : x);
    console.log(JSON.stringify({ meta, iperf, targets: sums, nodeProxies }, (_k, v: unknown) => clean(v), 2));
  } else {
    console.log(table(sums, iperfBps, nodeProxies, header));
    if (iperfError) console.log(`  iperf3: FAILED ${iperfError}`);
  }
}

// The whole run is bounded: a hung target cannot keep the bench (and its processes) alive.
// Per row: start (a `trellis up` takes ~10 s), warm-up, RUNS x (wrk + fixed rate + overheads).
// Node-proxy parts: a fresh `trellis up`, the tunnels (~15 s), RUNS iperf3 runs.
const estimateS =
  rows.length * (WARMUP_S + 10 + RUNS * (DURATION_S + RATE_DURATION_S + 4)) +
  RUNS * (IPERF_S + 2) +
  (DO_IPERF_HBONE || DO_NODE_MEMORY ? 20 : 0) +
  (DO_NODE_MEMORY ? 20 : 0) +
  (DO_IPERF_HBONE ? RUNS * (IPERF_S + 3) : 0) +
  30;
const TIMEOUT_S = envNumber('BENCH_TIMEOUT', Math.max(300, 2 * estimateS));
const globalTimer = setTimeout(() => {
  log(`bench:proxy: global timeout after ${TIMEOUT_S} s; reporting what was measured`);
  report();
  process.exit(1); // the exit handler stops every process and removes the temp dir
}, TIMEOUT_S * 1000);

let origin: RunningOrigin | undefined;
try {
  log(`bench:proxy: temp dir ${tmp}; about ${Math.round(estimateS)} s`);
  origin = await startOrigin(join(tmp, 'origin'));
  for (const row of rows) {
    await startRow(row, origin);
    log(`  ${row.target.name}: ${row.status === 'ok' ? `listening at ${row.running!.url}` : row.reason}`);
  }
  const live = (): Row[] => rows.filter((r) => r.status === 'ok');
  // Warm-up: connection pools to the origin, caches, Caddy's Go runtime.
  for (const row of live()) await measureWrk(row, tools, 'warmup', WARMUP_S).catch(() => undefined);
  for (let run = 0; run < RUNS; run++) {
    for (const row of live()) {
      log(`  run ${run + 1}/${RUNS} ${row.target.name}: wrk`);
      try {
        row.wrk.push(await measureWrk(row, tools, `wrk-${run}`, DURATION_S));
      } catch (e) {
        row.failures.push(`wrk run ${run + 1}: ${message(e)}`);
      }
    }
    for (const row of live()) {
      log(`  run ${run + 1}/${RUNS} ${row.target.name}: ${int(RATE)} req/s`);
      try {
        row.rate.push(await measureRate(row, run));
      } catch (e) {
        row.failures.push(`fixed-rate run ${run + 1}: ${message(e)}`);
      }
    }
  }
  // The rows are done: stop them, so what follows runs on an otherwise idle machine.
  for (const row of rows)
    await row.running?.stop().catch((e: unknown) => log(`stop ${row.target.name}: ${message(e)}`));
  log('  iperf3');
  try {
    iperfBps.push(...(await runIperf({ iperf3: tools.iperf3, dir: tmp, runs: RUNS, seconds: IPERF_S })));
  } catch (e) {
    iperfError = message(e);
  }
  if (DO_IPERF_HBONE || DO_NODE_MEMORY) {
    const dir = join(tmp, 'node-proxies');
    mkdirSync(dir, { recursive: true });
    nodeProxies = await measureNodeProxies({
      origin,
      iperf3: tools.iperf3,
      dir,
      doMemory: DO_NODE_MEMORY,
      doIperf: DO_IPERF_HBONE,
      tunnels: TUNNELS,
      runs: RUNS,
      iperfSeconds: IPERF_S,
      log,
    });
  }
  clearTimeout(globalTimer);
  report();
  if (
    rows.some((r) => r.status !== 'ok' || r.failures.length > 0) ||
    iperfError ||
    nodeProxies?.iperfError ||
    nodeProxies?.memoryError
  )
    process.exitCode = 1;
} finally {
  clearTimeout(globalTimer);
  for (const row of rows)
    await row.running?.stop().catch((e: unknown) => log(`stop ${row.target.name}: ${message(e)}`));
  await origin?.stop();
  if (process.env.TRELLIS_BENCH_KEEP) log(tmp);
  else rmSync(tmp, { recursive: true, force: true });
}
