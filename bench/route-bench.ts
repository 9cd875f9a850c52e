// npm run bench:routes — route selection cost in the L7 engine. Two route configurations in one
// engine: (a) a single route, (b) 1,000 routes (400 exact paths, 400 prefixes, 200 regexes)
// followed by 100 routes that match on an x-tenant header, with the request hitting the last
// header route (a linear scan would try all 1,100 predicates, 200 of them regexes).
//
// Part 1, in process: ns per route lookup for (a), (b) through the index, and (b) by a linear
// scan of the same compiled routes (what the index replaces).
// Part 2, over sockets: the engine (child process, listeners for (a) and (b)) in front of a
// 1 KiB HTTP/1.1 origin (child process), loaded by wrk (keep-alive, --latency); runs alternate
// (a), (b) then (b), (a). Medians of BENCH_RUNS runs; the table gives req/s, p99 and the ratio (b)/(a).
//
// Env: BENCH_RUNS (3), BENCH_DURATION (5 s), BENCH_CONNECTIONS (32). wrk from PATH or /usr/bin/wrk;
// without wrk only part 1 runs.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { EnvoyObject, L7Config } from '../src/proxy/l7/config.js';
import { L7Engine } from '../src/proxy/l7/engine.js';
import { RouteTable, type RouteMatchInput } from '../src/proxy/l7/route-table.js';
import { parseWrk, type WrkResult } from './proxy/wrk.js';
import { envInt, median } from './stats.js';

const self = fileURLToPath(import.meta.url);
const BODY = Buffer.alloc(1024, 'x');
const LATE_PATH = '/api/items';
const LATE_HEADER = ['x-tenant', 't-99'] as const;

// --- configuration -------------------------------------------------------------------------------

function manyRoutes(): EnvoyObject[] {
  const routes: EnvoyObject[] = [];
  const to = { cluster: 'origin' };
  for (let i = 0; i < 400; i++) routes.push({ name: `exact-${i}`, match: { path: `/svc-${i}/get` }, route: to });
  for (let i = 0; i < 400; i++) routes.push({ name: `prefix-${i}`, match: { prefix: `/p-${i}/` }, route: to });
  for (let i = 0; i < 200; i++)
    routes.push({ name: `regex-${i}`, match: { safe_regex: { regex: `/r-${i}/[0-9]+/.*` } }, route: to });
  for (let i = 0; i < 100; i++)
    routes.push({
      name: `tenant-${i}`,
      match: { prefix: '/', headers: [{ name: LATE_HEADER[0], string_match: { exact: `t-${i}` } }] },
      route: to,
    });
  return routes;
}

function routeConfigs(): { one: EnvoyObject; big: EnvoyObject } {
  const single = [{ name: 'only', match: { prefix: '/' }, route: { cluster: 'origin' } }];
  return {
    one: { name: 'one', virtual_hosts: [{ name: 'vh', domains: ['*'], routes: single }] },
    big: { name: 'big', virtual_hosts: [{ name: 'vh', domains: ['*'], routes: manyRoutes() }] },
  };
}

function engineConfig(originPort: number): L7Config {
  const { one, big } = routeConfigs();
  return {
    routes: new Map([
      ['one', one],
      ['big', big],
    ]),
    clusters: new Map([['origin', { name: 'origin', type: 'EDS', eds_cluster_config: { service_name: 'origin' } }]]),
    endpoints: new Map([
      [
        'origin',
        {
          cluster_name: 'origin',
          endpoints: [
            {
              lb_endpoints: [
                { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: originPort } } } },
              ],
            },
          ],
        },
      ],
    ]),
  };
}

// --- part 1: in process ----------------------------------------------------------------------------

function lateInput(): RouteMatchInput {
  return {
    pathOnly: LATE_PATH,
    isGrpc: false,
    header: (name) => (name === LATE_HEADER[0] ? LATE_HEADER[1] : undefined),
    queryParam: () => undefined,
  };
}

function nsPer(fn: () => unknown, n: number): number {
  for (let i = 0; i < n / 10; i++) fn();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / n);
  }
  return best;
}

function inProcess(): { one: number; big: number; linear: number } {
  const { one, big } = routeConfigs();
  const tOne = new RouteTable(one);
  const tBig = new RouteTable(big);
  const input = lateInput();
  if (tBig.route('h', input)?.name !== 'tenant-99') throw new Error('route bench: the late route was not selected');
  const routes = tBig.virtualHost('h')!.routes;
  return {
    one: nsPer(() => tOne.route('h', input), 200_000),
    big: nsPer(() => tBig.route('h', input), 200_000),
    linear: nsPer(() => routes.find((r) => r.matches(input)), 2_000),
  };
}

// --- part 2: over sockets --------------------------------------------------------------------------

async function originRole(): Promise<void> {
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.listen(0, '127.0.0.1', () => process.send!({ ports: [(server.address() as AddressInfo).port] }));
}

