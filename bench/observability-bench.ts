// What observability costs the L7 gateway (last part of `npm run bench:proxy`, also alone with
// `npm run bench:observability`): the issue's target is at most 10% lower throughput with
// everything on than with everything off.
//
// Two `trellis up` gateways (the bench:proxy gateway config, 1 worker each), both running for the
// whole part, in front of the same origin (nginx, 1 worker, 1 KB):
// - on: request metrics (stats filter), tracing at 1% to a local OTLP/HTTP sink that accepts and
//   discards the POSTs, flow records (stdout to the node's flows file, as `trellis up` does);
//   access log off (its default);
// - off: `trellis up --observability off` (no stats, tracing or access log filters).
// Full load with wrk (-t2 -c50, keep-alive GET), runs alternating on/off then off/on; medians.
// Env: BENCH_RUNS (3), BENCH_DURATION (5 s), BENCH_CONNECTIONS (50).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCleanupHandlers, registerTempDir } from './proxy/procs.js';
import { startOrigin, type RunningTarget } from './proxy/targets.js';
import { findBinary } from './proxy/tools.js';
import { trellisGateway } from './proxy/trellis.js';
import { runWrk, type WrkResult } from './proxy/wrk.js';
import { envInt, median } from './stats.js';

const RUNS = envInt('BENCH_RUNS', 3);
const DURATION_S = envInt('BENCH_DURATION', 5);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 50);
const TARGET_MAX_LOSS = 0.1;

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

installCleanupHandlers();
const wrk = findBinary('wrk');
if (!wrk) {
  console.log('bench:observability — skipped: wrk not found (Debian package wrk)');
  process.exit(0);
}
const tmp = mkdtempSync(join(tmpdir(), 'trellis-bench-observability-'));
registerTempDir(tmp);

// The OTLP sink: accepts and discards every POST (the collector's cost is not the proxy's).
let spansPosts = 0;
const sink = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    spansPosts++;
    res.writeHead(200, { 'content-type': 'application/x-protobuf' });
    res.end();
  });
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
const otlp = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;

const origin = await startOrigin(join(tmp, 'origin'));
const variants = [
  {
    key: 'on',
    label: 'everything on (metrics, tracing 1% to OTLP, flow records; access log off)',
    target: trellisGateway(1, { extraArgs: ['--otlp-endpoint', otlp, '--trace-sampling', '1'] }),
  },
  {
    key: 'off',
    label: 'everything off (--observability off)',
    target: trellisGateway(1, { extraArgs: ['--observability', 'off'] }),
  },
] as const;
const running: RunningTarget[] = [];
const results = new Map<string, WrkResult[]>(variants.map((v) => [v.key, []]));
try {
  for (const [i, v] of variants.entries()) running[i] = await v.target.start(origin, join(tmp, v.key));
  // One short warm-up each (JIT, pools), not counted.
  for (const [i, v] of variants.entries())
    await runWrk({
      wrk,
      url: running[i]!.url,
      threads: 2,
      connections: CONNECTIONS,
      durationS: 1,
      dir: tmp,
      label: `warm-${v.key}`,
    });
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) {
      const v = variants[i]!;
      const r = await runWrk({
        wrk,
        url: running[i]!.url,
        threads: 2,
        connections: CONNECTIONS,
        durationS: DURATION_S,
        dir: tmp,
        label: `${v.key}-${run}`,
      });
      results.get(v.key)!.push(r);
    }
  }
} finally {
  for (const r of running) await r?.stop();
  await origin.stop();
  sink.close();
}

const on = results.get('on')!;
const off = results.get('off')!;
const rpsOn = median(on.map((r) => r.rps));
const rpsOff = median(off.map((r) => r.rps));
const ratio = rpsOn / rpsOff;
const rows = [
  ['Trellis L7 gateway (1 worker), ' + variants[0].label, on],
  ['Trellis L7 gateway (1 worker), ' + variants[1].label, off],
] as const;
const w = Math.max(...rows.map(([n]) => n.length));
console.log(
  `\nbench:observability — Trellis L7 gateway (trellis up, 1 worker) in front of nginx (1 worker, 1024 B); wrk -t2 -c${CONNECTIONS} -d${DURATION_S}s GET; median of ${RUNS} runs, on/off alternating; node ${process.version}`,
);
console.log(`${'target'.padEnd(w)} | req/s     | p50     | p99     | errors | req/s per run`);
console.log(`${'-'.repeat(w)}-|-----------|---------|---------|--------|--------------`);
for (const [name, rs] of rows)
  console.log(
    `${name.padEnd(w)} | ${`${fmt(median(rs.map((r) => r.rps)))}/s`.padEnd(9)} | ${`${median(rs.map((r) => r.p50Ms)).toFixed(2)} ms`.padEnd(7)} | ${`${median(rs.map((r) => r.p99Ms)).toFixed(2)} ms`.padEnd(7)} | ${String(rs.reduce((a, r) => a + r.errors, 0)).padEnd(6)} | ${rs.map((r) => fmt(r.rps)).join(' / ')}`,
  );
console.log(
  `\n  anchor: everything off. on ÷ off = ${ratio.toFixed(3)} (${((1 - ratio) * 100).toFixed(1)}% lower); target: <= ${TARGET_MAX_LOSS * 100}% lower: ${1 - ratio <= TARGET_MAX_LOSS ? 'met' : 'NOT met'}`,
);
console.log(`  OTLP sink received ${spansPosts} export POST${spansPosts === 1 ? '' : 's'} from the "on" gateway.`);
rmSync(tmp, { recursive: true, force: true });
