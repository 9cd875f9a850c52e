// Cilium L7 (toPorts[].rules.http) through a waypoint, Istio-ambient style: the waypoint of the
// service whose endpoints a policy selects enforces the HTTP rules with the real caller, and the
// endpoints' nodes admit the waypoint on those ports instead of failing closed. On the shop
// example (api behind its waypoint) plus Cilium's "allow GET from app=frontend" policy, compiled
// and translated as the control plane does, evaluated by the one RBAC evaluator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadDocuments, loadPaths } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import type { MeshModel } from '../../src/model/mesh-model.js';
import { compileRbacFilters, type RbacAttributes } from '../../src/proxy/rbac/evaluate.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import type { EnvoyObject } from '../../src/xds/translate/route-match.js';
import { roundTrip } from '../helpers/envoy-protos.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const TD = 'cluster.local';
const FRONTEND = `spiffe://${TD}/ns/shop/sa/frontend`;
const WAYPOINT = `spiffe://${TD}/ns/shop/sa/waypoint`;
const ORDERS = `spiffe://${TD}/ns/shop/sa/orders`;
const RULE = 'CiliumNetworkPolicy/shop/api-l7/ingress[0]';

/** Cilium's L7 example, for the shop's api: GET /call from app=frontend on the named port http. */
const API_L7 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: api-l7, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: api } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts:
        - ports: [{ port: http, protocol: TCP }]
          rules:
            http: [{ method: GET, path: /call }]
`;

type Filter = EnvoyObject & { readonly name: string; readonly typed_config: EnvoyObject };

function shopWith(extraYaml: string): MeshModel {
  const shop = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources;
  const parsed = parseYamlFile('extra.yaml', extraYaml);
  assert.deepEqual(parsed.problems, []);
  const extra = loadDocuments(parsed.documents);
  assert.deepEqual(extra.diagnostics, []);
  return compileModel([...shop, ...extra.resources]);
}

function listenerChains(m: MeshModel, suffix: string): { name?: string; filters?: Filter[] }[] {
  const snap = proxylessSnapshot(m);
  const l = [...snap.resources(TYPE_URLS.listener).values()].find((x) => x.name.endsWith(suffix));
  assert.ok(l, `listener ${suffix}`);
  return (l.body as { filter_chains?: { name?: string; filters?: Filter[] }[] }).filter_chains ?? [];
}

/** The HCM http_filters of the waypoint chain of a service port. */
function waypointHttpFilters(m: MeshModel, chainName: string): Filter[] {
  const chain = listenerChains(m, '/waypoint/shop/waypoint').find((c) => c.name === chainName);
  assert.ok(chain, `waypoint chain ${chainName}`);
  const hcm = chain.filters![0]!.typed_config as { http_filters: Filter[] };
  return hcm.http_filters;
}

const isNetworkPolicy = (f: Filter): boolean => f.name.startsWith('trellis.networkpolicy.');

function request(
  principal: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): RbacAttributes {
  const host = 'api.shop.svc.cluster.local:8080';
  const all: Record<string, string> = { ...headers, ':method': method, ':path': path, ':authority': host };
  return { principal, sourceIp: '127.0.0.1', http: { method, path, host, header: (n) => all[n] } };
}

function connection(principal: string, port: number): RbacAttributes {
  return { principal, sourceIp: '127.0.0.1', destinationIp: '127.0.0.1', destinationPort: port };
}

test('waypoint chain carries the endpoints Cilium HTTP rules after the AuthorizationPolicy filters', () => {
  const m = shopWith(API_L7);
  const filters = waypointHttpFilters(m, 'api.shop.svc.cluster.local:8080');
  const names = filters.map((f) => f.name);
  const np = names.indexOf('trellis.networkpolicy.ingress');
  assert.ok(np > 0, names.join(', '));
  assert.ok(
    names.slice(0, np).some((n) => n.startsWith('envoy.filters.http.rbac')),
    `AuthorizationPolicy RBAC first: ${names.join(', ')}`,
  );
  assert.ok(names.indexOf('envoy.filters.http.router') > np, 'before the router');
  // api-v1 (:9081) and api-v2 (:9082) resolve the named port to the same decision: one filter.
  assert.equal(names.filter((n) => n === 'trellis.networkpolicy.ingress').length, 1);
  // Encodable as the Envoy HTTP RBAC message.
  const back = roundTrip(filters[np]!.typed_config);
  assert.deepEqual(Object.keys((back.rules as { policies: object }).policies), [RULE]);

  const chain = compileRbacFilters(filters, 'l7');
  const cni = compileRbacFilters(filters.filter(isNetworkPolicy), 'l7');
  assert.deepEqual(chain.problems, []);

  const get = chain.evaluate(request(FRONTEND, 'GET', '/call'));
  assert.equal(get.allowed, true, get.reason);
  assert.equal(cni.evaluate(request(FRONTEND, 'GET', '/call')).reason, `allowed by ${RULE}`);

  const post = chain.evaluate(request(FRONTEND, 'POST', '/call'));
  assert.equal(post.allowed, false);
  assert.match(cni.evaluate(request(FRONTEND, 'POST', '/call')).reason, /^no ALLOW policy matched/);
  assert.equal(chain.evaluate(request(FRONTEND, 'GET', '/call/admin')).allowed, false, 'path is a full match');

  // Another caller: the Cilium rule alone refuses it (not only the AuthorizationPolicy).
  assert.equal(chain.evaluate(request(ORDERS, 'GET', '/call')).allowed, false);
  assert.equal(cni.evaluate(request(ORDERS, 'GET', '/call')).allowed, false);
});

test('node inbound admits the waypoint for the HTTP rule, and refuses the caller going around it', () => {
  const m = shopWith(API_L7);
  for (const [suffix, port] of [
    ['/inbound/127.0.0.1:9081', 9081],
    ['/inbound/127.0.0.2:9082', 9082],
  ] as const) {
    const filters = listenerChains(m, suffix)[0]!.filters!;
    const np = filters.find((f) => f.name === 'trellis.networkpolicy.ingress');
    assert.ok(np, `${suffix}: network policy filter`);
    const back = roundTrip(np.typed_config);
    assert.deepEqual(Object.keys((back.rules as { policies: object }).policies), [RULE, `${RULE}/via-waypoint`]);

    const all = compileRbacFilters(filters, 'l4');
    const cni = compileRbacFilters([np], 'l4');
    assert.deepEqual(all.problems, []);
    const wp = all.evaluate(connection(WAYPOINT, port));
    assert.equal(wp.allowed, true, wp.reason);
    assert.equal(cni.evaluate(connection(WAYPOINT, port)).reason, `allowed by ${RULE}/via-waypoint`);
    // Only on the rule's port.
    assert.equal(cni.evaluate(connection(WAYPOINT, port + 1000)).allowed, false);
    // frontend directly: at L4 the HTTP rule cannot be evaluated, so it fails closed.
    assert.equal(all.evaluate(connection(FRONTEND, port)).allowed, false);
    const direct = cni.evaluate(connection(FRONTEND, port));
    assert.equal(direct.allowed, false);
  }
  // The waypoint enforces it: no L7PolicyWithoutWaypoint for it.
  assert.ok(!m.analysis.some((a) => a.name === 'L7PolicyWithoutWaypoint' && a.resource.name === 'api-l7'));
});

test('without a waypoint the HTTP rule stays fail-closed at the node, and the model says so', () => {
  // orders (no waypoint): the same kind of rule admits nobody, the waypoint identity included.
  const m = shopWith(
    API_L7.replace('name: api-l7', 'name: orders-l7')
      .replace('app: api', 'app: orders')
      .replace('port: http', 'port: "9090"'),
  );
  const warning = m.analysis.find((a) => a.name === 'L7PolicyWithoutWaypoint' && a.resource.name === 'orders-l7');
  assert.ok(warning, 'L7PolicyWithoutWaypoint for orders-l7');
  assert.match(warning.message, /WorkloadEntry\/shop\/orders/);
  const filters = listenerChains(m, '/inbound/127.0.0.2:9090')[0]!.filters!;
  const np = filters.filter(isNetworkPolicy);
  const rbac = compileRbacFilters(np, 'l4');
  const policies = (np[0]!.typed_config as { rules: { policies: object } }).rules.policies;
  assert.deepEqual(Object.keys(policies), ['CiliumNetworkPolicy/shop/orders-l7/ingress[0]']);
  for (const who of [FRONTEND, WAYPOINT]) assert.equal(rbac.evaluate(connection(who, 9090)).allowed, false);
});

test('endpoints with different network policies: the waypoint enforces every distinct set', () => {
  // api-v1 allows GET /call, api-v2 requests with x-canary: both sets apply at the waypoint (it
  // authorizes before choosing the endpoint), so a request must satisfy both.
  const m = shopWith(
    `${API_L7.replace('{ app: api }', '{ app: api, version: v1 }')}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: api-v2-header, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: api, version: v2 } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts:
        - ports: [{ port: http, protocol: TCP }]
          rules:
            http: [{ headers: ['x-canary: always'] }]
