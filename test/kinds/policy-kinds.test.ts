// The policy kinds (Istio security, Kubernetes Namespace/NetworkPolicy, Cilium network policies) against their
// fixtures: every valid fixture checks clean, every invalid fixture produces exactly the issues its
// `# expect: <path>: <regex>` lines name, one to one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parse } from 'yaml';
import { checkResource } from '../../src/config/kinds/check-resource.js';
import { apiVersionOf, type KindDefinition } from '../../src/config/kinds/kind.js';
import { authorizationPolicyKind } from '../../src/config/kinds/istio/authorization-policy.js';
import { peerAuthenticationKind } from '../../src/config/kinds/istio/peer-authentication.js';
import { requestAuthenticationKind } from '../../src/config/kinds/istio/request-authentication.js';
import { namespaceKind } from '../../src/config/kinds/kubernetes/namespace.js';
import { networkPolicyKind } from '../../src/config/kinds/kubernetes/network-policy.js';
import {
  ciliumClusterwideNetworkPolicyKind,
  ciliumNetworkPolicyKind,
} from '../../src/config/kinds/cilium/cilium-network-policy.js';
import { formatPath, type Issue } from '../../src/config/schema/schema.js';

const KINDS: readonly KindDefinition[] = [
  authorizationPolicyKind,
  peerAuthenticationKind,
  requestAuthenticationKind,
  namespaceKind,
  networkPolicyKind,
  ciliumNetworkPolicyKind,
  ciliumClusterwideNetworkPolicyKind,
] as readonly KindDefinition[];
const byKind = new Map(KINDS.map((k) => [k.kind, k]));

// dist/test/kinds -> repository root
const FIXTURES = new URL('../../../test/fixtures/kinds/', import.meta.url).pathname;

interface Expectation {
  readonly path: string;
  readonly pattern: RegExp;
  readonly line: string;
}

function expectations(text: string): Expectation[] {
  const out: Expectation[] = [];
  for (const line of text.split('\n')) {
    const m = /^#\s*expect:\s?(.*?):\s(.*)$/.exec(line);
    if (m) out.push({ path: m[1]!.trim(), pattern: new RegExp(m[2]!.trim()), line });
  }
  return out;
}

function describe(issues: readonly Issue[]): string {
  return issues.map((i) => `  ${formatPath(i.path)}: ${i.message}`).join('\n');
}

function fixtureFiles(kindDir: string, which: 'valid' | 'invalid'): string[] {
  const dir = join(FIXTURES, kindDir, which);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => join(dir, f));
}

function load(file: string): { doc: unknown; kind: KindDefinition; text: string } {
  const text = readFileSync(file, 'utf8');
  const doc = parse(text) as { kind?: unknown };
  const kind = typeof doc?.kind === 'string' ? byKind.get(doc.kind) : undefined;
  assert.ok(kind, `${file}: no policy kind named ${String(doc?.kind)}`);
  return { doc, kind, text };
}

