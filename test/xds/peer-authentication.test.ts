// PeerAuthentication: the effective mTLS mode of a workload port, table-driven from the examples
// and rules of istio.io's PeerAuthentication reference and security concepts (mesh = root
// namespace or the Trellis Mesh spec.mtls; namespace; workload selector; portLevelMtls on the
// workload's port; UNSET inherits; the narrowest scope wins; among equals the oldest by
// metadata.creationTimestamp, then by name; a selector in the root namespace is ignored), all
// through the loader, compileModel and SecurityIndex. Then what the node translation makes of
// it: a plaintext inbound listener exactly for PERMISSIVE / DISABLE ports, at a stable port.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPaths } from '../../src/config/load.js';
import type { Resource } from '../../src/config/resource.js';
import { compileModel } from '../../src/model/compile.js';
import type { MeshModel } from '../../src/model/mesh-model.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { readTrellisMetadata } from '../../src/xds/struct.js';
import { proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { policySpecsFromModel, SecurityIndex, type EffectiveMtls } from '../../src/xds/translate/security.js';

function load(yaml: string): readonly Resource[] {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-peerauthn-'));
  try {
    writeFileSync(join(dir, 'mesh.yaml'), yaml);
    const loaded = loadPaths([dir]);
    assert.deepEqual(
      loaded.diagnostics.filter((d) => d.severity === 'error'),
      [],
    );
    return loaded.resources;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// foo/finance serves 8080 and 9090 (Service port 80 -> 8080); foo/other 8080; bar/finance 8080.
const world = (meshMode: string) => `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec:
  trustDomain: cluster.local
  mtls: { mode: ${meshMode} }
  nodes: [{ name: n1, address: 127.0.0.1 }]
---
apiVersion: v1
kind: Namespace
metadata: { name: foo }
---
apiVersion: v1
kind: Namespace
metadata: { name: bar }
---
apiVersion: v1
kind: Namespace
metadata: { name: istio-system }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: finance, namespace: foo }
spec: { address: 127.0.0.11, serviceAccount: finance, labels: { app: finance }, ports: { http: 8080, grpc: 9090 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: other, namespace: foo }
spec: { address: 127.0.0.12, serviceAccount: other, labels: { app: other }, ports: { http: 8080 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: finance, namespace: bar }
spec: { address: 127.0.0.13, serviceAccount: finance, labels: { app: finance }, ports: { http: 8080 } }
---
apiVersion: v1
kind: Service
metadata: { name: finance, namespace: foo }
spec:
  selector: { app: finance }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
`;

interface PaOpts {
  readonly ns: string;
  readonly name: string;
  readonly app?: string;
  readonly mode?: string;
  readonly ports?: Readonly<Record<number, string>>;
  readonly created?: string;
}

function pa(o: PaOpts): string {
  const lines = [
    '---',
    'apiVersion: security.istio.io/v1',
    'kind: PeerAuthentication',
    'metadata:',
    `  name: ${o.name}`,
    `  namespace: ${o.ns}`,
    ...(o.created ? [`  creationTimestamp: ${o.created}`] : []),
    'spec:',
    ...(o.app ? ['  selector:', '    matchLabels:', `      app: ${o.app}`] : []),
    ...(o.mode ? ['  mtls:', `    mode: ${o.mode}`] : []),
    ...(o.ports
      ? ['  portLevelMtls:', ...Object.entries(o.ports).flatMap(([p, m]) => [`    ${p}:`, `      mode: ${m}`])]
      : []),
  ];
  if (!o.app && !o.mode && !o.ports) lines.push('  {}');
  return `${lines.join('\n')}\n`;
}

const FIN = 'WorkloadEntry/foo/finance';
const OTHER = 'WorkloadEntry/foo/other';
const BAR = 'WorkloadEntry/bar/finance';

interface Case {
  readonly name: string;
  readonly mesh?: EffectiveMtls;
  readonly policies: readonly PaOpts[];
  /** [workload id, workload port, expected mode] */
  readonly expect: readonly (readonly [string, number, EffectiveMtls])[];
  /** Analysis message names expected among the model's. */
  readonly analysis?: readonly string[];
}

const T1 = '2024-01-01T00:00:00Z';
const T2 = '2024-06-01T00:00:00Z';

const CASES: readonly Case[] = [
  // Mesh level
  {
    name: 'no policy: the mesh default (Trellis Mesh PERMISSIVE, as Istio without any policy)',
    policies: [],
    expect: [
      [FIN, 8080, 'PERMISSIVE'],
      [BAR, 8080, 'PERMISSIVE'],
    ],
  },
  { name: 'no policy, Mesh spec.mtls STRICT', mesh: 'STRICT', policies: [], expect: [[FIN, 9090, 'STRICT']] },
  { name: 'no policy, Mesh spec.mtls DISABLE', mesh: 'DISABLE', policies: [], expect: [[OTHER, 8080, 'DISABLE']] },
  {
    name: 'mesh-wide policy in the root namespace (istio-system) applies to every namespace',
    policies: [{ ns: 'istio-system', name: 'default', mode: 'STRICT' }],
    expect: [
      [FIN, 8080, 'STRICT'],
      [BAR, 8080, 'STRICT'],
    ],
  },
  {
    name: 'a root-namespace policy is more specific than the Mesh spec default',
    mesh: 'STRICT',
    policies: [{ ns: 'istio-system', name: 'default', mode: 'PERMISSIVE' }],
    expect: [[OTHER, 8080, 'PERMISSIVE']],
  },
  {
    name: 'a root-namespace policy with mode UNSET inherits the Mesh spec default',
    mesh: 'STRICT',
    policies: [{ ns: 'istio-system', name: 'default', mode: 'UNSET' }],
    expect: [[OTHER, 8080, 'STRICT']],
  },
  {
    name: 'a root-namespace policy without mtls at all is UNSET',
    mesh: 'DISABLE',
    policies: [{ ns: 'istio-system', name: 'default' }],
    expect: [[FIN, 8080, 'DISABLE']],
  },
  {
    name: 'a selector in the root namespace is ignored (istio.io note), with an IgnoredPolicy message',
    policies: [{ ns: 'istio-system', name: 'finance', app: 'finance', mode: 'STRICT' }],
    expect: [
      [FIN, 8080, 'PERMISSIVE'],
      [BAR, 8080, 'PERMISSIVE'],
    ],
    analysis: ['IgnoredPolicy'],
  },
  // Namespace level
  {
    name: 'istio.io example 1: STRICT for all workloads under namespace foo (bar keeps the mesh default)',
    policies: [{ ns: 'foo', name: 'default', mode: 'STRICT' }],
    expect: [
      [FIN, 8080, 'STRICT'],
      [OTHER, 8080, 'STRICT'],
      [BAR, 8080, 'PERMISSIVE'],
    ],
  },
  {
    name: 'namespace policy beats the mesh-wide one',
    policies: [
      { ns: 'istio-system', name: 'default', mode: 'STRICT' },
      { ns: 'foo', name: 'default', mode: 'DISABLE' },
    ],
    expect: [
      [FIN, 9090, 'DISABLE'],
      [BAR, 8080, 'STRICT'],
    ],
  },
  {
    name: 'namespace policy UNSET inherits the mesh-wide one',
    policies: [
      { ns: 'istio-system', name: 'default', mode: 'STRICT' },
      { ns: 'foo', name: 'default', mode: 'UNSET' },
    ],
    expect: [[OTHER, 8080, 'STRICT']],
  },
  {
    name: 'namespace PERMISSIVE under a DISABLE mesh',
    mesh: 'DISABLE',
    policies: [{ ns: 'foo', name: 'default', mode: 'PERMISSIVE' }],
    expect: [
      [OTHER, 8080, 'PERMISSIVE'],
      [BAR, 8080, 'DISABLE'],
    ],
  },
  // Workload level
  {
    name: 'istio.io example 2: PERMISSIVE for namespace foo, but STRICT for workload finance',
    policies: [
      { ns: 'foo', name: 'default', mode: 'PERMISSIVE' },
      { ns: 'foo', name: 'finance', app: 'finance', mode: 'STRICT' },
    ],
    expect: [
      [FIN, 8080, 'STRICT'],
      [FIN, 9090, 'STRICT'],
      [OTHER, 8080, 'PERMISSIVE'],
    ],
  },
  {
    name: 'a workload DISABLE beats namespace and mesh STRICT',
    mesh: 'STRICT',
    policies: [
      { ns: 'foo', name: 'default', mode: 'STRICT' },
      { ns: 'foo', name: 'finance', app: 'finance', mode: 'DISABLE' },
    ],
    expect: [
      [FIN, 8080, 'DISABLE'],
      [OTHER, 8080, 'STRICT'],
    ],
  },
  {
    name: 'a selector matches only its own namespace (bar/finance is not foo/finance)',
    policies: [{ ns: 'bar', name: 'finance', app: 'finance', mode: 'STRICT' }],
    expect: [
      [BAR, 8080, 'STRICT'],
      [FIN, 8080, 'PERMISSIVE'],
    ],
  },
  {
    name: 'a workload policy UNSET with no ports inherits the namespace',
    policies: [
      { ns: 'foo', name: 'default', mode: 'DISABLE' },
      { ns: 'foo', name: 'finance', app: 'finance', mode: 'UNSET' },
    ],
    expect: [[FIN, 9090, 'DISABLE']],
  },
  {
    name: 'a selector matching nothing changes nothing (SelectorMatchesNothing)',
    policies: [{ ns: 'foo', name: 'ghost', app: 'ghost', mode: 'STRICT' }],
    expect: [[FIN, 8080, 'PERMISSIVE']],
    analysis: ['SelectorMatchesNothing'],
  },
  // Port level
  {
    name: 'istio.io example 3: STRICT for finance but port 8080 DISABLE',
    policies: [{ ns: 'foo', name: 'default', app: 'finance', mode: 'STRICT', ports: { 8080: 'DISABLE' } }],
    expect: [
      [FIN, 8080, 'DISABLE'],
      [FIN, 9090, 'STRICT'],
      [OTHER, 8080, 'PERMISSIVE'],
    ],
  },
  {
    name: 'istio.io example 4: UNSET inherits the namespace (STRICT), port 8080 overridden to DISABLE',
    policies: [
      { ns: 'foo', name: 'ns', mode: 'STRICT' },
      { ns: 'foo', name: 'default', app: 'finance', mode: 'UNSET', ports: { 8080: 'DISABLE' } },
    ],
    expect: [
      [FIN, 8080, 'DISABLE'],
      [FIN, 9090, 'STRICT'],
    ],
  },
  {
    name: 'istio.io example 4 with only a mesh-wide policy: the other ports inherit the mesh',
    policies: [
      { ns: 'istio-system', name: 'default', mode: 'PERMISSIVE' },
      { ns: 'foo', name: 'default', app: 'finance', mode: 'UNSET', ports: { 8080: 'DISABLE' } },
    ],
    expect: [
      [FIN, 8080, 'DISABLE'],
      [FIN, 9090, 'PERMISSIVE'],
    ],
  },
  {
    name: 'a port-level UNSET inherits the workload-level mode',
    policies: [
      { ns: 'foo', name: 'default', mode: 'DISABLE' },
      { ns: 'foo', name: 'finance', app: 'finance', mode: 'STRICT', ports: { 8080: 'UNSET' } },
    ],
    expect: [[FIN, 8080, 'STRICT']],
  },
  {
    name: 'port-level STRICT on a PERMISSIVE workload; the other port stays PERMISSIVE',
    mesh: 'DISABLE',
    policies: [{ ns: 'foo', name: 'finance', app: 'finance', mode: 'PERMISSIVE', ports: { 9090: 'STRICT' } }],
    expect: [
      [FIN, 9090, 'STRICT'],
      [FIN, 8080, 'PERMISSIVE'],
    ],
  },
  {
    name: 'portLevelMtls names the workload port, not the Service port (80 -> 8080 is not overridden)',
    policies: [{ ns: 'foo', name: 'finance', app: 'finance', mode: 'STRICT', ports: { 80: 'DISABLE' } }],
    expect: [[FIN, 8080, 'STRICT']],
  },
  {
    name: 'a port-level entry for a port the workload does not serve changes nothing',
    policies: [{ ns: 'foo', name: 'finance', app: 'finance', mode: 'PERMISSIVE', ports: { 7000: 'STRICT' } }],
    expect: [
      [FIN, 8080, 'PERMISSIVE'],
      [FIN, 9090, 'PERMISSIVE'],
    ],
  },
  // Equal scopes: the oldest wins
  {
    name: 'two namespace-wide policies: the oldest by creationTimestamp wins, whatever the names',
    policies: [
      { ns: 'foo', name: 'a-newer', mode: 'STRICT', created: T2 },
      { ns: 'foo', name: 'z-older', mode: 'DISABLE', created: T1 },
    ],
    expect: [[OTHER, 8080, 'DISABLE']],
  },
  {
    name: 'two namespace-wide policies without timestamps: by name',
    policies: [
      { ns: 'foo', name: 'b', mode: 'STRICT' },
      { ns: 'foo', name: 'a', mode: 'DISABLE' },
    ],
    expect: [[OTHER, 8080, 'DISABLE']],
  },
  {
    name: 'equal creationTimestamps: by name',
    policies: [
      { ns: 'foo', name: 'beta', mode: 'DISABLE', created: T1 },
      { ns: 'foo', name: 'alpha', mode: 'STRICT', created: T1 },
    ],
    expect: [[OTHER, 8080, 'STRICT']],
  },
  {
    name: 'a policy with a creationTimestamp is older than one without',
    policies: [
      { ns: 'foo', name: 'a-undated', mode: 'DISABLE' },
      { ns: 'foo', name: 'z-dated', mode: 'STRICT', created: T2 },
    ],
    expect: [[OTHER, 8080, 'STRICT']],
  },
  {
    name: 'two workload policies on finance: the oldest wins (PERMISSIVE over a newer STRICT)',
    policies: [
      { ns: 'foo', name: 'a-strict', app: 'finance', mode: 'STRICT', created: T2 },
      { ns: 'foo', name: 'b-permissive', app: 'finance', mode: 'PERMISSIVE', created: T1 },
    ],
    expect: [[FIN, 9090, 'PERMISSIVE']],
  },
  {
    name: 'the oldest workload policy is UNSET: it inherits the namespace, not the newer workload policy',
    policies: [
      { ns: 'foo', name: 'default', mode: 'DISABLE' },
      { ns: 'foo', name: 'old', app: 'finance', mode: 'UNSET', created: T1 },
      { ns: 'foo', name: 'new', app: 'finance', mode: 'STRICT', created: T2 },
    ],
    expect: [[FIN, 8080, 'DISABLE']],
  },
  {
    name: 'the newer workload policy port-level override does not apply when the older one is chosen',
    policies: [
      { ns: 'foo', name: 'old', app: 'finance', mode: 'STRICT', created: T1 },
      { ns: 'foo', name: 'new', app: 'finance', mode: 'STRICT', ports: { 8080: 'DISABLE' }, created: T2 },
    ],
    expect: [[FIN, 8080, 'STRICT']],
  },
  {
    name: 'two mesh-wide policies in the root namespace: the oldest wins',
    policies: [
      { ns: 'istio-system', name: 'a', mode: 'STRICT', created: T2 },
      { ns: 'istio-system', name: 'b', mode: 'DISABLE', created: T1 },
    ],
    expect: [[BAR, 8080, 'DISABLE']],
  },
  {
    name: 'a creationTimestamp written as an unquoted YAML timestamp still orders',
    policies: [
      { ns: 'foo', name: 'a', mode: 'STRICT', created: '2025-03-01T10:00:00Z' },
      { ns: 'foo', name: 'b', mode: 'PERMISSIVE', created: '2023-03-01T10:00:00Z' },
    ],
    expect: [[OTHER, 8080, 'PERMISSIVE']],
  },
];

function compile(meshMode: EffectiveMtls, policies: readonly PaOpts[]): MeshModel {
  return compileModel(load(world(meshMode) + policies.map(pa).join('')));
}

test('PeerAuthentication corpus: at least 25 cases', () => {
  assert.ok(CASES.length >= 25, String(CASES.length));
});

for (const c of CASES) {
  test(`mTLS mode: ${c.name}`, () => {
    const model = compile(c.mesh ?? 'PERMISSIVE', c.policies);
    const security = new SecurityIndex(model, policySpecsFromModel(model));
    const byId = new Map(model.workloads.map((w) => [w.id, w]));
    for (const [id, port, want] of c.expect) {
      const w = byId.get(id);
      assert.ok(w, `workload ${id} in the model`);
      assert.equal(security.mtlsMode(w, port), want, `${id}:${port}`);
    }
    const names = model.analysis.map((a) => a.name);
    for (const name of c.analysis ?? []) assert.ok(names.includes(name), `${name} in ${JSON.stringify(names)}`);
  });
}

test('a bound PeerAuthentication whose spec is unknown fails closed (STRICT)', () => {
  const model = compile('DISABLE', [{ ns: 'foo', name: 'default', mode: 'DISABLE' }]);
  const security = new SecurityIndex(model, { authorization: new Map(), peerAuthentication: new Map() });
  const fin = model.workloads.find((w) => w.id === FIN);
  assert.equal(security.mtlsMode(fin, 8080), 'STRICT');
  // Nothing bound: the Mesh default, known without any spec.
  assert.equal(
    security.mtlsMode(
      model.workloads.find((w) => w.id === BAR),
      8080,
    ),
    'DISABLE',
  );
});

// --- The node translation: plaintext inbound listeners ---------------------------------------

const placed = (extra: string) =>
  `${extra}---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: finance, namespace: foo }
spec: { node: n1 }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: other, namespace: foo }
spec: { node: n1 }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: finance-allow, namespace: foo }
spec:
  selector: { matchLabels: { app: finance } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: [cluster.local/ns/foo/sa/other] } }] }]
`;

interface PlaintextListener {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly md: Record<string, unknown>;
  readonly filters: readonly { name?: unknown }[];
}

function plaintextListeners(yaml: string): Map<string, PlaintextListener> {
  const model = compileModel(load(yaml));
  const out = new Map<string, PlaintextListener>();
  for (const l of proxylessSnapshot(model).resources(TYPE_URLS.listener).values()) {
    if (!l.name.startsWith('trellis/n1/inbound-plaintext/')) continue;
    const sa = (l.body.address as { socket_address: { address: string; port_value: number } }).socket_address;
    const chains = (l.body.filter_chains as { filters?: { name?: unknown }[] }[] | undefined) ?? [];
    out.set(l.name, {
      name: l.name,
      address: sa.address,
      port: sa.port_value,
      md: readTrellisMetadata(l.body),
      filters: chains.flatMap((c) => c.filters ?? []),
    });
  }
  return out;
}

test('node translation: a plaintext inbound listener for each PERMISSIVE / DISABLE port, none for STRICT ones', () => {
  const yaml = placed(
    world('STRICT') + pa({ ns: 'foo', name: 'finance', app: 'finance', mode: 'PERMISSIVE', ports: { 9090: 'STRICT' } }),
  );
  const ls = plaintextListeners(yaml);
  assert.deepEqual([...ls.keys()], ['trellis/n1/inbound-plaintext/127.0.0.11:8080']);
  const l = ls.get('trellis/n1/inbound-plaintext/127.0.0.11:8080')!;
  assert.equal(l.address, '127.0.0.1', 'bound on the node address');
  assert.ok(l.port >= 15006 && l.port < 16006, `port ${l.port} in the inbound range`);
  assert.ok(![15006, 15008, 15020, 15021].includes(l.port));
  assert.deepEqual(l.md, {
    role: 'inbound-plaintext',
    workload: FIN,
    identity: 'spiffe://cluster.local/ns/foo/sa/finance',
    target: '127.0.0.11:8080',
    mtls: 'PERMISSIVE',
  });
  // The same L4 authorization as the HBONE inbound listener of that port (its filters, copied).
  const inbound = compiledListener(yaml, 'trellis/n1/inbound/127.0.0.11:8080');
  const inboundFilters = (inbound.filter_chains as { filters?: unknown[] }[]).flatMap((c) => c.filters ?? []);
  assert.ok(inboundFilters.length > 0);
  assert.deepEqual(l.filters, inboundFilters);
  assert.ok(l.filters.some((f) => String(f.name).startsWith('envoy.filters.network.rbac')));
});

function compiledListener(yaml: string, name: string): Readonly<Record<string, unknown>> {
  const l = proxylessSnapshot(compileModel(load(yaml)))
    .resources(TYPE_URLS.listener)
    .get(name);
  assert.ok(l, name);
  return l.body;
}

test('node translation: plaintext ports are stable across mode flips and other workloads coming and going', () => {
  const both = placed(world('DISABLE'));
  const before = plaintextListeners(both);
  assert.deepEqual([...before.keys()].sort(), [
    'trellis/n1/inbound-plaintext/127.0.0.11:8080',
    'trellis/n1/inbound-plaintext/127.0.0.11:9090',
    'trellis/n1/inbound-plaintext/127.0.0.12:8080',
  ]);
  assert.equal(new Set([...before.values()].map((l) => l.port)).size, 3, 'distinct ports');
  // other flips to STRICT: its listener goes, finance's stay where they were.
  const flipped = plaintextListeners(
    placed(world('DISABLE') + pa({ ns: 'foo', name: 'o', app: 'other', mode: 'STRICT' })),
  );
  assert.equal(flipped.has('trellis/n1/inbound-plaintext/127.0.0.12:8080'), false);
  for (const name of ['trellis/n1/inbound-plaintext/127.0.0.11:8080', 'trellis/n1/inbound-plaintext/127.0.0.11:9090'])
    assert.equal(flipped.get(name)?.port, before.get(name)!.port, name);
  // other leaves the node (its Workload removed): finance's ports do not move.
  const alone = plaintextListeners(
    placed(world('DISABLE')).replace(
      /---\napiVersion: trellis.dev\/v1alpha1\nkind: Workload\nmetadata: \{ name: other, namespace: foo \}\nspec: \{ node: n1 \}\n/,
      '',
    ),
  );
  assert.equal(alone.size, 2);
  for (const [name, l] of alone) assert.equal(l.port, before.get(name)!.port, name);
});
