// The metrics registry: Prometheus text format, cumulative histogram buckets, label escaping,
// adding up workers' snapshots; and L4Metrics' istio_tcp_* labels from flow records.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { L4Metrics } from '../../src/observe/flows.js';
import { MetricsRegistry, clusterHost, serviceParts, spiffeParts } from '../../src/observe/metrics-registry.js';
import { addClusterStats } from '../../src/proxy/l7/filters/stats.js';

test('counters and histograms render in the text format with HELP, TYPE, cumulative buckets, _sum and _count', () => {
  const r = new MetricsRegistry();
  const c = r.counter('demo_requests_total', 'Requests.', ['code']);
  c.with(['200']).inc();
  c.with(['200']).inc(2);
  c.with(['404']).inc();
  const h = r.histogram('demo_duration_seconds', 'Duration.', ['code'], [1, 5, 10]);
  const s = h.with(['200']);
  for (const v of [0.5, 1, 3, 7, 20]) s.observe(v);
  assert.equal(
    r.render(),
    [
      '# HELP demo_duration_seconds Duration.',
      '# TYPE demo_duration_seconds histogram',
      'demo_duration_seconds_bucket{code="200",le="1"} 2',
      'demo_duration_seconds_bucket{code="200",le="5"} 3',
      'demo_duration_seconds_bucket{code="200",le="10"} 4',
      'demo_duration_seconds_bucket{code="200",le="+Inf"} 5',
      'demo_duration_seconds_sum{code="200"} 31.5',
      'demo_duration_seconds_count{code="200"} 5',
      '# HELP demo_requests_total Requests.',
      '# TYPE demo_requests_total counter',
      'demo_requests_total{code="200"} 3',
      'demo_requests_total{code="404"} 1',
      '',
    ].join('\n'),
  );
});

test('label values and HELP text are escaped', () => {
  const r = new MetricsRegistry();
  r.counter('demo_total', 'Line one\nback\\slash', ['v']).with(['a"b\\c\nd']).inc();
  const text = r.render();
  assert.ok(text.includes('# HELP demo_total Line one\\nback\\\\slash\n'), text);
  assert.ok(text.includes('demo_total{v="a\\"b\\\\c\\nd"} 1\n'), text);
});

test('the same series handle is returned for the same label values; a conflicting redeclaration throws', () => {
  const r = new MetricsRegistry();
  const f = r.counter('demo_total', 'x', ['a']);
  assert.equal(f.with(['1']), f.with(['1']));
  assert.equal(r.counter('demo_total', 'x', ['a']), f);
  assert.throws(() => r.histogram('demo_total', 'x', ['a'], [1]));
  assert.throws(() => f.with(['1', '2']));
});

test('snapshots of several workers merge: counters and histogram buckets add up', () => {
  const workers = [new MetricsRegistry(), new MetricsRegistry()];
  workers.forEach((w, i) => {
    w.counter('demo_total', 'x', ['a'])
      .with(['k'])
      .inc(i + 1);
    const h = w.histogram('demo_ms', 'y', ['a'], [1, 10]).with(['k']);
    h.observe(i === 0 ? 0.5 : 5);
    h.observe(100);
  });
  const total = new MetricsRegistry();
  // Through structured clone, as the IPC channel carries it.
  for (const w of workers) total.merge(structuredClone(w.snapshot()));
  const text = total.render();
  assert.ok(text.includes('demo_total{a="k"} 3\n'), text);
  assert.ok(text.includes('demo_ms_bucket{a="k",le="1"} 1\n'), text);
  assert.ok(text.includes('demo_ms_bucket{a="k",le="10"} 2\n'), text);
  assert.ok(text.includes('demo_ms_bucket{a="k",le="+Inf"} 4\n'), text);
  assert.ok(text.includes('demo_ms_sum{a="k"} 205.5\n'), text);
  assert.ok(text.includes('demo_ms_count{a="k"} 4\n'), text);
});

test('label helpers: SPIFFE IDs, service hosts, cluster names', () => {
  assert.deepEqual(spiffeParts('spiffe://cluster.local/ns/shop/sa/api'), { namespace: 'shop', serviceAccount: 'api' });
  assert.equal(spiffeParts('spiffe://cluster.local/other'), undefined);
  assert.deepEqual(serviceParts('api.shop.svc.cluster.local'), { name: 'api', namespace: 'shop' });
  assert.deepEqual(serviceParts('example.com'), { name: 'example.com', namespace: 'unknown' });
  assert.equal(clusterHost('outbound|8080|v1|api.shop.svc.cluster.local'), 'api.shop.svc.cluster.local');
});

test('istio_tcp_* carry workload namespaces and connection_security_policy, never addresses', () => {
  const m = new L4Metrics();
  const base = {
    time: new Date().toISOString(),
    node: 'node-b',
    direction: 'inbound' as const,
    verdict: 'FORWARDED' as const,
    source: { identity: 'spiffe://cluster.local/ns/shop/sa/api', address: '127.0.0.1:40000' },
    destination: {
      identity: 'spiffe://cluster.local/ns/shop/sa/orders',
      address: '127.0.0.2:9090',
      workload: 'WorkloadEntry/shop/orders',
    },
    via: 'hbone',
    bytesSent: 10,
    bytesReceived: 4,
  };
  m.record(base, 'open');
  m.record(base, 'close');
  m.record({ ...base, tls: 'none', source: { address: '127.0.0.1:40001' } }, 'open');
  const text = m.render();
  assert.ok(
    text.includes(
      'istio_tcp_connections_opened_total{reporter="destination",source_workload="api",source_workload_namespace="shop",' +
        'source_principal="spiffe://cluster.local/ns/shop/sa/api",destination_workload="orders",destination_workload_namespace="shop",' +
        'destination_principal="spiffe://cluster.local/ns/shop/sa/orders",destination_service="unknown",destination_service_name="unknown",' +
        'destination_service_namespace="unknown",request_protocol="tcp",response_flags="-",connection_security_policy="mutual_tls"} 1\n',
    ),
    text,
  );
  assert.ok(text.includes('istio_tcp_sent_bytes_total{reporter="destination",'), text);
  assert.ok(text.includes('connection_security_policy="none"} 1\n'), text);
  assert.ok(text.includes('# HELP istio_tcp_connections_closed_total '), text);
  assert.ok(text.includes('# TYPE istio_tcp_received_bytes_total counter\n'), text);
  assert.ok(!text.includes('127.0.0.'), text);
});

test('the page passes promtool check metrics', (t) => {
  if (!existsSync('/usr/bin/promtool')) return t.skip('promtool is not installed');
  const r = new MetricsRegistry();
  const m = new L4Metrics(r);
  m.record(
    {
      time: '',
      node: 'n',
      direction: 'outbound',
      verdict: 'DENIED',
      source: { identity: 'spiffe://td/ns/a/sa/b', workload: 'WorkloadEntry/a/b' },
      destination: { service: 'outbound|80||c.a.svc.cluster.local' },
      via: 'hbone',
    },
    'open',
  );
  addClusterStats(r, { 'outbound|80||c.a.svc.cluster.local': { upstream_rq_retry: 2, ejections_enforced_total: 1 } });
  r.histogram('demo_size_bytes', 'Size.', ['a'], [1, 10]).with(['x']).observe(3);
  const p = spawnSync('/usr/bin/promtool', ['check', 'metrics'], {
    input: r.render(),
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(p.status, 0, `${p.stdout}${p.stderr}\n${r.render()}`);
});
