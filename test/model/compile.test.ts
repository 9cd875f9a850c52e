import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { compileModel } from '../../src/model/compile.js';
import { loadDocuments } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import type { Resource } from '../../src/config/resource.js';
import type { MeshModel } from '../../src/model/mesh-model.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

function load(yaml: string): readonly Resource[] {
  const parsed = parseYamlFile('test.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const r = loadDocuments(parsed.documents);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  return r.resources;
}

function codes(model: MeshModel): string[] {
  return model.analysis.map((a) => `${a.resource.kind}/${a.resource.name} ${a.field ?? ''} ${a.code}`);
}

const shop = (): readonly Resource[] => loadPaths([join(REPO_ROOT, 'examples/shop')]).resources;

test('the shop example compiles to services with endpoints, identities, routes and per-node views', () => {
  const m = compileModel(shop());
  assert.deepEqual(m.analysis, []);
  assert.equal(m.mesh.trustDomain, 'cluster.local');
  assert.equal(m.mesh.mtls.mode, 'STRICT');

  const api = m.services.find((s) => s.id === 'Service/shop/api')!;
  assert.equal(api.hostname, 'api.shop.svc.cluster.local');
  assert.deepEqual(
    api.ports.map((p) => [p.name, p.port, p.protocol]),
    [['http', 8080, 'HTTP']],
  );
  assert.deepEqual(
    api.endpoints.map((e) => [e.workload, e.address, e.ports.http, e.node]),
    [
      ['WorkloadEntry/shop/api-v1', '127.0.0.1', 9081, 'node-a'],
      ['WorkloadEntry/shop/api-v2', '127.0.0.2', 9082, 'node-b'],
    ],
  );
  assert.deepEqual(api.identities, ['spiffe://cluster.local/ns/shop/sa/api']);
  const orders = m.services.find((s) => s.id === 'Service/shop/orders')!;
  assert.equal(orders.ports[0]!.protocol, 'TCP');

  assert.deepEqual(
    m.identities.map((i) => i.spiffeId),
    [
      'spiffe://cluster.local/ns/shop/sa/api',
      'spiffe://cluster.local/ns/shop/sa/frontend',
      'spiffe://cluster.local/ns/shop/sa/orders',
    ],
  );

  const canary = m.routes.find((r) => r.id === 'HTTPRoute/shop/api-canary')!;
  assert.deepEqual(canary.attachedTo, ['Service/shop/api']);
  assert.deepEqual(
    canary.rules[1]!.backends.map((b) => [b.service, b.weight]),
    [
      ['Service/shop/api-v1', 90],
      ['Service/shop/api-v2', 10],
    ],
  );
  const storefront = m.routes.find((r) => r.id === 'HTTPRoute/shop/storefront')!;
  assert.deepEqual(storefront.attachedTo, ['Gateway/shop/shop-gateway/http']);
  assert.deepEqual(
    storefront.parents[0]!.conditions.map((c) => [c.type, c.status, c.reason]),
    [
      ['Accepted', 'True', 'Accepted'],
      ['ResolvedRefs', 'True', 'ResolvedRefs'],
    ],
  );
  const gw = m.gateways[0]!;
  assert.equal(gw.listeners[0]!.attachedRoutes, 1);

  const nodeA = m.nodes.find((n) => n.name === 'node-a')!;
  assert.deepEqual(nodeA.workloads, ['WorkloadEntry/shop/api-v1', 'WorkloadEntry/shop/frontend']);
  assert.deepEqual(nodeA.identities, [
    'spiffe://cluster.local/ns/shop/sa/api',
    'spiffe://cluster.local/ns/shop/sa/frontend',
    'spiffe://cluster.local/ns/shop/sa/shop-gateway-trellis',
    'spiffe://cluster.local/ns/shop/sa/waypoint',
  ]);
  assert.deepEqual(nodeA.gateways, ['Gateway/shop/shop-gateway', 'Gateway/shop/waypoint']);
  const waypoint = m.gateways.find((g) => g.id === 'Gateway/shop/waypoint')!;
  assert.deepEqual(
    [waypoint.role, waypoint.node, waypoint.identity],
    ['waypoint', 'node-a', 'spiffe://cluster.local/ns/shop/sa/waypoint'],
  );
  assert.equal(m.services.find((s) => s.id === 'Service/shop/api')!.waypoint, 'Gateway/shop/waypoint');
  assert.equal(nodeA.ports.hbone, 15008);
  assert.deepEqual(nodeA.locality, { region: 'eu-west', zone: 'zone-a', subzone: '' });
  const nodeB = m.nodes.find((n) => n.name === 'node-b')!;
  assert.ok(nodeB.policies.includes('AuthorizationPolicy/shop/orders-allow-api'));
  assert.ok(!nodeA.policies.includes('AuthorizationPolicy/shop/orders-allow-api'));

  const authz = m.policies.find((p) => p.id === 'AuthorizationPolicy/shop/api-allow-frontend')!;
  assert.equal(authz.scope, 'target');
  assert.deepEqual(authz.targets, ['Service/shop/api']);
  const l4 = m.policies.find((p) => p.id === 'AuthorizationPolicy/shop/api-allow-waypoint')!;
  assert.equal(l4.scope, 'workload');
  assert.deepEqual(l4.workloads, ['WorkloadEntry/shop/api-v1', 'WorkloadEntry/shop/api-v2']);
  const pa = m.policies.find((p) => p.kind === 'PeerAuthentication')!;
  assert.equal(pa.scope, 'namespace');
  assert.equal(pa.workloads.length, 4);
});

test('compilation is deterministic: any input order gives a byte-identical model', () => {
  const resources = [...shop()];
  const a = JSON.stringify(compileModel(resources));
  for (let i = 0; i < 5; i++) {
    const shuffled = [...resources];
    for (let j = shuffled.length - 1; j > 0; j--) {
      const k = (j * 7 + i * 13) % (j + 1);
      [shuffled[j], shuffled[k]] = [shuffled[k]!, shuffled[j]!];
    }
    assert.equal(JSON.stringify(compileModel(shuffled)), a);
  }
});

test('the model is immutable', () => {
  const m = compileModel(shop());
  assert.ok(Object.isFrozen(m));
  assert.ok(Object.isFrozen(m.services[0]!.endpoints));
  assert.throws(() => {
    (m.services as unknown as unknown[]).push({});
  });
});

const GW = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: infra
spec:
  gatewayClassName: trellis
  listeners:
    - name: web
      port: 80
      protocol: HTTP
      hostname: "*.example.com"
      allowedRoutes:
        namespaces:
          from: Selector
          selector:
            matchLabels:
              shared-gateway: "true"
---
apiVersion: v1
kind: Namespace
metadata:
  name: allowed
  labels:
    shared-gateway: "true"
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: allowed
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: other
spec:
  ports: [{ name: http, port: 80 }]
`;

function routeIn(ns: string, name: string, extra: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: ${name}
  namespace: ${ns}
spec:
${extra}`;
}

