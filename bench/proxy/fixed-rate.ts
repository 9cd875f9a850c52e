// Open-loop load generator: POSTs a fixed-size body at a fixed rate for a fixed time, in its own
// process (so its CPU is not the proxy's, and the proxy's CPU is read from /proc alone).
//
//   node dist/bench/proxy/fixed-rate.js '{"url":"http://127.0.0.1:8080/","rate":1000,"durationS":10}'
//
// Request i is due at start + i/rate. Its latency is measured from that due time, not from when it
// was actually written, so a stall delays the following requests' clocks too (no coordinated
// omission). Requests go through a keep-alive http.Agent with at most `connections` sockets; at
// most `maxInFlight` are outstanding (sending or queued for a socket) — a request due beyond that
// is counted as 'dropped'. Prints one JSON line (FixedRateResult) on stdout.
import http from 'node:http';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FixedRateConfig {
  url: string;
  /** Request-target instead of the URL's path (absolute-form for an HTTP proxy). */
  path?: string;
  headers?: Record<string, string>;
  rate: number;
  durationS: number;
  bodyBytes?: number;
  /** Response body length every 2xx must have; others count as 'short-body' errors. */
  expectBodyBytes?: number;
  connections?: number;
  maxInFlight?: number;
  timeoutMs?: number;
  /** Epoch ms at which request 0 is due, so the parent can time its CPU samples to the run. */
  startAt?: number;
}

export interface FixedRateResult {
  scheduled: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  /** Latency from due time to the response's last byte, successful requests. */
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** From the request actually being written (service time; not corrected). */
  serviceP50Ms: number;
  serviceP99Ms: number;
  /** How late requests were written versus their due time (the generator's own lag). */
  sendLagP99Ms: number;
  /** How late request 0 was versus startAt (process start-up). */
  startLateMs: number;
  achievedRps: number;
  sockets: number;
}

const MAX_REQUESTS = 1_000_000;

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

export async function runFixedRate(c: FixedRateConfig): Promise<FixedRateResult> {
  const total = Math.round(c.rate * c.durationS);
  if (!(total > 0 && total <= MAX_REQUESTS)) throw new Error(`rate × duration must be 1..${MAX_REQUESTS}`);
  const u = new URL(c.url);
  if (u.protocol !== 'http:') throw new Error('only http:// URLs');
  const body = Buffer.alloc(c.bodyBytes ?? 1024, 'a');
  const connections = c.connections ?? 50;
  const maxInFlight = c.maxInFlight ?? 1000;
  const timeoutMs = c.timeoutMs ?? 5000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const sockets = new Set<Socket>();
  const headers: http.OutgoingHttpHeaders = {
    ...c.headers,
    'content-type': 'application/octet-stream',
    'content-length': body.length,
  };
  const path = c.path ?? `${u.pathname}${u.search}`;

  const latency = new Float64Array(total);
  const service = new Float64Array(total);
  const lag = new Float64Array(total);
  let ok = 0;
  const errorKinds: Record<string, number> = {};
  const fail = (kind: string): void => void (errorKinds[kind] = (errorKinds[kind] ?? 0) + 1);
  let inFlight = 0;
  let sent = 0;

  const fire = (due: number): void => {
    inFlight++;
    const start = performance.now();
    lag[sent++] = start - due;
    let finished = false;
    const done = (error: string | undefined): void => {
      if (finished) return;
      finished = true;
      inFlight--;
      if (error) return fail(error);
      const end = performance.now();
      latency[ok] = end - due;
      service[ok] = end - start;
      ok++;
    };
    const req = http.request(
      { host: u.hostname, port: u.port || 80, method: 'POST', path, headers, agent, timeout: timeoutMs },
      (res) => {
        let n = 0;
        res.on('data', (chunk: Buffer) => (n += chunk.length));
        res.on('end', () => {
          const s = res.statusCode ?? 0;
          if (s < 200 || s > 299) done(`status ${s}`);
          else if (c.expectBodyBytes !== undefined && n !== c.expectBodyBytes) done('short-body');
          else done(undefined);
        });
        res.on('error', () => done('response-error'));
      },
    );
    req.on('socket', (s) => sockets.add(s));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => done(e.message === 'timeout' ? 'timeout' : (e.code ?? 'error')));
    req.end(body);
  };

  // Start at startAt (epoch ms), on this process's monotonic clock.
  const startAt = c.startAt ?? Date.now() + 100;
  const t0 = performance.now() + Math.max(0, startAt - Date.now());
  await sleep(Math.max(0, t0 - performance.now()));
  const startLateMs = Math.max(0, performance.now() - t0);
  const interval = 1000 / c.rate;
  let next = 0;
  // Timers fire at ~1 ms granularity: each tick writes every request already due.
  await new Promise<void>((allSent) => {
    const tick = (): void => {
      const now = performance.now();
      while (next < total && t0 + next * interval <= now) {
        const due = t0 + next * interval;
        next++;
        if (inFlight >= maxInFlight) fail('dropped');
        else fire(due);
      }
      if (next >= total) return allSent();
      setTimeout(tick, Math.max(0, t0 + next * interval - performance.now()));
    };
    tick();
  });
  const elapsed = performance.now() - t0;
  // Drain, bounded: whatever is still out after the timeout is counted as unfinished.
  const drainUntil = performance.now() + timeoutMs + 1000;
  while (inFlight > 0 && performance.now() < drainUntil) await sleep(5);
  if (inFlight > 0) errorKinds.unfinished = inFlight;
  agent.destroy();

  const lat = latency.slice(0, ok).sort();
  const svc = service.slice(0, ok).sort();
  const lg = lag.slice(0, sent).sort();
  const errors = Object.values(errorKinds).reduce((a, b) => a + b, 0);
  return {
    scheduled: total,
    ok,
    errors,
    errorKinds,
    p50Ms: quantile(lat, 0.5),
    p99Ms: quantile(lat, 0.99),
    p999Ms: quantile(lat, 0.999),
    maxMs: lat.length ? lat[lat.length - 1]! : NaN,
    serviceP50Ms: quantile(svc, 0.5),
    serviceP99Ms: quantile(svc, 0.99),
    sendLagP99Ms: quantile(lg, 0.99),
    startLateMs,
    achievedRps: ok / (elapsed / 1000),
    sockets: sockets.size,
  };
}

// Entry point when run as a script (the bench imports only the types).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const config = JSON.parse(process.argv[2] ?? '{}') as FixedRateConfig;
  // Hard bound on the process's life whatever happens to the target.
  const limit = setTimeout(
    () => {
      process.stderr.write('fixed-rate: hard time limit reached\n');
      process.exit(2);
    },
    (config.durationS + (config.timeoutMs ?? 5000) / 1000 + 30) * 1000 +
      Math.max(0, (config.startAt ?? 0) - Date.now()),
  );
  limit.unref();
  try {
    const r = await runFixedRate(config);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  } catch (e) {
    process.stderr.write(`fixed-rate: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
