import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { checkResource } from '../../src/config/kinds/check-resource.js';
import { destinationRuleKind } from '../../src/config/kinds/istio/destination-rule.js';
import { serviceEntryKind } from '../../src/config/kinds/istio/service-entry.js';
import { virtualServiceKind } from '../../src/config/kinds/istio/virtual-service.js';
import { workloadEntryKind } from '../../src/config/kinds/istio/workload-entry.js';
import { formatPath, type Issue } from '../../src/config/schema/schema.js';

// dist/test/kinds -> repository root (fixtures are not copied into dist).
const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = join(root, 'test', 'fixtures', 'kinds');

const kinds: Record<string, (doc: unknown) => readonly Issue[]> = {
  VirtualService: (doc) => checkResource(virtualServiceKind, doc).issues,
  DestinationRule: (doc) => checkResource(destinationRuleKind, doc).issues,
  ServiceEntry: (doc) => checkResource(serviceEntryKind, doc).issues,
  WorkloadEntry: (doc) => checkResource(workloadEntryKind, doc).issues,
};
const dirs = ['virtualservice', 'destinationrule', 'serviceentry', 'workloadentry'];

interface Expectation {
  readonly path: string;
  readonly pattern: RegExp;
}

/** Leading "# expect: <path>: <regex>" comment lines. */
function expectations(text: string): Expectation[] {
  const out: Expectation[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('#')) break;
    const m = /^#\s*expect:\s*(\S+):\s(.*)$/.exec(line);
    if (m) out.push({ path: m[1]!, pattern: new RegExp(m[2]!.trim()) });
  }
  return out;
}

function check(text: string): readonly Issue[] {
  const doc: unknown = parse(text);
  const kind = (doc as { kind?: unknown } | null)?.kind;
  assert.ok(typeof kind === 'string' && kind in kinds, `fixture has no known kind: ${String(kind)}`);
  return kinds[kind]!(doc);
}

const show = (issues: readonly Issue[]) => issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join('\n');

for (const dir of dirs) {
  for (const file of readdirSync(join(fixtures, dir, 'valid')).filter((f) => f.endsWith('.yaml'))) {
    test(`${dir}/valid/${file} has no issues`, () => {
      const issues = check(readFileSync(join(fixtures, dir, 'valid', file), 'utf8'));
      assert.deepEqual(issues, [], `unexpected issues:\n${show(issues)}`);
    });
  }
  for (const file of readdirSync(join(fixtures, dir, 'invalid')).filter((f) => f.endsWith('.yaml'))) {
    test(`${dir}/invalid/${file} reports exactly the expected issues`, () => {
      const text = readFileSync(join(fixtures, dir, 'invalid', file), 'utf8');
      const expected = expectations(text);
      assert.ok(expected.length > 0, 'an invalid fixture must start with "# expect: <path>: <regex>" lines');
      const issues = check(text);
      const unused = [...expected];
      const unexpected: Issue[] = [];
      for (const issue of issues) {
        const path = formatPath(issue.path);
        const k = unused.findIndex((e) => e.path === path && e.pattern.test(issue.message));
        if (k < 0) unexpected.push(issue);
        else unused.splice(k, 1);
      }
      assert.deepEqual(
        { unexpected: show(unexpected), unmatched: unused.map((e) => `${e.path}: ${e.pattern.source}`) },
        { unexpected: '', unmatched: [] },
        `issues were:\n${show(issues)}`,
      );
    });
  }
}

test('every kind is served as networking.istio.io v1, v1beta1 and v1alpha3', () => {
  for (const def of [virtualServiceKind, destinationRuleKind, serviceEntryKind, workloadEntryKind]) {
    assert.equal(def.group, 'networking.istio.io');
    assert.deepEqual([...def.versions], ['v1', 'v1beta1', 'v1alpha3']);
    assert.equal(def.namespaced, true);
  }
  const versions = new Set<string>();
  for (const dir of dirs) {
    for (const file of readdirSync(join(fixtures, dir, 'valid'))) {
      versions.add(
        (parse(readFileSync(join(fixtures, dir, 'valid', file), 'utf8')) as { apiVersion: string }).apiVersion,
      );
    }
  }
  assert.deepEqual([...versions].sort(), [
    'networking.istio.io/v1',
    'networking.istio.io/v1alpha3',
    'networking.istio.io/v1beta1',
  ]);
});