test('Gateway API attachment: NotAllowedByListeners, NoMatchingListenerHostname, NoMatchingParent', () => {
  const m = compileModel(
    load(
      GW +
        routeIn(
          'allowed',
          'ok',
          '  parentRefs: [{ name: gw, namespace: infra }]\n  hostnames: [a.example.com]\n  rules: [{ backendRefs: [{ name: app, port: 80 }] }]\n',
        ) +
        routeIn(
          'other',
          'not-allowed',
          '  parentRefs: [{ name: gw, namespace: infra }]\n  rules: [{ backendRefs: [{ name: app, port: 80 }] }]\n',
        ) +
        routeIn(
          'allowed',
          'wrong-host',
          '  parentRefs: [{ name: gw, namespace: infra }]\n  hostnames: [a.example.org]\n  rules: [{ backendRefs: [{ name: app, port: 80 }] }]\n',
        ) +
        routeIn(
          'allowed',
          'no-parent',
          '  parentRefs: [{ name: gw, namespace: infra, sectionName: tls }]\n  rules: [{ backendRefs: [{ name: app, port: 80 }] }]\n',
        ),
    ),
  );
  const status = (name: string) => m.routes.find((r) => r.id.endsWith(`/${name}`))!.parents[0]!.conditions[0]!;
  assert.equal(status('ok').status, 'True');
  assert.equal(status('not-allowed').reason, 'NotAllowedByListeners');
  assert.equal(status('wrong-host').reason, 'NoMatchingListenerHostname');
  assert.equal(status('no-parent').reason, 'NoMatchingParent');
  assert.deepEqual(codes(m), [
    'HTTPRoute/no-parent spec.parentRefs[0] NoMatchingParent',
    'HTTPRoute/wrong-host spec.parentRefs[0] NoMatchingListenerHostname',
    'HTTPRoute/not-allowed spec.parentRefs[0] NotAllowedByListeners',
  ]);
  assert.equal(m.gateways[0]!.listeners[0]!.attachedRoutes, 1);
});

