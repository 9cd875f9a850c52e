// Route translation, table-driven: Gateway API precedence (every tie-break of the HTTPRoute and
// GRPCRoute specs), each HTTPRoute / GRPCRoute filter, and each VirtualService HTTP feature, as
// YAML in -> Envoy v3 Route fields out. Every route configuration and listener is round-tripped
// through the real Envoy protos (no unknown field, no type error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { loadDocuments } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import { TYPE_URLS, type Snapshot } from '../../src/xds/snapshot.js';
import { clusterName, proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { effectiveHostnames } from '../../src/xds/translate/routes.js';
import { loadXdsProtos } from '../../src/xds/server/protos.js';
import { roundTrip } from '../helpers/envoy-protos.js';

type Obj = Record<string, unknown>;
interface VHost {
  name: string;
  domains: string[];
  routes: Obj[];
}

const svc = (name: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: ${name} }, ports: { http: ${port} } }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { app: ${name} }
  ports: [{ name: http, port: 8080, targetPort: http }]
`;

const BASE = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  trustDomain: cluster.local
  nodes: [{ name: n1, address: 127.0.0.1 }]
---
apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: v1
kind: Namespace
metadata: { name: aaa }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: demo }
spec:
  gatewayClassName: trellis
  listeners:
    - { name: http, port: 8000, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
    - name: wild
      port: 8001
      protocol: HTTP
      hostname: '*.example.com'
      allowedRoutes: { namespaces: { from: All } }
${svc('a', 9001)}${svc('b', 9002)}${svc('c', 9003)}${svc('d', 9004)}`;

export function snapshotOf(yaml: string): Snapshot {
  const parsed = parseYamlFile('routes.yaml', BASE + yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error').map((d) => d.message),
    [],
  );
  const snap = proxylessSnapshot(compileModel(loaded.resources));
  assert.deepEqual(snap.consistent(), []);
  return snap;
}

/** The virtual hosts of a route configuration, after an Envoy proto round trip. */
function vhosts(snap: Snapshot, name: string): VHost[] {
  const r = snap.resources(TYPE_URLS.route).get(name);
  assert.ok(r, `route configuration ${name}`);
  roundTrip(r.body);
  return (r.body as { virtual_hosts: VHost[] }).virtual_hosts;
}

const GW = 'trellis/gateway/demo/gw/8000';
const cl = (s: string) => clusterName(`${s}.demo.svc.cluster.local`, 8080);

