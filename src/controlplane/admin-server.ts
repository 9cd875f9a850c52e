// The control plane's admin HTTP API (JSON), on the monitoring port 15014 by default.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ALL_TYPE_URLS } from '../xds/snapshot.js';
import type { AppliedStore, StoreResult } from './applied-store.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import type { ConfigWatcher } from './config-watcher.js';
import type { SnapshotCache } from './snapshot-cache.js';
import type { FlowRelay } from './flow-relay.js';
import type { TelemetryScraper } from './telemetry-scraper.js';
import { dashboardAsset } from './dashboard-assets.js';

export interface AdminDeps {
  readonly config: ConfigWatcher;
  readonly cache: SnapshotCache;
  readonly store: AppliedStore;
  /** Connected xDS clients and their per-type status. */
  readonly clients: () => unknown;
  /** The Prometheus text page for GET /metrics (ControlPlaneMetrics.render). */
  readonly metrics?: () => string;
  /** GET /flows: the nodes' flow records, merged and filtered (JSON lines). */
  readonly flows?: FlowRelay;
  /** GET /api/graph and /api/signals (the dashboard's data); the dashboard itself at /dashboard. */
  readonly telemetry?: TelemetryScraper;
}

/** A positive number query parameter within bounds, else the default. */
function boundedNumber(q: URLSearchParams, name: string, def: number, max: number): number | string {
  const raw = q.get(name);
  if (raw === null || raw === '') return def;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 && n <= max
    ? n
    : `${name}: expected a number of ${name === 'window' ? 'seconds' : 'minutes'} in (0, ${max}], got ${JSON.stringify(raw)}`;
}

function shortType(url: string): string {
  return url.replace('type.googleapis.com/', '');
}

function answerJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  replacer?: (k: string, v: unknown) => unknown,
): void {
  const body = JSON.stringify(value, replacer);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startAdminServer(
  deps: AdminDeps,
  host: string,
  port: number,
): Promise<{ server: Server; port: number }> {
  const routes: Record<string, (q: URLSearchParams) => unknown> = {
    '/healthz': () => ({ ok: true }),
    '/debug/config': () => {
      const s = deps.config.state;
      return {
        generation: s.generation,
        loadedAt: s.loadedAt,
        resources: s.resources.map((r) => ({
          kind: r.kind,
          apiVersion: r.apiVersion,
          namespace: r.namespace,
          name: r.name,
          file: r.source.file,
        })),
        diagnostics: s.diagnostics,
        rejected: s.rejected ?? null,
      };
    },
    '/debug/model': () => deps.cache.model ?? null,
    '/debug/resources': (q) => {
      const snap = deps.cache.snapshot('');
      if (!snap) return {};
      const want = q.get('type');
      const out: Record<string, unknown> = {};
      for (const t of ALL_TYPE_URLS) {
        if (want && !shortType(t).toLowerCase().includes(want.toLowerCase())) continue;
        out[shortType(t)] = { version: snap.version(t), resources: [...snap.resources(t).values()].map((r) => r.body) };
      }
      return out;
    },
    '/debug/clients': () => deps.clients(),
    '/debug/pushes': () => deps.cache.pushes,
    // kubectl-style reads: the validated resources in force (defaults applied).
    '/resources': (q) => {
      const kind = q.get('kind');
      const ns = q.get('namespace');
      const name = q.get('name');
      return deps.config.state.resources
        .filter(
          (r) =>
            (!kind || r.kind.toLowerCase() === kind.toLowerCase()) &&
            (!ns || r.namespace === ns) &&
            (!name || r.name === name),
        )
        .map((r) => {
          const { source, group: _g, namespace: _n, name: _nm, ...object } = r;
          return { ...object, source: source.file };
        });
    },
  };
  const writes: Record<string, (body: string, q: URLSearchParams) => StoreResult> = {
    'POST /apply': (body) => deps.store.apply(body),
    'DELETE /resources': (_body, q) =>
      deps.store.delete([
        {
          kind: q.get('kind') ?? '',
          name: q.get('name') ?? '',
          ...(q.get('namespace') ? { namespace: q.get('namespace')! } : {}),
        },
      ]),
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const write = writes[`${req.method} ${url.pathname}`];
    if (write) {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 8 * 1024 * 1024)
          req.destroy(); // same limit as config files
        else chunks.push(c);
      });
      req.on('end', () => {
        const result = write(Buffer.concat(chunks).toString('utf8'), url.searchParams);
        // Apply takes effect now, not when the file watcher notices.
        const state = result.ok ? deps.config.reload() : undefined;
        answerJson(res, result.status, {
          ...result,
          generation: state?.generation,
          rejected: state?.rejected ?? undefined,
        });
      });
      return;
    }
    if (url.pathname === '/metrics' && req.method === 'GET' && deps.metrics) {
      const page = deps.metrics();
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(page) });
      res.end(page);
      return;
    }
    if (
      req.method === 'GET' &&
      deps.telemetry &&
      (url.pathname === '/dashboard' || url.pathname.startsWith('/dashboard/'))
    ) {
      void dashboardAsset(url.pathname).then(
        (a) => {
          if (!a) return answerJson(res, 404, { error: `no such dashboard file ${url.pathname}` });
          res.writeHead(200, {
            'content-type': a.contentType,
            'content-length': a.body.length,
            'cache-control': 'no-cache',
          });
          res.end(a.body);
        },
        (e: unknown) => answerJson(res, 500, { error: `the dashboard is not built: ${String(e)}` }),
      );
      return;
    }
    if (req.method === 'GET' && url.pathname === '/' && deps.telemetry) {
      res.writeHead(302, { location: '/dashboard' });
      res.end();
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/graph' && deps.telemetry) {
      const window = boundedNumber(url.searchParams, 'window', 60, 3600);
      if (typeof window === 'string') return answerJson(res, 400, { error: window });
      void deps.telemetry.graph(window).then(
        (g) => answerJson(res, 200, g),
        (e: unknown) => answerJson(res, 500, { error: String(e) }),
      );
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/signals' && deps.telemetry) {
      const minutes = boundedNumber(url.searchParams, 'minutes', 10, 60);
      if (typeof minutes === 'string') return answerJson(res, 400, { error: minutes });
      return answerJson(res, 200, deps.telemetry.signals(minutes));
    }
    if (url.pathname === '/flows' && req.method === 'GET' && deps.flows) {
      void deps.flows.handle(url.searchParams).then(
        (a) => {
          res.writeHead(a.status, { ...a.headers, 'content-length': Buffer.byteLength(a.body) });
          res.end(a.body);
        },
        (e: unknown) => answerJson(res, 500, { error: String(e) }),
      );
      return;
    }
    const handler = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (!handler || req.method !== 'GET')
      return answerJson(res, 404, {
        error: `no such endpoint ${req.method} ${url.pathname}`,
        endpoints: Object.keys(routes),
      });
    // Bytes (certificates, and private keys once SDS secrets are served) are never shown.
    answerJson(res, 200, handler(url.searchParams), (_k, v) =>
      v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? '[bytes redacted]' : v,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