test('backendRefs: BackendNotFound, wrong port, InvalidKind, and RefNotPermitted until a ReferenceGrant allows it', () => {
  const routes =
    routeIn(
      'allowed',
      'r',
      `  parentRefs: [{ name: gw, namespace: infra }]
  rules:
    - backendRefs:
        - { name: missing, port: 80 }
        - { name: app, port: 81 }
        - { name: app, namespace: other, port: 80 }
        - { group: example.com, kind: Bucket, name: b }
`,
    ) + '\n';
  let m = compileModel(load(GW + routes));
  assert.deepEqual(codes(m), [
    'HTTPRoute/r spec.rules[0].backendRefs[0] BackendNotFound',
    'HTTPRoute/r spec.rules[0].backendRefs[1] BackendNotFound',
    'HTTPRoute/r spec.rules[0].backendRefs[2] RefNotPermitted',
    'HTTPRoute/r spec.rules[0].backendRefs[3] InvalidKind',
  ]);
  const grant = `---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: allow-allowed
  namespace: other
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: allowed }]
  to: [{ group: "", kind: Service }]
`;
  m = compileModel(load(GW + routes + grant));
  assert.ok(!codes(m).some((c) => c.includes('RefNotPermitted')));
  assert.equal(m.routes[0]!.parents[0]!.conditions[1]!.status, 'False');
});

test('Istio routing: unknown hosts and subsets are IST0101, subsets that select nothing are IST0173', () => {
  const m = compileModel(
    load(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: r1, namespace: prod }
spec: { address: 10.0.0.1, labels: { app: reviews, version: v1 } }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: prod }
spec:
  selector: { app: reviews }
  ports: [{ name: http, port: 9080 }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: prod }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v3, labels: { version: v3 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: prod }
spec:
  hosts: [reviews]
  http:
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: 50 }
        - { destination: { host: reviews, subset: v2 }, weight: 25 }
        - { destination: { host: ratings }, weight: 25 }
`),
  );
  assert.deepEqual(codes(m), [
    'DestinationRule/reviews spec.subsets[1] IST0173',
    'VirtualService/reviews spec.http[0].route[1].destination.subset IST0101',
    'VirtualService/reviews spec.http[0].route[2].destination.host IST0101',
  ]);
  assert.deepEqual(m.destinationRules[0]!.subsets, { v1: ['WorkloadEntry/prod/r1'], v3: [] });
  assert.deepEqual(m.virtualServices[0]!.services, ['Service/prod/reviews']);
});

test('policies bind to workloads; an L7 rule bound by selector is a warning, targetRefs to the waypointed Service clears it', () => {
  const base = `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api, namespace: prod }
spec: { address: 10.0.0.1, labels: { app: api }, serviceAccount: api }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: get-only, namespace: prod }
spec:
  selector: { matchLabels: { app: api } }
  rules: [{ to: [{ operation: { methods: [GET] } }] }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
`;
  const svc = (labels: string) => `---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: prod, labels: { ${labels} } }