for (const def of KINDS) {
  const dir = def.kind.toLowerCase();

  test(`${def.kind}: valid fixtures check clean`, async (t) => {
    const files = fixtureFiles(dir, 'valid');
    assert.ok(files.length >= 3, `${dir}/valid needs at least 3 fixtures`);
    for (const file of files) {
      await t.test(basename(file), () => {
        const { doc, kind } = load(file);
        assert.equal(kind, def, `${file} is a ${kind.kind}, not a ${def.kind}`);
        const apiVersion = (doc as { apiVersion?: string }).apiVersion;
        assert.ok(
          def.versions.some((v) => apiVersionOf(def.group, v) === apiVersion),
          `${file}: apiVersion ${apiVersion} is not served for ${def.kind}`,
        );
        const r = checkResource(kind, doc);
        assert.equal(r.issues.length, 0, `${file} should be valid but got:\n${describe(r.issues)}`);
        assert.ok(r.value);
      });
    }
  });

  test(`${def.kind}: invalid fixtures report exactly the expected issues`, async (t) => {
    const files = fixtureFiles(dir, 'invalid');
    assert.ok(files.length > 0, `${dir}/invalid has no fixtures`);
    for (const file of files) {
      await t.test(basename(file), () => {
        const { doc, kind, text } = load(file);
        assert.equal(kind, def, `${file} is a ${kind.kind}, not a ${def.kind}`);
        const expected = expectations(text);
        assert.ok(expected.length > 0, `${file} has no "# expect:" line`);
        const r = checkResource(kind, doc);
        assert.equal(r.value, undefined, `${file}: an invalid document must not produce a value`);
        const unmatched = [...r.issues];
        for (const e of expected) {
          const i = unmatched.findIndex((issue) => formatPath(issue.path) === e.path && e.pattern.test(issue.message));
          assert.ok(i >= 0, `${file}: no issue matches "${e.line}"; issues were:\n${describe(r.issues)}`);
          unmatched.splice(i, 1);
        }
        assert.equal(unmatched.length, 0, `${file}: issues without an expect line:\n${describe(unmatched)}`);
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Defaults

const meta = { name: 'p', namespace: 'default' };

test('AuthorizationPolicy action defaults to ALLOW (also for an absent spec)', () => {
  const r = checkResource(authorizationPolicyKind, {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: meta,
    spec: { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
  });
  assert.deepEqual(r.issues, []);
  assert.equal(r.value?.body.spec.action, 'ALLOW');
  const bare = checkResource(authorizationPolicyKind, {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: meta,
  });
  assert.deepEqual(bare.issues, []);
  assert.equal(bare.value?.body.spec.action, 'ALLOW');
  assert.equal(bare.value?.body.spec.rules, undefined);
});

test('NetworkPolicy policyTypes default to Ingress, plus Egress when there are egress rules', () => {
  const check = (spec: object) =>
    checkResource(networkPolicyKind, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta,
      spec,
    });
  assert.deepEqual(check({ podSelector: {} }).value?.body.spec.policyTypes, ['Ingress']);
  assert.deepEqual(check({ podSelector: {}, egress: [{}] }).value?.body.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(check({ podSelector: {}, egress: [] }).value?.body.spec.policyTypes, ['Ingress']);
  // Explicit policyTypes are kept as written.
  assert.deepEqual(check({ podSelector: {}, egress: [{}], policyTypes: ['Egress'] }).value?.body.spec.policyTypes, [
    'Egress',
  ]);
});

test('NetworkPolicy port protocol defaults to TCP', () => {
  const r = checkResource(networkPolicyKind, {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: meta,
    spec: { podSelector: {}, ingress: [{ ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }] }] },
  });
  assert.deepEqual(r.issues, []);
  const ports = r.value?.body.spec.ingress?.[0]?.ports;
  assert.equal(ports?.[0]?.protocol, 'TCP');
  assert.equal(ports?.[1]?.protocol, 'UDP');
});

test('Cilium port protocol defaults to ANY and enableDefaultDeny follows the rule directions', () => {
  const r = checkResource(ciliumNetworkPolicyKind, {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta,
    spec: {
      endpointSelector: {},
      egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53' }] }] }],
    },
  });
  assert.deepEqual(r.issues, []);
  const spec = r.value?.body.spec;
  assert.equal(spec?.egress?.[0]?.toPorts?.[0]?.ports?.[0]?.protocol, 'ANY');
  assert.deepEqual(spec?.enableDefaultDeny, { ingress: false, egress: true });
});

test('Istio defaults: PeerAuthentication mode UNSET, JWT forwardOriginalToken false, jwks_uri read as jwksUri', () => {
  const pa = checkResource(peerAuthenticationKind, {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: meta,
    spec: { mtls: {} },
  });
  assert.deepEqual(pa.issues, []);
  assert.equal(pa.value?.body.spec.mtls?.mode, 'UNSET');
  const ra = checkResource(requestAuthenticationKind, {
    apiVersion: 'security.istio.io/v1',
    kind: 'RequestAuthentication',
    metadata: meta,
    spec: { jwtRules: [{ issuer: 'https://example.com', jwks_uri: 'https://example.com/jwks.json' }] },
  });
  assert.deepEqual(ra.issues, []);
  const rule = ra.value?.body.spec.jwtRules?.[0];
  assert.equal(rule?.forwardOriginalToken, false);
  assert.equal(rule?.jwksUri, 'https://example.com/jwks.json');
  assert.equal(rule?.jwks_uri, undefined);
});
