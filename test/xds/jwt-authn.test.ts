// RequestAuthentication -> envoy.filters.http.jwt_authn: which policies a waypoint / gateway
// enforces, the provider fields (Istio's translation), the requirement shape (a missing token
// passes, an invalid one fails), the filter's place before RBAC, and that the listener encodes
// with the real Envoy protos and decodes into what the L7 filter compiles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDocuments } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import type { Resource } from '../../src/config/resource.js';
import { compileModel } from '../../src/model/compile.js';
import { TYPE_URLS, type Snapshot } from '../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { jwtAuthnFilter, JWT_AUTHN_FILTER, JWT_AUTHN_TYPE } from '../../src/xds/translate/jwt-authn.js';
import { policySpecsFromResources } from '../../src/xds/translate/security.js';
import { encodeResourceField, loadXdsProtos } from '../../src/xds/server/protos.js';
import { compileJwtAuthn } from '../../src/proxy/l7/filters/jwt-authn.js';
import { JwksCache } from '../../src/proxy/l7/jwks.js';

type Obj = Record<string, unknown>;

const JWKS = JSON.stringify({
  keys: [
    {
      kty: 'EC',
      crv: 'P-256',
      kid: 'k1',
      x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
      y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
    },
  ],
});

const BASE = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  trustDomain: cluster.local
  nodes: [{ name: n1, address: 127.0.0.1 }]
---
apiVersion: v1
kind: Namespace
metadata: { name: prod }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api, namespace: prod }
spec: { address: 10.0.0.1, labels: { app: api }, serviceAccount: api, ports: { http: 8080 } }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: prod, labels: { istio.io/use-waypoint: waypoint } }
spec: { selector: { app: api }, ports: [{ name: http, port: 80, targetPort: http }] }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: web, namespace: prod }
spec: { address: 10.0.0.2, labels: { app: web }, serviceAccount: web, ports: { http: 8080 } }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: prod, labels: { istio.io/use-waypoint: waypoint } }
spec: { selector: { app: web }, ports: [{ name: http, port: 80, targetPort: http }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: prod }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: ingress, namespace: prod }
spec:
  gatewayClassName: trellis
  listeners: [{ name: http, port: 8000, protocol: HTTP }]
`;

function load(yaml: string): readonly Resource[] {
  const parsed = parseYamlFile('jwt.yaml', BASE + yaml);
  assert.deepEqual(parsed.problems, []);
  const r = loadDocuments(parsed.documents);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error').map((d) => d.message),
    [],
  );
  return r.resources;
}

function snapshot(yaml: string, fromResources = false): Snapshot {
  const resources = load(yaml);
  const model = compileModel(resources);
  return proxylessSnapshot(model, fromResources ? { policies: policySpecsFromResources(resources) } : {});
}

const ra = (name: string, targeting: string, rules: string) => `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: ${name}, namespace: prod }
spec:
${targeting}
  jwtRules:
${rules}`;

/** The HCM http_filters of one filter chain of a listener. */
function httpFilters(snap: Snapshot, listener: string, chain?: string): Obj[] {
  const l = snap.resources(TYPE_URLS.listener).get(listener);
  assert.ok(l, `listener ${listener}`);
  const chains = (l.body as { filter_chains: { name?: string; filters: { typed_config: Obj }[] }[] }).filter_chains;
  const c = chain ? chains.find((x) => x.name === chain) : chains[0];
  assert.ok(c, `chain ${chain ?? '0'} of ${listener}: ${chains.map((x) => x.name).join(', ')}`);
  return c.filters[0]!.typed_config.http_filters as Obj[];
}

const WAYPOINT = 'trellis/n1/waypoint/prod/waypoint';
const API_CHAIN = 'api.prod.svc.cluster.local:80';
const WEB_CHAIN = 'web.prod.svc.cluster.local:80';

test('a RequestAuthentication targeting a Service: jwt_authn on that service’s waypoint chain only, before RBAC', () => {
  const snap = snapshot(
    ra(
      'jwt',
      '  targetRefs: [{ group: "", kind: Service, name: api }]',
      `    - issuer: https://issuer.example\n      jwks: '${JWKS}'\n`,
    ) +
      `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: need-jwt, namespace: prod }
spec:
  targetRefs: [{ group: "", kind: Service, name: api }]
  rules: [{ from: [{ source: { namespaces: [prod] } }] }]
`,
  );
  const api = httpFilters(snap, WAYPOINT, API_CHAIN).map((f) => f.name);
  assert.equal(api[0], JWT_AUTHN_FILTER);
  assert.ok(api.indexOf('envoy.filters.http.router') > api.indexOf(JWT_AUTHN_FILTER));
  assert.ok(
    api.findIndex((n) => String(n).startsWith('envoy.filters.http.rbac')) > 0,
    `RBAC after jwt_authn: ${api.join(', ')}`,
  );
  assert.ok(!httpFilters(snap, WAYPOINT, WEB_CHAIN).some((f) => f.name === JWT_AUTHN_FILTER));
});

