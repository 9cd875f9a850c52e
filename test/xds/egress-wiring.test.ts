// Egress NetworkPolicy in the node-proxy translation: the SOURCE workload's egress filters
// (network RBAC) sit on its outbound listener (a filter chain of their own) and ahead of
// tcp_proxy on its upstream listeners, encodable with the Envoy protos; nodeConfig reads them
// back per listener and the compiled decision follows Kubernetes (destination pod IP + port).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadDocuments, loadPaths } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import { nodeConfig } from '../../src/proxy/node/node-config.js';
import type { EnvoyObject, XdsState } from '../../src/proxy/xds-client.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { roundTrip } from '../helpers/envoy-protos.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ORDERS = 'orders.shop.svc.cluster.local';
const FRONTEND = 'spiffe://cluster.local/ns/shop/sa/frontend';
const OUTBOUND = 'trellis/node-a/outbound/shop/frontend';
const UPSTREAM = 'trellis/node-a/upstream/shop/frontend/17000';
const RULE = 'NetworkPolicy/shop/frontend-egress/egress[0]';

// frontend may reach the api pods only, on their pod ports (9081 v1, 9082 v2).
const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: frontend-egress, namespace: shop }
spec:
  podSelector: { matchLabels: { app: frontend } }
  policyTypes: [Egress]
  egress:
    - to: [{ podSelector: { matchLabels: { app: api } } }]
      ports: [{ protocol: TCP, port: 9081, endPort: 9082 }]
`;

// frontend's Workload with an upstream port to orders (so there is an upstream listener).
const FRONTEND_WORKLOAD = `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: frontend, namespace: shop }
spec: { node: node-a, upstreams: [{ host: ${ORDERS}, port: 7000, localPort: 17000 }] }
`;

type Filter = { name: string; typed_config: Record<string, unknown> };
type Chain = { name?: string; filters: Filter[] };

function listeners(withPolicy: boolean): Map<string, EnvoyObject> {
  const shop = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources.filter(
    (r) => !(r.kind === 'Workload' && r.name === 'frontend'),
  );
  const extra = loadDocuments([
    ...parseYamlFile('frontend.yaml', FRONTEND_WORKLOAD).documents,
    ...(withPolicy ? parseYamlFile('np.yaml', POLICY).documents : []),
  ]);
  assert.deepEqual(extra.diagnostics, []);
  const snap = proxylessSnapshot(compileModel([...shop, ...extra.resources]));
  assert.deepEqual(snap.consistent(), []);
  return new Map([...snap.resources(TYPE_URLS.listener).values()].map((l) => [l.name, l.body as EnvoyObject]));
}

function stateOf(ls: Map<string, EnvoyObject>): XdsState {
  return { listeners: ls, routes: new Map(), clusters: new Map(), endpoints: new Map(), secrets: new Map() };
}

test('the egress filters go on the source outbound listener and before tcp_proxy on its upstream ports', () => {
  const ls = listeners(true);
  const outbound = ls.get(OUTBOUND)!;
  const chains = outbound.filter_chains as Chain[];
  assert.equal(chains.length, 1);
  assert.equal(chains[0]!.name, 'outbound|shop/frontend');
  assert.deepEqual(
    chains[0]!.filters.map((f) => f.name),
    ['trellis.networkpolicy.egress'],
  );
  const cfg = chains[0]!.filters[0]!.typed_config as { rules: { action: string; policies: object } };
  assert.equal(cfg.rules.action, 'ALLOW');
  assert.deepEqual(Object.keys(cfg.rules.policies), [RULE]);
  // Envoy-shaped: the listener, with its RBAC filter, encodes with the Envoy protos.
  assert.equal(roundTrip(outbound).name, OUTBOUND);

  const upstream = ls.get(UPSTREAM)!;
  const up = (upstream.filter_chains as Chain[])[0]!;
  assert.deepEqual(
    up.filters.map((f) => f.name),
    ['trellis.networkpolicy.egress', 'envoy.filters.network.tcp_proxy'],
  );
  assert.equal(roundTrip(upstream).name, UPSTREAM);

  // Only the selected workload is isolated for egress: api-v1's outbound listener has no chain.
  assert.equal(ls.get('trellis/node-a/outbound/shop/api-v1')!.filter_chains, undefined);
});

test('nodeConfig reads each listener egress policy; decisions are on the destination pod IP and port', () => {
  const cfg = nodeConfig('node-a', stateOf(listeners(true)));
  assert.deepEqual([...cfg.egress.keys()].sort(), [OUTBOUND, UPSTREAM]);
  for (const name of [OUTBOUND, UPSTREAM]) {
    const e = cfg.egress.get(name)!;
    assert.deepEqual(e.rbac.problems, []);
    assert.deepEqual(e.allowRules, [RULE]);
    const at = (ip: string, port: number) =>
      e.rbac.evaluate({ principal: FRONTEND, destinationIp: ip, destinationPort: port });
    assert.equal(at('127.0.0.1', 9081).policy, RULE); // api-v1's pod
    assert.equal(at('127.0.0.2', 9082).allowed, true); // api-v2's pod
    // orders' pod (and the service port: egress ports are pod ports, after DNAT) are not allowed.
    assert.equal(at('127.0.0.2', 9090).allowed, false);
    assert.equal(at('127.0.0.2', 7000).allowed, false);
    assert.equal(at('127.0.0.1', 8080).allowed, false);
  }
  // The upstream port itself is still read as before.
  assert.deepEqual(
    cfg.upstreams.map((u) => [u.name, u.host, u.destPort]),
    [[UPSTREAM, ORDERS, 7000]],
  );
});

test('without an egress policy no listener carries egress filters', () => {
  const ls = listeners(false);
  assert.equal(ls.get(OUTBOUND)!.filter_chains, undefined);
  assert.deepEqual(
    ((ls.get(UPSTREAM)!.filter_chains as Chain[])[0]!.filters ?? []).map((f) => f.name),
    ['envoy.filters.network.tcp_proxy'],
  );
  assert.equal(nodeConfig('node-a', stateOf(ls)).egress.size, 0);
});
