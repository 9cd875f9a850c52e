// Gateway API kinds: every fixture under test/fixtures/kinds/<kind>/{valid,invalid}, plus defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { checkResource } from '../../src/config/kinds/check-resource.js';
import type { KindDefinition } from '../../src/config/kinds/kind.js';
import { formatPath, type Issue } from '../../src/config/schema/schema.js';
import { backendTlsPolicyKind } from '../../src/config/kinds/gateway/backend-tls-policy.js';
import { gatewayClassKind } from '../../src/config/kinds/gateway/gateway-class.js';
import { gatewayKind } from '../../src/config/kinds/gateway/gateway.js';
import { grpcRouteKind } from '../../src/config/kinds/gateway/grpc-route.js';
import { httpRouteKind } from '../../src/config/kinds/gateway/http-route.js';
import { referenceGrantKind } from '../../src/config/kinds/gateway/reference-grant.js';
import { tcpRouteKind } from '../../src/config/kinds/gateway/tcp-route.js';
import { tlsRouteKind } from '../../src/config/kinds/gateway/tls-route.js';

const kinds: readonly KindDefinition[] = [
  gatewayClassKind,
  gatewayKind,
  httpRouteKind,
  grpcRouteKind,
  tcpRouteKind,
  tlsRouteKind,
  backendTlsPolicyKind,
  referenceGrantKind,
] as readonly KindDefinition[];
const byKind = new Map(kinds.map((k) => [k.kind, k]));

// Compiled to dist/test/kinds/; the fixtures stay in the source tree.
const fixtureRoot = new URL('../../../test/fixtures/kinds/', import.meta.url).pathname;

function describeIssues(issues: readonly Issue[]): string {
  return issues
    .map((i) => `  ${formatPath(i.path)}: ${i.message}${i.expected ? ` (expected ${i.expected})` : ''}`)
    .join('\n');
}

function check(doc: unknown) {
  const k = (doc as { kind?: unknown }).kind;
  const def = typeof k === 'string' ? byKind.get(k) : undefined;
  assert.ok(def, `no Gateway API kind module for kind ${String(k)}`);
  const apiVersion = String((doc as { apiVersion?: unknown }).apiVersion);
  assert.ok(
    def.versions.some((v) => apiVersion === `${def.group}/${v}`),
    `${apiVersion} is not a served version of ${def.kind} (${def.versions.join(', ')})`,
  );
  return { def, result: checkResource(def, doc) };
}

interface Expect {
  readonly path: string;
  readonly pattern: RegExp;
  readonly line: string;
}

function expectations(text: string): Expect[] {
  const out: Expect[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('#')) break;
    const m = /^#\s*expect:\s*(.*)$/.exec(line);
    if (!m) continue;
    const body = m[1]!;
    const sep = body.indexOf(': ');
    assert.ok(sep > 0, `malformed expect line: ${line}`);
    out.push({ path: body.slice(0, sep), pattern: new RegExp(body.slice(sep + 2)), line });
  }
  return out;
}

const dirs = existsSync(fixtureRoot) ? readdirSync(fixtureRoot).sort() : [];
const ours = new Set(kinds.map((k) => k.kind.toLowerCase()));

test('every Gateway API kind has fixtures', () => {
  for (const k of kinds) {
    const dir = join(fixtureRoot, k.kind.toLowerCase());
    assert.ok(existsSync(join(dir, 'valid')), `missing ${dir}/valid`);
    assert.ok(existsSync(join(dir, 'invalid')), `missing ${dir}/invalid`);
    assert.ok(readdirSync(join(dir, 'valid')).length >= 3, `fewer than 3 valid fixtures for ${k.kind}`);
  }
});

