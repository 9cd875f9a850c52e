// Workload upstreams in the node-proxy translation: one Listener per upstream with trellis
// metadata and a tcp_proxy to the service's cluster, encodable with the Envoy protos; and the
// node process's reading of them (nodeConfig) from what the xDS wire gives back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadDocuments, loadPaths } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import { nodeConfig } from '../../src/proxy/node/node-config.js';
import type { EnvoyObject, XdsState } from '../../src/proxy/xds-client.js';
import { DISCOVERY_RESPONSE, encodeResourceField, loadXdsProtos } from '../../src/xds/server/protos.js';
import { TYPE_URLS, type XdsResource } from '../../src/xds/snapshot.js';
import { readTrellisMetadata } from '../../src/xds/struct.js';
import { clusterName, proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { roundTrip } from '../helpers/envoy-protos.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ORDERS = 'orders.shop.svc.cluster.local';
const API_V1 = 'spiffe://cluster.local/ns/shop/sa/api';

/** The shop example with api-v1's Workload (node-a) given these upstreams (a YAML flow list). */
function snapshot(upstreams: string) {
  const shop = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources.filter(
    (r) => !(r.kind === 'Workload' && r.name === 'api-v1'),
  );
  const parsed = parseYamlFile(
    'api-v1.yaml',
    `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api-v1, namespace: shop }
spec: { node: node-a, upstreams: ${upstreams} }
`,
  );
  const extra = loadDocuments(parsed.documents);
  assert.deepEqual(extra.diagnostics, []);
  return proxylessSnapshot(compileModel([...shop, ...extra.resources]));
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function upstreamListeners(snap: ReturnType<typeof snapshot>): XdsResource[] {
  return [...snap.resources(TYPE_URLS.listener).values()].filter((l) => l.name.includes('/upstream/'));
}

test('an upstream becomes a Listener on its local address with tcp_proxy to the service cluster', () => {
  const snap = snapshot(`[{ host: ${ORDERS}, port: 7000, localPort: 17000 }]`);
  assert.deepEqual(snap.consistent(), []);
  const [l, ...rest] = upstreamListeners(snap);
  assert.equal(rest.length, 0);
  assert.equal(l!.name, 'trellis/node-a/upstream/shop/api-v1/17000');
  const body = l!.body as Obj;
  assert.deepEqual(body.address, { socket_address: { address: '127.0.0.1', port_value: 17000 } });
  assert.deepEqual(readTrellisMetadata(body), {
    role: 'upstream',
    workload: 'WorkloadEntry/shop/api-v1',
    identity: API_V1,
    destination: `${ORDERS}:7000`,
  });
  const cluster = clusterName(ORDERS, 7000);
  assert.deepEqual(body.filter_chains, [
    {
      name: `upstream|${ORDERS}:7000`,
      filters: [
        {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
            stat_prefix: cluster,
            cluster,
          },
        },
      ],
    },
  ]);
  assert.ok(snap.resources(TYPE_URLS.cluster).has(cluster));
  // Through the Envoy protos (test copy) and the ADS server's encoder.
  const back = roundTrip(body);
  assert.equal(back.name, l!.name);
  assert.ok(encodeResourceField(l!).length > 0);
});

test('an upstream without a mesh service gets a listener with no filter chain; taken ports get none', () => {
  const snap = snapshot(
    `[{ host: nothing.shop.svc.cluster.local, port: 1, localPort: 17001 },
      { host: ${ORDERS}, port: 7000, localPort: 15008 },
      { host: ${ORDERS}, port: 7000, localPort: 17002 },
      { host: ${ORDERS}, port: 7000, localPort: 17002, localAddress: 127.0.0.3 }]`,
  );
  assert.deepEqual(snap.consistent(), []);
  const ls = upstreamListeners(snap);
  // 15008 is node-a's HBONE port; the second 17002 would have the same name as the first.
  assert.deepEqual(
    ls.map((l) => l.name),
    ['trellis/node-a/upstream/shop/api-v1/17001', 'trellis/node-a/upstream/shop/api-v1/17002'],
  );
  assert.equal((ls[0]!.body as Obj).filter_chains, undefined);
  for (const l of ls) roundTrip(l.body);
});

/** What the node process holds: the listener as the xDS wire gives it back (Anys unpacked). */
function overTheWire(r: XdsResource): EnvoyObject {
  const protos = loadXdsProtos();
  const res = protos.deserialize(DISCOVERY_RESPONSE, encodeResourceField(r)) as {
    resources: { type_url: string; value: Buffer }[];
  };
  const unpack = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(unpack);
    if (!v || typeof v !== 'object' || Buffer.isBuffer(v) || v instanceof Uint8Array) return v;
    const o = v as Record<string, unknown>;
    if (typeof o.type_url === 'string' && (Buffer.isBuffer(o.value) || o.value instanceof Uint8Array))
      return unpack(protos.unpackAny(o as { type_url: string; value: Buffer }));
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, unpack(x)]));
  };
  return unpack(protos.unpackAny(res.resources[0]!)) as EnvoyObject;
}

test('nodeConfig reads the upstream listeners of its node', () => {
  const snap = snapshot(
    `[{ host: ${ORDERS}, port: 7000, localPort: 17000 }, { host: api.shop.svc.cluster.local, port: 8080, localPort: 17080, localAddress: 127.0.0.9 }]`,
  );
  const listeners = new Map<string, EnvoyObject>();
  for (const l of snap.resources(TYPE_URLS.listener).values()) listeners.set(l.name, overTheWire(l));
  const state: XdsState = {
    listeners,
    routes: new Map(),
    clusters: new Map(),
    endpoints: new Map(),
    secrets: new Map(),
  };
  const a = nodeConfig('node-a', state);
  assert.deepEqual(a.upstreams, [
    {
      name: 'trellis/node-a/upstream/shop/api-v1/17000',
      address: '127.0.0.1',
      port: 17000,
      workload: 'WorkloadEntry/shop/api-v1',
      identity: API_V1,
      host: ORDERS,
      destPort: 7000,
    },
    {
      name: 'trellis/node-a/upstream/shop/api-v1/17080',
      address: '127.0.0.9',
      port: 17080,
      workload: 'WorkloadEntry/shop/api-v1',
      identity: API_V1,
      host: 'api.shop.svc.cluster.local',
      destPort: 8080,
    },
  ]);
  assert.ok(a.identities.includes(API_V1));
  assert.deepEqual(nodeConfig('node-b', state).upstreams, []);
});
