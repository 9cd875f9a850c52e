// The RBAC evaluator on hand-written Envoy configs: the combinators, matchers and encodings
// rbac.ts does not produce but Envoy (and proto-loader decoding) do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compileRbacFilters,
  HTTP_RBAC_TYPE,
  NETWORK_RBAC_TYPE,
  type CompiledRbac,
  type RbacAttributes,
} from '../../../src/proxy/rbac/evaluate.js';
import { rbacFilters } from '../../../src/xds/translate/rbac.js';
import { envoyRoot } from '../../helpers/envoy-protos.js';

type Obj = Record<string, unknown>;
type Http = NonNullable<RbacAttributes['http']>;

const rbac = (action: string, policies: Obj): Obj => ({ '@type': HTTP_RBAC_TYPE, rules: { action, policies } });
const filter = (name: string, config: Obj): Obj => ({ name, typed_config: config });
const anyone = [{ any: true }];

function http(method: string, path: string, headers: Record<string, string> = {}, host = 'shop.example.com'): Http {
  return { method, path, host, header: (n) => headers[n] };
}
const conn = (over: Partial<RbacAttributes> = {}): RbacAttributes => ({
  principal: 'spiffe://cluster.local/ns/shop/sa/web',
  sourceIp: '10.1.2.3',
  destinationIp: '10.9.9.9',
  destinationPort: 8080,
  ...over,
});
const allowed = (c: CompiledRbac, a: RbacAttributes): boolean => c.evaluate(a).allowed;

test('and_rules / or_rules / not_rule / destination_port_range, numbers as strings and wrappers', () => {
  const c = compileRbacFilters(
    [
      rbac('ALLOW', {
        ports: {
          permissions: [
            {
              and_rules: {
                rules: [
                  { destination_port_range: { start: '8000', end: 9000 } }, // start inclusive, end exclusive
                  { not_rule: { or_rules: { rules: [{ destination_port: '8443' }, { destination_port: 8500 }] } } },
                ],
              },
            },
            { destination_port: { value: 15021 } },
          ],
          principals: [{ direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: '8' } }],
        },
      }),
    ],
    'l4',
  );
  assert.deepEqual(c.problems, []);
  const at = (destinationPort: number, sourceIp = '10.1.2.3'): boolean =>
    allowed(c, conn({ destinationPort, sourceIp }));
  assert.equal(at(8000), true);
  assert.equal(at(8999), true);
  assert.equal(at(9000), false);
  assert.equal(at(7999), false);
  assert.equal(at(8443), false);
  assert.equal(at(8500), false);
  assert.equal(at(15021), true);
  assert.equal(at(8080, '11.0.0.1'), false);
});

test('and_ids / or_ids / not_id, authenticated without a name, camelCase (proto3 JSON) field names', () => {
  const c = compileRbacFilters(
    [
      {
        '@type': HTTP_RBAC_TYPE,
        rules: {
          action: 'DENY',
          policies: {
            'plaintext-or-outsider': {
              permissions: anyone,
              principals: [
                {
                  orIds: {
                    ids: [
                      { notId: { authenticated: {} } },
                      {
                        andIds: {
                          ids: [
                            { authenticated: { principalName: { prefix: 'spiffe://OTHER/', ignoreCase: true } } },
                            { notId: { remoteIp: { addressPrefix: 'fd00::', prefixLen: { value: 8 } } } },
                          ],
                        },
                      },
                    ],
                  },
                },
              ],
            },
          },
        },
      },
    ],
    'l4',
  );
  assert.deepEqual(c.problems, []);
  assert.equal(allowed(c, conn()), true);
  assert.deepEqual(c.evaluate(conn({ principal: undefined })), {
    allowed: false,
    policy: 'plaintext-or-outsider',
    reason: 'denied by plaintext-or-outsider',
  });
  assert.equal(allowed(c, conn({ principal: 'spiffe://other/ns/a/sa/b', sourceIp: '2001:db8::1' })), false);
  assert.equal(allowed(c, conn({ principal: 'spiffe://other/ns/a/sa/b', sourceIp: 'fd12::1' })), true);
});

