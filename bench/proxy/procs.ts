// Processes the proxy bench starts: spawned with stdio ignored or to files (never an unread pipe),
// tracked by PID, stopped by PID (SIGTERM, then SIGKILL) — also from a synchronous 'exit' handler,
// so Ctrl-C, a timeout or a crash leaves nothing running. Also: free ports, readiness by polling a
// port, and CPU / memory of a process tree from /proc.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Proc {
  readonly name: string;
  readonly pid: number;
  /** The file stdout and stderr go to. */
  readonly log: string;
  exited(): boolean;
  /** "exit code 1" / "signal SIGTERM" once it exited. */
  exitInfo(): string;
  /** Resolves true once exited, false after timeoutMs. */
  wait(timeoutMs: number): Promise<boolean>;
  /** SIGTERM, then SIGKILL to it and the descendants it had, bounded. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

interface Tracked {
  readonly child: ChildProcess;
  readonly name: string;
  exit?: string;
}

const tracked = new Map<number, Tracked>();
const tempDirs = new Set<string>();

export interface StartOptions {
  name: string;
  command: string;
  args: readonly string[];
  /** stdout and stderr are appended here. */
  log: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export async function startProcess(o: StartOptions): Promise<Proc> {
  const fd = openSync(o.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(o.command, o.args, {
      stdio: ['ignore', fd, fd],
      cwd: o.cwd,
      env: o.env ?? process.env,
    });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new Error(`${o.name}: cannot start ${o.command}: ${err.message}`);
  }
  const t: Tracked = { child, name: o.name };
  tracked.set(pid, t);
  const exitedP = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      t.exit = signal ? `signal ${signal}` : `exit code ${code ?? '?'}`;
      tracked.delete(pid);
      resolve();
    }),
  );
  child.on('error', () => {}); // reported through 'exit' or the readiness check
  const wait = async (timeoutMs: number): Promise<boolean> => {
    if (t.exit !== undefined) return true;
    const ac = new AbortController();
    const r = await Promise.race([exitedP.then(() => true), sleep(timeoutMs, false, { signal: ac.signal })]).catch(
      () => true,
    );
    ac.abort();
    return r;
  };
  return {
    name: o.name,
    pid,
    log: o.log,
    exited: () => t.exit !== undefined,
    exitInfo: () => t.exit ?? 'running',
    wait,
    async stop(graceMs = 5000): Promise<void> {
      if (t.exit !== undefined) return;
      // Snapshot the tree first: if the parent has to be SIGKILLed, its children (nginx
      // workers) would be orphaned, so they are killed by PID too (start time checked).
      const tree = descendants([pid]).filter((p) => p.pid !== pid);
      signal(pid, 'SIGTERM');
      if (!(await wait(graceMs))) {
        signal(pid, 'SIGKILL');
        await wait(2000);
      }
      for (const d of tree) if (sameProcess(d)) signal(d.pid, 'SIGKILL');
    },
  };
}