spec: { selector: { app: api }, ports: [{ name: http, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: prod }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`;
  let m = compileModel(load(base + svc('team: a')));
  assert.deepEqual(codes(m), ['AuthorizationPolicy/get-only  TRL0002']);
  const mtls = m.policies.find((p) => p.kind === 'PeerAuthentication')!;
  assert.equal(mtls.scope, 'mesh');
  assert.deepEqual(mtls.workloads, ['WorkloadEntry/prod/api']);
  // Ambient: even with a waypoint, a selector-bound L7 policy is enforced by node proxies only.
  m = compileModel(load(base + svc('istio.io/use-waypoint: waypoint')));
  assert.deepEqual(codes(m), ['AuthorizationPolicy/get-only  TRL0002']);
  assert.equal(m.services[0]!.waypoint, 'Gateway/prod/waypoint');
  assert.equal(m.gateways[0]!.role, 'waypoint');
  const targeted = base.replace(
    '  selector: { matchLabels: { app: api } }',
    '  targetRefs: [{ kind: Service, group: "", name: api }]',
  );
  m = compileModel(load(targeted + svc('istio.io/use-waypoint: waypoint')));
  assert.deepEqual(codes(m), []);
  assert.deepEqual(m.policies.find((p) => p.kind === 'AuthorizationPolicy')!.targets, ['Service/prod/api']);
});

test('root namespace: an AuthorizationPolicy selector matches every namespace; a PeerAuthentication selector is ignored', () => {
  const m = compileModel(
    load(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: w, namespace: shop }
spec: { address: 10.0.0.1, labels: { app: web } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-web, namespace: istio-system }
spec:
  selector: { matchLabels: { app: web } }
  action: DENY
  rules: [{ from: [{ source: { namespaces: [other] } }] }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: web-strict, namespace: istio-system }
spec:
  selector: { matchLabels: { app: web } }
  mtls: { mode: STRICT }
`),
  );
  assert.deepEqual(m.policies.find((p) => p.kind === 'AuthorizationPolicy')!.workloads, ['WorkloadEntry/shop/w']);
  assert.deepEqual(m.policies.find((p) => p.kind === 'PeerAuthentication')!.workloads, []);
  assert.deepEqual(codes(m), ['PeerAuthentication/web-strict spec.selector TRL0007']);
});

test('Trellis Workload placement: unknown node and missing WorkloadEntry are reported', () => {
  const m = compileModel(
    load(`apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  nodes: [{ name: node-a, address: 127.0.0.1 }]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api, namespace: prod }
spec: { node: node-z, command: [node, app.js] }
`),
  );
  assert.deepEqual(codes(m), ['Workload/api metadata.name IST0101', 'Workload/api spec.node TRL0001']);
  assert.match(m.analysis[1]!.message, /declared: node-a/);
});

test('mesh defaults apply when no Mesh is given', () => {
  const m = compileModel(load('apiVersion: v1\nkind: Namespace\nmetadata: { name: a }\n'));
  assert.equal(m.mesh.trustDomain, 'cluster.local');
  assert.equal(m.mesh.mtls.mode, 'PERMISSIVE');
  assert.equal(m.mesh.certificates.workloadTTL, '24h');
  assert.deepEqual(m.nodes, []);
});