const meta = { name: 'x', namespace: 'prod' };

test('ServiceEntry gets location MESH_EXTERNAL and resolution NONE by default', () => {
  const r = checkResource(serviceEntryKind, {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: meta,
    spec: { hosts: ['api.example.com'], ports: [{ number: 443, name: 'https', protocol: 'TLS' }] },
  });
  assert.deepEqual(r.issues, []);
  assert.equal(r.value?.body.spec.location, 'MESH_EXTERNAL');
  assert.equal(r.value?.body.spec.resolution, 'NONE');
  assert.equal(r.value?.body.spec.ports?.[0]?.targetPort, undefined);
});

test('ServiceEntry keeps explicit location and resolution', () => {
  const r = checkResource(serviceEntryKind, {
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: meta,
    spec: {
      hosts: ['db.internal'],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      ports: [{ number: 5432, name: 'tcp-postgres', protocol: 'tcp' }],
      endpoints: [{ address: '10.1.2.3' }],
    },
  });
  assert.deepEqual(r.issues, []);
  assert.equal(r.value?.body.spec.location, 'MESH_INTERNAL');
  assert.equal(r.value?.body.spec.resolution, 'STATIC');
});

test('DestinationRule applies the enum and tunnel defaults', () => {
  const r = checkResource(destinationRuleKind, {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: meta,
    spec: {
      host: 'proxy.example.com',
      trafficPolicy: {
        tls: { sni: 'proxy.example.com' },
        connectionPool: { http: { maxRetries: 3 } },
        tunnel: { targetHost: '10.0.0.1', targetPort: 8443 },
      },
      subsets: [{ name: 'v1', trafficPolicy: { proxyProtocol: {} } }],
    },
  });
  assert.deepEqual(r.issues, []);
  const tp = r.value?.body.spec.trafficPolicy;
  assert.equal(tp?.tls?.mode, 'DISABLE');
  assert.equal(tp?.connectionPool?.http?.h2UpgradePolicy, 'DEFAULT');
  assert.equal(tp?.tunnel?.protocol, 'CONNECT');
  assert.equal(r.value?.body.spec.subsets?.[0]?.trafficPolicy?.proxyProtocol?.version, 'V1');
});

test('exportTo "." and the object\'s own namespace are duplicates', () => {
  const r = checkResource(virtualServiceKind, {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: meta,
    spec: { hosts: ['a.example.com'], exportTo: ['.', 'prod'], http: [{ route: [{ destination: { host: 'a' } }] }] },
  });
  assert.deepEqual(
    r.issues.map((i) => formatPath(i.path)),
    ['spec.exportTo[1]'],
  );
  assert.match(r.issues[0]!.message, /duplicate exportTo entry/);
});

test('a root VirtualService route with delegate may not also route', () => {
  const r = checkResource(virtualServiceKind, {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: meta,
    spec: {
      hosts: ['bookinfo.com'],
      http: [{ delegate: { name: 'pp', namespace: 'ns' }, route: [{ destination: { host: 'pp' } }] }],
    },
  });
  assert.deepEqual(
    r.issues.map((i) => `${formatPath(i.path)} ${i.code}`),
    ['spec.http[0].route conflict'],
  );
});

test('issues carry what would be right', () => {
  const r = checkResource(virtualServiceKind, {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: meta,
    spec: { hosts: ['r'], http: [{ route: [{ destination: { host: 'r' }, weight: -1 }] }] },
  });
  assert.equal(r.issues.length, 1);
  assert.equal(r.issues[0]!.code, 'range');
  assert.ok(r.issues[0]!.expected);
});
