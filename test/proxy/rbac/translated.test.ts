// The RBAC evaluator on configs built by the real translation: AuthorizationPolicy YAML, validated
// and loaded like user config, through rbacFilters(), then evaluated at L4 and L7.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDocuments } from '../../../src/config/load.js';
import { isKind } from '../../../src/config/resource.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import {
  compileRbacFilters,
  HTTP_RBAC_TYPE,
  type CompiledRbac,
  type RbacAttributes,
} from '../../../src/proxy/rbac/evaluate.js';
import { RBAC_TYPE, rbacFilters, type AppliedPolicy } from '../../../src/xds/translate/rbac.js';

const TD = 'cluster.local';
type Http = NonNullable<RbacAttributes['http']>;

/** AuthorizationPolicy documents -> the applied policies inbound.ts hands to rbacFilters(). */
function applied(yaml: string): AppliedPolicy[] {
  const parsed = parseYamlFile('authz.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  return loaded.resources
    .filter((r) => isKind(r, 'AuthorizationPolicy'))
    .map((r) => ({ namespace: r.namespace ?? 'default', name: r.name, spec: r.spec }));
}

/** One AuthorizationPolicy document; the spec may be written as an object (JSON is YAML). */
const policy = (name: string, spec: object | string, ns = 'shop'): string => `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: ${typeof spec === 'string' ? spec : JSON.stringify(spec)}
`;

function compile(yaml: string, mode: 'l4' | 'l7' = 'l7'): CompiledRbac {
  const c = compileRbacFilters(rbacFilters(applied(yaml), TD), mode);
  assert.deepEqual(c.problems, [], 'rbac.ts output is understood completely');
  return c;
}

const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

function http(method: string, path: string, host = 'shop.example.com', headers: Record<string, string> = {}): Http {
  return { method, path, host, header: (n) => headers[n] };
}

/** A mesh connection from shop/web 10.1.2.3 to 10.9.9.9:8080, with overrides. */
function conn(over: Partial<RbacAttributes> = {}): RbacAttributes {
  return {
    principal: id('shop', 'web'),
    sourceIp: '10.1.2.3',
    sourcePort: 40000,
    destinationIp: '10.9.9.9',
    destinationPort: 8080,
    ...over,
  };
}

const allowed = (c: CompiledRbac, a: RbacAttributes): boolean => c.evaluate(a).allowed;
const plaintext = (over: Partial<RbacAttributes> = {}): RbacAttributes => ({ ...conn(over), principal: undefined });

test('the evaluator accepts the type rbac.ts emits', () => {
  assert.equal(HTTP_RBAC_TYPE, RBAC_TYPE);
});

test('principals: exact, prefix and suffix wildcards, "*" (any authenticated peer); plaintext never matches', () => {
  const c = compile(
    policy('p', {
      rules: [{ from: [{ source: { principals: [`${TD}/ns/shop/sa/web`, `${TD}/ns/ops/*`, '*/sa/admin'] } }] }],
    }),
  );
  assert.equal(allowed(c, conn()), true);
  assert.equal(allowed(c, conn({ principal: id('ops', 'anything') })), true);
  assert.equal(allowed(c, conn({ principal: id('other', 'admin') })), true);
  assert.equal(allowed(c, conn({ principal: id('shop', 'api') })), false);
  assert.equal(allowed(c, conn({ principal: `${TD}/ns/shop/sa/web` })), false, 'the SPIFFE URI is matched');
  assert.equal(allowed(c, plaintext()), false);
  assert.deepEqual(c.evaluate(conn()), {
    allowed: true,
    policy: 'ns[shop]-policy[p]-rule[0]',
    reason: 'allowed by ns[shop]-policy[p]-rule[0]',
  });
  assert.deepEqual(c.evaluate(conn({ principal: id('shop', 'api') })), {
    allowed: false,
    reason: 'no ALLOW policy matched',
  });

  const any = compile(policy('any', { rules: [{ from: [{ source: { principals: ['*'] } }] }] }));
  assert.equal(allowed(any, conn({ principal: 'spiffe://other.td/ns/x/sa/y' })), true);
  assert.equal(allowed(any, plaintext()), false, '"*" means any authenticated peer');
});

test('namespaces, notNamespaces, serviceAccounts (bare names use the policy namespace)', () => {
  const ns = compile(
    policy('ns', {
      rules: [{ from: [{ source: { namespaces: ['shop', 'dev-*'], notNamespaces: ['dev-blocked'] } }] }],
    }),
  );
  assert.equal(allowed(ns, conn()), true);
  assert.equal(allowed(ns, conn({ principal: id('dev-a', 'x') })), true);
  assert.equal(allowed(ns, conn({ principal: id('dev-blocked', 'x') })), false);
  assert.equal(allowed(ns, conn({ principal: id('prod', 'x') })), false);
  assert.equal(allowed(ns, conn({ principal: 'spiffe://other.td/ns/shop/sa/web' })), true, 'any trust domain');
  assert.equal(allowed(ns, conn({ principal: 'spiffe://td/ns/shop/sa/web/extra' })), false, 'full match');
  assert.equal(allowed(ns, plaintext()), false);

  const sas = compile(policy('sa', { rules: [{ from: [{ source: { serviceAccounts: ['web', 'ops/admin'] } }] }] }));
  assert.equal(allowed(sas, conn()), true);
  assert.equal(allowed(sas, conn({ principal: id('ops', 'admin') })), true);
  assert.equal(allowed(sas, conn({ principal: id('ops', 'web') })), false);
  assert.equal(allowed(sas, conn({ principal: id('shop', 'admin') })), false);
});

test('notPrincipals: everyone else, plaintext peers included (Envoy semantics)', () => {
  const c = compile(policy('p', { rules: [{ from: [{ source: { notPrincipals: [`${TD}/ns/shop/sa/evil`] } }] }] }));
  assert.equal(allowed(c, conn()), true);
  assert.equal(allowed(c, conn({ principal: id('shop', 'evil') })), false);
  assert.equal(allowed(c, plaintext()), true);
});

test('ipBlocks / notIpBlocks / remoteIpBlocks: CIDRs, single addresses, IPv6, IPv4-mapped peers', () => {
  const c = compile(
    policy('ip', {
      rules: [
        {
          from: [
            { source: { ipBlocks: ['10.0.0.0/8', '192.168.1.7', '2001:db8::/32'], notIpBlocks: ['10.66.0.0/16'] } },
          ],
        },
      ],
    }),
  );
  assert.equal(allowed(c, conn()), true);
  assert.equal(allowed(c, conn({ sourceIp: '192.168.1.7' })), true);
  assert.equal(allowed(c, conn({ sourceIp: '192.168.1.8' })), false);
  assert.equal(allowed(c, conn({ sourceIp: '10.66.1.1' })), false);
  assert.equal(allowed(c, conn({ sourceIp: '2001:db8:1::5' })), true);
  assert.equal(allowed(c, conn({ sourceIp: '2001:db9::5' })), false);
  assert.equal(allowed(c, conn({ sourceIp: '::ffff:10.1.2.3' })), true, 'dual-stack socket address of an IPv4 peer');
  assert.equal(allowed(c, conn({ sourceIp: '::ffff:10.66.0.1' })), false);
  assert.equal(allowed(c, conn({ sourceIp: undefined })), false, 'unknown source address: ALLOW fails closed');
  assert.equal(allowed(c, conn({ sourceIp: 'not-an-ip' })), false);

  const remote = compile(policy('r', { rules: [{ from: [{ source: { remoteIpBlocks: ['203.0.113.0/24'] } }] }] }));
  assert.equal(allowed(remote, conn({ sourceIp: '203.0.113.9' })), true);
  assert.equal(allowed(remote, conn()), false);

  const deny = compile(policy('d', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] }));
  assert.equal(allowed(deny, conn({ sourceIp: undefined })), false, 'unknown source address: DENY fails closed');
  assert.equal(allowed(deny, conn({ sourceIp: '172.16.0.1' })), true);
});

