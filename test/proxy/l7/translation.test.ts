// The engine configured by the real translation: YAML -> model -> proxylessSnapshot() ->
// L7Config, routing to local echo backends by the Istio proxyless names ("HOST:PORT" route
// configs, "outbound|PORT|SUBSET|HOST" clusters). Once with the objects as the translation
// builds them, once as an xDS client decodes them (proto-loader options: longs and enums as
// strings, defaults filled in, oneof names added).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDocuments } from '../../../src/config/load.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import { compileModel } from '../../../src/model/compile.js';
import { TYPE_URLS, type Snapshot } from '../../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../../src/xds/translate/proxyless.js';
import type { EnvoyObject, L7Config } from '../../../src/proxy/l7/config.js';
import { decodedAsClient } from '../../helpers/envoy-protos.js';
import { get, json, startEcho, startEngine } from './helpers.js';

function model(ports: { v1: number; v2: number; slow: number }) {
  const we = (name: string, version: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: echo, version: ${version} }, ports: { http: ${port} } }
`;
  const svc = (name: string, selector: string) => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { ${selector} }
  ports: [{ name: http, port: 8080, targetPort: http }]
`;
  const yaml = `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${we('echo-v1', 'v1', ports.v1)}${we('echo-v2', 'v2', ports.v2)}${we('slow', 'slow', ports.slow)}${svc('echo', 'app: echo')}${svc('echo-v1', 'app: echo, version: v1')}${svc('echo-v2', 'app: echo, version: v2')}${svc('slow', 'version: slow')}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo-split, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 8080 }]
  rules:
    - matches: [{ headers: [{ name: x-canary, value: always }] }]
      backendRefs: [{ name: echo-v2, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      backendRefs: [{ name: slow, port: 8080 }]
      timeouts: { request: 100ms }
    - backendRefs:
        - { name: echo-v1, port: 8080, weight: 90 }
        - { name: echo-v2, port: 8080, weight: 10 }
`;
  const parsed = parseYamlFile('mesh.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  return compileModel(loaded.resources);
}

const decoded = (body: Readonly<Record<string, unknown>>): EnvoyObject => decodedAsClient(body) as EnvoyObject;

function toL7(snap: Snapshot, transform: (b: Readonly<Record<string, unknown>>) => EnvoyObject): L7Config {
  const map = (t: string) => new Map([...snap.resources(t)].map(([name, r]) => [name, transform(r.body)]));
  return { routes: map(TYPE_URLS.route), clusters: map(TYPE_URLS.cluster), endpoints: map(TYPE_URLS.endpoint) };
}

for (const [form, transform] of [
  ['as translated', (b: Readonly<Record<string, unknown>>) => b as EnvoyObject],
  ['as decoded by proto-loader', decoded],
] as const) {
  test(`the proxyless translation drives the engine (${form}): header route, 90/10 split, timeout`, async () => {
    const v1 = await startEcho('v1');
    const v2 = await startEcho('v2');
    const slow = await startEcho('slow', { delayMs: 1000 });
    const snap = proxylessSnapshot(model({ v1: v1.port, v2: v2.port, slow: slow.port }));
    assert.deepEqual(snap.consistent(), []);
    const routeName = 'echo.demo.svc.cluster.local:8080';
    const config = toL7(snap, transform);
    assert.ok(config.routes.has(routeName));
    assert.ok(config.clusters.has('outbound|8080||echo-v1.demo.svc.cluster.local'));
    const proxy = await startEngine(config, routeName);
    try {
      const host = { host: 'echo.demo.svc.cluster.local:8080' };
      assert.equal(json(await get(proxy.port, '/', { headers: { ...host, 'x-canary': 'always' } })).name, 'v2');
      // The short host (without port) is one of the virtual host's domains too.
      assert.equal(
        json(await get(proxy.port, '/', { headers: { host: 'echo.demo.svc.cluster.local', 'x-canary': 'always' } }))
          .name,
        'v2',
      );
      const n = 1000;
      for (let i = 0; i < n; i += 50)
        await Promise.all(Array.from({ length: 50 }, () => get(proxy.port, '/', { headers: host })));
      const share = v1.count / n;
      assert.ok(Math.abs(share - 0.9) < 0.04, `v1 share ${share}`);
      const t = await get(proxy.port, '/slow', { headers: host });
      assert.equal(t.status, 504);
      await new Promise((r) => setTimeout(r, 20));
      const record = proxy.logs.find((l) => l.path === '/slow');
      assert.equal(record?.upstreamCluster, 'outbound|8080||slow.demo.svc.cluster.local');
      assert.deepEqual(record?.responseFlags, ['UT']);
      assert.equal((await get(proxy.port, '/', { headers: { host: 'other.svc' } })).status, 404);
    } finally {
      await proxy.close();
      await Promise.all([v1.close(), v2.close(), slow.close()]);
    }
  });
}
