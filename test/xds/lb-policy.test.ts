// DestinationRule trafficPolicy.loadBalancer.simple: the Cluster fields it becomes, that they
// survive the ADS encoding, that the L7 engine honours them, and that a grpc-js-xds client
// (which has neither least_request nor random) accepts them and falls back to round robin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadPaths } from '../../src/config/load.js';
import { compileModel } from '../../src/model/compile.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { clusterName, proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { DISCOVERY_RESPONSE, encodeResourceField, loadXdsProtos } from '../../src/xds/server/protos.js';
import { startControlPlane } from '../helpers/controlplane.js';
import { REPO_ROOT } from '../helpers/run-cli.js';
import { cla, edsCluster, get, l7Config, routeConfig, startEcho, startEngine, vhost } from '../proxy/l7/helpers.js';

const CLUSTER = clusterName('echo.demo.svc.cluster.local', 8080);

function mesh(loadBalancer: string, ports: [number, number] = [9000, 9001]): string {
  return `apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-a, namespace: demo }
spec: { address: 127.0.0.1, locality: eu/zone-a, labels: { app: echo }, ports: { grpc: ${ports[0]} } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-b, namespace: demo }
spec: { address: 127.0.0.1, locality: eu/zone-a, labels: { app: echo }, ports: { grpc: ${ports[1]} } }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec: { selector: { app: echo }, ports: [{ name: grpc, port: 8080, targetPort: grpc }] }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: demo }
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy:
    loadBalancer: ${loadBalancer}
`;
}

function clusterFor(loadBalancer: string) {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-lb-'));
  try {
    writeFileSync(join(dir, 'mesh.yaml'), mesh(loadBalancer));
    const loaded = loadPaths([dir]);
    assert.deepEqual(
      loaded.diagnostics.filter((d) => d.severity === 'error'),
      [],
    );
    const r = proxylessSnapshot(compileModel(loaded.resources)).resources(TYPE_URLS.cluster).get(CLUSTER);
    assert.ok(r, `no cluster ${CLUSTER}`);
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const T = 'type.googleapis.com/envoy.extensions.load_balancing_policies.';
const RR_FALLBACK = {
  typed_extension_config: {
    name: 'envoy.load_balancing_policies.wrr_locality',
    typed_config: {
      '@type': `${T}wrr_locality.v3.WrrLocality`,
      endpoint_picking_policy: {
        policies: [
          {
            typed_extension_config: {
              name: 'envoy.load_balancing_policies.round_robin',
              typed_config: { '@type': `${T}round_robin.v3.RoundRobin` },
            },
          },
        ],
      },
    },
  },
};
const LEAST_REQUEST = {
  policies: [
    {
      typed_extension_config: {
        name: 'envoy.load_balancing_policies.least_request',
        typed_config: { '@type': `${T}least_request.v3.LeastRequest`, choice_count: { value: 2 } },
      },
    },
    RR_FALLBACK,
  ],
};
const RANDOM = {
  policies: [
    {
      typed_extension_config: {
        name: 'envoy.load_balancing_policies.random',
        typed_config: { '@type': `${T}random.v3.Random` },
      },
    },
    RR_FALLBACK,
  ],
};

test('simple LEAST_REQUEST / LEAST_CONN / RANDOM become load_balancing_policy with a round robin fallback', () => {
  for (const [lb, want] of [
    ['{ simple: LEAST_REQUEST }', LEAST_REQUEST],
    ['{ simple: LEAST_CONN }', LEAST_REQUEST],
    ['{ simple: RANDOM }', RANDOM],
  ] as const) {
    const body = clusterFor(lb).body;
    assert.deepEqual(body.load_balancing_policy, want, lb);
    // No lb_policy: grpc-js-xds NACKs LEAST_REQUEST/RANDOM there (ROUND_ROBIN is the wire default).
    assert.equal(body.lb_policy, undefined, lb);
  }
});

test('ROUND_ROBIN, unset, PASSTHROUGH and consistentHash keep lb_policy as before', () => {
  for (const [lb, want] of [
    ['{ simple: ROUND_ROBIN }', 'ROUND_ROBIN'],
    ['{ simple: UNSPECIFIED }', 'ROUND_ROBIN'],
    ['{ simple: PASSTHROUGH }', 'ROUND_ROBIN'],
    ['{ localityLbSetting: { enabled: true } }', 'ROUND_ROBIN'],
    ['{ consistentHash: { httpHeaderName: x-user, minimumRingSize: 2048 } }', 'RING_HASH'],
  ] as const) {
    const body = clusterFor(lb).body;
    assert.equal(body.lb_policy, want, lb);
    assert.equal(body.load_balancing_policy, undefined, lb);
  }
  assert.deepEqual(
    clusterFor('{ consistentHash: { httpHeaderName: x-user, minimumRingSize: 2048 } }').body.ring_hash_lb_config,
    {
      minimum_ring_size: { value: 2048 },
    },
  );
});

/** Replaces every nested google.protobuf.Any with its decoded '@type' form (as the node proxy does). */
function unpackDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unpackDeep);
  if (!value || typeof value !== 'object' || Buffer.isBuffer(value) || value instanceof Uint8Array) return value;
  const o = value as Record<string, unknown>;
  if (typeof o.type_url === 'string' && (Buffer.isBuffer(o.value) || o.value instanceof Uint8Array)) {
    return unpackDeep(loadXdsProtos().unpackAny(o as { type_url: string; value: Buffer }));
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, unpackDeep(v)]));
}

