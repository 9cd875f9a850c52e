// Locality failover / distribute for one client locality (Istio semantics): EDS priorities
// contiguous from 0, as grpc-js-xds requires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { compileModel } from '../../src/model/compile.js';
import type { MeshModel } from '../../src/model/mesh-model.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { clusterName, proxylessSnapshot, type ClientLocality } from '../../src/xds/translate/proxyless.js';
import { roundTrip } from '../helpers/envoy-protos.js';

const ENDPOINTS: [string, string, string, Record<string, string>?][] = [
  ['a1', '10.0.0.1', 'us-east/us-east-1a'],
  ['a2', '10.0.0.2', 'us-east/us-east-1b'],
  ['b1', '10.0.0.3', 'us-west/us-west-1a'],
  ['c1', '10.0.0.4', 'eu-west/eu-west-1a', { tier: 'gold' }],
];

function model(trafficPolicy: string): MeshModel {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-loc-'));
  try {
    const wes = ENDPOINTS.map(
      ([name, ip, loc, labels]) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec:
  address: ${ip}
  locality: ${loc}
  labels: ${JSON.stringify({ app: 'echo', ...(labels ?? {}) })}
  ports: { grpc: 9000 }
`,
    ).join('');
    writeFileSync(
      join(dir, 'mesh.yaml'),
      `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${wes}---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec:
  selector: { app: echo }
  ports: [{ name: grpc, port: 8080, targetPort: grpc }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: demo }
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy:
${trafficPolicy}
`,
    );
    const loaded = loadPaths([dir]);
    assert.deepEqual(
      loaded.diagnostics.filter((d) => d.severity === 'error'),
      [],
    );
    return compileModel(loaded.resources);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Eds {
  endpoints: {
    locality: { region?: string; zone?: string };
    priority: number;
    load_balancing_weight: { value: number };
    lb_endpoints: { endpoint: { address: { socket_address: { address: string } } } }[];
  }[];
}

function eds(m: MeshModel, client?: ClientLocality): Eds {
  const snap = proxylessSnapshot(m, { clientLocality: client });
  assert.deepEqual(snap.consistent(), []);
  const r = snap.resources(TYPE_URLS.endpoint).get(clusterName('echo.demo.svc.cluster.local', 8080))!;
  roundTrip(r.body);
  return r.body as unknown as Eds;
}

/** address -> priority */
function priorities(e: Eds): Record<string, number> {
  const out: Record<string, number> = {};
  for (const g of e.endpoints)
    for (const l of g.lb_endpoints) out[l.endpoint.address.socket_address.address] = g.priority;
  // Contiguous from 0, in order.
  const ps = [...new Set(e.endpoints.map((g) => g.priority))];
  assert.deepEqual(
    ps,
    ps.map((_, i) => i),
    `priorities ${JSON.stringify(ps)} not contiguous from 0 in order`,
  );
  return out;
}

const OD = `    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s }`;
const EAST_1A: ClientLocality = { region: 'us-east', zone: 'us-east-1a' };

test('default failover (outlier detection, no localityLbSetting): same zone, same region, then the rest', () => {
  const m = model(OD);
  assert.deepEqual(priorities(eds(m, EAST_1A)), {
    '10.0.0.1': 0,
    '10.0.0.2': 1,
    '10.0.0.3': 2,
    '10.0.0.4': 2,
  });
  // Without a client locality (the mesh-wide view) everything is priority 0.
  assert.ok(eds(m).endpoints.every((g) => g.priority === 0));
});

test('failover from/to: the target region comes before other regions', () => {
  const m = model(`${OD}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failover: [{ from: us-east, to: eu-west }]`);
  assert.deepEqual(priorities(eds(m, EAST_1A)), {
    '10.0.0.1': 0,
    '10.0.0.2': 1,
    '10.0.0.4': 2,
    '10.0.0.3': 3,
  });
  // A client in a region without a failover rule: region, then everything else.
  assert.deepEqual(priorities(eds(m, { region: 'us-west', zone: 'us-west-1a' })), {
    '10.0.0.3': 0,
    '10.0.0.1': 1,
    '10.0.0.2': 1,
    '10.0.0.4': 1,
  });
});

test('no failover without outlier detection, or with enabled: false', () => {
  const noOd = model(`    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failover: [{ from: us-east, to: eu-west }]`);
  assert.ok(eds(noOd, EAST_1A).endpoints.every((g) => g.priority === 0));
  const disabled = model(`${OD}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: { enabled: false }`);
  assert.ok(eds(disabled, EAST_1A).endpoints.every((g) => g.priority === 0));
});

test('failoverPriority: labels in order, topology labels from the locality', () => {
  const m = model(`${OD}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failoverPriority: [tier, topology.kubernetes.io/region]`);
  // Client labelled tier=gold in us-east: the gold endpoint first although in another region (raw
  // priority 1: tier matches, region does not), then every non-gold endpoint (raw 2: the first
  // label already differs, so the region no longer counts), renumbered 0, 1.
  assert.deepEqual(priorities(eds(m, { ...EAST_1A, labels: { tier: 'gold' } })), {
    '10.0.0.4': 0,
    '10.0.0.1': 1,
    '10.0.0.2': 1,
    '10.0.0.3': 1,
  });
  // Region first: same region, then gold elsewhere, then the rest.
  const regionFirst = model(`${OD}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failoverPriority: [topology.kubernetes.io/region, tier]`);
  assert.deepEqual(priorities(eds(regionFirst, { ...EAST_1A, labels: { tier: 'gold' } })), {
    '10.0.0.1': 0,
    '10.0.0.2': 0,
    '10.0.0.4': 1,
    '10.0.0.3': 1,
  });
  // "label=value" overrides the client's value.
  const pinned = model(`${OD}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failoverPriority: [tier=gold]`);
  assert.deepEqual(priorities(eds(pinned, EAST_1A)), {
    '10.0.0.4': 0,
    '10.0.0.1': 1,
    '10.0.0.2': 1,
    '10.0.0.3': 1,
  });
});

test('failoverPriority with failover: label priority first, then locality within it', () => {
  const m = model(`${OD}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        failoverPriority: [tier]
        failover: [{ from: us-east, to: us-west }]`);
  assert.deepEqual(priorities(eds(m, { ...EAST_1A, labels: { tier: 'gold' } })), {
    '10.0.0.4': 0,
    '10.0.0.1': 1,
    '10.0.0.2': 2,
    '10.0.0.3': 3,
  });
});

test('distribute: locality weights for the matching source, unlisted localities dropped, all priority 0', () => {
  const m = model(`    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        distribute:
          - from: us-east/us-east-1a/*
            to: { "us-east/*": 80, "us-west/*": 20 }`);
  const e = eds(m, EAST_1A);
  assert.ok(e.endpoints.every((g) => g.priority === 0));
  assert.deepEqual(
    e.endpoints.map((g) => [g.locality.zone, g.load_balancing_weight.value]),
    [
      ['us-east-1a', 40],
      ['us-east-1b', 40],
      ['us-west-1a', 20],
    ],
  );
  // Another source locality: no rule matches, weights stay as they were.
  const other = eds(m, { region: 'eu-west', zone: 'eu-west-1a' });
  assert.equal(other.endpoints.length, 4);
  assert.ok(other.endpoints.every((g) => g.load_balancing_weight.value === 1));
});

test('one address:port in two WorkloadEntries is one EDS endpoint with the summed weight (grpc-js NACKs duplicates)', () => {
  const dup = model(OD);
  const svc = dup.services.find((x) => x.name === 'echo')!;
  const first = svc.endpoints[0]!;
  const twin = {
    ...first,
    workload: `${first.workload}-twin`,
    locality: { region: 'elsewhere', zone: '', subzone: '' },
  };
  const m = {
    ...dup,
    services: dup.services.map((x) => (x === svc ? { ...svc, endpoints: [...svc.endpoints, twin] } : x)),
  };
  const e = eds(m, EAST_1A);
  const all = e.endpoints.flatMap((g) => g.lb_endpoints);
  assert.equal(all.length, 4);
  const g = e.endpoints.find((x) =>
    x.lb_endpoints.some((l) => l.endpoint.address.socket_address.address === first.address),
  )!;
  assert.equal(g.locality.zone, first.locality.zone);
  assert.equal(g.load_balancing_weight.value, 2);
  assert.equal(
    (g.lb_endpoints[0] as unknown as { load_balancing_weight: { value: number } }).load_balancing_weight.value,
    2,
  );
});
