// Full-load measure: wrk (closed loop, keep-alive) against a target; its text report parsed.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runToCompletion } from './procs.js';

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** wrk's "Non-2xx or 3xx responses". */
  badStatus: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** badStatus + all socket errors: a run with errors > 0 is flagged. */
  errors: number;
}

const UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function latencyMs(value: string, unit: string): number {
  const f = UNIT_MS[unit];
  if (f === undefined) throw new Error(`wrk: unknown latency unit '${unit}'`);
  return Number(value) * f;
}

/** Parses wrk's report (run with --latency). Throws if the figures are not there. */
export function parseWrk(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const dist = /Latency Distribution([\s\S]*?)\n\s*\d+ requests in/.exec(text)?.[1] ?? '';
  const pct = (p: string): number | undefined => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(dist);
    return m ? latencyMs(m[1]!, m[2]!) : undefined;
  };
  const p50 = pct('50');
  const p99 = pct('99');
  const requests = /^\s*(\d+) requests in/m.exec(text);
  if (!rps || p50 === undefined || p99 === undefined || !requests)
    throw new Error(`wrk: unexpected output:\n${text.slice(0, 800)}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = {
    connect: Number(sock?.[1] ?? 0),
    read: Number(sock?.[2] ?? 0),
    write: Number(sock?.[3] ?? 0),
    timeout: Number(sock?.[4] ?? 0),
  };
  const badStatus = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  return {
    rps: Number(rps[1]),
    p50Ms: p50,
    p99Ms: p99,
    requests: Number(requests[1]),
    badStatus,
    socketErrors,
    errors: badStatus + socketErrors.connect + socketErrors.read + socketErrors.write + socketErrors.timeout,
  };
}

export interface WrkOptions {
  wrk: string;
  url: string;
  headers?: Record<string, string>;
  path?: string;
  threads: number;
  connections: number;
  durationS: number;
  /** Where the report (and the Lua script, if any) are written. */
  dir: string;
  label: string;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${o.durationS}s`, '--latency'];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (o.path !== undefined) {
    // wrk takes the request-target from the URL; an absolute-form one (HTTP proxy) needs Lua.
    if ([...o.path].some((ch) => ch < ' ' || ch === '"' || ch === '\\'))
      throw new Error(`unsupported characters in path ${JSON.stringify(o.path)}`);
    const script = join(o.dir, `${o.label}.lua`);
    writeFileSync(script, `wrk.path = "${o.path}"\n`);
    args.push('-s', script);
  }
  args.push(o.url);
  const log = join(o.dir, `${o.label}.txt`);
  const r = await runToCompletion({
    name: 'wrk',
    command: o.wrk,
    args,
    log,
    timeoutMs: (o.durationS + 20) * 1000,
  });
  const text = readFileSync(log, 'utf8');
  if (!r.ok) throw new Error(`wrk ${r.info}: ${text.slice(-500)}`);
  return parseWrk(text);
}
