// Server Listeners for xDS-enabled gRPC servers, mTLS from the Mesh / PeerAuthentication,
// and AuthorizationPolicy -> RBAC: shapes grpc-js-xds accepts, round-tripped through the Envoy protos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import type { Resource } from '../../src/config/resource.js';
import { compileModel } from '../../src/model/compile.js';
import { TYPE_URLS, type XdsResource } from '../../src/xds/snapshot.js';
import { serverListenerName } from '../../src/xds/translate/inbound.js';
import { clusterName, proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { policySpecsFromResources } from '../../src/xds/translate/security.js';
import { REPO_ROOT } from '../helpers/run-cli.js';
import { roundTrip as roundTripSecure } from '../helpers/envoy-protos.js';

function load(yaml: string): readonly Resource[] {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-inbound-'));
  try {
    writeFileSync(join(dir, 'mesh.yaml'), yaml);
    const loaded = loadPaths([dir]);
    const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
    assert.deepEqual(errors, []);
    return loaded.resources;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const base = (mode: string, extra = '') => `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec: { trustDomain: cluster.local, mtls: { mode: ${mode} } }
---
apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-1, namespace: demo }
spec: { address: 127.0.0.1, serviceAccount: echo, labels: { app: echo }, ports: { grpc: 19100 } }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec:
  selector: { app: echo }
  ports: [{ name: grpc, port: 8080, targetPort: grpc }]
${extra}`;

function snapshotOf(yaml: string, withSpecs = true) {
  const resources = load(yaml);
  const model = compileModel(resources);
  // withSpecs false: the translation is handed no policy specs at all (the fail-closed path);
  // by default it reads them from the model.
  return proxylessSnapshot(
    model,
    withSpecs
      ? { policies: policySpecsFromResources(resources) }
      : { policies: { authorization: new Map(), peerAuthentication: new Map() } },
  );
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function listener(snap: ReturnType<typeof proxylessSnapshot>): Obj {
  const l = snap.resources(TYPE_URLS.listener).get(serverListenerName('127.0.0.1', 19100));
  assert.ok(l, 'server listener exists');
  return l.body as Obj;
}
const hcm = (l: Obj): Obj => l.filter_chains[0].filters[0].typed_config as Obj;
const filterNames = (l: Obj): string[] => (hcm(l).http_filters as Obj[]).map((f) => f.name as string);

test('a server Listener per workload address:port, in the shape grpc-js-xds serves', () => {
  const snap = snapshotOf(base('PERMISSIVE'));
  assert.deepEqual(snap.consistent(), []);
  const l = listener(snap);
  assert.equal(l.name, 'xds.istio.io/grpc/lds/inbound/127.0.0.1:19100');
  assert.deepEqual(l.address, { socket_address: { address: '127.0.0.1', port_value: 19100 } });
  assert.equal(l.filter_chains.length, 1);
  const fc = l.filter_chains[0] as Obj;
  assert.ok(!('filter_chain_match' in fc), 'no filter_chain_match: an empty one never matches in grpc-js');
  assert.ok(!('listener_filters' in l) && !('use_original_dst' in l));
  assert.equal(fc.filters.length, 1);
  assert.ok(!('transport_socket' in fc), 'PERMISSIVE: plaintext');
  assert.deepEqual(hcm(l).route_config.virtual_hosts[0].domains, ['*']);
  assert.deepEqual(hcm(l).route_config.virtual_hosts[0].routes, [{ match: { prefix: '' }, non_forwarding_action: {} }]);
  assert.deepEqual(filterNames(l), ['envoy.filters.http.router']);
  roundTripSecure(l);
  // The client side is unchanged and plaintext.
  const c = snap.resources(TYPE_URLS.cluster).get(clusterName('echo.demo.svc.cluster.local', 8080))!.body as Obj;
  assert.ok(!('transport_socket' in c));
});

test('STRICT mTLS: DownstreamTlsContext on the server, UpstreamTlsContext with SPIFFE SANs on the cluster', () => {
  const snap = snapshotOf(base('STRICT'));
  const ts = listener(snap).filter_chains[0].transport_socket as Obj;
  assert.equal(ts.name, 'envoy.transport_sockets.tls');
  assert.deepEqual(ts.typed_config, {
    '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
    common_tls_context: {
      tls_certificate_provider_instance: { instance_name: 'default' },
      validation_context: { ca_certificate_provider_instance: { instance_name: 'default' } },
    },
    require_client_certificate: { value: true },
  });
  const c = snap.resources(TYPE_URLS.cluster).get(clusterName('echo.demo.svc.cluster.local', 8080))!.body as Obj;
  const up = c.transport_socket.typed_config as Obj;
  assert.equal(up['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
  assert.deepEqual(up.common_tls_context.tls_certificate_provider_instance, { instance_name: 'default' });
  const vc = up.common_tls_context.validation_context as Obj;
  assert.deepEqual(vc.ca_certificate_provider_instance, { instance_name: 'default' });
  assert.deepEqual(vc.match_subject_alt_names, [{ exact: 'spiffe://cluster.local/ns/demo/sa/echo' }]);
  assert.deepEqual(vc.match_typed_subject_alt_names, [
    { san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/demo/sa/echo' } },
  ]);
  for (const r of [listener(snap), c]) roundTripSecure(r);
});

test('PeerAuthentication: workload and port level override the Mesh; a bound spec the translation lacks is STRICT', () => {
  const pa = (mode: string, port = '') => `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: echo, namespace: demo }
spec:
  selector: { matchLabels: { app: echo } }
  mtls: { mode: ${mode} }
${port ? `  portLevelMtls: { "19100": { mode: ${port} } }` : ''}
`;
  const tls = (snap: ReturnType<typeof proxylessSnapshot>) => 'transport_socket' in listener(snap).filter_chains[0];
  assert.equal(tls(snapshotOf(base('PERMISSIVE', pa('STRICT')))), true);
  assert.equal(tls(snapshotOf(base('STRICT', pa('DISABLE')))), false);
  assert.equal(tls(snapshotOf(base('STRICT', pa('UNSET')))), true, 'UNSET inherits the Mesh mode');
  assert.equal(tls(snapshotOf(base('STRICT', pa('STRICT', 'PERMISSIVE')))), false, 'port level wins');
  const ns = `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: demo }
spec: { mtls: { mode: STRICT } }
`;
  assert.equal(tls(snapshotOf(base('PERMISSIVE', ns))), true, 'namespace-wide');
  assert.equal(tls(snapshotOf(base('PERMISSIVE', pa('DISABLE')), false)), true, 'no specs: fail closed');
  // Client and server agree.
  const snap = snapshotOf(base('STRICT', pa('DISABLE')));
  const c = snap.resources(TYPE_URLS.cluster).get(clusterName('echo.demo.svc.cluster.local', 8080))!.body as Obj;
  assert.ok(!('transport_socket' in c));
});

const authz = (name: string, body: string) => `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: demo }
spec:
${body}
`;

function rbac(l: Obj, name: string): Obj {
  return (hcm(l).http_filters as Obj[]).find((f) => f.name === name)!.typed_config.rules as Obj;
}

test('AuthorizationPolicy -> RBAC: DENY before ALLOW, principals, namespaces, gRPC paths, allow-nothing', () => {
  const yaml = base(
    'STRICT',
    authz(
      'deny-bad',
      `  selector: { matchLabels: { app: echo } }
  action: DENY
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/bad"] } }] }]`,
    ) +
      authz(
        'allow-ns',
        `  action: ALLOW
  rules:
    - from: [{ source: { namespaces: ["demo"] } }]
      to: [{ operation: { paths: ["/demo.Echo/*"], methods: ["POST"] } }]`,
      ),
  );
  const l = listener(snapshotOf(yaml));
  assert.deepEqual(filterNames(l), [
    'envoy.filters.http.rbac.deny',
    'envoy.filters.http.rbac.allow',
    'envoy.filters.http.router',
  ]);
  assert.deepEqual(rbac(l, 'envoy.filters.http.rbac.deny'), {
    action: 'DENY',
    policies: {
      'ns[demo]-policy[deny-bad]-rule[0]': {
        permissions: [{ any: true }],
        principals: [{ authenticated: { principal_name: { exact: 'spiffe://cluster.local/ns/demo/sa/bad' } } }],
      },
    },
  });
  assert.deepEqual(rbac(l, 'envoy.filters.http.rbac.allow'), {
    action: 'ALLOW',
    policies: {
      'ns[demo]-policy[allow-ns]-rule[0]': {
        permissions: [
          {
            and_rules: {
              rules: [
                { url_path: { path: { prefix: '/demo.Echo/' } } },
                { header: { name: ':method', string_match: { exact: 'POST' } } },
              ],
            },
          },
        ],
        principals: [
          { authenticated: { principal_name: { safe_regex: { regex: 'spiffe://[^/]+/ns/demo/sa/[^/]+' } } } },
        ],
      },
    },
  });
  roundTripSecure(l);

  // Allow-nothing: an ALLOW policy without rules.
  const none = listener(snapshotOf(base('STRICT', authz('allow-nothing', '  action: ALLOW'))));
  assert.deepEqual(rbac(none, 'envoy.filters.http.rbac.allow'), { action: 'ALLOW', policies: {} });
  roundTripSecure(none);

  // A policy elsewhere does not apply; a bound policy whose spec is unknown denies everything.
  const other = base('STRICT', authz('elsewhere', '  selector: { matchLabels: { app: other } }\n  action: ALLOW'));
  assert.deepEqual(filterNames(listener(snapshotOf(other))), ['envoy.filters.http.router']);
  const unknown = listener(snapshotOf(yaml, false));
  assert.deepEqual(Object.keys(rbac(unknown, 'envoy.filters.http.rbac.deny').policies as Obj).sort(), [
    'ns[demo]-policy[allow-ns]-unknown',
    'ns[demo]-policy[deny-bad]-unknown',
  ]);
});

test('the whole shop example, policies included, round-trips through the Envoy protos (TLS and RBAC too)', () => {
  const resources = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources;
  const snap = proxylessSnapshot(compileModel(resources), { policies: policySpecsFromResources(resources) });
  assert.deepEqual(snap.consistent(), []);
  let servers = 0;
  for (const t of Object.values(TYPE_URLS)) {
    for (const r of snap.resources(t).values() as Iterable<XdsResource>) {
      roundTripSecure(r.body);
      if (r.name.startsWith('xds.istio.io/grpc/lds/inbound/')) servers++;
    }
  }
  assert.ok(servers >= 2, `server listeners: ${servers}`);
  // Deterministic.
  const again = proxylessSnapshot(compileModel(resources), { policies: policySpecsFromResources(resources) });
  assert.equal(again.version(TYPE_URLS.listener), snap.version(TYPE_URLS.listener));
});