test('header matchers: string_match kinds, ignore_case, safe_regex full match, presence, invert_match on absent headers', () => {
  const allowIf = (header: Obj, mode: 'l4' | 'l7' = 'l7'): CompiledRbac => {
    const c = compileRbacFilters([rbac('ALLOW', { p: { permissions: [{ header }], principals: anyone } })], mode);
    assert.deepEqual(c.problems, []);
    return c;
  };
  const h = (c: CompiledRbac, headers: Record<string, string>): boolean =>
    allowed(c, conn({ http: http('GET', '/x?q=1', headers) }));

  const exact = allowIf({ name: 'X-Env', string_match: { exact: 'Prod', ignore_case: true } });
  assert.equal(h(exact, { 'x-env': 'pROD' }), true);
  assert.equal(h(exact, { 'x-env': 'prod2' }), false);
  assert.equal(h(exact, {}), false);
  const contains = allowIf({ name: 'user-agent', string_match: { contains: 'CURL', ignore_case: true } });
  assert.equal(h(contains, { 'user-agent': 'my-curl/8' }), true);
  assert.equal(h(contains, { 'user-agent': 'wget' }), false);
  const suffix = allowIf({ name: 'x-a', string_match: { suffix: '.Internal' } });
  assert.equal(h(suffix, { 'x-a': 'a.Internal' }), true);
  assert.equal(h(suffix, { 'x-a': 'a.internal' }), false, 'case-sensitive without ignore_case');

  const regex = allowIf({ name: ':path', string_match: { safe_regex: { regex: '/x\\?q=[0-9]' } } });
  assert.equal(h(regex, {}), true, ':path includes the query');
  const partial = allowIf({ name: 'x-a', safe_regex_match: { regex: 'b' } });
  assert.equal(h(partial, { 'x-a': 'abc' }), false, 'full match, not search');
  assert.equal(h(partial, { 'x-a': 'b' }), true);
  const re2 = allowIf({ name: 'x-a', string_match: { safe_regex: { regex: '(?i)v\\-(?P<n>\\d+)' } } });
  assert.equal(h(re2, { 'x-a': 'V-12' }), true, 'RE2 inline flags, named groups, escaped punctuation');

  const present = allowIf({ name: 'x-debug', present_match: true });
  assert.equal(h(present, { 'x-debug': '' }), true);
  assert.equal(h(present, {}), false);
  const bare = allowIf({ name: 'x-debug' });
  assert.equal(h(bare, { 'x-debug': '1' }), true, 'no specifier: presence');
  assert.equal(h(bare, {}), false);
  const absentOk = allowIf({ name: 'x-debug', present_match: true, invert_match: true });
  assert.equal(h(absentOk, {}), true);
  assert.equal(h(absentOk, { 'x-debug': '1' }), false);
  // invert_match does not turn an absent header into a match for value matchers (Envoy).
  const notProd = allowIf({ name: 'x-env', string_match: { exact: 'prod' }, invert_match: true });
  assert.equal(h(notProd, { 'x-env': 'dev' }), true);
  assert.equal(h(notProd, { 'x-env': 'prod' }), false);
  assert.equal(h(notProd, {}), false);
  const missingEmpty = allowIf({
    name: 'x-env',
    string_match: { exact: 'prod' },
    invert_match: true,
    treat_missing_header_as_empty: true,
  });
  assert.equal(h(missingEmpty, {}), true);

  const legacy = allowIf({ name: 'x-n', range_match: { start: '10', end: '20' } });
  assert.equal(h(legacy, { 'x-n': '10' }), true);
  assert.equal(h(legacy, { 'x-n': '20' }), false);
  assert.equal(h(legacy, { 'x-n': '1x' }), false);
  const anyValue = allowIf({ name: 'x-n', exact_match: '' });
  assert.equal(h(anyValue, { 'x-n': 'whatever' }), true, 'deprecated exact_match "" is any value');
  const method = allowIf({ name: ':method', prefix_match: 'PO' });
  assert.equal(allowed(method, conn({ http: http('POST', '/') })), true);
  const authority = allowIf({ name: ':authority', suffix_match: '.example.com' });
  assert.equal(h(authority, {}), true);

  // At L4 a header is unknown: ALLOW never matches, not even a negated one.
  assert.equal(allowed(allowIf({ name: 'x-debug', present_match: true, invert_match: true }, 'l4'), conn()), false);
});

test('url_path ignores the query; requested_server_name; destination_ip', () => {
  const c = compileRbacFilters(
    [
      filter('envoy.filters.http.rbac', {
        '@type': HTTP_RBAC_TYPE,
        rules: {
          policies: {
            api: { permissions: [{ url_path: { path: { prefix: '/api/', ignore_case: true } } }], principals: anyone },
            sni: {
              permissions: [
                {
                  and_rules: {
                    rules: [
                      { requested_server_name: { suffix: '.mesh.local' } },
                      { destination_ip: { address_prefix: '10.9.0.0', prefix_len: { value: 16 } } },
                    ],
                  },
                },
              ],
              principals: anyone,
            },
          },
        },
      }),
    ],
    'l7',
  );
  assert.deepEqual(c.problems, []);
  assert.equal(allowed(c, conn({ http: http('GET', '/API/x?next=/other') })), true, 'action defaults to ALLOW');
  assert.equal(allowed(c, conn({ http: http('GET', '/other?next=/api/') })), false);
  assert.equal(allowed(c, conn({ sni: 'shop.mesh.local' })), true);
  assert.equal(allowed(c, conn({ sni: 'shop.mesh.local', destinationIp: '10.8.0.1' })), false);
  assert.equal(allowed(c, conn({ sni: undefined })), false);
});

