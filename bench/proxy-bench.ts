// npm run bench:proxy — HTTP/1.1 proxies in front of one origin (nginx returning 1 KB), on
// loopback: full-load throughput and latency (wrk), latency and proxy CPU/RSS at a fixed
// 1,000 req/s of 1 KB POSTs (bench/proxy/fixed-rate.ts, open loop), and raw loopback TCP
// (iperf3). Anchors, measured in the same run: no proxy ("direct"), HAProxy, nginx, Caddy;
// Trellis rows (bench/proxy/trellis.ts) follow the anchors of bench/proxy/targets.ts.
//
// Env: BENCH_RUNS (3), BENCH_DURATION (5s, wrk), BENCH_CONNECTIONS (50), BENCH_RATE (1000 req/s),
// BENCH_RATE_DURATION (10s), BENCH_IPERF_SECONDS (5), BENCH_TARGETS (names, comma-separated),
// BENCH_TIMEOUT (s, whole run), TRELLIS_BENCH_KEEP=1 keeps the temp dir. --json: results as JSON
// on stdout (progress always goes to stderr).
import { trellisGateway } from './proxy/trellis.js';
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
  TARGETS as ANCHORS,
  WORKERS,
  startOrigin,
  type BenchTarget,
  type RunningOrigin,
  type RunningTarget,
} from './proxy/targets.js';
import { ensureTools, MissingToolsError, type Tools } from './proxy/tools.js';
import { runWrk, type WrkResult } from './proxy/wrk.js';

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

const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
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
    const a = sampleTree(t.pids);
    const end = startAt + RATE_DURATION_S * 1000;
    const mem: { rssBytes: number; pssBytes: number }[] = [];
    while (Date.now() < end - 50) {
      await sleep(Math.min(1000, end - Date.now()));
      mem.push(memory(t.pids));
    }
    const b = sampleTree(t.pids);
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
    runs: { wrk: r.wrk, fixedRate: r.rate },
    failures: r.failures,
  }));
}

const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const fin = (x: number, f: (x: number) => string): string => (Number.isFinite(x) ? f(x) : '');
const ms = (x: number): string => fin(x, (v) => `${v.toFixed(v < 10 ? 2 : 1)} ms`);

function table(sums: readonly Summary[], iperfBps: readonly number[], header: string): string {
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
  if (iperfBps.length > 0)
    rows.push([
      `anchor: iperf3 TCP loopback (median of ${iperfBps.length})`,
      `${(median(iperfBps) / 1e9).toFixed(1)} Gbit/s`,
      ...Array<string>(heads.length - 2).fill(''),
    ]);
  for (const s of sums) {
    if (s.status !== 'ok') {
      rows.push([s.name, s.status === 'pending' ? 'not run' : 'FAILED', ...Array<string>(heads.length - 2).fill('')]);
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
      fin(s.rssBytes, (v) => `${(v / 1048576).toFixed(1)} MiB`),
      errors > 0 || s.failures.length > 0 ? `${int(errors)} FLAGGED` : '0',
    ]);
  }
  const w = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const lines = [
    heads.map((h, i) => h.padEnd(w[i]!)).join(' | '),
    w.map((n) => '-'.repeat(n)).join('-|-'),
    ...rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join(' | ')),
  ];
  const notes: string[] = [];
  for (const s of sums) {
    if (s.status !== 'ok') {
      notes.push(`${s.name}: ${s.reason}`);
      continue;
    }
    const rps = s.runs.wrk.map((w) => int(w.rps)).join(' / ');
    const p99 = s.runs.fixedRate.map((x) => x.result.p99Ms.toFixed(2)).join(' / ');
    const lag = Math.max(...s.runs.fixedRate.map((x) => x.result.sendLagP99Ms));
    const pss = fin(s.pssBytes, (v) => `, PSS ${(v / 1048576).toFixed(1)} MiB`);
    notes.push(
      `${s.name}: req/s per run ${rps}; ${int(RATE)}/s p99 per run ${p99} ms (p50 ${ms(s.rateP50Ms)}; generator send lag p99 <= ${ms(lag)})${pss}`,
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
  return [header, '', ...lines, '', ...notes.map((n) => `  ${n}`)].join('\n');
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

const TARGETS = [...ANCHORS, trellisGateway];
const wanted = (process.env.BENCH_TARGETS ?? '')
  .split(',')
  .map((s) => s.trim().toLowerCase())
  .filter(Boolean);
const unknown = wanted.filter((w) => !TARGETS.some((t) => t.name.toLowerCase() === w));
if (unknown.length > 0) {
  console.error(
    `bench:proxy: unknown target(s) ${unknown.join(', ')}; known: ${TARGETS.map((t) => t.name).join(', ')}`,
  );
  process.exit(2);
}
const tmp = mkdtempSync(join(tmpdir(), 'trellis-bench-proxy-'));
registerTempDir(tmp);
const rows: Row[] = TARGETS.filter((t) => wanted.length === 0 || wanted.includes(t.name.toLowerCase())).map(
  (target) => ({
    target,
    dir: join(tmp, slug(target.name)),
    status: 'pending',
    reason: '',
    wrk: [],
    rate: [],
    failures: [],
  }),
);
const iperfBps: number[] = [];
let iperfError = '';

const toolVersions = versions(tools);
const header = [
  '',
  `bench:proxy — origin: nginx, 1 worker, ${BODY_BYTES} B body; proxies: ${WORKERS} workers, keep-alive to the origin, no cache/compression/access log. All on 127.0.0.1.`,
  `Full load: wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION_S}s --latency (GET). Fixed rate: ${int(RATE)} req/s x ${RATE_DURATION_S} s of ${BODY_BYTES} B POSTs, open loop (latency from due time). Median of ${RUNS} runs, targets interleaved.`,
  `÷ nginx, ÷ Caddy: req/s over that anchor's req/s. Added p99: fixed-rate p99 minus direct's. vCPU and RSS: the target's processes (for "direct", the origin's) during the fixed-rate run. node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}; ${toolVersions}`,
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
    console.log(JSON.stringify({ meta, iperf, targets: sums }, (_k, v: unknown) => clean(v), 2));
  } else {
    console.log(table(sums, iperfBps, header));
    if (iperfError) console.log(`  iperf3: FAILED ${iperfError}`);
  }
}

// The whole run is bounded: a hung target cannot keep the bench (and its processes) alive.
const estimateS = rows.length * (WARMUP_S + 3 + RUNS * (DURATION_S + RATE_DURATION_S + 4)) + RUNS * (IPERF_S + 2) + 30;
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
  log('  iperf3');
  try {
    iperfBps.push(...(await runIperf({ iperf3: tools.iperf3, dir: tmp, runs: RUNS, seconds: IPERF_S })));
  } catch (e) {
    iperfError = message(e);
  }
  clearTimeout(globalTimer);
  report();
  if (rows.some((r) => r.status !== 'ok' || r.failures.length > 0) || iperfError) process.exitCode = 1;
} finally {
  clearTimeout(globalTimer);
  for (const row of rows)
    await row.running?.stop().catch((e: unknown) => log(`stop ${row.target.name}: ${message(e)}`));
  await origin?.stop();
  if (process.env.TRELLIS_BENCH_KEEP) log(tmp);
  else rmSync(tmp, { recursive: true, force: true });
}