test('incremental compiles equal fresh ones across changes, and reuse unchanged results', async () => {
  const { ModelCompiler } = await import('../../src/model/compile.js');
  const base = [...shop()];
  const compiler = new ModelCompiler();
  assert.equal(JSON.stringify(compiler.compile(base)), JSON.stringify(compileModel(base)));
  const before = compiler.stats();
  // Unchanged input: everything is reused, nothing recompiled.
  const again = compiler.compile(base);
  assert.equal(compiler.stats().misses, before.misses);
  assert.equal(JSON.stringify(again), JSON.stringify(compileModel(base)));
  // Change one WorkloadEntry's labels: api-v2 leaves the api Service; the result equals a fresh compile.
  const edited = load(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api-v2, namespace: shop }
spec: { address: 127.0.0.2, labels: { app: api-next, version: v2 }, serviceAccount: api, ports: { http: 9082 } }
`)[0]!;
  const changed = base.map((r) => (r.kind === 'WorkloadEntry' && r.name === 'api-v2' ? edited : r));
  const inc = compiler.compile(changed);
  assert.equal(JSON.stringify(inc), JSON.stringify(compileModel(changed)));
  assert.deepEqual(
    inc.services.find((s) => s.id === 'Service/shop/api')!.endpoints.map((e) => e.workload),
    ['WorkloadEntry/shop/api-v1'],
  );
  // Removing a resource: the route to it loses its backend.
  const removed = changed.filter((r) => !(r.kind === 'Service' && r.name === 'api-v2'));
  const inc2 = compiler.compile(removed);
  assert.equal(JSON.stringify(inc2), JSON.stringify(compileModel(removed)));
  assert.ok(inc2.analysis.some((a) => a.code === 'BackendNotFound'));
});

test('Istio port mapping: named targetPort must exist on the WorkloadEntry; UDP ports are not served; metadata labels win', () => {
  const m = compileModel(
    load(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: w, namespace: prod, labels: { version: meta } }
spec: { address: 10.0.0.1, labels: { app: api, version: spec }, ports: { http: 9000, web: 9100 } }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: prod }
spec:
  selector: { app: api }
  ports:
    - { name: http, port: 80, targetPort: 8080 }
    - { name: metrics, port: 91, targetPort: prom }
    - { name: web, port: 81, targetPort: web }
    - { name: dns, port: 53, protocol: UDP }
`),
  );
  const svc = m.services[0]!;
  assert.deepEqual(svc.endpoints[0]!.ports, { http: 9000, web: 9100 });
  assert.equal(svc.ports.find((p) => p.name === 'dns')!.protocol, 'UDP');
  assert.equal(m.workloads[0]!.labels.version, 'meta');
});

test('MESH_EXTERNAL ServiceEntry endpoints are not mesh workloads and carry no identity', () => {
  const m = compileModel(
    load(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext-db, namespace: shop }
spec:
  hosts: [db.example.com]
  ports: [{ number: 5432, name: tcp-pg, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 203.0.113.7 }]
`),
  );
  assert.deepEqual(m.workloads, []);
  assert.deepEqual(m.identities, []);
  assert.equal(m.services[0]!.endpoints[0]!.identity, '');
});

test('CiliumClusterwideNetworkPolicy selects by the namespace label Cilium adds to every endpoint', () => {
  const m = compileModel(
    load(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: a, namespace: shop }
spec: { address: 10.0.0.1, labels: { app: a }, serviceAccount: sa-a }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: b, namespace: other }
spec: { address: 10.0.0.2, labels: { app: b } }
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: { name: shop-only }
spec:
  endpointSelector: { matchLabels: { k8s:io.kubernetes.pod.namespace: shop } }
  ingress: [{ fromEntities: [cluster] }]
`),
  );
  assert.deepEqual(m.policies[0]!.workloads, ['WorkloadEntry/shop/a']);
});

test('VirtualServices exported to their own namespace only do not conflict (IST0109 respects exportTo)', () => {
  const vs = (ns: string) => `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: override, namespace: ${ns} }
spec:
  hosts: [api.prod.svc.cluster.local]
  exportTo: ['.']
  http: [{ route: [{ destination: { host: api.prod.svc.cluster.local } }] }]
`;
  const svc = `apiVersion: v1
kind: Service
metadata: { name: api, namespace: prod }
spec: { ports: [{ name: http, port: 80 }] }
`;
  assert.deepEqual(codes(compileModel(load(svc + vs('team-a') + vs('team-b')))), []);
  const global = vs('team-c').replace("  exportTo: ['.']\n", '');
  assert.deepEqual(codes(compileModel(load(svc + vs('team-a') + global))), [
    'VirtualService/override spec.hosts[0] IST0109',
  ]);
});

test('the model does not depend on the order of duplicate resources', () => {
  const a = load(
    'apiVersion: v1\nkind: Service\nmetadata: { name: api, namespace: prod }\nspec: { ports: [{ name: http, port: 80 }] }\n',
  );
  const b = parseYamlFile(
    'other.yaml',
    'apiVersion: v1\nkind: Service\nmetadata: { name: api, namespace: prod }\nspec: { ports: [{ name: grpc, port: 90 }] }\n',
  );
  const dup = loadDocuments(b.documents).resources;
  const one = JSON.stringify(compileModel([...a, ...dup]));
  assert.equal(JSON.stringify(compileModel([...dup, ...a])), one);
  assert.equal(compileModel([...a, ...dup]).services.length, 1);
});
