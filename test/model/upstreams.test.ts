// Workload upstreams in the model: carried on the workload (defaults applied), and the analysis
// of destinations that are no mesh service (TRL0008) and local ports already taken (TRL0009).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadDocuments, loadPaths } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import type { Resource } from '../../src/config/resource.js';
import { compileModel } from '../../src/model/compile.js';
import type { MeshModel } from '../../src/model/mesh-model.js';
import { outboundProxyPorts } from '../../src/model/upstreams.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

function load(yaml: string): Resource[] {
  const parsed = parseYamlFile('test.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const r = loadDocuments(parsed.documents);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  return r.resources;
}

/** The shop example with its api-v1 Workload (node-a) replaced by one with these upstreams (YAML flow list). */
function shopWith(upstreams: string, extra = ''): MeshModel {
  const shop = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources.filter(
    (r) => !(r.kind === 'Workload' && r.name === 'api-v1'),
  );
  return compileModel([
    ...shop,
    ...load(`apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api-v1, namespace: shop }
spec:
  node: node-a
  upstreams: ${upstreams}
${extra}`),
  ]);
}

function messages(m: MeshModel): string[] {
  return m.analysis.map((a) => `${a.code} ${a.level} ${a.resource.kind}/${a.resource.name} ${a.field ?? ''}`);
}

test('upstreams are carried on the workload model, localAddress defaulting to 127.0.0.1', () => {
  const m = shopWith(
    '[{ host: orders.shop.svc.cluster.local, port: 7000, localPort: 17000 }, { host: api.shop.svc.cluster.local, port: 8080, localPort: 17080, localAddress: 127.0.0.9 }]',
  );
  assert.deepEqual(m.analysis, []);
  const w = m.workloads.find((x) => x.id === 'WorkloadEntry/shop/api-v1')!;
  assert.deepEqual(w.upstreams, [
    { host: 'orders.shop.svc.cluster.local', port: 7000, localAddress: '127.0.0.1', localPort: 17000 },
    { host: 'api.shop.svc.cluster.local', port: 8080, localAddress: '127.0.0.9', localPort: 17080 },
  ]);
  assert.equal(m.workloads.find((x) => x.id === 'WorkloadEntry/shop/api-v2')!.upstreams, undefined);
});

test('an upstream that is no mesh service port is a TRL0008 warning at its field, with a did-you-mean', () => {
  const m = shopWith(
    `[{ host: orders.shop, port: 7000, localPort: 17000 },
      { host: orders.shop.svc.cluster.local, port: 7001, localPort: 17001 },
      { host: ordrs.shop.svc.cluster.local, port: 7000, localPort: 17002 },
      { host: nothing.example.com, port: 1, localPort: 17003 }]`,
  );
  assert.deepEqual(messages(m), [
    'TRL0008 Warning Workload/api-v1 spec.upstreams[0].host',
    'TRL0008 Warning Workload/api-v1 spec.upstreams[1].port',
    'TRL0008 Warning Workload/api-v1 spec.upstreams[2].host',
    'TRL0008 Warning Workload/api-v1 spec.upstreams[3].host',
  ]);
  assert.match(
    m.analysis[0]!.message,
    /no service has host orders\.shop \(did you mean orders\.shop\.svc\.cluster\.local\?\)/,
  );
  assert.match(m.analysis[1]!.message, /has no port 7001 \(ports: 7000\)/);
  assert.match(m.analysis[2]!.message, /did you mean orders\.shop\.svc\.cluster\.local\?/);
  assert.doesNotMatch(m.analysis[3]!.message, /did you mean/);
});

test('a MESH_EXTERNAL ServiceEntry host is not a destination for upstreams (warning)', () => {
  const m = shopWith(
    '[{ host: payments.example.com, port: 443, localPort: 17443 }]',
    `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: payments, namespace: shop }
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 443, name: tls, protocol: TLS }]`,
  );
  assert.deepEqual(messages(m), ['TRL0008 Warning Workload/api-v1 spec.upstreams[0].host']);
  assert.match(m.analysis[0]!.message, /MESH_EXTERNAL/);
});

/** The outbound proxy port of a workload on its node. */
function outboundPortOf(m: MeshModel, id: string): number {
  const w = m.workloads.find((x) => x.id === id)!;
  const node = m.nodes.find((n) => n.name === w.node)!;
  const local = m.workloads.filter((x) => x.node === node.name);
  const gws = m.gateways.filter((g) => node.gateways.includes(g.id));
  return outboundProxyPorts(node, local, gws).get(id)!;
}

test('local ports already taken on the machine are TRL0009 errors on the later upstream', () => {
  // node-a is 127.0.0.1: hbone 15008, the outbound proxies of api-v1 and frontend, the gateway's 8000.
  const frontend = outboundPortOf(shopWith('[]'), 'WorkloadEntry/shop/frontend');
  const m = shopWith(
    `[{ host: orders.shop.svc.cluster.local, port: 7000, localPort: 15008 },
      { host: orders.shop.svc.cluster.local, port: 7000, localPort: ${frontend} },
      { host: orders.shop.svc.cluster.local, port: 7000, localPort: 8000 },
      { host: orders.shop.svc.cluster.local, port: 7000, localPort: 9080 },
      { host: orders.shop.svc.cluster.local, port: 7000, localPort: 17000 },
      { host: orders.shop.svc.cluster.local, port: 7000, localPort: 17000, localAddress: 0.0.0.0 },
      { host: orders.shop.svc.cluster.local, port: 7000, localPort: 17001, localAddress: 127.0.0.7 }]`,
  );
  assert.deepEqual(messages(m), [
    'TRL0009 Error Workload/api-v1 spec.upstreams[0].localPort',
    'TRL0009 Error Workload/api-v1 spec.upstreams[1].localPort',
    'TRL0009 Error Workload/api-v1 spec.upstreams[2].localPort',
    'TRL0009 Error Workload/api-v1 spec.upstreams[3].localPort',
    'TRL0009 Error Workload/api-v1 spec.upstreams[5].localPort',
  ]);
  const text = m.analysis.map((a) => a.message);
  assert.match(text[0]!, /node node-a's hbone port already uses \(127\.0\.0\.1:15008\)/);
  assert.match(
    text[1]!,
    new RegExp(`the outbound proxy of workload shop/frontend already uses \\(127\\.0\\.0\\.1:${frontend}\\)`),
  );
  assert.match(text[2]!, /listener http of gateway shop\/shop-gateway/);
  assert.match(text[3]!, /port http of workload shop\/frontend/);
  assert.match(text[4]!, /upstream spec\.upstreams\[4\] of Workload shop\/api-v1 already uses \(127\.0\.0\.1:17000\)/);
});

test('nodes on loopback addresses share a machine; upstreams on different machines or addresses do not collide', () => {
  // api-v2 (node-b, 127.0.0.2) takes 127.0.0.1:15001, node-a's outbound port: same machine.
  const loopback = shopWith(
    '[{ host: orders.shop.svc.cluster.local, port: 7000, localPort: 17000 }]',
    `---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api-v2b, namespace: shop }
spec:
  workloadEntry: api-v2
  node: node-b
  upstreams: [{ host: orders.shop.svc.cluster.local, port: 7000, localPort: 17000 }]`,
  );
  // api-v2 is placed by the shop's own Workload first, so this one is WorkloadPlacedTwice and its upstreams are unused.
  assert.deepEqual(messages(loopback), ['TRL0005 Error Workload/api-v2b spec.workloadEntry']);

  const two = (addrA: string, addrB: string) =>
    compileModel(
      load(`apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  nodes: [{ name: a, address: ${addrA} }, { name: b, address: ${addrB} }]
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: ns }
spec: { selector: { app: db }, ports: [{ name: tcp, port: 5432 }] }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: db, namespace: ns }
spec: { address: ${addrB}, labels: { app: db }, ports: { tcp: 5432 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: app, namespace: ns }
spec: { address: ${addrA} }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: app, namespace: ns }
spec:
  node: a
  upstreams: [{ host: db.ns.svc.cluster.local, port: 5432, localPort: 15001 }]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: db, namespace: ns }
spec:
  node: b
  upstreams: [{ host: db.ns.svc.cluster.local, port: 5432, localPort: 15001, localAddress: 127.0.0.1 }]
`),
    );
  // Hosts of their own: 127.0.0.1:15001 is free on each (the nodes listen on 10.0.0.x).
  assert.deepEqual(messages(two('10.0.0.1', '10.0.0.2')), []);
  // One machine (both loopback): node a's outbound port 15001 is 127.0.0.1:15001.
  const one = two('127.0.0.1', '127.0.0.2');
  assert.deepEqual(messages(one), [
    'TRL0009 Error Workload/app spec.upstreams[0].localPort',
    'TRL0009 Error Workload/db spec.upstreams[0].localPort',
  ]);
  assert.match(one.analysis[1]!.message, /node a's outbound port/);
});

test('the shop example has no upstreams and no upstream analysis', () => {
  const m = compileModel(loadPaths([join(REPO_ROOT, 'examples/shop')]).resources);
  assert.ok(m.workloads.every((w) => w.upstreams === undefined));
  assert.deepEqual(m.analysis, []);
});

test('outbound proxy ports stay put when other workloads come and go; spec.outboundPort pins one', () => {
  const mesh = (names: readonly string[], pin?: number) =>
    compileModel(
      load(`apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  nodes: [{ name: a, address: 127.0.0.1 }]
${names
  .map(
    (n) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${n}, namespace: ns }
spec: { address: 127.0.0.1 }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: ${n}, namespace: ns }
spec: { node: a${pin !== undefined && n === 'w0' ? `, outboundPort: ${pin}` : ''} }`,
  )
  .join('\n')}
`),
    );
  const names = Array.from({ length: 12 }, (_, i) => `w${i}`);
  const all = mesh(names);
  const ports = new Map(names.map((n) => [n, outboundPortOf(all, `WorkloadEntry/ns/${n}`)]));
  assert.equal(new Set(ports.values()).size, names.length, 'every workload has a port of its own');
  for (const p of ports.values()) assert.ok(p >= 15001 && p < 16001 && ![15006, 15008, 15020, 15021].includes(p));
  // Take any one away: nobody else's port moves (these ids do not collide).
  for (const gone of names) {
    const fewer = mesh(names.filter((n) => n !== gone));
    for (const n of names)
      if (n !== gone)
        assert.equal(outboundPortOf(fewer, `WorkloadEntry/ns/${n}`), ports.get(n), `${n} without ${gone}`);
  }
  // A pinned port wins; pinning one the node already uses is a TRL0009 error.
  assert.equal(outboundPortOf(mesh(names, 16500), 'WorkloadEntry/ns/w0'), 16500);
  const clash = mesh(names, 15008);
  assert.deepEqual(messages(clash), ['TRL0009 Error Workload/w0 spec.outboundPort']);
  assert.match(clash.analysis[0]!.message, /outboundPort 15008 is already used by node a's hbone port/);
});
