// wrk through the mesh for end-to-end tests under load: bounded in time (killed 10 s after its
// duration), with its summary parsed so a test can assert that no request failed.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export const WRK = ['/usr/bin/wrk', '/usr/local/bin/wrk'].find((p) => existsSync(p));

export interface WrkResult {
  readonly code: number | null;
  readonly out: string;
  /** Requests completed, or undefined when wrk printed no summary. */
  readonly requests: number | undefined;
  readonly rps: number | undefined;
  /** wrk's "Non-2xx or 3xx responses" and "Socket errors" lines; empty when nothing failed. */
  readonly failures: readonly string[];
}

export interface WrkRun {
  readonly done: Promise<WrkResult>;
  kill(): void;
}

export function runWrk(o: { url: string; host?: string; seconds: number; connections?: number }): WrkRun {
  if (!WRK) throw new Error('wrk is not installed (apt-get install wrk)');
  const args = ['-t1', `-c${o.connections ?? 16}`, `-d${o.seconds}s`, '--latency', '--timeout', '3s'];
  if (o.host) args.push('-H', `Host: ${o.host}`);
  const child = spawn(WRK, [...args, o.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 10) * 1000);
  const done = new Promise<WrkResult>((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      const summary = /(\d+) requests in ([\d.]+\w+)/.exec(out);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      resolve({
        code,
        out,
        requests: summary ? Number(summary[1]) : undefined,
        rps: rps ? Number(rps[1]) : undefined,
        failures: out.match(/Non-2xx or 3xx responses:.*|Socket errors:.*/g) ?? [],
      });
    }),
  );
  return { done, kill: () => child.kill('SIGKILL') };
}