function httpRoute(name: string, spec: string, opts: { ns?: string; created?: string; section?: string } = {}) {
  const meta = [`name: ${name}`, `namespace: ${opts.ns ?? 'demo'}`];
  if (opts.created) meta.push(`creationTimestamp: "${opts.created}"`);
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { ${meta.join(', ')} }
spec:
  parentRefs: [{ name: gw, namespace: demo, sectionName: ${opts.section ?? 'http'} }]
${spec}`;
}

// ---------------------------------------------------------------------------------------------
// Precedence

const precedenceCases: { name: string; yaml: string; order: string[] }[] = [
  {
    name: 'Exact path beats a longer PathPrefix',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ path: { type: PathPrefix, value: /foo/bar/baz } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: Exact, value: /foo } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/1/0', 'demo/r/0/0'],
  },
  {
    name: 'the longest PathPrefix wins',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ path: { type: PathPrefix, value: /foo } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /foo/bar } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/1/0', 'demo/r/0/0'],
  },
  {
    name: 'a method match beats header matches',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ headers: [{ name: x-a, value: '1' }, { name: x-b, value: '2' }] }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ method: GET }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/1/0', 'demo/r/0/0'],
  },
  {
    name: 'the most header matches wins',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ headers: [{ name: x-a, value: '1' }] }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ headers: [{ name: x-a, value: '1' }, { name: x-b, value: '2' }] }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/1/0', 'demo/r/0/0'],
  },
  {
    name: 'the most query param matches wins',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ headers: [{ name: x-a, value: '1' }] }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ headers: [{ name: x-a, value: '1' }], queryParams: [{ name: q, value: v }] }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/1/0', 'demo/r/0/0'],
  },
  {
    name: 'across routes, a tie goes to the oldest creationTimestamp',
    yaml:
      httpRoute(
        'alpha',
        `  rules:
    - backendRefs: [{ name: a, port: 8080 }]
`,
        { created: '2024-05-01T00:00:00Z' },
      ) +
      httpRoute(
        'zeta',
        `  rules:
    - backendRefs: [{ name: b, port: 8080 }]
`,
        { created: '2023-01-01T00:00:00Z' },
      ),
    order: ['demo/zeta/0/0', 'demo/alpha/0/0'],
  },
  {
    name: 'same creationTimestamp: alphabetical by namespace/name',
    yaml:
      httpRoute(
        'b-route',
        `  rules:
    - backendRefs: [{ name: a, port: 8080 }]
`,
        { created: '2024-05-01T00:00:00Z' },
      ) +
      httpRoute(
        'a-route',
        `  rules:
    - backendRefs: [{ name: b, port: 8080 }]
`,
        { created: '2024-05-01T00:00:00Z' },
      ) +
      httpRoute(
        'z-route',
        `  rules:
    - backendRefs: [{ name: c, port: 8080 }]
`,
        { created: '2024-05-01T00:00:00Z', ns: 'aaa' },
      ),
    order: ['aaa/z-route/0/0', 'demo/a-route/0/0', 'demo/b-route/0/0'],
  },
  {
    name: 'precedence keys beat age: a newer route with a longer prefix comes first',
    yaml:
      httpRoute(
        'old',
        `  rules:
    - matches: [{ path: { type: PathPrefix, value: /a } }]
      backendRefs: [{ name: a, port: 8080 }]
`,
        { created: '2020-01-01T00:00:00Z' },
      ) +
      httpRoute(
        'new',
        `  rules:
    - matches: [{ path: { type: PathPrefix, value: /a/b } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
        { created: '2024-01-01T00:00:00Z' },
      ),
    order: ['demo/new/0/0', 'demo/old/0/0'],
  },
  {
    name: 'within a route, a tie goes to the first rule',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ path: { type: PathPrefix, value: /x } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /y } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/0/0', 'demo/r/1/0'],
  },
  {
    name: 'RegularExpression paths rank after every PathPrefix (implementation-specific)',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ path: { type: RegularExpression, value: '/re/.*' } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/1/0', 'demo/r/0/0'],
  },
  {
    name: 'matches of one rule are ranked on their own',
    yaml: httpRoute(
      'r',
      `  rules:
    - matches: [{ path: { type: PathPrefix, value: /a } }, { path: { type: Exact, value: /e } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /abc } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
    ),
    order: ['demo/r/0/1', 'demo/r/1/0', 'demo/r/0/0'],
  },
];

for (const c of precedenceCases) {
  test(`HTTPRoute precedence: ${c.name}`, () => {
    const vh = vhosts(snapshotOf(c.yaml), GW);
    assert.equal(vh.length, 1);
    assert.deepEqual(
      vh[0]!.routes.map((r) => r.name),
      c.order,
    );
  });
}

const grpcRoute = (name: string, rules: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: ${name}, namespace: demo }
spec:
  parentRefs: [{ name: gw, sectionName: http }]
  rules:
${rules}`;

test('GRPCRoute precedence: service characters, then method characters, then headers, then rule order', () => {
  const vh = vhosts(
    snapshotOf(
      grpcRoute(
        'g',
        `    - matches: [{ method: { service: pkg.Svc } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ method: { service: pkg.Svc, method: Get } }]
      backendRefs: [{ name: b, port: 8080 }]
    - matches: [{ method: { service: pkg.LongerSvc } }]
      backendRefs: [{ name: c, port: 8080 }]
    - matches: [{ method: { service: pkg.Svc }, headers: [{ name: x-a, value: '1' }] }]
      backendRefs: [{ name: d, port: 8080 }]
    - matches: [{ method: { service: pkg.Svc, method: Get } }]
      backendRefs: [{ name: d, port: 8080 }]
`,
      ),
    ),
    GW,
  );
  const routes = vh[0]!.routes;
  assert.deepEqual(
    routes.map((r) => r.name),
    ['demo/g/2/0', 'demo/g/1/0', 'demo/g/4/0', 'demo/g/3/0', 'demo/g/0/0'],
  );
  assert.deepEqual(routes[1]!.match, { path: '/pkg.Svc/Get' });
  assert.deepEqual(routes[0]!.match, { prefix: '/pkg.LongerSvc/' });
  assert.deepEqual(routes[3]!.match, {
    prefix: '/pkg.Svc/',
    headers: [{ name: 'x-a', string_match: { exact: '1' } }],
  });
});

test('GRPCRoute matches: regex service/method, method only, none', () => {
  const vh = vhosts(
    snapshotOf(
      grpcRoute(
        'g',
        `    - matches: [{ method: { type: RegularExpression, service: 'pkg\\.v[0-9]+\\.Svc', method: 'Get.*' } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ method: { method: Watch } }]
      backendRefs: [{ name: b, port: 8080 }]
    - backendRefs: [{ name: c, port: 8080 }]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: X-Via, value: gw }] }
`,
      ),
    ),
    GW,
  );
  const byName = new Map(vh[0]!.routes.map((r) => [r.name, r]));
  assert.deepEqual(byName.get('demo/g/0/0')!.match, { safe_regex: { regex: '/pkg\\.v[0-9]+\\.Svc/Get.*' } });
  assert.deepEqual(byName.get('demo/g/1/0')!.match, { safe_regex: { regex: '/[^/]+/Watch' } });
  assert.deepEqual(byName.get('demo/g/2/0')!.match, { prefix: '/' });
  assert.deepEqual(byName.get('demo/g/2/0')!.request_headers_to_add, [
    { header: { key: 'x-via', value: 'gw' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
  ]);
});

// ---------------------------------------------------------------------------------------------
// Hostnames

test('hostnames: route hostnames intersected with the listener hostname', () => {
  assert.deepEqual(effectiveHostnames([], undefined), ['*']);
  assert.deepEqual(effectiveHostnames([], '*.example.com'), ['*.example.com']);
  assert.deepEqual(effectiveHostnames(['foo.example.com', 'other.org'], '*.example.com'), ['foo.example.com']);
  assert.deepEqual(effectiveHostnames(['*.example.com'], 'foo.example.com'), ['foo.example.com']);
  assert.deepEqual(effectiveHostnames(['*.a.example.com'], '*.example.com'), ['*.a.example.com']);
  assert.deepEqual(effectiveHostnames(['*'], undefined), ['*']);
  assert.deepEqual(effectiveHostnames(['example.com'], '*.example.com'), []);
  const snap = snapshotOf(
    httpRoute(
      'h',
      `  hostnames: [foo.example.com, other.org, '*.example.com']
  rules:
    - backendRefs: [{ name: a, port: 8080 }]
`,
      { section: 'wild' },
    ),
  );
  assert.deepEqual(
    vhosts(snap, 'trellis/gateway/demo/gw/8001').map((v) => v.domains),
    [['*.example.com'], ['foo.example.com']],
  );
});

// ---------------------------------------------------------------------------------------------
// HTTPRoute matches and filters: one row each, YAML rule -> Envoy route fields

const filterCases: { name: string; rule: string; expect: Obj }[] = [
  {
    name: 'PathPrefix -> path_separated_prefix (trailing "/" dropped), header/query/method matches',
    rule: `    - matches:
        - path: { type: PathPrefix, value: /api/ }
          method: POST
          headers: [{ name: X-Env, value: prod }, { type: RegularExpression, name: x-id, value: '[0-9]+' }]
          queryParams: [{ name: q, value: v }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      match: {
        path_separated_prefix: '/api',
        headers: [
          { name: 'x-env', string_match: { exact: 'prod' } },
          { name: 'x-id', string_match: { safe_regex: { regex: '[0-9]+' } } },
          { name: ':method', string_match: { exact: 'POST' } },
        ],
        query_parameters: [{ name: 'q', string_match: { exact: 'v' } }],
      },
      route: { cluster: cl('a') },
    },
  },
  {
    name: 'Exact and RegularExpression paths',
    rule: `    - matches: [{ path: { type: Exact, value: /x } }, { path: { type: RegularExpression, value: '/r/[a-z]+' } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: { match: { path: '/x' } },
  },
  {
    name: 'RequestHeaderModifier',
    rule: `    - filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{ name: X-Set, value: s }]
            add: [{ name: X-Add, value: a }]
            remove: [X-Gone]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      request_headers_to_add: [
        { header: { key: 'x-set', value: 's' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
        { header: { key: 'x-add', value: 'a' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
      ],
      request_headers_to_remove: ['x-gone'],
    },
  },
  {
    name: 'ResponseHeaderModifier',
    rule: `    - filters:
        - type: ResponseHeaderModifier
          responseHeaderModifier: { set: [{ name: X-Resp, value: r }], remove: [Server] }
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      response_headers_to_add: [{ header: { key: 'x-resp', value: 'r' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
      response_headers_to_remove: ['server'],
    },
  },
  {
    name: 'RequestRedirect scheme only: the scheme implies its port, 302 by default',
    rule: `    - filters: [{ type: RequestRedirect, requestRedirect: { scheme: https } }]`,
    expect: { redirect: { scheme_redirect: 'https', port_redirect: 443, response_code: 'FOUND' } },
  },
  {
    name: 'RequestRedirect hostname, port and 301',
    rule: `    - filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org, port: 8443, statusCode: 301 } }]`,
    expect: { redirect: { host_redirect: 'example.org', port_redirect: 8443, response_code: 'MOVED_PERMANENTLY' } },
  },
  {
    name: 'RequestRedirect ReplaceFullPath, 308; no scheme and no port: the listener port',
    rule: `    - filters:
        - type: RequestRedirect
          requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /new }, statusCode: 308 }`,
    expect: { redirect: { path_redirect: '/new', port_redirect: 8000, response_code: 'PERMANENT_REDIRECT' } },
  },
  {
    name: 'RequestRedirect ReplacePrefixMatch -> prefix_rewrite',
    rule: `    - matches: [{ path: { type: PathPrefix, value: /old } }]
      filters:
        - type: RequestRedirect
          requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /new/ }, statusCode: 303 }`,
    expect: {
      match: { path_separated_prefix: '/old' },
      redirect: { prefix_rewrite: '/new', port_redirect: 8000, response_code: 'SEE_OTHER' },
    },
  },
  {
    name: 'URLRewrite hostname -> host_rewrite_literal',
    rule: `    - filters: [{ type: URLRewrite, urlRewrite: { hostname: internal.example } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: { route: { cluster: cl('a'), host_rewrite_literal: 'internal.example' } },
  },
  {
    name: 'URLRewrite ReplaceFullPath -> regex_rewrite of the whole path',
    rule: `    - filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /full } } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: { cluster: cl('a'), regex_rewrite: { pattern: { regex: '^/.*$' }, substitution: '/full' } },
    },
  },
  {
    name: 'URLRewrite ReplacePrefixMatch -> prefix_rewrite',
    rule: `    - matches: [{ path: { type: PathPrefix, value: /foo } }]
      filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /xyz } } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: { route: { cluster: cl('a'), prefix_rewrite: '/xyz' } },
  },
  {
    name: 'URLRewrite ReplacePrefixMatch "/" -> regex_rewrite keeping one "/"',
    rule: `    - matches: [{ path: { type: PathPrefix, value: /foo/ } }]
      filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: / } } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: { cluster: cl('a'), regex_rewrite: { pattern: { regex: '^/foo/*' }, substitution: '/' } },
    },
  },
  {
    name: 'RequestMirror percent -> request_mirror_policies',
    rule: `    - filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: b, port: 8080 }, percent: 25 } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: {
        cluster: cl('a'),
        request_mirror_policies: [
          { cluster: cl('b'), runtime_fraction: { default_value: { numerator: 25, denominator: 'HUNDRED' } } },
        ],
      },
    },
  },
  {
    name: 'RequestMirror fraction -> per million; no fraction -> everything',
    rule: `    - filters:
        - { type: RequestMirror, requestMirror: { backendRef: { name: b, port: 8080 }, fraction: { numerator: 1, denominator: 3 } } }
        - { type: RequestMirror, requestMirror: { backendRef: { name: c, port: 8080 } } }
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: {
        cluster: cl('a'),
        request_mirror_policies: [
          { cluster: cl('b'), runtime_fraction: { default_value: { numerator: 333333, denominator: 'MILLION' } } },
          { cluster: cl('c') },
        ],
      },
    },
  },
  {
    name: 'CORS -> optional per-route envoy.filters.http.cors CorsPolicy',
    rule: `    - filters:
        - type: CORS
          cors:
            allowOrigins: ['https://app.example.com', 'https://*.example.org']
            allowMethods: [GET, POST]
            allowHeaders: [x-a, x-b]
            exposeHeaders: [x-c]
            allowCredentials: true
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      typed_per_filter_config: {
        'envoy.filters.http.cors': {
          '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig',
          is_optional: true,
          config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
            allow_origin_string_match: [
              { exact: 'https://app.example.com' },
              { safe_regex: { regex: 'https://[^/:]*\\.example\\.org' } },
            ],
            allow_methods: 'GET,POST',
            allow_headers: 'x-a,x-b',
            expose_headers: 'x-c',
            max_age: '5',
            allow_credentials: { value: true },
          },
        },
      },
    },
  },
  {
    name: 'weights: 0 drops a backend',
    rule: `    - backendRefs: [{ name: a, port: 8080, weight: 3 }, { name: b, port: 8080, weight: 0 }, { name: c, port: 8080, weight: 1 }]`,
    expect: {
      route: {
        weighted_clusters: {
          clusters: [
            { name: cl('a'), weight: { value: 3 } },
            { name: cl('c'), weight: { value: 1 } },
          ],
        },
      },
    },
  },
  {
    name: 'weights: all zero -> direct_response 500',
    rule: `    - backendRefs: [{ name: a, port: 8080, weight: 0 }]`,
    expect: { direct_response: { status: 500 } },
  },
  {
    name: 'no backendRefs -> direct_response 500',
    rule: `    - matches: [{ path: { type: Exact, value: /none } }]`,
    expect: { direct_response: { status: 500 } },
  },
  {
    name: 'backendRef filters -> the weighted cluster header mutations',
    rule: `    - backendRefs:
        - name: a
          port: 8080
          filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { add: [{ name: x-backend, value: a }] } }]`,
    expect: {
      route: {
        weighted_clusters: {
          clusters: [
            {
              name: cl('a'),
              weight: { value: 1 },
              request_headers_to_add: [
                { header: { key: 'x-backend', value: 'a' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
              ],
            },
          ],
        },
      },
    },
  },
  {
    name: 'timeouts.request -> timeout (and max_stream_duration); backendRequest -> per_try_timeout',
    rule: `    - timeouts: { request: 10s, backendRequest: 2s }
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: {
        cluster: cl('a'),
        timeout: { seconds: 10, nanos: 0 },
        max_stream_duration: { max_stream_duration: { seconds: 10, nanos: 0 } },
        retry_policy: { per_try_timeout: { seconds: 2, nanos: 0 } },
      },
    },
  },
  {
    name: 'timeouts.request "0s" disables the timeout',
    rule: `    - timeouts: { request: 0s }
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: {
        cluster: cl('a'),
        timeout: { seconds: 0, nanos: 0 },
        max_stream_duration: { max_stream_duration: { seconds: 0, nanos: 0 } },
      },
    },
  },
  {
    name: 'retry (GEP-1731): codes, attempts, backoff -> retry_policy',
    rule: `    - retry: { codes: [500, 503], attempts: 3, backoff: 100ms }
      timeouts: { backendRequest: 1s }
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: {
      route: {
        cluster: cl('a'),
        retry_policy: {
          retry_on: 'connect-failure,refused-stream,reset,retriable-status-codes',
          retriable_status_codes: [500, 503],
          num_retries: { value: 3 },
          retry_back_off: { base_interval: { seconds: 0, nanos: 100_000_000 } },
          per_try_timeout: { seconds: 1, nanos: 0 },
        },
      },
    },
  },
  {
    name: 'ExtensionRef (unsupported) is never skipped: direct_response 500',
    rule: `    - filters: [{ type: ExtensionRef, extensionRef: { group: example.io, kind: Auth, name: x } }]
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: { direct_response: { status: 500 }, route: undefined },
  },
  {
    name: 'retry attempts 0 -> no retry policy',
    rule: `    - retry: { attempts: 0, codes: [503] }
      backendRefs: [{ name: a, port: 8080 }]`,
    expect: { route: { cluster: cl('a') } },
  },
];

for (const c of filterCases) {
  test(`HTTPRoute -> Envoy: ${c.name}`, () => {
    const vh = vhosts(snapshotOf(httpRoute('f', `  rules:\n${c.rule}\n`)), GW);
    const route = vh[0]!.routes[0]!;
    for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(route[k], v, `${k} of ${JSON.stringify(route)}`);
  });
}

test('gateway and waypoint HCMs list cors and fault before the router', () => {
  const snap = snapshotOf(httpRoute('f', `  rules:\n    - backendRefs: [{ name: a, port: 8080 }]\n`));
  const l = snap.resources(TYPE_URLS.listener).get('trellis/n1/gateway/demo/gw/8000');
  assert.ok(l);
  roundTrip(l.body);
  const hcm = (l.body as { filter_chains: { filters: { typed_config: { http_filters: { name: string }[] } }[] }[] })
    .filter_chains[0]!.filters[0]!.typed_config;
  assert.deepEqual(
    hcm.http_filters.map((f) => f.name),
    ['envoy.filters.http.cors', 'envoy.filters.http.fault', 'envoy.filters.http.router'],
  );
});

test('mesh (GAMMA) routes keep a safe_regex PathPrefix (gRPC clients NACK path_separated_prefix)', () => {
  const snap = snapshotOf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mesh, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: a, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /v1 } }]
      filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } } }]
      backendRefs: [{ name: b, port: 8080 }]
`);
  const routes = vhosts(snap, 'a.demo.svc.cluster.local:8080')[0]!.routes;
  assert.deepEqual(routes[0]!.match, { safe_regex: { regex: '/v1(/.*)?' } });
  assert.deepEqual((routes[0]!.route as Obj).regex_rewrite, { pattern: { regex: '^/v1' }, substitution: '/v2' });
});