for (const dir of dirs.filter((d) => ours.has(d))) {
  const validDir = join(fixtureRoot, dir, 'valid');
  for (const file of existsSync(validDir)
    ? readdirSync(validDir)
        .filter((f) => f.endsWith('.yaml'))
        .sort()
    : []) {
    test(`${dir}/valid/${file}`, () => {
      const docs = parseAllDocuments(readFileSync(join(validDir, file), 'utf8'));
      assert.ok(docs.length > 0, 'no YAML documents');
      let mine = 0;
      for (const d of docs) {
        assert.deepEqual(d.errors, [], 'YAML syntax error');
        const doc = d.toJS() as unknown;
        if (!byKind.has(String((doc as { kind?: unknown }).kind))) continue; // e.g. a Service alongside
        mine++;
        const { result } = check(doc);
        assert.equal(result.issues.length, 0, `unexpected issues:\n${describeIssues(result.issues)}`);
        assert.ok(result.value);
      }
      assert.ok(mine > 0, 'no Gateway API document in fixture');
    });
  }

  const invalidDir = join(fixtureRoot, dir, 'invalid');
  for (const file of existsSync(invalidDir)
    ? readdirSync(invalidDir)
        .filter((f) => f.endsWith('.yaml'))
        .sort()
    : []) {
    test(`${dir}/invalid/${file}`, () => {
      const text = readFileSync(join(invalidDir, file), 'utf8');
      const expects = expectations(text);
      assert.ok(expects.length > 0, 'invalid fixture without "# expect:" lines');
      const doc = parse(text) as unknown;
      const { def, result } = check(doc);
      assert.equal(def.kind.toLowerCase(), dir, 'fixture is in the wrong directory');
      assert.equal(result.value, undefined);
      const unmatched = [...result.issues];
      const missing: Expect[] = [];
      for (const e of expects) {
        const i = unmatched.findIndex((issue) => formatPath(issue.path) === e.path && e.pattern.test(issue.message));
        if (i < 0) missing.push(e);
        else unmatched.splice(i, 1);
      }
      assert.ok(
        missing.length === 0 && unmatched.length === 0,
        [
          missing.length
            ? `expect lines without a matching issue:\n${missing.map((m) => `  ${m.line}`).join('\n')}`
            : '',
          unmatched.length ? `issues without an expect line:\n${describeIssues(unmatched)}` : '',
          `all issues:\n${describeIssues(result.issues)}`,
        ]
          .filter(Boolean)
          .join('\n'),
      );
    });
  }
}

// ---------------------------------------------------------------------------
// Defaults and explicit rules
// ---------------------------------------------------------------------------

const meta = { name: 'r', namespace: 'default' };

test('HTTPRoute defaults: rule match PathPrefix "/", backend weight 1, parentRef group/kind', () => {
  const r = checkResource(httpRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta,
    spec: {
      parentRefs: [{ name: 'gw' }],
      rules: [
        { backendRefs: [{ name: 'svc', port: 80 }] },
        { matches: [{ headers: [{ name: 'env', value: 'canary' }] }, { path: { value: '/api' } }] },
      ],
    },
  });
  assert.deepEqual(r.issues, []);
  const spec = r.value!.body.spec;
  assert.deepEqual(spec.parentRefs?.[0], { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' });
  assert.deepEqual(spec.rules[0]!.matches, [{ path: { type: 'PathPrefix', value: '/' } }]);
  assert.deepEqual(spec.rules[0]!.backendRefs?.[0], { group: '', kind: 'Service', name: 'svc', port: 80, weight: 1 });
  assert.deepEqual(spec.rules[1]!.matches[0], {
    path: { type: 'PathPrefix', value: '/' },
    headers: [{ type: 'Exact', name: 'env', value: 'canary' }],
  });
  assert.deepEqual(spec.rules[1]!.matches[1]!.path, { type: 'PathPrefix', value: '/api' });
});

test('HTTPRoute without rules gets the upstream default rule', () => {
  const r = checkResource(httpRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta,
    spec: { parentRefs: [{ name: 'gw', sectionName: 'http' }] },
  });
  assert.deepEqual(r.issues, []);
  assert.deepEqual(r.value!.body.spec.rules, [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }] }]);
});

test('HTTPRoute filter defaults: redirect status 302, mirror fraction denominator 100, CORS maxAge 5', () => {
  const r = checkResource(httpRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta,
    spec: {
      rules: [
        { filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https' } }] },
        {
          filters: [
            {
              type: 'RequestMirror',
              requestMirror: { backendRef: { name: 'm', port: 8080 }, fraction: { numerator: 5 } },
            },
            { type: 'CORS', cors: { allowOrigins: ['https://app.example.com'] } },
          ],
          backendRefs: [{ name: 'svc', port: 80 }],
        },
      ],
    },
  });
  assert.deepEqual(r.issues, []);
  const rules = r.value!.body.spec.rules;
  assert.equal(rules[0]!.filters?.[0]?.requestRedirect?.statusCode, 302);
  assert.deepEqual(rules[1]!.filters?.[0]?.requestMirror?.fraction, { numerator: 5, denominator: 100 });
  assert.equal(rules[1]!.filters?.[0]?.requestMirror?.backendRef.kind, 'Service');
  assert.equal(rules[1]!.filters?.[1]?.cors?.maxAge, 5);
});