test('metadata, CEL conditions and other unsupported matchers are unknown: reported, fail closed', () => {
  const policies = {
    meta: { permissions: [{ metadata: { filter: 'f', path: [{ key: 'k' }] } }], principals: anyone },
    cel: { permissions: anyone, principals: anyone, condition: { const_expr: { bool_value: true } } },
  };
  const allow = compileRbacFilters([rbac('ALLOW', policies)], 'l7');
  assert.equal(allow.problems.length, 2);
  assert.equal(allowed(allow, conn({ http: http('GET', '/') })), false);
  const deny = compileRbacFilters([rbac('DENY', policies)], 'l7');
  assert.equal(deny.evaluate(conn({ http: http('GET', '/') })).policy, 'cel', 'first by name, as Envoy');
  const badRegex = compileRbacFilters(
    [
      rbac('ALLOW', {
        p: { permissions: [{ url_path: { path: { safe_regex: { regex: '(a' } } } }], principals: anyone },
      }),
    ],
    'l7',
  );
  assert.match(badRegex.problems[0]!, /safe_regex "\(a"/);
  assert.equal(allowed(badRegex, conn({ http: http('GET', '(a') })), false);
  const twoKinds = compileRbacFilters(
    [rbac('DENY', { p: { permissions: [{ any: true, destination_port: 1 }], principals: anyone } })],
    'l4',
  );
  assert.match(twoKinds.problems[0]!, /several of any, destination_port/);
  assert.equal(allowed(twoKinds, conn()), false);
});

test('istio_authn metadata: string/list/present/bool matchers, invert, unknown keys; L4 and no request are unknown', () => {
  const meta = (keys: string[], value: Obj, invert = false): Obj => ({
    metadata: { filter: 'istio_authn', path: keys.map((key) => ({ key })), value, ...(invert ? { invert } : {}) },
  });
  const only = (id: Obj, mode: 'l4' | 'l7' = 'l7'): CompiledRbac => {
    const c = compileRbacFilters([rbac('ALLOW', { p: { permissions: anyone, principals: [id] } })], mode);
    assert.deepEqual(c.problems, []);
    return c;
  };
  const jwt = {
    principal: 'iss/alice',
    claims: { iss: 'iss', sub: 'alice', aud: 'api', azp: 'cli', admin: true, org: { teams: ['a', 'b'] } },
  };
  const req = conn({ http: http('GET', '/'), requestAuth: jwt });
  const noToken = conn({ http: http('GET', '/') });
  const principal = only(meta(['request.auth.principal'], { string_match: { prefix: 'iss/' } }));
  assert.equal(allowed(principal, req), true);
  assert.equal(allowed(principal, noToken), false);
  const inverted = only(meta(['request.auth.principal'], { string_match: { exact: 'iss/bob' } }, true));
  assert.equal(allowed(inverted, req), true);
  assert.equal(allowed(inverted, noToken), true, 'absent value: no match, then inverted (Envoy)');
  const aud = only(meta(['request.auth.audiences'], { string_match: { exact: 'api' } }));
  assert.equal(allowed(aud, req), true, 'a string aud');
  const teams = only(
    meta(['request.auth.claims', 'org', 'teams'], { list_match: { one_of: { string_match: { exact: 'b' } } } }),
  );
  assert.equal(allowed(teams, req), true);
  const present = only(meta(['request.auth.claims', 'azp'], { present_match: true }));
  assert.equal(allowed(present, req), true);
  assert.equal(allowed(present, noToken), false);
  const bool = only(meta(['request.auth.claims', 'admin'], { bool_match: true }));
  assert.equal(allowed(bool, req), true);
  // No JWT at L4 and no request at L7: unknown, so neither ALLOW nor a negation matches.
  assert.equal(
    allowed(only(meta(['request.auth.principal'], { present_match: true }, true), 'l4'), conn({ requestAuth: jwt })),
    false,
  );
  assert.equal(allowed(inverted, conn({ requestAuth: jwt })), false);
  // Keys Istio does not write, other filters' metadata: reported and unknown.
  const odd = compileRbacFilters(
    [rbac('ALLOW', { p: { permissions: anyone, principals: [meta(['request.auth.nope'], { present_match: true })] } })],
    'l7',
  );
  assert.match(odd.problems[0]!, /not one Istio writes/);
  assert.equal(allowed(odd, req), false);
});

