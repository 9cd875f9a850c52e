// Shared plumbing for the L7 engine tests: echo backends (HTTP/1.1 and h2c), Envoy resource
// builders, an engine listening on 127.0.0.1, and small HTTP/1.1 and HTTP/2 clients.
import http, { type IncomingHttpHeaders } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { L7Engine, type L7EngineOptions } from '../../../src/proxy/l7/engine.js';
import type { EnvoyObject, L7Config } from '../../../src/proxy/l7/config.js';
import type { AccessLogRecord } from '../../../src/proxy/l7/access-log.js';

export interface Echo {
  readonly name: string;
  readonly port: number;
  /** Requests received. */
  count: number;
  /** Requests in flight. */
  active: number;
  close(): Promise<void>;
}

export interface EchoReply {
  name: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyLength: number;
}

/**
 * An HTTP/1.1 (or h2c with `h2: true`) backend answering JSON {name, method, url, headers,
 * bodyLength}. `delayMs` delays the response; query `?status=NNN` sets the status.
 */
export async function startEcho(name: string, opts: { h2?: boolean; delayMs?: number } = {}): Promise<Echo> {
  const echo = { name, port: 0, count: 0, active: 0, close: async () => {} };
  const handler = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    echo.count++;
    echo.active++;
    let bodyLength = 0;
    req.on('data', (c: Buffer) => (bodyLength += c.length));
    req.on('end', () => {
      const reply = () => {
        echo.active--;
        const status = Number(/[?&]status=(\d+)/.exec(req.url ?? '')?.[1] ?? 200);
        const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, bodyLength });
        res.writeHead(status, { 'content-type': 'application/json', 'x-backend': name });
        res.end(body);
      };
      if (opts.delayMs) setTimeout(reply, opts.delayMs);
      else reply();
    });
  };
  const server = opts.h2 ? http2.createServer(handler) : http.createServer(handler);
  const close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  echo.port = (server.address() as AddressInfo).port;
  echo.close = close;
  return echo;
}

/** Tracks a server's connections and HTTP/2 sessions; close() ends them all (tests must not linger). */
export function closable(server: http.Server | http2.Http2Server): () => Promise<void> {
  const sockets = new Set<import('node:net').Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('connection', (s: import('node:net').Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  return () =>
    new Promise<void>((r) => {
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
}

// --- Envoy resources ---------------------------------------------------------------------------

export function routeConfig(name: string, virtualHosts: EnvoyObject[], extra: EnvoyObject = {}): EnvoyObject {
  return { name, virtual_hosts: virtualHosts, ...extra };
}

export function vhost(name: string, domains: string[], routes: EnvoyObject[], extra: EnvoyObject = {}): EnvoyObject {
  return { name, domains, routes, ...extra };
}

export function toCluster(cluster: string, match: EnvoyObject = { prefix: '/' }, extra: EnvoyObject = {}): EnvoyObject {
  return { match, route: { cluster }, ...extra };
}

export function edsCluster(name: string, extra: EnvoyObject = {}): EnvoyObject {
  return { name, type: 'EDS', eds_cluster_config: { service_name: name }, lb_policy: 'ROUND_ROBIN', ...extra };
}

export const H2_OPTIONS = {
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  },
};

export function cla(
  name: string,
  endpoints: { port: number; address?: string; weight?: number; priority?: number; health?: string }[],
): EnvoyObject {
  const byPriority = new Map<number, EnvoyObject[]>();
  for (const e of endpoints) {
    const lb: EnvoyObject = {
      endpoint: { address: { socket_address: { address: e.address ?? '127.0.0.1', port_value: e.port } } },
      health_status: e.health ?? 'HEALTHY',
    };
    if (e.weight !== undefined) lb.load_balancing_weight = { value: e.weight };
    const p = e.priority ?? 0;
    byPriority.set(p, [...(byPriority.get(p) ?? []), lb]);
  }
  return {
    cluster_name: name,
    endpoints: [...byPriority].map(([priority, lb_endpoints]) => ({ priority, lb_endpoints })),
  };
}

export function l7Config(routes: EnvoyObject[], clusters: EnvoyObject[], assignments: EnvoyObject[]): L7Config {
  return {
    routes: new Map(routes.map((r) => [r.name as string, r])),
    clusters: new Map(clusters.map((c) => [c.name as string, c])),
    endpoints: new Map(assignments.map((a) => [a.cluster_name as string, a])),
  };
}

// --- engine ------------------------------------------------------------------------------------

export interface Running {
  readonly engine: L7Engine;
  readonly port: number;
  readonly logs: AccessLogRecord[];
  close(): Promise<void>;
}

export async function startEngine(
  config: L7Config,
  routeName: string,
  options: L7EngineOptions & { tls?: { cert: string; key: string; ca?: string } } = {},
): Promise<Running> {
  const logs: AccessLogRecord[] = [];
  const engine = new L7Engine({ ...options, log: (r) => logs.push(r) });
  engine.update(config);
  const l = await engine.listen({ host: '127.0.0.1', port: 0, routeConfig: routeName, tls: options.tls });
  return { engine, port: l.port, logs, close: () => engine.close() };
}

// --- clients -----------------------------------------------------------------------------------

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function get(
  port: number,
  path: string,
  opts: {
    method?: string;
    headers?: http.OutgoingHttpHeaders;
    body?: string | Buffer;
    agent?: http.Agent | false;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: opts.agent ?? keepAlive,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${path}`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function json(r: Reply): EchoReply {
  return JSON.parse(r.body) as EchoReply;
}

export interface H2Reply {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: string;
}

export function h2get(
  session: http2.ClientHttp2Session,
  path: string,
  headers: http2.OutgoingHttpHeaders = {},
  body?: string,
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':path': path, ':method': body ? 'POST' : 'GET', ...headers }, { endStream: !body });
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    s.on('response', (h) => (resHeaders = h));
    s.on('trailers', (t) => (trailers = t));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ headers: resHeaders, trailers, body: Buffer.concat(chunks).toString() }));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.close());
    if (body) s.end(body);
  });
}
