// Runs `trellis up -f examples/shop` in a child process for end-to-end tests: waits for its
// summary, gives helpers to call through the mesh, and always stops it (SIGTERM, then SIGKILL).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './run-cli.js';

const BIN = fileURLToPath(new URL('../../../bin/trellis.js', import.meta.url));

export interface MeshUp {
  readonly child: ChildProcess;
  readonly stateDir: string;
  readonly stdout: () => string;
  /** Flow records a node wrote so far. */
  flows(node: string): Record<string, unknown>[];
  stop(): Promise<void>;
}

// The example's ports are fixed (gateway :8000, HBONE :15008, xDS :15010...), and the test
// runner runs two files at once: one mesh at a time, across test processes.
const LOCK = join(tmpdir(), 'trellis-test-mesh-up.lock');

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquireMeshLock(timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      const release = (): void => {
        process.off('exit', release);
        try {
          if (readFileSync(LOCK, 'utf8') === String(process.pid)) unlinkSync(LOCK);
        } catch {
          // already gone
        }
      };
      process.on('exit', release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder = NaN;
    try {
      holder = Number(readFileSync(LOCK, 'utf8'));
    } catch {
      continue;
    }
    if (!Number.isInteger(holder) || holder <= 0 || !pidAlive(holder)) {
      rmSync(LOCK, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another test's mesh (pid ${holder}) held ${LOCK} too long`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function meshUp(
  configDir = join(REPO_ROOT, 'examples/shop'),
  timeoutMs = 60_000,
  extraArgs: readonly string[] = [],
): Promise<MeshUp> {
  const release = await acquireMeshLock(10 * 60_000);
  const stateDir = mkdtempSync(join(tmpdir(), 'trellis-up-'));
  const child = spawn(process.execPath, [BIN, 'up', '-f', configDir, '--state-dir', stateDir, ...extraArgs], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await done;
      clearTimeout(t);
    }
    if (!process.env.TRELLIS_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
    release();
  };
  const deadline = Date.now() + timeoutMs;
  while (!out.includes('Ctrl-C stops everything.')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`trellis up did not start:\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    stateDir,
    stdout: () => out,
    flows: (node) => {
      try {
        return readFileSync(join(stateDir, 'logs', `${node}.flows.jsonl`), 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        return [];
      }
    },
    stop,
  };
}

export interface HttpResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** One HTTP/1.1 request (optionally through an HTTP proxy, absolute-form), bounded in time. */
export function httpGet(
  url: string,
  opts: { proxy?: string; host?: string; agent?: import('node:http').Agent; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const u = new URL(url);
  const [host, port] = opts.proxy ? opts.proxy.split(':') : [u.hostname, u.port || '80'];
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        path: opts.proxy ? u.href : u.pathname + u.search,
        headers: { host: opts.host ?? u.host },
        agent: opts.agent,
        timeout: opts.timeoutMs ?? 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls until `cond` holds (bounded). */
export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** CONNECT through an HTTP proxy (a node's outbound proxy), send one line, return the status and the first reply. */
export function tcpExchangeVia(
  proxy: string,
  target: string,
  line: string,
  timeoutMs = 5000,
): Promise<{ status: number; reply: string }> {
  const [host, port] = proxy.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method: 'CONNECT', path: target, timeout: timeoutMs });
    req.on('timeout', () => req.destroy(new Error(`timeout: CONNECT ${target} via ${proxy}`)));
    req.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, reply: '' });
        return;
      }
      const timer = setTimeout(() => socket.destroy(new Error(`no reply from ${target}`)), timeoutMs);
      socket.setEncoding('utf8');
      socket.once('data', (d: string) => {
        clearTimeout(timer);
        socket.end();
        resolve({ status: 200, reply: d });
      });
      socket.once('error', reject);
      socket.write(line);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Replace `file` whole: a temp file (dot-named, so the loader skips it) renamed over it, as editors save. */
export function writeAtomic(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export interface ConfigStatus {
  readonly generation: number;
  readonly rejected: { at: string; errors: { file?: string; field?: string; message: string }[] } | null;
}

/** The running control plane's config generation and last rejection (its admin /debug/config). */
export async function configStatus(admin = 'http://127.0.0.1:15014'): Promise<ConfigStatus> {
  const r = await httpGet(`${admin}/debug/config`);
  if (r.status !== 200) throw new Error(`${admin}/debug/config answered ${r.status}: ${r.body}`);
  return JSON.parse(r.body) as ConfigStatus;
}

/** Polls the control plane until its config generation passes `after` (bounded); the new generation. */
export async function nextGeneration(after: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await configStatus();
    if (s.generation > after) return s.generation;
    if (Date.now() > deadline) throw new Error(`the control plane stayed at generation ${after} for ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The warnings and errors the node proxies logged, for a failure message. */
export function proxyProblems(mesh: MeshUp, nodes: readonly string[] = ['node-a', 'node-b']): string {
  const lines: string[] = [];
  for (const name of nodes) {
    let text = '';
    try {
      text = readFileSync(join(mesh.stateDir, 'logs', `${name}.log`), 'utf8');
    } catch {
      continue;
    }
    const bad = text.split('\n').filter((l) => /"level":"(warn|error)"|Error|ECONN|EPIPE/.test(l));
    lines.push(`--- ${name}.log (${bad.length} warn/error lines, last 15):`, ...bad.slice(-15));
  }
  return `${lines.join('\n')}\n(TRELLIS_KEEP_STATE=1 keeps ${join(mesh.stateDir, 'logs')})`;
}