test('filter entries: other filters ignored, bare and network RBAC accepted, unreadable RBAC denies, LOG and no rules ignored', () => {
  const router = filter('envoy.filters.http.router', {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  });
  assert.equal(compileRbacFilters([router], 'l7').empty, true);
  assert.equal(compileRbacFilters([filter('envoy.filters.http.rbac', { '@type': HTTP_RBAC_TYPE })], 'l7').empty, true);
  assert.equal(compileRbacFilters([rbac('LOG', { p: { permissions: anyone, principals: anyone } })], 'l7').empty, true);
  const disabled = {
    ...filter('envoy.filters.http.rbac', rbac('DENY', { p: { permissions: anyone, principals: anyone } })),
    disabled: true,
  };
  assert.equal(compileRbacFilters([disabled], 'l7').empty, true);

  const network = compileRbacFilters(
    [
      filter('envoy.filters.network.rbac', {
        '@type': NETWORK_RBAC_TYPE,
        stat_prefix: 'x',
        rules: { action: 'DENY', policies: { p: { permissions: [{ destination_port: 22 }], principals: anyone } } },
      }),
    ],
    'l4',
  );
  assert.equal(allowed(network, conn({ destinationPort: 22 })), false);
  assert.equal(allowed(network, conn()), true);
  const untyped = compileRbacFilters(
    [{ rules: { action: 1, policies: { p: { permissions: anyone, principals: anyone } } } }],
    'l4',
  );
  assert.equal(allowed(untyped, conn()), false, 'bare config, enum as a number');

  const packed = compileRbacFilters(
    [filter('envoy.filters.http.rbac', { type_url: HTTP_RBAC_TYPE, value: Buffer.from([1, 2]) })],
    'l7',
  );
  assert.equal(packed.empty, false);
  assert.equal(allowed(packed, conn()), false);
  assert.match(packed.problems[0]!, /packed Any/);
  const matcherApi = compileRbacFilters([{ '@type': HTTP_RBAC_TYPE, matcher: { matcher_tree: {} } }], 'l7');
  assert.equal(allowed(matcherApi, conn()), false);

  // Two ALLOW filters: each is a gate of its own.
  const two = compileRbacFilters(
    [
      rbac('ALLOW', { a: { permissions: [{ destination_port: 8080 }], principals: anyone } }),
      rbac('ALLOW', { b: { permissions: anyone, principals: [{ authenticated: {} }] } }),
    ],
    'l4',
  );
  assert.equal(allowed(two, conn()), true);
  assert.equal(allowed(two, conn({ principal: undefined })), false);
  assert.equal(allowed(two, conn({ destinationPort: 9090 })), false);
});

test('configs decoded by protobufjs/proto-loader (defaults, oneof names, longs as strings) evaluate the same', () => {
  const filters = rbacFilters(
    [
      {
        namespace: 'shop',
        name: 'allow',
        spec: {
          action: 'ALLOW',
          rules: [
            {
              from: [{ source: { namespaces: ['shop'], notIpBlocks: ['10.66.0.0/16'] } }],
              to: [{ operation: { paths: ['/api/*'], methods: ['GET'], hosts: ['*.example.com'], ports: ['8080'] } }],
              when: [{ key: 'request.headers[x-env]', values: ['prod'] }],
            },
          ],
        },
      },
      {
        namespace: 'shop',
        name: 'deny',
        spec: { action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/evil'] } }] }] },
      },
    ],
    'cluster.local',
  );
  const type = envoyRoot().lookupType('envoy.extensions.filters.http.rbac.v3.RBAC');
  const decoded = filters.map((f) => {
    const { '@type': t, ...fields } = f.typed_config as Obj;
    const back = type.toObject(type.decode(type.encode(type.fromObject(fields)).finish()), {
      enums: String,
      longs: String,
      defaults: true,
      oneofs: true,
      json: true,
    });
    return { name: f.name, typed_config: { '@type': t, ...back } };
  });
  const original = compileRbacFilters(filters, 'l7');
  const viaProto = compileRbacFilters(decoded, 'l7');
  assert.deepEqual(viaProto.problems, []);
  const cases: RbacAttributes[] = [];
  for (const principal of [
    undefined,
    'spiffe://cluster.local/ns/shop/sa/web',
    'spiffe://cluster.local/ns/shop/sa/evil',
    'spiffe://cluster.local/ns/x/sa/web',
  ])
    for (const sourceIp of ['10.1.1.1', '10.66.1.1'])
      for (const path of ['/api/x?y', '/other'])
        for (const env of ['prod', undefined])
          cases.push(
            conn({ principal, sourceIp, http: http('GET', path, env ? { 'x-env': env } : {}, 'a.example.com') }),
          );
  let allowedCount = 0;
  for (const a of cases) {
    assert.deepEqual(viaProto.evaluate(a), original.evaluate(a));
    if (original.evaluate(a).allowed) allowedCount++;
  }
  assert.equal(allowedCount, 1, 'only shop/web from outside 10.66/16 to GET /api/* with x-env: prod');
});