// ---------------------------------------------------------------------------------------------
// VirtualService

const vs = (http: string) => `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a, namespace: demo }
spec:
  host: a
  subsets: [{ name: v1, labels: { app: a } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a, namespace: demo }
spec:
  hosts: [a]
  http:
${http}`;

const ISTIO_DEFAULT_RETRY = {
  retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  num_retries: { value: 2 },
  retriable_status_codes: [503],
  retry_host_predicate: [
    {
      name: 'envoy.retry_host_predicates.previous_hosts',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
      },
    },
  ],
  host_selection_retry_max_attempts: 5,
};

const vsCases: { name: string; http: string; expect: Obj }[] = [
  {
    name: 'matches: uri prefix + ignoreUriCase, headers, withoutHeaders, method, queryParams',
    http: `    - match:
        - uri: { prefix: /api }
          ignoreUriCase: true
          headers: { X-Env: { exact: prod } }
          withoutHeaders: { x-debug: { regex: '*' } }
          method: { exact: GET }
          queryParams: { q: { regex: 'a.*' } }
      route: [{ destination: { host: b } }]`,
    expect: {
      match: {
        prefix: '/api',
        case_sensitive: { value: false },
        headers: [
          { name: 'x-env', string_match: { exact: 'prod' } },
          { name: 'x-debug', present_match: true, invert_match: true },
          { name: ':method', string_match: { exact: 'GET' } },
        ],
        query_parameters: [{ name: 'q', string_match: { safe_regex: { regex: 'a.*' } } }],
      },
      route: { cluster: cl('b'), retry_policy: ISTIO_DEFAULT_RETRY },
    },
  },
  {
    name: 'weighted destinations to DestinationRule subsets',
    http: `    - route:
        - { destination: { host: a, subset: v1 }, weight: 80 }
        - { destination: { host: b }, weight: 20 }`,
    expect: {
      route: {
        weighted_clusters: {
          clusters: [
            { name: clusterName('a.demo.svc.cluster.local', 8080, 'v1'), weight: { value: 80 } },
            { name: cl('b'), weight: { value: 20 } },
          ],
        },
        retry_policy: ISTIO_DEFAULT_RETRY,
      },
    },
  },
  {
    name: 'fault: delay and abort by percentage -> per-route HTTPFault',
    http: `    - fault:
        delay: { fixedDelay: 1.5s, percentage: { value: 10 } }
        abort: { httpStatus: 503, percentage: { value: 0.5 } }
      route: [{ destination: { host: b } }]`,
    expect: {
      typed_per_filter_config: {
        'envoy.filters.http.fault': {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
          delay: {
            fixed_delay: { seconds: 1, nanos: 500_000_000 },
            percentage: { numerator: 100_000, denominator: 'MILLION' },
          },
          abort: { percentage: { numerator: 5000, denominator: 'MILLION' }, http_status: 503 },
        },
      },
    },
  },
  {
    name: 'fault: gRPC abort, no percentage = all',
    http: `    - fault: { abort: { grpcStatus: UNAVAILABLE } }
      route: [{ destination: { host: b } }]`,
    expect: {
      typed_per_filter_config: {
        'envoy.filters.http.fault': {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
          abort: { percentage: { numerator: 1_000_000, denominator: 'MILLION' }, grpc_status: 14 },
        },
      },
    },
  },
  {
    name: 'mirror + mirrorPercentage; retries with retryOn codes, perTryTimeout; timeout',
    http: `    - mirror: { host: c }
      mirrorPercentage: { value: 12.5 }
      timeout: 3s
      retries: { attempts: 4, perTryTimeout: 500ms, retryOn: '5xx,429', retryIgnorePreviousHosts: false }
      route: [{ destination: { host: b } }]`,
    expect: {
      route: {
        cluster: cl('b'),
        timeout: { seconds: 3, nanos: 0 },
        max_stream_duration: { max_stream_duration: { seconds: 3, nanos: 0 } },
        retry_policy: {
          retry_on: '5xx,retriable-status-codes',
          num_retries: { value: 4 },
          retriable_status_codes: [429],
          per_try_timeout: { seconds: 0, nanos: 500_000_000 },
        },
        request_mirror_policies: [
          { cluster: cl('c'), runtime_fraction: { default_value: { numerator: 125_000, denominator: 'MILLION' } } },
        ],
      },
    },
  },
  {
    name: 'retries attempts 0: no retry policy',
    http: `    - retries: { attempts: 0 }
      route: [{ destination: { host: b } }]`,
    expect: { route: { cluster: cl('b') } },
  },
  {
    name: 'rewrite uri (prefix match -> prefix_rewrite) and authority',
    http: `    - match: [{ uri: { prefix: /old } }]
      rewrite: { uri: /new, authority: b.internal }
      retries: { attempts: 0 }
      route: [{ destination: { host: b } }]`,
    expect: { route: { cluster: cl('b'), host_rewrite_literal: 'b.internal', prefix_rewrite: '/new' } },
  },
  {
    name: 'rewrite uriRegexRewrite -> regex_rewrite',
    http: `    - rewrite: { uriRegexRewrite: { match: '^/svc/(.*)$', rewrite: '/\\1' } }
      retries: { attempts: 0 }
      route: [{ destination: { host: b } }]`,
    expect: {
      route: { cluster: cl('b'), regex_rewrite: { pattern: { regex: '^/svc/(.*)$' }, substitution: '/\\1' } },
    },
  },
  {
    name: 'corsPolicy -> optional per-route CorsPolicy',
    http: `    - corsPolicy:
        allowOrigins: [{ exact: 'https://a.example' }, { regex: 'https://.*\\.example' }]
        allowMethods: [GET, PUT]
        allowHeaders: [x-h]
        exposeHeaders: [x-e]
        maxAge: 24h
        allowCredentials: false
        unmatchedPreflights: IGNORE
      route: [{ destination: { host: b } }]`,
    expect: {
      typed_per_filter_config: {
        'envoy.filters.http.cors': {
          '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig',
          is_optional: true,
          config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
            allow_origin_string_match: [
              { exact: 'https://a.example' },
              { safe_regex: { regex: 'https://.*\\.example' } },
            ],
            allow_methods: 'GET,PUT',
            allow_headers: 'x-h',
            expose_headers: 'x-e',
            max_age: '86400',
            allow_credentials: { value: false },
            forward_not_matching_preflights: { value: false },
          },
        },
      },
    },
  },
  {
    name: 'headers: route-level request/response operations',
    http: `    - headers:
        request: { set: { x-s: '1' }, add: { x-a: '2' }, remove: [x-r] }
        response: { set: { x-t: '3' } }
      route: [{ destination: { host: b } }]`,
    expect: {
      request_headers_to_add: [
        { header: { key: 'x-s', value: '1' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
        { header: { key: 'x-a', value: '2' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
      ],
      request_headers_to_remove: ['x-r'],
      response_headers_to_add: [{ header: { key: 'x-t', value: '3' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    },
  },
  {
    name: 'redirect -> RedirectAction (301 by default)',
    http: `    - redirect: { uri: /moved, authority: new.example, scheme: https, derivePort: FROM_PROTOCOL_DEFAULT }`,
    expect: {
      redirect: {
        scheme_redirect: 'https',
        host_redirect: 'new.example',
        port_redirect: 443,
        path_redirect: '/moved',
        response_code: 'MOVED_PERMANENTLY',
      },
    },
  },
  {
    name: 'matches for another port or selecting clients do not apply',
    http: `    - match: [{ port: 9999 }, { sourceLabels: { app: x } }]
      route: [{ destination: { host: c } }]
    - retries: { attempts: 0 }
      route: [{ destination: { host: b } }]`,
    expect: { match: { prefix: '/' }, route: { cluster: cl('b') } },
  },
  {
    name: 'directResponse -> direct_response',
    http: `    - directResponse: { status: 418, body: { string: teapot } }`,
    expect: { direct_response: { status: 418, body: { inline_string: 'teapot' } } },
  },
];

for (const c of vsCases) {
  test(`VirtualService -> Envoy: ${c.name}`, () => {
    const routes = vhosts(snapshotOf(vs(c.http)), 'a.demo.svc.cluster.local:8080')[0]!.routes;
    const route = routes[0]!;
    for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(route[k], v, `${k} of ${JSON.stringify(route)}`);
  });
}

test('unsupported route features are reported (TRL0010)', () => {
  const parsed = parseYamlFile(
    'r.yaml',
    BASE +
      httpRoute(
        'x',
        `  rules:
    - filters: [{ type: ExtensionRef, extensionRef: { group: example.io, kind: Auth, name: x } }]
      backendRefs: [{ name: a, port: 8080 }]
`,
      ) +
      vs(`    - match: [{ sourceLabels: { app: x } }]
      route: [{ destination: { host: b } }]
`),
  );
  const model = compileModel(loadDocuments(parsed.documents).resources);
  assert.deepEqual(
    model.analysis.filter((m) => m.code === 'TRL0010').map((m) => `${m.resource.kind}/${m.resource.name} ${m.field}`),
    ['HTTPRoute/x spec.rules[0].filters[0]', 'VirtualService/a spec.http[0].match[0].sourceLabels'],
  );
});

test('grpc-js-xds accepts the mesh route configurations (optional CORS, fault, mirror, retries, GRPCRoute)', () => {
  const require = createRequire(import.meta.url);
  // register() installs the package's HTTP filters (fault); its RDS validator is what a client runs.
  (require('@grpc/grpc-js-xds') as { register(): void }).register();
  const { RouteConfigurationResourceType } =
    require('@grpc/grpc-js-xds/build/src/xds-resource-type/route-config-resource-type.js') as {
      RouteConfigurationResourceType: new () => {
        decode(ctx: object, r: { type_url: string; value: Buffer }): { error?: string };
      };
    };
  const snap = snapshotOf(
    vs(`    - match: [{ uri: { prefix: /pkg.Svc/ }, headers: { x-a: { exact: '1' } } }]
      corsPolicy: { allowOrigins: [{ exact: 'https://x' }], allowMethods: [GET] }
      fault: { delay: { fixedDelay: 1s, percentage: { value: 1 } } }
      mirror: { host: b }
      mirrorPercentage: { value: 5 }
      timeout: 2s
      route: [{ destination: { host: b } }]
    - route: [{ destination: { host: a } }]
`) +
      `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: b, port: 8080 }]
  rules:
    - matches: [{ method: { service: pkg.Svc, method: Get } }]
      filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: a, port: 8080 }, percent: 10 } }]
      backendRefs: [{ name: a, port: 8080 }]
    - matches: [{ method: { service: pkg.Svc } }]
      backendRefs: [{ name: b, port: 8080 }]
`,
  );
  const protos = loadXdsProtos();
  const rds = new RouteConfigurationResourceType();
  for (const name of ['a.demo.svc.cluster.local:8080', 'b.demo.svc.cluster.local:8080']) {
    const body = snap.resources(TYPE_URLS.route).get(name)!.body;
    const value = protos.serialize('envoy.config.route.v3.RouteConfiguration', body);
    assert.equal(rds.decode({}, { type_url: TYPE_URLS.route, value }).error, undefined, name);
  }
});

test('gRPC ports leave out redirect and direct-response rules (grpc-js-xds refuses them); HTTP ports keep them', () => {
  const require = createRequire(import.meta.url);
  (require('@grpc/grpc-js-xds') as { register(): void }).register();
  const { RouteConfigurationResourceType } =
    require('@grpc/grpc-js-xds/build/src/xds-resource-type/route-config-resource-type.js') as {
      RouteConfigurationResourceType: new () => {
        decode(ctx: object, r: { type_url: string; value: Buffer }): { error?: string };
      };
    };
  const rules = (port: number) => `  rules:
    - matches: [{ path: { type: PathPrefix, value: /old } }]
      filters: [{ type: RequestRedirect, requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /new } } }]
    - matches: [{ path: { type: PathPrefix, value: /none } }]
      backendRefs: [{ name: a, port: ${port}, weight: 0 }]
    - backendRefs: [{ name: a, port: ${port} }]
`;
  const snap = snapshotOf(`---
apiVersion: v1
kind: Service
metadata: { name: rpc, namespace: demo }
spec:
  selector: { app: rpc }
  ports: [{ name: grpc, port: 9090 }, { name: http, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: g, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: rpc, port: 9090 }]
${rules(8080)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: h, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: rpc, port: 8080 }]
${rules(8080)}`);
  const actions = (name: string) =>
    vhosts(snap, name)[0]!.routes.map((r) => {
      const route = r as Record<string, unknown>;
      return route.redirect ? 'redirect' : route.direct_response ? 'direct_response' : 'route';
    });
  assert.deepEqual(actions('rpc.demo.svc.cluster.local:9090'), ['route']);
  assert.deepEqual(actions('rpc.demo.svc.cluster.local:8080').sort(), ['direct_response', 'redirect', 'route']);
  const protos = loadXdsProtos();
  const body = snap.resources(TYPE_URLS.route).get('rpc.demo.svc.cluster.local:9090')!.body;
  const value = protos.serialize('envoy.config.route.v3.RouteConfiguration', body);
  assert.equal(new RouteConfigurationResourceType().decode({}, { type_url: TYPE_URLS.route, value }).error, undefined);
});

test('invalid weighted backendRefs keep their share, which answers 500 (ResolvedRefs=False stays)', () => {
  const yaml = httpRoute(
    'inv',
    `  rules:
    - matches: [{ path: { type: PathPrefix, value: /inv } }]
      backendRefs:
        - { name: a, port: 8080, weight: 2 }
        - { name: missing, port: 8080, weight: 1 }
        - { group: example.io, kind: Bucket, name: x, weight: 1 }
`,
  );
  const routes = vhosts(snapshotOf(yaml), GW)[0]!.routes;
  const i = routes.findIndex((r) => r.name === 'demo/inv/0/0/invalid-backends');
  assert.ok(i >= 0, JSON.stringify(routes.map((r) => r.name)));
  const share = routes[i]!;
  // Half of the weight (1 + 1 of 4) is invalid: that share answers 500, ahead of the rule's route.
  assert.deepEqual(share.direct_response, { status: 500 });
  assert.deepEqual((share.match as Obj).runtime_fraction, {
    default_value: { numerator: 500_000, denominator: 'MILLION' },
    runtime_key: 'trellis.invalid_backend_share',
  });
  assert.equal((share.match as Obj).prefix ?? (share.match as Obj).path_separated_prefix, '/inv');
  const main = routes[i + 1]!;
  assert.equal(main.name, 'demo/inv/0/0');
  assert.deepEqual(main.route, { cluster: cl('a') });

  const m = compileModel(loadDocuments(parseYamlFile('r.yaml', BASE + yaml).documents).resources);
  const st = m.routes.find((r) => r.id === 'HTTPRoute/demo/inv')!;
  const resolved = st.parents[0]!.conditions.find((c) => c.type === 'ResolvedRefs');
  assert.equal(resolved?.status, 'False');
});

test('invalid backendRefs: all invalid -> direct_response 500; weight 0 invalid -> no share', () => {
  const all = vhosts(
    snapshotOf(httpRoute('all', `  rules:\n    - backendRefs: [{ name: missing, port: 8080 }]\n`)),
    GW,
  )[0]!.routes;
  assert.deepEqual(
    all.map((r) => [r.name, r.direct_response]),
    [['demo/all/0/0', { status: 500 }]],
  );
  const zero = vhosts(
    snapshotOf(
      httpRoute(
        'zero',
        `  rules:\n    - backendRefs: [{ name: a, port: 8080 }, { name: missing, port: 8080, weight: 0 }]\n`,
      ),
    ),
    GW,
  )[0]!.routes;
  assert.deepEqual(
    zero.map((r) => r.name),
    ['demo/zero/0/0'],
  );
});

test('GRPCRoute: an invalid weighted backendRef keeps its share as a 500 route', () => {
  const yaml = `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: demo }
spec:
  parentRefs: [{ name: gw, namespace: demo, sectionName: http }]
  rules:
    - backendRefs: [{ name: a, port: 8080, weight: 3 }, { name: missing, port: 8080, weight: 1 }]
`;
  const routes = vhosts(snapshotOf(yaml), GW)[0]!.routes;
  const share = routes.find((r) => r.name === 'demo/g/0/0/invalid-backends');
  assert.ok(share, JSON.stringify(routes.map((r) => r.name)));
  assert.deepEqual(share.direct_response, { status: 500 });
  assert.deepEqual(((share.match as Obj).runtime_fraction as Obj).default_value, {
    numerator: 250_000,
    denominator: 'MILLION',
  });
});