`,
  );
  const filters = waypointHttpFilters(m, 'api.shop.svc.cluster.local:8080');
  assert.equal(filters.filter((f) => f.name === 'trellis.networkpolicy.ingress').length, 2);
  const rbac = compileRbacFilters(filters, 'l7');
  assert.equal(rbac.evaluate(request(FRONTEND, 'GET', '/call')).allowed, false, 'api-v2 would not allow it');
  const canary = { 'x-canary': 'always' };
  assert.equal(rbac.evaluate(request(FRONTEND, 'GET', '/call', canary)).allowed, true);
  assert.equal(rbac.evaluate(request(FRONTEND, 'POST', '/call', canary)).allowed, false);
});

test('a match-all HTTP rule moves an L3/L4 rule to the waypoint, with the real caller', () => {
  const m = shopWith(API_L7.replace('http: [{ method: GET, path: /call }]', 'http: [{}]'));
  const rbac = compileRbacFilters(waypointHttpFilters(m, 'api.shop.svc.cluster.local:8080'), 'l7');
  assert.equal(rbac.evaluate(request(FRONTEND, 'POST', '/anything')).allowed, true);
  assert.equal(rbac.evaluate(request(ORDERS, 'GET', '/call')).allowed, false);
  const node = compileRbacFilters(listenerChains(m, '/inbound/127.0.0.1:9081')[0]!.filters!, 'l4');
  assert.equal(node.evaluate(connection(WAYPOINT, 9081)).allowed, true);
  assert.equal(node.evaluate(connection(FRONTEND, 9081)).allowed, false);
});