async function engineRole(originPort: number): Promise<void> {
  const engine = new L7Engine();
  engine.update(engineConfig(originPort));
  const a = await engine.listen({ host: '127.0.0.1', port: 0, routeConfig: 'one' });
  const b = await engine.listen({ host: '127.0.0.1', port: 0, routeConfig: 'big' });
  process.send!({ ports: [a.port, b.port] });
}

function start(role: string, args: string[]): Promise<{ child: ChildProcess; ports: number[] }> {
  const child = fork(self, [role, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} did not start`)), 10_000);
    child.once('exit', (code) => reject(new Error(`${role} exited (${code})`)));
    child.once('message', (m: { ports: number[] }) => {
      clearTimeout(timer);
      resolve({ child, ports: m.ports });
    });
  });
}

function findWrk(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/usr/local/bin'])
    if (dir && existsSync(`${dir}/wrk`)) return `${dir}/wrk`;
  return undefined;
}

function wrk(bin: string, port: number, durationS: number, connections: number): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${durationS}s`, '--latency'];
  args.push('-H', `${LATE_HEADER[0]}: ${LATE_HEADER[1]}`, `http://127.0.0.1:${port}${LATE_PATH}`);
  return new Promise((resolve, reject) =>
    execFile(bin, args, { timeout: (durationS + 30) * 1000 }, (err, stdout) => {
      if (err) reject(err);
      else {
        try {
          resolve(parseWrk(stdout));
        } catch (e) {
          reject(e as Error);
        }
      }
    }),
  );
}

const pad = (s: string, n: number) => s.padEnd(n);
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function main(): Promise<void> {
  const runs = envInt('BENCH_RUNS', 3);
  const duration = envInt('BENCH_DURATION', 5);
  const connections = envInt('BENCH_CONNECTIONS', 32);

  const ip = inProcess();
  console.log('\nroute lookup, in process (late route: 1,000 routes + 100 header routes, hit the 100th)');
  console.log('measure                                   | ns per lookup');
  console.log('------------------------------------------|--------------');
  console.log(`${pad('(a) one route', 42)}| ${fmt(ip.one)}`);
  console.log(`${pad('(b) 1,100 routes, indexed', 42)}| ${fmt(ip.big)}`);
  console.log(`${pad('(b) 1,100 routes, linear scan (replaced)', 42)}| ${fmt(ip.linear)}`);

  const bin = findWrk();
  if (!bin) {
    console.log('\nwrk not found: socket part skipped');
    return;
  }
  const origin = await start('origin', []);
  const engine = await start('engine', [String(origin.ports[0])]);
  const children = [engine.child, origin.child];
  const stop = () => children.forEach((c) => c.kill());
  process.once('SIGINT', () => {
    stop();
    process.exit(130);
  });
  try {
    const [portOne, portBig] = engine.ports as [number, number];
    // Warm-up: JIT and connections.
    await wrk(bin, portOne, 1, connections);
    await wrk(bin, portBig, 1, connections);
    const a: WrkResult[] = [];
    const b: WrkResult[] = [];
    for (let r = 0; r < runs; r++) {
      // Alternate which goes first, so a drift in the machine's load falls on both.
      if (r % 2 === 0) {
        a.push(await wrk(bin, portOne, duration, connections));
        b.push(await wrk(bin, portBig, duration, connections));
      } else {
        b.push(await wrk(bin, portBig, duration, connections));
        a.push(await wrk(bin, portOne, duration, connections));
      }
      console.error(`run ${r + 1}/${runs}: (a) ${fmt(a[r]!.rps)} req/s, (b) ${fmt(b[r]!.rps)} req/s`);
    }
    for (const res of [...a, ...b]) if (res.errors > 0) console.error(`warning: a run had ${res.errors} errors`);
    const rpsA = median(a.map((x) => x.rps));
    const rpsB = median(b.map((x) => x.rps));
    const p99A = median(a.map((x) => x.p99Ms));
    const p99B = median(b.map((x) => x.p99Ms));
    console.log(
      `\nover sockets: wrk -t1 -c${connections} -d${duration}s, GET ${LATE_PATH} with ${LATE_HEADER[0]}: ${LATE_HEADER[1]}, ` +
        `1 KiB origin; medians of ${runs} runs`,
    );
    console.log('measure                                   | (a) one route | (b) 1,100 routes | ratio (b)/(a)');
    console.log('------------------------------------------|---------------|------------------|--------------');
    console.log(`${pad('requests/s', 42)}| ${pad(fmt(rpsA), 14)}| ${pad(fmt(rpsB), 17)}| ${fmt(rpsB / rpsA, 3)}`);
    console.log(
      `${pad('p99 latency (ms)', 42)}| ${pad(fmt(p99A, 2), 14)}| ${pad(fmt(p99B, 2), 17)}| ${fmt(p99B / p99A, 3)}`,
    );
    const within = rpsB >= rpsA * 0.85 && p99B <= p99A * 1.15;
    console.log(`\ntarget: (b) within 15% of (a) on req/s and p99 — ${within ? 'met' : 'NOT met'}`);
  } finally {
    stop();
  }
}

const role = process.argv[2];
if (role === 'origin') void originRole();
else if (role === 'engine') void engineRole(Number(process.argv[3]));
else
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