test('a selector RequestAuthentication applies at the waypoint of the services of the workloads it selects', () => {
  const snap = snapshot(
    ra(
      'jwt',
      '  selector: { matchLabels: { app: web } }',
      `    - issuer: https://issuer.example\n      jwks: '${JWKS}'\n`,
    ),
  );
  assert.ok(httpFilters(snap, WAYPOINT, WEB_CHAIN).some((f) => f.name === JWT_AUTHN_FILTER));
  assert.ok(!httpFilters(snap, WAYPOINT, API_CHAIN).some((f) => f.name === JWT_AUTHN_FILTER));
});

test('a RequestAuthentication targeting a Gateway: jwt_authn on the gateway HCM; specs from resources work too', () => {
  const yaml = ra(
    'gw-jwt',
    '  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: ingress }]',
    `    - issuer: https://issuer.example\n      jwks: '${JWKS}'\n`,
  );
  for (const fromResources of [false, true]) {
    const names = httpFilters(snapshot(yaml, fromResources), 'trellis/n1/gateway/prod/ingress/8000').map((f) => f.name);
    assert.deepEqual(names, [
      JWT_AUTHN_FILTER,
      'envoy.filters.http.cors',
      'envoy.filters.http.fault',
      'envoy.filters.http.router',
    ]);
  }
  // Not on the waypoint.
  assert.ok(!httpFilters(snapshot(yaml), WAYPOINT, API_CHAIN).some((f) => f.name === JWT_AUTHN_FILTER));
});

test('provider fields: issuer, audiences, inline and remote JWKS, locations, forward, payload and claim headers', () => {
  const f = jwtAuthnFilter([
    {
      id: 'RequestAuthentication/prod/a',
      spec: {
        jwtRules: [
          {
            issuer: 'https://b.example',
            audiences: ['api', 'web'],
            jwksUri: 'https://keys.example:8443/jwks.json',
            timeout: '2s',
            fromHeaders: [{ name: 'x-jwt', prefix: 'Token ' }],
            fromParams: ['tok'],
            fromCookies: ['session'],
            forwardOriginalToken: true,
            outputPayloadToHeader: 'x-jwt-payload',
            outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }],
          },
          { issuer: 'https://a.example', jwks: JWKS, forwardOriginalToken: false },
        ],
      },
    },
  ]);
  assert.ok(f);
  assert.equal(f.name, JWT_AUTHN_FILTER);
  const cfg = f.typed_config as Obj;
  assert.equal(cfg['@type'], JWT_AUTHN_TYPE);
  assert.equal(cfg.bypass_cors_preflight, true);
  // Sorted by issuer (Istio): a.example is origins-0.
  assert.deepEqual((cfg.providers as Obj)['origins-0'], {
    issuer: 'https://a.example',
    local_jwks: { inline_string: JWKS },
    payload_in_metadata: 'https://a.example',
  });
  assert.deepEqual((cfg.providers as Obj)['origins-1'], {
    issuer: 'https://b.example',
    audiences: ['api', 'web'],
    remote_jwks: {
      http_uri: {
        uri: 'https://keys.example:8443/jwks.json',
        cluster: 'jwks|keys.example:8443',
        timeout: { seconds: 2, nanos: 0 },
      },
      cache_duration: { seconds: 300, nanos: 0 },
    },
    from_headers: [{ name: 'x-jwt', value_prefix: 'Token ' }],
    from_params: ['tok'],
    from_cookies: ['session'],
    forward: true,
    forward_payload_header: 'x-jwt-payload',
    claim_to_headers: [{ header_name: 'x-sub', claim_name: 'sub' }],
    payload_in_metadata: 'https://b.example',
  });
  // Several providers: any one verifies, or every token present is valid (missing ones allowed).
  const any = (n: string) => ({ requires_any: { requirements: [{ provider_name: n }, { allow_missing: {} }] } });
  assert.deepEqual(cfg.rules, [
    {
      match: { prefix: '/' },
      requires: {
        requires_any: {
          requirements: [
            { provider_name: 'origins-0' },
            { provider_name: 'origins-1' },
            { requires_all: { requirements: [any('origins-0'), any('origins-1')] } },
          ],
        },
      },
    },
  ]);
});

