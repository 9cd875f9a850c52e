// Child processes `trellis up` starts and stops: each with its log file, ended by PID only,
// politely (SIGTERM) then firmly (SIGKILL) after a grace period.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

export interface Supervised {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
  exited: boolean;
}

export class Supervisor {
  readonly #logDir: string;
  readonly #procs: Supervised[] = [];
  onExit: (p: Supervised, code: number | null, signal: string | null) => void = () => undefined;

  constructor(logDir: string) {
    this.#logDir = logDir;
    mkdirSync(logDir, { recursive: true });
  }

  get processes(): readonly Supervised[] {
    return this.#procs;
  }

  start(
    name: string,
    argv: readonly string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv; stdoutFile?: string } = {},
  ): Supervised {
    const log = join(this.#logDir, `${name}.log`);
    const err = openSync(log, 'a');
    const out = options.stdoutFile ? openSync(join(this.#logDir, options.stdoutFile), 'a') : err;
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', out, err],
    });
    closeSync(err);
    if (out !== err) closeSync(out);
    const p: Supervised = { name, child, log, exited: false };
    child.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      p.exited = true;
      this.onExit(p, code, signal);
    });
    this.#procs.push(p);
    return p;
  }

  /** Stops in reverse start order (workloads, then nodes, then the control plane). */
  async stopAll(graceMs = 5000): Promise<void> {
    for (const p of [...this.#procs].reverse()) await stop(p, graceMs);
  }
}

async function stop(p: Supervised, graceMs: number): Promise<void> {
  if (p.exited || p.child.pid === undefined) return;
  const done = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!p.exited) p.child.kill('SIGKILL');
  }, graceMs);
  await done;
  clearTimeout(timer);
}

/** Resolves when host:port accepts a TCP connection; rejects after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs: number, alive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (alive && !alive()) throw new Error('the process exited');
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves when GET url answers 200; rejects after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number, alive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    if (alive && !alive()) throw new Error('the process exited');
    if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}
