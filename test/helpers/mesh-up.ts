// Runs `trellis up -f examples/shop` in a child process for end-to-end tests: waits for its
// summary, gives helpers to call through the mesh, and always stops it (SIGTERM, then SIGKILL).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

export async function meshUp(configDir = join(REPO_ROOT, 'examples/shop'), timeoutMs = 60_000): Promise<MeshUp> {
  const stateDir = mkdtempSync(join(tmpdir(), 'trellis-up-'));
  const child = spawn(process.execPath, [BIN, 'up', '-f', configDir, '--state-dir', stateDir], {
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
