// Gateway API routes end to end: YAML -> model -> translation (the gateway's route configuration,
// as the node's L7 engine receives it) -> the real engine on 127.0.0.1 -> echo backends.
// Precedence across rules and routes, path_separated_prefix segments, redirects, URLRewrite
// (host and ReplacePrefixMatch), weights 0 and all-zero weights (500).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDocuments } from '../../../src/config/load.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import { compileModel } from '../../../src/model/compile.js';
import { TYPE_URLS } from '../../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../../src/xds/translate/proxyless.js';
import type { L7Config } from '../../../src/proxy/l7/config.js';
import { get, json, startEcho, startEngine, type Echo } from './helpers.js';

const ROUTE_CONFIG = 'trellis/gateway/demo/gw/8000';

function config(ports: Record<'a' | 'b' | 'c', number>): L7Config {
  const svc = (name: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: ${name} }, ports: { http: ${port} } }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { app: ${name} }
  ports: [{ name: http, port: 8080, targetPort: http }]
`;
  const yaml = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  trustDomain: cluster.local
  mtls: { mode: PERMISSIVE }
  nodes: [{ name: n1, address: 127.0.0.1 }]
---
apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: demo }
spec:
  gatewayClassName: trellis
  listeners: [{ name: http, port: 8000, protocol: HTTP }]
${svc('a', ports.a)}${svc('b', ports.b)}${svc('c', ports.c)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: newer, namespace: demo, creationTimestamp: "2024-06-01T00:00:00Z" }
spec:
  parentRefs: [{ name: gw }]
  hostnames: [shop.example]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /tie } }]
      backendRefs: [{ name: c, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: older, namespace: demo, creationTimestamp: "2023-06-01T00:00:00Z" }
spec:
  parentRefs: [{ name: gw }]
  hostnames: [shop.example]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /tie } }]
      backendRefs: [{ name: b, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /api } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: Exact, value: /api/special } }]
      backendRefs: [{ name: b, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /api/v2 } }]
      filters:
        - type: URLRewrite
          urlRewrite: { hostname: rewritten.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v3 } }
      backendRefs: [{ name: c, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /strip } }]
      filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: / } } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /old } }]
      filters:
        - type: RequestRedirect
          requestRedirect: { scheme: https, hostname: new.example, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new }, statusCode: 301 }
    - matches: [{ path: { type: PathPrefix, value: /split } }]
      backendRefs: [{ name: a, port: 8080, weight: 1 }, { name: b, port: 8080, weight: 0 }]
    - matches: [{ path: { type: PathPrefix, value: /zero } }]
      backendRefs: [{ name: a, port: 8080, weight: 0 }]
`;
  const parsed = parseYamlFile('gw.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error').map((d) => d.message),
    [],
  );
  const snap = proxylessSnapshot(compileModel(loaded.resources));
  const map = (t: string) => new Map([...snap.resources(t)].map(([name, r]) => [name, r.body]));
  return { routes: map(TYPE_URLS.route), clusters: map(TYPE_URLS.cluster), endpoints: map(TYPE_URLS.endpoint) };
}

test('gateway routes through the L7 engine: precedence, segments, rewrite, redirect, weights', async () => {
  const echoes: Echo[] = [];
  let proxy: Awaited<ReturnType<typeof startEngine>> | undefined;
  try {
    for (const n of ['a', 'b', 'c']) echoes.push(await startEcho(n));
    const [a, b, c] = echoes as [Echo, Echo, Echo];
    const cfg = config({ a: a.port, b: b.port, c: c.port });
    assert.ok(cfg.routes.has(ROUTE_CONFIG));
    proxy = await startEngine(cfg, ROUTE_CONFIG);
    const port = proxy.port;
    const host = { host: 'shop.example' };
    const call = async (path: string) => get(port, path, { headers: host });
    const backend = async (path: string) => {
      const r = await call(path);
      assert.equal(r.status, 200, `${path}: ${r.status} ${r.body}`);
      return json(r);
    };

    // Same match in two routes: the older route wins.
    assert.equal((await backend('/tie/x')).name, 'b');
    // PathPrefix is segment-wise: /apix is not under /api (no route: 404).
    assert.equal((await backend('/api')).name, 'a');
    assert.equal((await backend('/api/x')).name, 'a');
    assert.equal((await call('/apix')).status, 404);
    // Exact beats a shorter prefix declared earlier.
    assert.equal((await backend('/api/special')).name, 'b');
    assert.equal((await backend('/api/special/more')).name, 'a');
    // URLRewrite: hostname and ReplacePrefixMatch (the longest prefix wins over /api).
    const rw = await backend('/api/v2/items?q=1');
    assert.equal(rw.name, 'c');
    assert.equal(rw.url, '/v3/items?q=1');
    assert.equal(rw.headers.host, 'rewritten.internal');
    assert.equal((await backend('/api/v2')).url, '/v3');
    // ReplacePrefixMatch "/" keeps one slash.
    assert.equal((await backend('/strip/a/b')).url, '/a/b');
    assert.equal((await backend('/strip')).url, '/');
    // RequestRedirect: scheme (its default port dropped), host, prefix, 301.
    const rd = await call('/old/page?x=1');
    assert.equal(rd.status, 301);
    assert.equal(rd.headers.location, 'https://new.example/new/page?x=1');
    // Weight 0 never gets traffic; all-zero weights answer 500.
    const before = b.count;
    for (let i = 0; i < 20; i++) assert.equal((await backend('/split')).name, 'a');
    assert.equal(b.count, before);
    assert.equal((await call('/zero')).status, 500);
    // Another host has no virtual host.
    assert.equal((await get(port, '/api', { headers: { host: 'other.example' } })).status, 404);
  } finally {
    await proxy?.close();
    await Promise.all(echoes.map((e) => e.close()));
  }
});