test('ports and notPorts are L4 attributes: enforced by the node proxy too', () => {
  const yaml = policy('ports', {
    rules: [
      {
        from: [{ source: { principals: [`${TD}/ns/shop/sa/web`] } }],
        to: [{ operation: { ports: ['8080', '9090'] } }],
      },
      { to: [{ operation: { notPorts: ['15000', '8080', '9090'] } }] },
    ],
  });
  for (const mode of ['l4', 'l7'] as const) {
    const c = compile(yaml, mode);
    assert.equal(allowed(c, conn()), true, mode);
    assert.equal(allowed(c, conn({ destinationPort: 9090 })), true, mode);
    assert.equal(allowed(c, conn({ principal: id('shop', 'api') })), false, mode);
    assert.equal(allowed(c, conn({ principal: id('shop', 'api'), destinationPort: 7070 })), true, mode);
    assert.equal(allowed(c, conn({ destinationPort: 15000 })), false, mode);
    assert.equal(allowed(c, conn({ destinationPort: undefined })), false, mode);
  }
});

test('paths: exact, prefix /api/*, suffix */x, templates, "*"; the query string is not part of the path', () => {
  const c = compile(
    policy(
      'paths',
      `
  rules:
    - to:
        - operation:
            paths: ["/info", "/api/*", "*/healthz", "/v1/{*}/items/{**}"]
`,
    ),
  );
  const at = (path: string): boolean => allowed(c, conn({ http: http('GET', path) }));
  assert.equal(at('/info'), true);
  assert.equal(at('/info?verbose=1'), true);
  assert.equal(at('/info#top'), true);
  assert.equal(at('/info/more'), false);
  assert.equal(at('/api/'), true);
  assert.equal(at('/api/orders/1?x=/info'), true);
  assert.equal(at('/apix'), false);
  assert.equal(at('/svc/healthz'), true);
  assert.equal(at('/healthz/x'), false);
  assert.equal(at('/v1/shop/items/1/2'), true);
  assert.equal(at('/v1/shop/x/items/1'), false, '{*} is one segment');
  assert.equal(at('/v1/shop/items/'), true, "{**} is zero or more characters, as Envoy's uri_template");
  assert.equal(at('/v1/shop/items'), false, 'the literal "/" before {**} is required');
  assert.equal(at('/other'), false);

  const star = compile(policy('star', { rules: [{ to: [{ operation: { paths: ['*'] } }] }] }));
  assert.equal(allowed(star, conn({ http: http('GET', '/anything') })), true);
});

