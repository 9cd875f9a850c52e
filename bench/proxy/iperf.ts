// iperf3 (one stream, client → server): the raw loopback TCP anchor — the ceiling under any proxy
// on this machine — and the building blocks for the same run through a Trellis HBONE tunnel
// (bench/proxy/node-proxies.ts), where the server sits at node B's workload address and the
// client connects to node A's local upstream port.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, runToCompletion, startProcess, type Proc } from './procs.js';

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number } };
}

/** An iperf3 server bound to host:port (a free port when none is given), ready when this resolves. */
export async function startIperfServer(o: {
  iperf3: string;
  dir: string;
  host: string;
  port?: number;
  name?: string;
}): Promise<{ proc: Proc; host: string; port: number }> {
  const port = o.port ?? (await freePort());
  const name = o.name ?? 'iperf3-server';
  const proc = await startProcess({
    name,
    command: o.iperf3,
    args: ['-s', '-B', o.host, '-p', String(port), '--forceflush'],
    log: join(o.dir, `${name}.log`),
  });
  try {
    // Readiness from its log, not by connecting: a probe connection would count as a test.
    const deadline = performance.now() + 10_000;
    while (!readFileSync(proc.log, 'utf8').includes('Server listening')) {
      if (proc.exited() || performance.now() > deadline)
        throw new Error(`iperf3 server did not start (${proc.exitInfo()})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    await proc.stop(1000);
    throw e;
  }
  return { proc, host: o.host, port };
}

/** One client run of `seconds` against host:port; bits/s received. */
export async function runIperfClient(o: {
  iperf3: string;
  dir: string;
  host: string;
  port: number;
  seconds: number;
  label: string;
}): Promise<number> {
  const log = join(o.dir, `${o.label}.json`);
  const r = await runToCompletion({
    name: 'iperf3-client',
    command: o.iperf3,
    args: ['-c', o.host, '-p', String(o.port), '-t', String(o.seconds), '-J'],
    log,
    timeoutMs: (o.seconds + 15) * 1000,
  });
  let json: IperfJson;
  try {
    json = JSON.parse(readFileSync(log, 'utf8')) as IperfJson;
  } catch {
    throw new Error(`iperf3 client ${r.info}: no JSON report (${readFileSync(log, 'utf8').slice(0, 300)})`);
  }
  const bps = json.end?.sum_received?.bits_per_second;
  if (!r.ok || json.error || bps === undefined) throw new Error(`iperf3 client: ${json.error ?? r.info}`);
  return bps;
}

/** One iperf3 server on 127.0.0.1, `runs` client runs of `seconds` each; bits/s per run. */
export async function runIperf(o: { iperf3: string; dir: string; runs: number; seconds: number }): Promise<number[]> {
  const server = await startIperfServer({ iperf3: o.iperf3, dir: o.dir, host: '127.0.0.1' });
  try {
    const out: number[] = [];
    for (let i = 0; i < o.runs; i++)
      out.push(
        await runIperfClient({
          iperf3: o.iperf3,
          dir: o.dir,
          host: '127.0.0.1',
          port: server.port,
          seconds: o.seconds,
          label: `iperf3-client-${i}`,
        }),
      );
    return out;
  } finally {
    await server.proc.stop(2000);
  }
}