function vsConfig(ports: Record<'a' | 'b' | 'c', number>): L7Config {
  const svc = (name: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: ${name} }, ports: { http: ${port} } }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { app: ${name} }
  ports: [{ name: http, port: 8080, targetPort: http }]
`;
  const yaml = `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${svc('a', ports.a)}${svc('b', ports.b)}${svc('c', ports.c)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a, namespace: demo }
spec:
  hosts: [a]
  http:
    - match: [{ uri: { prefix: /old } }]
      redirect: { uri: /new, authority: moved.example, redirectCode: 307 }
    - match: [{ uri: { exact: /teapot } }]
      directResponse: { status: 418, body: { string: short and stout } }
    - match: [{ uri: { prefix: /V1 }, ignoreUriCase: true }]
      rewrite: { uri: /v2, authority: b.internal }
      route: [{ destination: { host: b } }]
    - match: [{ headers: { x-canary: { exact: 'yes' } } }]
      headers: { request: { set: { x-routed: canary } } }
      route: [{ destination: { host: c } }]
    - route:
        - { destination: { host: b }, weight: 100 }
        - { destination: { host: c }, weight: 0 }
`;
  const parsed = parseYamlFile('vs.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error').map((d) => d.message),
    [],
  );
  const snap = proxylessSnapshot(compileModel(loaded.resources));
  const map = (t: string) => new Map([...snap.resources(t)].map(([name, r]) => [name, r.body]));
  return { routes: map(TYPE_URLS.route), clusters: map(TYPE_URLS.cluster), endpoints: map(TYPE_URLS.endpoint) };
}

test('VirtualService routes through the L7 engine: redirect, direct response, case-insensitive rewrite, headers, weights', async () => {
  const echoes: Echo[] = [];
  let proxy: Awaited<ReturnType<typeof startEngine>> | undefined;
  try {
    for (const n of ['a', 'b', 'c']) echoes.push(await startEcho(n));
    const [a, b, c] = echoes as [Echo, Echo, Echo];
    proxy = await startEngine(vsConfig({ a: a.port, b: b.port, c: c.port }), 'a.demo.svc.cluster.local:8080');
    const port = proxy.port;
    const call = (path: string, headers: Record<string, string> = {}) =>
      get(port, path, { headers: { host: 'a.demo.svc.cluster.local:8080', ...headers } });

    const rd = await call('/old/x?y=1');
    assert.equal(rd.status, 307);
    assert.equal(rd.headers.location, 'http://moved.example/new?y=1');
    const dr = await call('/teapot');
    assert.equal(dr.status, 418);
    assert.equal(dr.body, 'short and stout');
    const rw = await call('/v1/items');
    assert.equal(rw.status, 200);
    assert.equal(json(rw).name, 'b');
    assert.equal(json(rw).url, '/v2/items');
    assert.equal(json(rw).headers.host, 'b.internal');
    assert.equal(json(await call('/V1/ITEMS')).url, '/v2/ITEMS');
    const canary = json(await call('/', { 'x-canary': 'yes' }));
    assert.equal(canary.name, 'c');
    assert.equal(canary.headers['x-routed'], 'canary');
    const before = c.count;
    for (let i = 0; i < 20; i++) assert.equal(json(await call('/any')).name, 'b');
    assert.equal(c.count, before);
    assert.equal(a.count, 0);
  } finally {
    await proxy?.close();
    await Promise.all(echoes.map((e) => e.close()));
  }
});