test('Gateway defaults: allowedRoutes from Same, tls mode Terminate, certificateRef kind Secret', () => {
  const r = checkResource(gatewayKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: meta,
    spec: {
      gatewayClassName: 'istio',
      listeners: [
        { name: 'http', port: 80, protocol: 'HTTP' },
        { name: 'https', port: 443, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'cert' }] } },
      ],
      addresses: [{ value: '10.0.0.1' }],
    },
  });
  assert.deepEqual(r.issues, []);
  const spec = r.value!.body.spec;
  assert.deepEqual(spec.listeners[0]!.allowedRoutes, { namespaces: { from: 'Same' } });
  assert.equal(spec.listeners[1]!.tls?.mode, 'Terminate');
  assert.deepEqual(spec.listeners[1]!.tls?.certificateRefs?.[0], { group: '', kind: 'Secret', name: 'cert' });
  assert.equal(spec.addresses?.[0]?.type, 'IPAddress');
});

test('GRPCRoute defaults: method match type Exact, header match type Exact', () => {
  const r = checkResource(grpcRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'GRPCRoute',
    metadata: meta,
    spec: {
      rules: [
        {
          matches: [{ method: { service: 'com.example.User' }, headers: [{ name: 'env', value: 'x' }] }],
          backendRefs: [{ name: 'grpc', port: 50051 }],
        },
      ],
    },
  });
  assert.deepEqual(r.issues, []);
  const m = r.value!.body.spec.rules?.[0]?.matches?.[0];
  assert.equal(m?.method?.type, 'Exact');
  assert.equal(m?.headers?.[0]?.type, 'Exact');
  assert.equal(r.value!.body.spec.rules?.[0]?.backendRefs?.[0]?.weight, 1);
});

test('exceeding an upstream limit is one issue at the list', () => {
  const rules = Array.from({ length: 17 }, () => ({ backendRefs: [{ name: 'svc', port: 80 }] }));
  const r = checkResource(httpRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta,
    spec: { rules },
  });
  assert.equal(r.issues.length, 1);
  assert.equal(formatPath(r.issues[0]!.path), 'spec.rules');
  assert.equal(r.issues[0]!.code, 'limit');
  assert.equal(r.issues[0]!.expected, 'at most 16');
});

test('backend weights must be integers 0-1000000', () => {
  for (const [weight, code] of [
    [-1, 'range'],
    [1.5, 'type'],
    [1_000_001, 'range'],
  ] as const) {
    const r = checkResource(httpRouteKind, {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: meta,
      spec: { rules: [{ backendRefs: [{ name: 'svc', port: 80, weight }] }] },
    });
    assert.equal(r.issues.length, 1, `weight ${weight}`);
    assert.equal(formatPath(r.issues[0]!.path), 'spec.rules[0].backendRefs[0].weight');
    assert.equal(r.issues[0]!.code, code);
  }
  const zero = checkResource(httpRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta,
    spec: { rules: [{ backendRefs: [{ name: 'svc', port: 80, weight: 0 }] }] },
  });
  assert.deepEqual(zero.issues, []);
});

test('TLSRoute v1alpha3 requires hostnames; v1alpha2 does not', () => {
  const spec = { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 'svc', port: 443 }] }] };
  const a2 = checkResource(tlsRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1alpha2',
    kind: 'TLSRoute',
    metadata: meta,
    spec,
  });
  assert.deepEqual(a2.issues, []);
  const a3 = checkResource(tlsRouteKind, {
    apiVersion: 'gateway.networking.k8s.io/v1alpha3',
    kind: 'TLSRoute',
    metadata: meta,
    spec,
  });
  assert.deepEqual(
    a3.issues.map((i) => formatPath(i.path)),
    ['spec.hostnames'],
  );
});

test('kind modules declare group, versions and scope', () => {
  for (const k of kinds) assert.equal(k.group, 'gateway.networking.k8s.io');
  assert.equal(gatewayClassKind.namespaced, false);
  for (const k of kinds.filter((k) => k !== gatewayClassKind)) assert.equal(k.namespaced, true, k.kind);
  assert.deepEqual(httpRouteKind.versions, ['v1', 'v1beta1']);
  assert.deepEqual(grpcRouteKind.versions, ['v1', 'v1alpha2']);
  assert.deepEqual(tcpRouteKind.versions, ['v1alpha2']);
  assert.deepEqual(tlsRouteKind.versions, ['v1alpha2', 'v1alpha3']);
  assert.deepEqual(backendTlsPolicyKind.versions, ['v1', 'v1alpha3']);
  assert.deepEqual(referenceGrantKind.versions, ['v1beta1', 'v1alpha2']);
});