test('methods, notMethods and hosts (case-insensitive, wildcard) are ANDed inside one operation', () => {
  const c = compile(
    policy('op', {
      rules: [
        {
          to: [
            {
              operation: {
                methods: ['GET', 'HEAD', 'P*'],
                notMethods: ['PATCH'],
                hosts: ['shop.example.com', '*.internal'],
                paths: ['/api/*'],
              },
            },
          ],
        },
      ],
    }),
  );
  const r = (method: string, path: string, host: string): boolean =>
    allowed(c, conn({ http: http(method, path, host) }));
  assert.equal(r('GET', '/api/x', 'shop.example.com'), true);
  assert.equal(r('HEAD', '/api/x', 'SHOP.Example.COM'), true);
  assert.equal(r('PUT', '/api/x', 'a.b.internal'), true);
  assert.equal(r('PATCH', '/api/x', 'shop.example.com'), false);
  assert.equal(r('DELETE', '/api/x', 'shop.example.com'), false);
  assert.equal(r('GET', '/api/x', 'evil.example.com'), false);
  assert.equal(r('GET', '/other', 'shop.example.com'), false);
});

test('when: headers, source.ip, source.namespace, source.principal, destination.ip, destination.port', () => {
  const c = compile(
    policy('when', {
      rules: [
        {
          when: [
            { key: 'request.headers[X-Token]', values: ['secret-*'], notValues: ['secret-revoked'] },
            { key: 'source.ip', values: ['10.0.0.0/8'] },
            { key: 'source.namespace', values: ['shop'] },
            { key: 'source.principal', notValues: [`${TD}/ns/shop/sa/evil`] },
            { key: 'destination.ip', values: ['10.9.0.0/16'] },
            { key: 'destination.port', values: ['8080'] },
          ],
        },
      ],
    }),
  );
  const ok = conn({ http: http('GET', '/', 'h', { 'x-token': 'secret-1' }) });
  assert.equal(allowed(c, ok), true);
  assert.equal(allowed(c, { ...ok, http: http('GET', '/', 'h', { 'x-token': 'secret-revoked' }) }), false);
  assert.equal(allowed(c, { ...ok, http: http('GET', '/', 'h', { 'x-token': 'public' }) }), false);
  assert.equal(allowed(c, { ...ok, http: http('GET', '/', 'h') }), false, 'header absent');
  assert.equal(allowed(c, { ...ok, sourceIp: '192.168.0.1' }), false);
  assert.equal(allowed(c, { ...ok, principal: id('prod', 'web') }), false);
  assert.equal(allowed(c, { ...ok, principal: id('shop', 'evil') }), false);
  assert.equal(allowed(c, { ...ok, destinationIp: '10.8.0.1' }), false);
  assert.equal(allowed(c, { ...ok, destinationPort: 8081 }), false);
});

