// Locality-aware balancing in node proxies: Envoy's locality weighted balancing inside a
// priority level (DestinationRule localityLbSetting.distribute), and the control plane giving a
// node process that sends no locality the one its Mesh node declares, so its endpoints come
// prioritized by zone like a proxyless client's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadDocuments } from '../../../src/config/load.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import { SnapshotCache } from '../../../src/controlplane/snapshot-cache.js';
import { levelBalancer, type LbHost } from '../../../src/proxy/l7/load-balancer.js';
import { TYPE_URLS } from '../../../src/xds/snapshot.js';

interface H extends LbHost {
  readonly name: string;
}

const host = (name: string, locality: number, localityWeight: number): H => ({
  name,
  key: name,
  weight: 1,
  locality,
  localityWeight,
  stats: { active: 0 },
});

function counts(lb: { pick(h: number | undefined): H | undefined }, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const h = lb.pick(undefined)!;
    out[h.name] = (out[h.name] ?? 0) + 1;
  }
  return out;
}

test("locality weighted: localities take load by weight, hosts share their locality's", () => {
  const hosts = [host('a1', 0, 75), host('a2', 0, 75), host('b1', 1, 25)];
  const c = counts(levelBalancer('ROUND_ROBIN', hosts, hosts, { localityWeighted: true }), 1000);
  assert.deepEqual(c, { a1: 375, a2: 375, b1: 250 });
  // Without locality_weighted_lb_config: plain round robin over the hosts.
  const flat = counts(levelBalancer('ROUND_ROBIN', hosts, hosts, {}), 999);
  assert.deepEqual(flat, { a1: 333, a2: 333, b1: 333 });
});

test('locality weighted: a locality with unusable hosts loses weight by availability (overprovisioning 1.4)', () => {
  const all = [host('a1', 0, 50), host('a2', 0, 50), host('a3', 0, 50), host('a4', 0, 50), host('b1', 1, 50)];
  // Two of a's four hosts usable: availability min(1, 1.4 x 2/4) = 0.7 -> weights 35 : 50.
  const usable = [all[0]!, all[1]!, all[4]!];
  const c = counts(levelBalancer('ROUND_ROBIN', usable, all, { localityWeighted: true }), 850);
  assert.equal(c.a1! + c.a2!, 350);
  assert.equal(c.b1, 500);
  // A locality with weight 0 takes nothing (distribute sends it no traffic).
  const zero = [host('a1', 0, 100), host('b1', 1, 0)];
  assert.deepEqual(counts(levelBalancer('ROUND_ROBIN', zero, zero, { localityWeighted: true }), 10), { a1: 10 });
});

const MESH = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  trustDomain: cluster.local
  nodes:
    - { name: node-a, address: 10.0.0.1, locality: eu-west/zone-a }
    - { name: node-b, address: 10.0.0.2, locality: eu-west/zone-b }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: shop }
spec: { selector: { app: api }, ports: [{ name: http, port: 8080 }] }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api-a, namespace: shop }
spec: { address: 10.1.0.1, labels: { app: api }, ports: { http: 8080 } }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api-a, namespace: shop }
spec: { node: node-a }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api-b, namespace: shop }
spec: { address: 10.1.0.2, labels: { app: api }, ports: { http: 8080 } }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api-b, namespace: shop }
spec: { node: node-b }
`;

function cache(dr: string): SnapshotCache {
  const parsed = parseYamlFile('mesh.yaml', `${MESH}---\n${dr}`);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  const c = new SnapshotCache();
  c.update(loaded.resources, 1);
  return c;
}

type Cla = {
  endpoints: {
    priority?: number;
    load_balancing_weight?: { value: number };
    lb_endpoints: unknown[];
    locality?: { zone?: string };
  }[];
};

function assignment(c: SnapshotCache, nodeId: string): Cla {
  const snap = c.snapshot(nodeId, { locality: { region: '', zone: '', sub_zone: '' } })!;
  const cla = [...snap.resources(TYPE_URLS.endpoint).values()].find((r) => r.name.includes('api.shop'));
  assert.ok(cla, 'the api assignment');
  return cla.body as unknown as Cla;
}

test("a node process that sends no locality gets its Mesh node's: failover priorities by zone", () => {
  const c = cache(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: shop }
spec:
  host: api.shop.svc.cluster.local
  trafficPolicy: { outlierDetection: { consecutive5xxErrors: 3 } }
`);
  const zoneOf = (cla: Cla) => Object.fromEntries(cla.endpoints.map((e) => [e.locality?.zone ?? '', e.priority ?? 0]));
  assert.deepEqual(zoneOf(assignment(c, 'node-a')), { 'zone-a': 0, 'zone-b': 1 });
  assert.deepEqual(zoneOf(assignment(c, 'node-b')), { 'zone-a': 1, 'zone-b': 0 });
  // Someone else without a locality (a proxyless client): no priorities.
  assert.deepEqual(zoneOf(assignment(c, 'grpc-client-1')), { 'zone-a': 0, 'zone-b': 0 });
});

test("distribute: locality weights for the node's zone, and locality weighted balancing on the cluster", () => {
  const c = cache(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: shop }
spec:
  host: api.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
          - from: eu-west/zone-a/*
            to: { 'eu-west/zone-a/*': 80, 'eu-west/zone-b/*': 20 }
`);
  const cla = assignment(c, 'node-a');
  assert.deepEqual(
    Object.fromEntries(cla.endpoints.map((e) => [e.locality?.zone ?? '', e.load_balancing_weight?.value])),
    { 'zone-a': 80, 'zone-b': 20 },
  );
  const snap = c.snapshot('node-a', { locality: { region: '', zone: '', sub_zone: '' } })!;
  const cluster = [...snap.resources(TYPE_URLS.cluster).values()].find((r) => r.name.includes('api.shop'))!;
  assert.deepEqual((cluster.body.common_lb_config as Record<string, unknown>).locality_weighted_lb_config, {});
});