test('the typed policies encode through the ADS protos and decode back unchanged', () => {
  for (const [lb, want] of [
    ['{ simple: LEAST_REQUEST }', LEAST_REQUEST],
    ['{ simple: RANDOM }', RANDOM],
  ] as const) {
    const bytes = encodeResourceField(clusterFor(lb));
    const resp = loadXdsProtos().deserialize(DISCOVERY_RESPONSE, bytes) as { resources: unknown[] };
    const [cluster] = unpackDeep(resp.resources) as Record<string, unknown>[];
    assert.deepEqual(cluster!.load_balancing_policy, want, lb);
  }
});

test('L7 engine: load_balancing_policy least_request (after an entry it does not know) avoids the slow backend', async () => {
  const bs = await Promise.all([
    startEcho('slow', { delayMs: 100 }),
    startEcho('fast1', { delayMs: 0 }),
    startEcho('fast2', { delayMs: 0 }),
  ]);
  try {
    const policy = {
      policies: [
        // Not an LB policy the engine implements: skipped, as Envoy and gRPC skip unknown entries.
        {
          typed_extension_config: {
            name: 'custom',
            typed_config: { '@type': 'type.googleapis.com/example.UnknownLb' },
          },
        },
        ...LEAST_REQUEST.policies,
      ],
    };
    const config = l7Config(
      [routeConfig('rc', [vhost('all', ['*'], [{ match: { prefix: '/' }, route: { cluster: 'c' } }])])],
      [edsCluster('c', { lb_policy: undefined, load_balancing_policy: policy })],
      [
        cla(
          'c',
          bs.map((b) => ({ port: b.port })),
        ),
      ],
    );
    const proxy = await startEngine(config, 'rc');
    try {
      const until = Date.now() + 1000;
      await Promise.all(
        Array.from({ length: 30 }, async () => {
          while (Date.now() < until) await get(proxy.port, '/');
        }),
      );
      const total = bs.reduce((s, b) => s + b.count, 0);
      // Round robin would give the slow backend a third of the requests.
      assert.ok(bs[0]!.count / total < 0.15, `slow got ${bs[0]!.count} of ${total}`);
    } finally {
      await proxy.close();
    }
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

test(
  'grpc-js-xds ACKs a LEAST_REQUEST cluster and its calls succeed over both endpoints',
  { timeout: 60_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-lb-e2e-'));
    const client = spawn(process.execPath, [join(REPO_ROOT, 'dist/test/helpers/lb-policy-client.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: client.stdout });
    const next = () =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('the client did not answer')), 50_000);
        lines.once('line', (l) => {
          clearTimeout(t);
          resolve(JSON.parse(l) as Record<string, unknown>);
        });
      });
    let cp: Awaited<ReturnType<typeof startControlPlane>> | undefined;
    try {
      const { ports } = (await next()) as { ports: { a: number; b: number } };
      writeFileSync(join(dir, 'mesh.yaml'), mesh('{ simple: LEAST_REQUEST }', [ports.a, ports.b]));
      cp = await startControlPlane(dir);
      client.stdin.write(`${cp.xds}\n`);
      const { result } = (await next()) as { result: { names: string[] } };
      assert.deepEqual(
        result.names.filter((n) => n.startsWith('error')),
        [],
      );
      // The round robin fallback: both endpoints serve.
      assert.deepEqual([...new Set(result.names)].sort(), ['a', 'b']);
      const clients = (await (await fetch(`${cp.admin}/debug/clients`)).json()) as {
        nodeId: string;
        types: { typeUrl: string; status: string }[];
      }[];
      const me = clients.find((c) => c.nodeId === 'lb-policy-client');
      assert.ok(me, JSON.stringify(clients));
      assert.equal(me.types.find((t) => t.typeUrl === TYPE_URLS.cluster)?.status, 'SYNCED', JSON.stringify(me.types));
      client.stdin.write('bye\n');
    } finally {
      client.kill('SIGKILL');
      cp?.proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
