// Throughput check for the L7 engine (not a test): a 1 KiB HTTP/1.1 backend and the engine in
// two child processes, wrk (keep-alive) against the backend directly and through the engine.
//   node dist/test/proxy/l7/bench.js [--duration 10] [--connections 64] [--upstream h1|h2]
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { L7Engine } from '../../../src/proxy/l7/engine.js';
import { cla, edsCluster, H2_OPTIONS, l7Config, routeConfig, toCluster, vhost } from './helpers.js';

const BODY = Buffer.alloc(1024, 'x');
const self = fileURLToPath(import.meta.url);

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
}

async function backend(h2: boolean): Promise<void> {
  const handler = (_req: unknown, res: http.ServerResponse | http2.Http2ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  };
  const server = h2 ? http2.createServer(handler) : http.createServer({ keepAliveTimeout: 60_000 }, handler);
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
}

async function proxy(backendPort: number, h2: boolean): Promise<void> {
  const engine = new L7Engine();
  engine.update(
    l7Config(
      [routeConfig('rc', [vhost('all', ['*'], [toCluster('b')])])],
      [edsCluster('b', h2 ? H2_OPTIONS : {})],
      [cla('b', [{ port: backendPort }])],
    ),
  );
  const l = await engine.listen({ host: '127.0.0.1', port: 0, routeConfig: 'rc' });
  process.send!({ port: l.port });
}

function start(role: string, extra: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(self, [role, ...extra], { stdio: 'inherit' });
  return new Promise((resolve) => child.once('message', (m: { port: number }) => resolve({ child, port: m.port })));
}

function wrk(port: number, duration: string, connections: string): string {
  const out = execFileSync('wrk', ['-t2', `-c${connections}`, `-d${duration}s`, `http://127.0.0.1:${port}/`], {
    encoding: 'utf8',
  });
  return /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? out;
}

async function main(): Promise<void> {
  const role = process.argv[2];
  const h2 = arg('upstream', 'h1') === 'h2';
  if (role === 'backend') return backend(h2);
  if (role === 'proxy') return proxy(Number(process.argv[3]), h2);
  if (!existsSync('/usr/bin/wrk') && !existsSync('/usr/local/bin/wrk')) {
    console.error('wrk is not installed');
    process.exit(1);
  }
  const duration = arg('duration', '10');
  const connections = arg('connections', '64');
  const b = await start('backend', process.argv.slice(2));
  const p = await start('proxy', [String(b.port), ...process.argv.slice(2)]);
  try {
    wrk(p.port, '2', connections); // warm-up
    const direct = h2 ? 'n/a (h2 backend)' : wrk(b.port, duration, connections);
    const proxied = wrk(p.port, duration, connections);
    console.log(`upstream ${h2 ? 'h2c' : 'HTTP/1.1'}, ${connections} connections, ${duration}s, 1 KiB responses`);
    console.log(`direct to backend: ${direct} req/s`);
    console.log(`through the engine: ${proxied} req/s`);
  } finally {
    b.child.kill();
    p.child.kill();
  }
}

void main();