test('one provider: requires_any {provider, allow_missing}; no JWT rule, no filter', () => {
  const f = jwtAuthnFilter([
    {
      id: 'RequestAuthentication/prod/a',
      spec: { jwtRules: [{ issuer: 'i', jwks: JWKS, forwardOriginalToken: false }] },
    },
  ]);
  assert.deepEqual((f!.typed_config as Obj).rules, [
    {
      match: { prefix: '/' },
      requires: { requires_any: { requirements: [{ provider_name: 'origins-0' }, { allow_missing: {} }] } },
    },
  ]);
  // Default token locations are Envoy's (Authorization: Bearer, access_token), left implicit as Istio does.
  const p0 = ((f!.typed_config as Obj).providers as Record<string, Obj>)['origins-0']!;
  assert.ok(!('from_headers' in p0) && !('from_params' in p0));
  assert.equal(jwtAuthnFilter([{ id: 'RequestAuthentication/prod/a', spec: {} }]), undefined);
  assert.equal(jwtAuthnFilter([]), undefined);
});

test('the waypoint listener encodes with the Envoy protos, and the decoded filter compiles in the L7 engine', () => {
  const snap = snapshot(
    ra(
      'jwt',
      '  targetRefs: [{ group: "", kind: Service, name: api }]',
      `    - issuer: https://issuer.example
      jwks: '${JWKS}'
    - issuer: https://other.example
      jwksUri: https://keys.example/jwks
      outputPayloadToHeader: x-payload
`,
    ),
  );
  const l = snap.resources(TYPE_URLS.listener).get(WAYPOINT)!;
  assert.ok(encodeResourceField(l).length > 0);
  const protos = loadXdsProtos();
  const jwt = httpFilters(snap, WAYPOINT, API_CHAIN)[0]!;
  const { '@type': _t, ...fields } = jwt.typed_config as Obj;
  const bytes = protos.serialize('envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', fields);
  const decoded = protos.deserialize('envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', bytes);
  const providers = decoded.providers as Record<string, Obj>;
  assert.equal(providers['origins-1']!.forward_payload_header, 'x-payload');
  const cache = new JwksCache();
  try {
    const compiled = compileJwtAuthn(decoded, cache);
    assert.equal(compiled.providers.length, 2);
    assert.equal(compiled.rules.length, 1);
    assert.ok(compiled.bypassCorsPreflight);
    // The remote set is registered with Istio's cache duration (decoded durations are {seconds: "300"}).
    assert.deepEqual(
      cache.sets.map((s) => [s.options.uri, s.options.cacheDurationMs, s.options.timeoutMs]),
      [['https://keys.example/jwks', 300_000, 5000]],
    );
  } finally {
    cache.close();
  }
});
