// The service graph from Istio metrics: which series make which edge, rates between scrapes,
// counter resets, p99 as Prometheus' histogram_quantile computes it, golden signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { compileModel } from '../../src/model/compile.js';
import { parsePromText } from '../../src/observe/prom-text.js';
import {
  GRAPH_FAMILIES,
  GraphResolver,
  graphBetween,
  histogramQuantile,
  nodeCounters,
  signals,
  type Scrape,
} from '../../src/observe/service-graph.js';
import type { GraphEdge } from '../../src/observe/graph-types.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const model = compileModel(loadPaths([join(REPO_ROOT, 'examples/shop')]).resources);
const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;

type Labels = Record<string, string>;
function line(name: string, labels: Labels, value: number): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`)
    .join(',');
  return `${name}{${l}} ${value}`;
}
const peer = (src: [string, string], dst: [string, string], service: string, reporter: string): Labels => ({
  reporter,
  source_workload: src[0],
  source_workload_namespace: 'shop',
  source_principal: src[1],
  destination_workload: dst[0],
  destination_workload_namespace: 'shop',
  destination_principal: dst[1],
  destination_service: service,
});

/** The demo's pages after `n` requests through the gateway (10% to api-v2), `denied` frontend -> orders connections refused. */
function pages(n: number, denied: number, slow = false): { a: string; b: string } {
  const gw: [string, string] = ['shop-gateway-trellis', ID('shop-gateway-trellis')];
  const fe: [string, string] = ['frontend', ID('frontend')];
  const wp: [string, string] = ['waypoint', ID('waypoint')];
  const v1: [string, string] = ['api-v1', ID('api')];
  const v2: [string, string] = ['api-v2', ID('api')];
  const orders: [string, string] = ['orders', ID('orders')];
  const api = 'api.shop.svc.cluster.local';
  const n2 = Math.floor(n / 10);
  const n1 = n - n2;
  const req = (l: Labels, code: string, count: number, tls: string, flags = '-') => [
    line(
      'istio_requests_total',
      { ...l, response_code: code, response_flags: flags, connection_security_policy: tls },
      count,
    ),
    // Fast requests fall in the 5 ms bucket; "slow" ones in the 100 ms bucket.
    ...[
      ['1', 0],
      ['5', slow ? 0 : count],
      ['100', count],
      ['+Inf', count],
    ].map(([le, c]) =>
      line(
        'istio_request_duration_milliseconds_bucket',
        { ...l, response_code: code, response_flags: flags, connection_security_policy: tls, le: String(le) },
        c as number,
      ),
    ),
  ];
  const tcp = (l: Labels, count: number, flags = '-', bytes = 0) => [
    line(
      'istio_tcp_connections_opened_total',
      { ...l, response_flags: flags, connection_security_policy: 'mutual_tls' },
      count,
    ),
    line(
      'istio_tcp_sent_bytes_total',
      { ...l, response_flags: flags, connection_security_policy: 'mutual_tls' },
      bytes,
    ),
  ];
  const a = [
    '# TYPE istio_requests_total counter',
    ...req(peer(gw, fe, 'frontend.shop.svc.cluster.local', 'source'), '200', n, 'unknown'),
    ...req(peer(fe, v1, api, 'waypoint'), '200', n1, 'mutual_tls'),
    ...req(peer(fe, v2, api, 'waypoint'), '503', n2, 'mutual_tls', 'UF'),
    ...tcp(peer(gw, fe, 'frontend.shop.svc.cluster.local', 'source'), 1),
    ...tcp(peer(fe, wp, api, 'source'), 1),
    ...tcp(peer(wp, ['api', ID('api')], 'api-v1.shop.svc.cluster.local', 'source'), 1),
    ...tcp(peer(v1, orders, 'orders.shop.svc.cluster.local', 'source'), n1, '-', n1 * 12),
    ...tcp(peer(fe, orders, 'orders.shop.svc.cluster.local', 'source'), denied, 'RBAC'),
    'envoy_cluster_upstream_rq_retry_total{cluster_name="x"} 4',
  ].join('\n');
  const b = [
    ...tcp(peer(v2, orders, 'orders.shop.svc.cluster.local', 'source'), n2, '-', n2 * 12),
    ...tcp(peer(['api', ID('api')], orders, 'unknown', 'destination'), n),
    ...tcp(peer(['unknown', 'unknown'], orders, 'unknown', 'destination'), 2),
  ].join('\n');
  return { a, b };
}

function scrape(time: number, p: { a: string; b: string }): Scrape {
  const r = new GraphResolver(model);
  const nodes = new Map([
    [
      'node-a',
      nodeCounters(
        parsePromText(p.a, (n) => GRAPH_FAMILIES.has(n)),
        r,
      ),
    ],
    [
      'node-b',
      nodeCounters(
        parsePromText(p.b, (n) => GRAPH_FAMILIES.has(n)),
        r,
      ),
    ],
  ]);
  return { time, nodes, graphNodes: r.nodes, unreachable: [] };
}

function edge(edges: readonly GraphEdge[], source: string, target: string): GraphEdge {
  const e = edges.find((x) => x.source === source && x.target === target);
  assert.ok(e, `no edge ${source} -> ${target} in ${JSON.stringify(edges.map((x) => `${x.source} -> ${x.target}`))}`);
  return e;
}

test('parsePromText reads names, escaped label values, special values, and only the families asked for', () => {
  const text = [
    '# HELP x_total a counter',
    '# TYPE x_total counter',
    'x_total{a="q\\"uote",b="back\\\\slash",c="new\\nline"} 3',
    'h_bucket{le="+Inf"} 7 1700000000000',
    'plain 1.5e3',
    'nan NaN',
    'broken{a="unterminated} 1',
    'novalue{a="1"}',
  ].join('\n');
  const all = parsePromText(text);
  assert.deepEqual(all[0], { name: 'x_total', labels: { a: 'q"uote', b: 'back\\slash', c: 'new\nline' }, value: 3 });
  assert.deepEqual(all[1], { name: 'h_bucket', labels: { le: '+Inf' }, value: 7 });
  assert.equal(all[2]!.value, 1500);
  assert.ok(Number.isNaN(all[3]!.value));
  assert.equal(all.length, 4, 'bad lines are skipped');
  assert.deepEqual(
    parsePromText(text, (n) => n === 'plain').map((s) => s.name),
    ['plain'],
  );
});

test('histogramQuantile interpolates inside the bucket as Prometheus does', () => {
  const b = new Map([
    [10, 50],
    [100, 90],
    [Infinity, 100],
  ]);
  assert.equal(histogramQuantile(0.5, b), 10);
  assert.equal(histogramQuantile(0.7, b), 10 + (90 * (70 - 50)) / 40);
  // The rank falls in +Inf: the highest finite bound.
  assert.equal(histogramQuantile(0.99, b), 100);
  assert.equal(histogramQuantile(0.99, new Map()), null);
});

test('the demo mesh: gateway, frontend -> api through the waypoint, api -> orders over TCP, a denied edge', () => {
  const g = graphBetween(scrape(0, pages(100, 0)), scrape(10_000, pages(300, 5)));
  assert.equal(g.windowSeconds, 10);
  assert.deepEqual(
    g.edges.map((e) => `${e.protocol} ${e.source} -> ${e.target}`),
    [
      'http external -> gw:shop/shop-gateway',
      'http gw:shop/shop-gateway -> svc:shop/frontend',
      'http svc:shop/frontend -> svc:shop/api',
      'tcp external -> svc:shop/orders',
      'tcp svc:shop/api -> svc:shop/orders',
      'tcp svc:shop/frontend -> svc:shop/orders',
    ],
    'no edge to or from the waypoint, no duplicate from the inbound reporter',
  );
  const front = edge(g.edges, 'gw:shop/shop-gateway', 'svc:shop/frontend');
  assert.equal(front.rate, 20);
  assert.equal(front.errorRate, 0);
  assert.equal(front.mtls, 'mutual_tls', "the gateway's connections give its edge the mTLS mark");
  assert.equal(front.p99Ms, 4.96);
  assert.equal(edge(g.edges, 'external', 'gw:shop/shop-gateway').rate, 20);
  const api = edge(g.edges, 'svc:shop/frontend', 'svc:shop/api');
  assert.equal(api.rate, 20);
  assert.equal(api.errorRate, 0.1, '10% answered 503');
  assert.equal(api.mtls, 'mutual_tls');
  const orders = edge(g.edges, 'svc:shop/api', 'svc:shop/orders');
  assert.equal(orders.rate, 20, 'api-v1 and api-v2 are both the api service');
  assert.equal(orders.bytesRate, 240);
  assert.equal(orders.p99Ms, null);
  const denied = edge(g.edges, 'svc:shop/frontend', 'svc:shop/orders');
  assert.equal(denied.deniedRate, 0.5);
  assert.equal(denied.errorRate, 0, 'a denial is not an error');
  assert.equal(edge(g.edges, 'external', 'svc:shop/orders').mtls, 'mutual_tls');
  assert.deepEqual(
    g.nodes.map((n) => `${n.kind} ${n.id}`),
    [
      'external external',
      'gateway gw:shop/shop-gateway',
      'service svc:shop/api',
      'service svc:shop/frontend',
      'service svc:shop/orders',
    ],
  );
  assert.equal(g.nodes.find((n) => n.id === 'svc:shop/api')!.waypoint, true);
});

test('a node that restarted (its counters went back) counts from zero, not negative', () => {
  const before = scrape(0, pages(1000, 0));
  const after = scrape(10_000, pages(50, 0));
  const front = edge(graphBetween(before, after).edges, 'gw:shop/shop-gateway', 'svc:shop/frontend');
  assert.equal(front.rate, 5);
});

test('without an older scrape the edges are there with their totals and no rate', () => {
  const g = graphBetween(undefined, scrape(0, pages(100, 0)));
  assert.equal(edge(g.edges, 'gw:shop/shop-gateway', 'svc:shop/frontend').total, 100);
  assert.ok(g.edges.every((e) => e.rate === 0));
});

test('golden signals: one point per interval per service, inbound traffic of all callers', () => {
  const s = signals([scrape(0, pages(0, 0)), scrape(5_000, pages(50, 0)), scrape(10_000, pages(50, 0, true))], 5);
  assert.deepEqual(
    s.services.map((x) => `${x.protocol} ${x.id} ${x.points.length}`),
    ['http gw:shop/shop-gateway 2', 'http svc:shop/api 2', 'http svc:shop/frontend 2', 'tcp svc:shop/orders 2'],
  );
  const api = s.services.find((x) => x.id === 'svc:shop/api')!;
  assert.deepEqual(
    api.points.map((p) => [p.t, p.rate, p.errorRate]),
    [
      [5_000, 10, 0.1],
      [10_000, 0, 0],
    ],
  );
  assert.ok(api.points[0]!.p99Ms! <= 5);
  assert.equal(api.points[1]!.p99Ms, null, 'no requests: no latency');
  const slow = signals([scrape(0, pages(0, 0)), scrape(5_000, pages(50, 0, true))], 5).services.find(
    (x) => x.id === 'svc:shop/frontend',
  )!;
  assert.ok(slow.points[0]!.p50Ms! > 5 && slow.points[0]!.p99Ms! <= 100);
});