/** Runs a command to completion (stdout/stderr to `log`), killing it after timeoutMs. */
export async function runToCompletion(o: StartOptions & { timeoutMs: number }): Promise<{ ok: boolean; info: string }> {
  const p = await startProcess(o);
  if (!(await p.wait(o.timeoutMs))) {
    await p.stop(1000);
    return { ok: false, info: `killed after ${o.timeoutMs} ms` };
  }
  return { ok: p.exitInfo() === 'exit code 0', info: p.exitInfo() };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

// ---------------------------------------------------------------------------------------
// Cleanup on exit, Ctrl-C, SIGTERM.

export function registerTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** Synchronous: usable from process.on('exit'). SIGTERM every tracked process tree, wait ≤ 2 s, SIGKILL. */
export function cleanupSync(): void {
  const roots = [...tracked.keys()];
  if (roots.length > 0) {
    const trees = descendants(roots);
    for (const r of roots) signal(r, 'SIGTERM');
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && roots.some(alive)) sleepSync(20);
    for (const p of trees) if (sameProcess(p)) signal(p.pid, 'SIGKILL');
  }
  if (!process.env.TRELLIS_BENCH_KEEP) for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

let installed = false;
export function installCleanupHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupSync);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench:proxy: ${sig}, stopping the processes it started\n`);
      process.exit(code); // the 'exit' handler does the work
    });
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---------------------------------------------------------------------------------------
// /proc

interface Stat {
  pid: number;
  ppid: number;
  state: string;
  /** utime + stime, clock ticks. */
  ticks: number;
  /** Start time since boot, ticks: identifies the process if the PID is reused. */
  start: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ..." — comm may contain spaces and parentheses: split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    pid,
    ppid: Number(f[1]),
    state: f[0] ?? '?',
    ticks: Number(f[11]) + Number(f[12]),
    start: Number(f[19]),
  };
}

export function alive(pid: number): boolean {
  const s = readStat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

function sameProcess(p: Stat): boolean {
  const now = readStat(p.pid);
  return now !== undefined && now.start === p.start && now.state !== 'Z';
}

/** The processes `roots` and all their descendants (one /proc scan). */
export function descendants(roots: readonly number[]): Stat[] {
  const all: Stat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) all.push(s);
  }
  const byParent = new Map<number, Stat[]>();
  for (const s of all) {
    const siblings = byParent.get(s.ppid);
    if (siblings) siblings.push(s);
    else byParent.set(s.ppid, [s]);
  }
  const out = all.filter((s) => roots.includes(s.pid));
  for (let i = 0; i < out.length; i++) out.push(...(byParent.get(out[i]!.pid) ?? []));
  return out;
}

/** argv of a process from /proc (empty if it is gone). */
export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** Direct children of `parent` (not zombies) whose argv matches. */
export function childrenMatching(parent: number, match: (argv: readonly string[]) => boolean): number[] {
  return descendants([parent])
    .filter((s) => s.ppid === parent && s.state !== 'Z' && match(cmdline(s.pid)))
    .map((s) => s.pid);
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 });
    const n = Number(r.stdout?.trim());
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

function statusKiB(pid: number, file: 'status' | 'smaps_rollup', key: string): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export interface TreeSample {
  readonly at: number;
  readonly procs: readonly Stat[];
}

export function sampleTree(roots: readonly number[]): TreeSample {
  return { at: performance.now(), procs: descendants(roots).filter((s) => s.state !== 'Z') };
}

/** vCPU between two samples: Σ (utime+stime) deltas of processes present in both / wall time. */
export function vcpu(a: TreeSample, b: TreeSample): number {
  let ticks = 0;
  for (const p of b.procs) {
    const before = a.procs.find((q) => q.pid === p.pid && q.start === p.start);
    if (before) ticks += p.ticks - before.ticks;
  }
  return ticks / ticksPerSecond() / ((b.at - a.at) / 1000);
}

/**
 * Memory of a process tree now: Σ VmRSS (as `ps` shows; pages shared between nginx's master
 * and workers count once per process) and Σ Pss (shared pages split between their users).
 */
export function memory(roots: readonly number[]): { rssBytes: number; pssBytes: number } {
  let rss = 0;
  let pss = 0;
  for (const p of descendants(roots)) {
    if (p.state === 'Z') continue;
    rss += statusKiB(p.pid, 'status', 'VmRSS');
    pss += statusKiB(p.pid, 'smaps_rollup', 'Pss');
  }
  return { rssBytes: rss * 1024, pssBytes: pss * 1024 };
}

// ---------------------------------------------------------------------------------------
// Ports

/** A port free on 127.0.0.1 right now (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

function tryConnect(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Polls until `port` accepts a TCP connection; throws (with the log's tail) if `proc` exits or after timeoutMs. */
export async function waitForPort(port: number, proc: Proc | undefined, timeoutMs = 15_000, host = '127.0.0.1') {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (proc?.exited())
      throw new Error(`${proc.name} exited (${proc.exitInfo()}) before listening${logTail(proc.log)}`);
    if (await tryConnect(port, host)) return;
    await sleep(50);
  }
  throw new Error(
    `${proc?.name ?? 'server'} not listening on ${host}:${port} after ${timeoutMs} ms${proc ? logTail(proc.log) : ''}`,
  );
}

/** Whether a TCP socket listens on host:port (IPv4), from /proc/net/tcp: no connection is made. */
export function listening(host: string, port: number): boolean {
  const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, '0');
  // /proc/net/tcp shows the address as the 32-bit value in host (little-endian) order.
  const addr = host
    .split('.')
    .map(Number)
    .reverse()
    .map((b) => hex(b, 2))
    .join('');
  const local = `${addr}:${hex(port, 4)}`;
  const any = `00000000:${hex(port, 4)}`;
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return false;
  }
  return text.split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    return (f[1] === local || f[1] === any) && f[3] === '0A';
  });
}

/**
 * Polls until something listens on host:port without connecting to it (a connection would reach
 * whatever is behind a proxy's port, e.g. start an iperf3 test); throws if `proc` exits or after
 * timeoutMs.
 */
export async function waitForListen(host: string, port: number, proc: Proc | undefined, timeoutMs = 15_000) {
  const deadline = performance.now() + timeoutMs;
  while (!listening(host, port)) {
    if (proc?.exited())
      throw new Error(`${proc.name} exited (${proc.exitInfo()}) before ${host}:${port} listened${logTail(proc.log)}`);
    if (performance.now() > deadline)
      throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms${proc ? logTail(proc.log) : ''}`);
    await sleep(50);
  }
}

export function logTail(file: string, lines = 8): string {
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8').trim();
  return text ? `:\n    ${text.split('\n').slice(-lines).join('\n    ')}` : '';
}