test("JWT conditions without a token, and other filters' metadata: ALLOW never matches, DENY always does", () => {
  const allow = compile(
    policy('jwt', { rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['https://issuer'] }] }] }),
  );
  assert.equal(allowed(allow, conn({ http: http('GET', '/') })), false);
  const deny = compile(
    policy('mysql', {
      action: 'DENY',
      rules: [{ when: [{ key: 'experimental.envoy.filters.network.mysql_proxy[db.table]', values: ['[update]'] }] }],
    }),
  );
  assert.deepEqual(deny.evaluate(conn({ http: http('GET', '/') })), {
    allowed: false,
    policy: 'ns[shop]-policy[mysql]-rule[0]',
    reason: 'denied by ns[shop]-policy[mysql]-rule[0]',
  });
  const rp = compile(
    policy('rp', { rules: [{ from: [{ source: { requestPrincipals: ['issuer/subject'] } }] }] }) +
      policy('other', { rules: [{ to: [{ operation: { ports: ['8080'] } }] }] }),
  );
  assert.deepEqual(rp.evaluate(conn()), {
    allowed: true,
    policy: 'ns[shop]-policy[other]-rule[0]',
    reason: 'allowed by ns[shop]-policy[other]-rule[0]',
  });
});

test('DENY wins over ALLOW and names the policy and rule that denied', () => {
  const c = compile(
    policy('allow-all', { rules: [{}] }) +
      policy('deny-admin', {
        action: 'DENY',
        rules: [
          { from: [{ source: { principals: [`${TD}/ns/shop/sa/evil`] } }] },
          { to: [{ operation: { paths: ['/admin/*'] } }] },
        ],
      }),
  );
  assert.deepEqual(c.evaluate(conn({ http: http('GET', '/') })), {
    allowed: true,
    policy: 'ns[shop]-policy[allow-all]-rule[0]',
    reason: 'allowed by ns[shop]-policy[allow-all]-rule[0]',
  });
  assert.deepEqual(c.evaluate(conn({ http: http('GET', '/admin/users') })), {
    allowed: false,
    policy: 'ns[shop]-policy[deny-admin]-rule[1]',
    reason: 'denied by ns[shop]-policy[deny-admin]-rule[1]',
  });
  assert.equal(
    c.evaluate(conn({ principal: id('shop', 'evil'), http: http('GET', '/') })).policy,
    'ns[shop]-policy[deny-admin]-rule[0]',
  );
});

test('an ALLOW policy without rules allows nothing; with an empty rule it allows everything', () => {
  const nothing = compile(policy('allow-nothing', '{}'));
  assert.equal(nothing.empty, false);
  assert.deepEqual(nothing.evaluate(conn()), { allowed: false, reason: 'no ALLOW policy matched' });
  assert.equal(allowed(nothing, plaintext()), false);
  const everything = compile(policy('allow-all', { rules: [{}] }));
  assert.equal(allowed(everything, plaintext({ sourceIp: undefined, destinationPort: undefined })), true);
  // Combined: one matching ALLOW policy is enough.
  assert.equal(allowed(compile(policy('allow-nothing', '{}') + policy('allow-all', { rules: [{}] })), conn()), true);
});

test('no policies, AUDIT only: empty, everything is allowed; DENY only: what is not denied is allowed', () => {
  const none = compileRbacFilters(rbacFilters([], TD), 'l4');
  assert.equal(none.empty, true);
  assert.deepEqual(none.evaluate(plaintext()), { allowed: true, reason: 'no RBAC policy applies' });
  const audit = compile(policy('audit', { action: 'AUDIT', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }));
  assert.equal(audit.empty, true);
  assert.equal(allowed(audit, conn({ http: http('GET', '/') })), true);
  const deny = compile(policy('d', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['prod'] } }] }] }));
  assert.deepEqual(deny.evaluate(conn()), { allowed: true, reason: 'no DENY policy matched' });
});

test('CUSTOM (no external authorizer here) denies what its rules match, as rbac.ts translates it', () => {
  const c = compile(
    policy('ext-authz', {
      action: 'CUSTOM',
      provider: { name: 'my-authz' },
      rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }],
    }),
  );
  assert.equal(allowed(c, conn({ http: http('GET', '/admin/x') })), false);
  assert.equal(
    c.evaluate(conn({ http: http('GET', '/admin/x') })).policy,
    'ns[shop]-policy[ext-authz]-rule[0]-provider[my-authz]',
  );
  assert.equal(allowed(c, conn({ http: http('GET', '/public') })), true);
  assert.equal(allowed(c, conn()), false, 'at L4 the path is unknown: fails closed');
});

test('a bound policy whose spec the translation lacks denies everything', () => {
  const c = compileRbacFilters(rbacFilters([{ namespace: 'shop', name: 'lost', spec: undefined }], TD), 'l7');
  assert.deepEqual(c.evaluate(conn({ http: http('GET', '/') })), {
    allowed: false,
    policy: 'ns[shop]-policy[lost]-unknown',
    reason: 'denied by ns[shop]-policy[lost]-unknown',
  });
});

