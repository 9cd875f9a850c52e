// Anchor: raw loopback TCP throughput with iperf3 (one stream, client → server), the ceiling
// under any proxy on this machine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, runToCompletion, startProcess } from './procs.js';

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number } };
}

/** One iperf3 server on 127.0.0.1, `runs` client runs of `seconds` each; bits/s per run. */
export async function runIperf(o: { iperf3: string; dir: string; runs: number; seconds: number }): Promise<number[]> {
  const port = await freePort();
  const server = await startProcess({
    name: 'iperf3-server',
    command: o.iperf3,
    args: ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush'],
    log: join(o.dir, 'iperf3-server.log'),
  });
  try {
    // Readiness from its log, not by connecting: a probe connection would count as a test.
    const deadline = performance.now() + 10_000;
    while (!readFileSync(server.log, 'utf8').includes('Server listening')) {
      if (server.exited() || performance.now() > deadline)
        throw new Error(`iperf3 server did not start (${server.exitInfo()})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const out: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      const log = join(o.dir, `iperf3-client-${i}.json`);
      const r = await runToCompletion({
        name: 'iperf3-client',
        command: o.iperf3,
        args: ['-c', '127.0.0.1', '-p', String(port), '-t', String(o.seconds), '-J'],
        log,
        timeoutMs: (o.seconds + 15) * 1000,
      });
      const json = JSON.parse(readFileSync(log, 'utf8')) as IperfJson;
      const bps = json.end?.sum_received?.bits_per_second;
      if (!r.ok || json.error || bps === undefined) throw new Error(`iperf3 client: ${json.error ?? r.info}`);
      out.push(bps);
    }
    return out;
  } finally {
    await server.stop(2000);
  }
}
