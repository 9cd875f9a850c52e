// The dashboard's server side: the scraper's history and rates (node pages served by a test
// function), a node that stops answering, and the admin API's dashboard routes and their 400s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { compileModel } from '../../src/model/compile.js';
import { startAdminServer, type AdminDeps } from '../../src/controlplane/admin-server.js';
import { TelemetryScraper } from '../../src/controlplane/telemetry-scraper.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const model = compileModel(loadPaths([join(REPO_ROOT, 'examples/shop')]).resources);
const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;

function requests(n: number): string {
  const labels = [
    'reporter="waypoint"',
    'source_workload="frontend"',
    'source_workload_namespace="shop"',
    `source_principal="${ID('frontend')}"`,
    'destination_workload="api-v1"',
    'destination_workload_namespace="shop"',
    `destination_principal="${ID('api')}"`,
    'destination_service="api.shop.svc.cluster.local"',
    'response_code="200"',
    'response_flags="-"',
    'connection_security_policy="mutual_tls"',
  ].join(',');
  return `# TYPE istio_requests_total counter\nistio_requests_total{${labels}} ${n}\n`;
}

test('the scraper: rates between scrapes, a node that stops answering keeps its last counters', async () => {
  let count = 0;
  let nodeBUp = true;
  const scraper = new TelemetryScraper({
    model: () => model,
    intervalSeconds: 1,
    fetchPage: async (url) => {
      if (url.startsWith('http://127.0.0.2:')) {
        if (!nodeBUp) throw new Error('connection refused');
        return '';
      }
      return requests(count);
    },
  });
  const first = await scraper.graph(60);
  assert.deepEqual(
    first.edges.map((e) => [e.source, e.target, e.total, e.rate]),
    [['svc:shop/frontend', 'svc:shop/api', 0, 0]],
    'a series without traffic yet is an idle edge',
  );
  scraper.start(); // the first background scrape: the baseline
  await new Promise((r) => setTimeout(r, 100));
  count = 30;
  nodeBUp = false;
  await new Promise((r) => setTimeout(r, 1_100));
  const g = await scraper.graph(60);
  scraper.stop();
  const e = g.edges.find((x) => x.source === 'svc:shop/frontend' && x.target === 'svc:shop/api');
  assert.ok(e, JSON.stringify(g));
  assert.equal(e.total, 30);
  assert.ok(e.rate > 20 && e.rate <= 30 / 0.9, `rate ${e.rate} over ${g.windowSeconds} s`);
  assert.deepEqual(g.unreachable, ['node-b']);
  const s = scraper.signals(10);
  assert.ok(s.services.some((x) => x.id === 'svc:shop/api'));
});

async function get(
  base: string,
  path: string,
): Promise<{ status: number; type: string; body: string; location: string }> {
  const res = await fetch(base + path, { redirect: 'manual' });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: await res.text(),
    location: res.headers.get('location') ?? '',
  };
}

test('admin API: the dashboard page and scripts, its JSON, and clear 400s for bad parameters', async () => {
  const telemetry = new TelemetryScraper({ model: () => model, fetchPage: async () => requests(1) });
  // Only what the dashboard routes read: the rest of the admin API is exercised by the CLI tests.
  const deps = { telemetry, clients: () => [] } as unknown as AdminDeps;
  const { server, port } = await startAdminServer(deps, '127.0.0.1', 0);
  const base = `http://127.0.0.1:${port}`;
  try {
    const page = await get(base, '/dashboard');
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
    assert.match(page.body, /<script type="module" src="\/dashboard\/app\.js"><\/script>/);
    const script = await get(base, '/dashboard/app.js');
    assert.equal(script.status, 200);
    assert.match(script.type, /^text\/javascript/);
    for (const bad of ['/dashboard/../../package.json', '/dashboard/%2e%2e%2fpackage.json', '/dashboard/nope.js'])
      assert.equal((await get(base, bad)).status, 404, bad);
    assert.equal((await get(base, '/')).location, '/dashboard');

    const graph = await get(base, '/api/graph?window=30');
    assert.equal(graph.status, 200);
    assert.deepEqual(Object.keys(JSON.parse(graph.body) as object), [
      'time',
      'windowSeconds',
      'nodes',
      'edges',
      'unreachable',
    ]);
    const bad = await get(base, '/api/graph?window=abc');
    assert.equal(bad.status, 400);
    assert.match(bad.body, /window: expected a number of seconds in \(0, 3600\], got \\"abc\\"/);
    assert.equal((await get(base, '/api/signals?minutes=0')).status, 400);
    assert.equal((await get(base, '/api/signals?minutes=5')).status, 200);
  } finally {
    server.close();
  }
});