test('L4 vs L7: HTTP attributes are unknown at L4 (or without a request) and fail closed, negations included', () => {
  const yaml =
    policy('allow-api', {
      rules: [
        { from: [{ source: { namespaces: ['shop'] } }], to: [{ operation: { paths: ['/api/*'], methods: ['GET'] } }] },
        { from: [{ source: { namespaces: ['ops'] } }], to: [{ operation: { notPaths: ['/admin/*'] } }] },
        { from: [{ source: { namespaces: ['mon'] } }], to: [{ operation: { ports: ['9090'] } }] },
      ],
    }) +
    policy('deny-admin', {
      action: 'DENY',
      rules: [
        {
          from: [{ source: { principals: [`${TD}/ns/shop/sa/intern`] } }],
          to: [{ operation: { paths: ['/admin/*'] } }],
        },
        { from: [{ source: { namespaces: ['guest'] } }], to: [{ operation: { notPaths: ['/public/*'] } }] },
      ],
    });
  const l4 = compile(yaml, 'l4');
  const l7 = compile(yaml, 'l7');
  for (const [name, c] of [
    ['l4', l4],
    ['l7 without a request', l7],
  ] as const) {
    // ALLOW rules needing the path never match, notPaths included (not fail-open).
    const shop = c.evaluate(conn());
    assert.equal(shop.allowed, false, name);
    assert.match(shop.reason, /^no ALLOW policy matched \(some depend on attributes not available here/, name);
    assert.equal(allowed(c, conn({ principal: id('ops', 'x') })), false, name);
    // The L4-only rule still works.
    assert.equal(allowed(c, conn({ principal: id('mon', 'x'), destinationPort: 9090 })), true, name);
    // DENY rules needing the path match whenever their known part does; notPaths included.
    const intern = c.evaluate(conn({ principal: id('shop', 'intern') }));
    assert.equal(intern.allowed, false, name);
    assert.equal(intern.policy, 'ns[shop]-policy[deny-admin]-rule[0]', name);
    assert.match(intern.reason, /^denied by ns\[shop\]-policy\[deny-admin\]-rule\[0\] \(fail closed/, name);
    const guest = c.evaluate(conn({ principal: id('guest', 'x'), destinationPort: 9090 }));
    assert.equal(guest.policy, 'ns[shop]-policy[deny-admin]-rule[1]', name);
    // A known part that does not match decides: mon is not denied by the intern/guest rules.
    assert.equal(
      c.evaluate(conn({ principal: id('mon', 'x'), destinationPort: 9090 })).policy,
      'ns[shop]-policy[allow-api]-rule[2]',
      name,
    );
  }
  // At L7 with the request, everything is decided.
  const r = (principalId: string, method: string, path: string): boolean =>
    allowed(l7, conn({ principal: principalId, http: http(method, path) }));
  assert.equal(r(id('shop', 'web'), 'GET', '/api/orders'), true);
  assert.equal(r(id('shop', 'web'), 'POST', '/api/orders'), false);
  assert.equal(r(id('ops', 'x'), 'DELETE', '/anything'), true);
  assert.equal(r(id('ops', 'x'), 'GET', '/admin/x'), false);
  assert.equal(r(id('shop', 'intern'), 'GET', '/api/x'), true);
  assert.equal(r(id('shop', 'intern'), 'GET', '/admin/x'), false);
  assert.equal(r(id('guest', 'x'), 'GET', '/public/x'), false, 'guest passes DENY but matches no ALLOW rule');
  assert.equal(l7.evaluate(conn({ principal: id('guest', 'x'), http: http('GET', '/public/x') })).policy, undefined);
  assert.equal(
    l7.evaluate(conn({ principal: id('guest', 'x'), http: http('GET', '/x') })).policy,
    'ns[shop]-policy[deny-admin]-rule[1]',
  );
});

test('decisions are shared objects: evaluation allocates nothing per call', () => {
  const c = compile(
    policy('a', { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] }) +
      policy('d', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['192.168.0.0/16'] } }] }] }),
  );
  assert.equal(c.evaluate(conn()), c.evaluate(conn()));
  assert.equal(c.evaluate(conn({ sourceIp: '192.168.3.3' })), c.evaluate(conn({ sourceIp: '192.168.4.4' })));
  assert.equal(c.evaluate(plaintext()), c.evaluate(plaintext({ sourceIp: '10.0.0.1' })));
  assert.ok(Object.isFrozen(c.evaluate(conn())));
});
