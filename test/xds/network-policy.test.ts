// Kubernetes NetworkPolicy and CiliumNetworkPolicy compiled to RBAC filters (network-policy.ts),
// evaluated by the one RBAC evaluator. A table of cases taken from the upstream docs' examples:
// policy YAML (validated and loaded like user config, through compileModel), a connection, and
// the expected verdict with the deciding policy/rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadDocuments, loadPaths } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import type { MeshModel, WorkloadModel } from '../../src/model/mesh-model.js';
import { compileRbacFilters, type RbacAttributes } from '../../src/proxy/rbac/evaluate.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import type { EnvoyObject } from '../../src/xds/translate/route-match.js';
import { roundTrip } from '../helpers/envoy-protos.js';
import { REPO_ROOT } from '../helpers/run-cli.js';
import { egressNetworkPolicyFilters, ingressNetworkPolicyFilters } from '../../src/xds/translate/network-policy.js';

const TD = 'cluster.local';

type EnvoyFilter = EnvoyObject & { readonly name: string; readonly typed_config: EnvoyObject };

// Namespaces and workloads every case runs against (WorkloadEntries stand for pods).
const FIXTURE = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec: { trustDomain: ${TD}, mtls: { mode: STRICT } }
---
apiVersion: v1
kind: Namespace
metadata: { name: default }
---
apiVersion: v1
kind: Namespace
metadata: { name: prod, labels: { project: myproject, env: prod } }
---
apiVersion: v1
kind: Namespace
metadata: { name: dev, labels: { env: dev, user: alice } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: db, namespace: default }
spec: { address: 10.0.0.10, serviceAccount: db, labels: { app: db, role: db }, ports: { tcp: 6379, metrics: 9100 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: frontend, namespace: default }
spec: { address: 10.0.0.11, serviceAccount: frontend, labels: { app: frontend, role: frontend }, ports: { http: 80 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: client, namespace: default }
spec: { address: 10.0.0.12, serviceAccount: client, labels: { app: client, role: client }, ports: { http: 8080 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: web, namespace: prod }
spec: { address: 10.0.1.10, serviceAccount: web, labels: { app: web, role: frontend }, ports: { http: 80, https: 443 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api, namespace: prod }
spec: { address: 10.0.1.11, serviceAccount: api, labels: { app: api }, ports: { http: 8080, grpc: 9090 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: web, namespace: dev }
spec: { address: 10.0.2.10, serviceAccount: web, labels: { app: web, role: frontend }, ports: { http: 8081 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: tool, namespace: dev }
spec: { address: 10.0.2.11, serviceAccount: tool, labels: { app: tool, role: client }, ports: { http: 8000 } }
`;

/** A NetworkPolicy document; the spec in (paste-able) flow YAML. */
const np = (name: string, spec: string, ns = 'default'): string => `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: ${spec}
`;
const cnp = (name: string, spec: string, ns = 'default'): string => `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: ${name}, namespace: ${ns} }
${spec.startsWith('specs:') ? spec : `spec: ${spec}`}
`;
const ccnp = (name: string, spec: string): string => `---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: { name: ${name} }
spec: ${spec}
`;

const models = new Map<string, MeshModel>();
function model(policies: string): MeshModel {
  let m = models.get(policies);
  if (m) return m;
  const parsed = parseYamlFile('policies.yaml', FIXTURE + policies);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  m = compileModel(loaded.resources);
  models.set(policies, m);
  return m;
}

function workload(m: MeshModel, ref: string): WorkloadModel {
  const w = m.workloads.find((x) => x.id === `WorkloadEntry/${ref}`);
  assert.ok(w, `workload ${ref}`);
  return w;
}

interface Case {
  readonly name: string;
  readonly yaml: string;
  /** "ns/name" of a mesh workload (mTLS: its identity and address), or a plaintext source IP. */
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly http?: { method: string; path: string; headers?: Record<string, string> };
  readonly mode?: 'l4' | 'l7';
  /**
   * "allow <rule>": allowed, the first matching ALLOW rule; "deny": isolated, no rule allows;
   * "deny <rule>": a DENY rule matched; "open": no filter applies; "pass": only DENY rules, none matched.
   */
  readonly expect: string;
}

/** Ingress: evaluate the connection against the destination's filters. */
function run(c: Case): void {
  const m = model(c.yaml);
  const dest = workload(m, c.to);
  const mode = c.mode ?? (c.http ? 'l7' : 'l4');
  const filters = ingressNetworkPolicyFilters(m, dest, { layer: mode === 'l4' ? 'network' : 'http' });
  const compiled = compileRbacFilters(filters, mode);
  assert.deepEqual(compiled.problems, [], 'the translation is understood completely');
  const src = /^[0-9a-f.:]+$/.test(c.from) ? undefined : workload(m, c.from);
  const h = c.http;
  const attrs: RbacAttributes = {
    ...(src ? { principal: src.identity, sourceIp: src.address } : { sourceIp: c.from }),
    sourcePort: 40000,
    destinationIp: dest.address,
    destinationPort: c.port,
    ...(h
      ? {
          http: {
            method: h.method,
            path: h.path,
            host: 'svc',
            header: (n: string) => h.headers?.[n],
          },
        }
      : {}),
  };
  check(compiled.evaluate(attrs), c.expect);
}

function check(d: { allowed: boolean; policy?: string; reason: string }, expect: string): void {
  const [verdict, rule] = expect.split(' ') as [string, string | undefined];
  switch (verdict) {
    case 'allow':
      assert.equal(d.reason, `allowed by ${rule}`);
      assert.equal(d.allowed, true);
      return;
    case 'deny':
      assert.equal(d.allowed, false, d.reason);
      if (rule) assert.equal(d.policy, rule, d.reason);
      else assert.match(d.reason, /^no ALLOW policy matched/);
      return;
    case 'open':
      assert.deepEqual(d, { allowed: true, reason: 'no RBAC policy applies' });
      return;
    case 'pass':
      assert.deepEqual(d, { allowed: true, reason: 'no DENY policy matched' });
      return;
    default:
      assert.fail(`bad expectation ${expect}`);
  }
}

// --- Kubernetes NetworkPolicy -------------------------------------------------------------------

const DENY_ALL = np('default-deny-ingress', '{ podSelector: {}, policyTypes: [Ingress] }');
const ALLOW_ALL = np('allow-all-ingress', '{ podSelector: {}, ingress: [{}], policyTypes: [Ingress] }');
// The NetworkPolicy resource example of the Kubernetes docs.
const TEST_NP = np(
  'test-network-policy',
  `
  podSelector: { matchLabels: { role: db } }
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - ipBlock: { cidr: 172.17.0.0/16, except: [172.17.1.0/24] }
        - namespaceSelector: { matchLabels: { project: myproject } }
        - podSelector: { matchLabels: { role: frontend } }
      ports: [{ protocol: TCP, port: 6379 }]
  egress:
    - to: [{ ipBlock: { cidr: 10.0.0.0/24 } }]
      ports: [{ protocol: TCP, port: 5978 }]`,
);
const TEST_RULE = 'NetworkPolicy/default/test-network-policy/ingress[0]';
// "Behavior of to and from selectors": one element with both selectors (AND) vs two elements (OR).
const AND = np(
  'and',
  '{ podSelector: { matchLabels: { role: db } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { user: alice } }, podSelector: { matchLabels: { role: client } } }] }] }',
);
const OR = np(
  'or',
  '{ podSelector: { matchLabels: { role: db } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { user: alice } } }, { podSelector: { matchLabels: { role: client } } }] }] }',
);
const SAME_NS = np('allow-same-namespace', '{ podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }');
const ALL_NS = np(
  'allow-all-namespaces',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ namespaceSelector: {} }] }] }',
);
const BY_NAME = np(
  'from-prod',
  "{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': prod } } }] }] }",
);
const EXPR_POD = np(
  'expr-pod',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: role, operator: In, values: [frontend, client] }] } }] }] }',
);
const EXPR_NS = np(
  'expr-ns',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: env, operator: NotIn, values: [dev] }] } }] }] }',
);
const END_PORT = np(
  'multi-port-ingress',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ protocol: TCP, port: 32000, endPort: 32768 }] }] }',
);
const NAMED = np('named', '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ port: tcp }] }] }');
const NAMED_MISSING = np(
  'named-missing',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ port: http }] }] }',
);
const NAMED_ALL = np('named-all', '{ podSelector: {}, ingress: [{ ports: [{ port: http }] }] }');
const UDP = np(
  'dns',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ protocol: UDP, port: 53 }] }] }',
);
const SCTP = np(
  'sctp',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ protocol: SCTP, port: 6379 }] }] }',
);
const DEFAULT_TCP = np(
  'tcp-default',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ port: 6379 }] }] }',
);
const TCP_ANY_PORT = np(
  'tcp-any',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ ports: [{ protocol: TCP }] }] }',
);
const UNION =
  np(
    'a-frontend',
    '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: frontend } } }], ports: [{ port: 6379 }] }] }',
  ) +
  np(
    'b-client',
    '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: client } } }], ports: [{ port: 9100 }] }] }',
  );
const TWO_RULES = np(
  'two-rules',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: frontend } } }] }, { from: [{ ipBlock: { cidr: 203.0.113.0/24 } }] }] }',
);
const V6 = np(
  'v6',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ ipBlock: { cidr: "2001:db8::/32" } }] }] }',
);
const INTERNET = np(
  'internet',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ ipBlock: { cidr: 0.0.0.0/0, except: [10.0.0.0/8] } }] }] }',
);
const MESH_IP = np(
  'mesh-ip',
  '{ podSelector: { matchLabels: { app: db } }, ingress: [{ from: [{ ipBlock: { cidr: 10.0.0.12/32 } }] }] }',
);

const NETWORK_POLICY_CASES: readonly Case[] = [
  // default deny
  {
    name: 'deny-all: same-namespace pod refused',
    yaml: DENY_ALL,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'deny-all: every selected pod',
    yaml: DENY_ALL,
    from: 'default/db',
    to: 'default/frontend',
    port: 80,
    expect: 'deny',
  },
  {
    name: 'deny-all: other namespaces unaffected',
    yaml: DENY_ALL,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    expect: 'open',
  },
  {
    name: 'deny-all: plaintext source refused',
    yaml: DENY_ALL,
    from: '192.0.2.1',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'allow-all ingress',
    yaml: ALLOW_ALL,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/allow-all-ingress/ingress[0]',
  },
  {
    name: 'allow-all ingress: any IP',
    yaml: ALLOW_ALL,
    from: '8.8.8.8',
    to: 'default/db',
    port: 1,
    expect: 'allow NetworkPolicy/default/allow-all-ingress/ingress[0]',
  },
  {
    name: 'allow-all unions with deny-all',
    yaml: DENY_ALL + ALLOW_ALL,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/allow-all-ingress/ingress[0]',
  },
  // policyTypes
  {
    name: 'egress-only policy does not isolate ingress',
    yaml: np('egress-only', '{ podSelector: {}, policyTypes: [Egress] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'open',
  },
  {
    name: 'egress rules without policyTypes default to Ingress+Egress: ingress isolated',
    yaml: np('egress-rules', '{ podSelector: {}, egress: [{}] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'policyTypes Ingress+Egress without rules: deny all ingress',
    yaml: np('deny-both', '{ podSelector: {}, policyTypes: [Ingress, Egress] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'ingress: [] isolates and allows nothing',
    yaml: np('empty-ingress', '{ podSelector: {}, ingress: [] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'from: [] matches all sources',
    yaml: np('empty-from', '{ podSelector: {}, ingress: [{ from: [] }] }'),
    from: '8.8.4.4',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/empty-from/ingress[0]',
  },
  {
    name: 'ports: [] matches all ports',
    yaml: np('empty-ports', '{ podSelector: {}, ingress: [{ ports: [] }] }'),
    from: 'default/client',
    to: 'default/db',
    port: 12345,
    expect: 'allow NetworkPolicy/default/empty-ports/ingress[0]',
  },
  {
    name: 'Egress-only policyTypes ignores ingress rules',
    yaml: np(
      'ignored-ingress',
      '{ podSelector: { matchLabels: { role: db } }, policyTypes: [Egress], ingress: [{ from: [{ podSelector: {} }] }] }',
    ),
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'open',
  },
  // the docs' test-network-policy
  {
    name: 'docs example: role=frontend pod on 6379',
    yaml: TEST_NP,
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: `allow ${TEST_RULE}`,
  },
  {
    name: 'docs example: role=frontend pod on another port',
    yaml: TEST_NP,
    from: 'default/frontend',
    to: 'default/db',
    port: 9100,
    expect: 'deny',
  },
  {
    name: 'docs example: other pod of the namespace',
    yaml: TEST_NP,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'docs example: pod of a project=myproject namespace',
    yaml: TEST_NP,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: `allow ${TEST_RULE}`,
  },
  {
    name: 'docs example: role=frontend in another namespace (podSelector is namespace-local)',
    yaml: TEST_NP,
    from: 'dev/web',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'docs example: ipBlock source',
    yaml: TEST_NP,
    from: '172.17.0.5',
    to: 'default/db',
    port: 6379,
    expect: `allow ${TEST_RULE}`,
  },
  {
    name: 'docs example: ipBlock except',
    yaml: TEST_NP,
    from: '172.17.1.5',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'docs example: outside the ipBlock',
    yaml: TEST_NP,
    from: '172.18.0.1',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'docs example: unselected pod stays open',
    yaml: TEST_NP,
    from: 'default/frontend',
    to: 'default/client',
    port: 8080,
    expect: 'open',
  },
  // AND vs OR
  {
    name: 'AND: pod matching both selectors',
    yaml: AND,
    from: 'dev/tool',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/and/ingress[0]',
  },
  { name: 'AND: right namespace, wrong pod', yaml: AND, from: 'dev/web', to: 'default/db', port: 6379, expect: 'deny' },
  {
    name: 'AND: right pod, wrong namespace',
    yaml: AND,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'OR: any pod of the namespace',
    yaml: OR,
    from: 'dev/web',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/or/ingress[0]',
  },
  {
    name: 'OR: matching pod of the policy namespace',
    yaml: OR,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/or/ingress[0]',
  },
  { name: 'OR: neither', yaml: OR, from: 'default/frontend', to: 'default/db', port: 6379, expect: 'deny' },
  // namespace scoping
  {
    name: 'allow-same-namespace: same namespace',
    yaml: SAME_NS,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/allow-same-namespace/ingress[0]',
  },
  {
    name: 'allow-same-namespace: other namespace',
    yaml: SAME_NS,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'allow-same-namespace: plaintext peer at a pod IP is not a pod identity',
    yaml: SAME_NS,
    from: '10.0.0.12',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'namespaceSelector {}: every namespace',
    yaml: ALL_NS,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/allow-all-namespaces/ingress[0]',
  },
  {
    name: 'namespaceSelector {}: not external IPs',
    yaml: ALL_NS,
    from: '8.8.8.8',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'kubernetes.io/metadata.name selects by name',
    yaml: BY_NAME,
    from: 'prod/web',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/from-prod/ingress[0]',
  },
  {
    name: 'kubernetes.io/metadata.name: other namespace',
    yaml: BY_NAME,
    from: 'dev/web',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'podSelector matchExpressions In',
    yaml: EXPR_POD,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/expr-pod/ingress[0]',
  },
  {
    name: 'podSelector matchExpressions In: not listed',
    yaml: EXPR_POD,
    from: 'default/db',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'namespaceSelector NotIn: allowed namespace',
    yaml: EXPR_NS,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/expr-ns/ingress[0]',
  },
  {
    name: 'namespaceSelector NotIn: excluded namespace',
    yaml: EXPR_NS,
    from: 'dev/tool',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  // ports
  {
    name: 'endPort: range start',
    yaml: END_PORT,
    from: 'default/client',
    to: 'default/db',
    port: 32000,
    expect: 'allow NetworkPolicy/default/multi-port-ingress/ingress[0]',
  },
  {
    name: 'endPort: range end is inclusive',
    yaml: END_PORT,
    from: 'default/client',
    to: 'default/db',
    port: 32768,
    expect: 'allow NetworkPolicy/default/multi-port-ingress/ingress[0]',
  },
  {
    name: 'endPort: above the range',
    yaml: END_PORT,
    from: 'default/client',
    to: 'default/db',
    port: 32769,
    expect: 'deny',
  },
  {
    name: 'endPort: below the range',
    yaml: END_PORT,
    from: 'default/client',
    to: 'default/db',
    port: 31999,
    expect: 'deny',
  },
  {
    name: 'named port resolved on the destination',
    yaml: NAMED,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/named/ingress[0]',
  },
  {
    name: 'named port: another port',
    yaml: NAMED,
    from: 'default/client',
    to: 'default/db',
    port: 9100,
    expect: 'deny',
  },
  {
    name: 'named port the destination lacks matches nothing',
    yaml: NAMED_MISSING,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'named port: resolved per destination (frontend http=80)',
    yaml: NAMED_ALL,
    from: 'default/client',
    to: 'default/frontend',
    port: 80,
    expect: 'allow NetworkPolicy/default/named-all/ingress[0]',
  },
  {
    name: 'named port: resolved per destination (client http=8080)',
    yaml: NAMED_ALL,
    from: 'default/frontend',
    to: 'default/client',
    port: 8080,
    expect: 'allow NetworkPolicy/default/named-all/ingress[0]',
  },
  {
    name: "named port: another workload's number does not count",
    yaml: NAMED_ALL,
    from: 'default/frontend',
    to: 'default/client',
    port: 80,
    expect: 'deny',
  },
  {
    name: 'UDP rule never matches a TCP connection',
    yaml: UDP,
    from: 'default/client',
    to: 'default/db',
    port: 53,
    expect: 'deny',
  },
  {
    name: 'SCTP rule never matches a TCP connection',
    yaml: SCTP,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'protocol defaults to TCP',
    yaml: DEFAULT_TCP,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/tcp-default/ingress[0]',
  },
  {
    name: 'protocol without port: every TCP port',
    yaml: TCP_ANY_PORT,
    from: 'default/client',
    to: 'default/db',
    port: 4242,
    expect: 'allow NetworkPolicy/default/tcp-any/ingress[0]',
  },
  // union of policies and rules
  {
    name: 'union: second policy allows client on 9100',
    yaml: UNION,
    from: 'default/client',
    to: 'default/db',
    port: 9100,
    expect: 'allow NetworkPolicy/default/b-client/ingress[0]',
  },
  {
    name: 'union: no rule pairs client with 6379',
    yaml: UNION,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'union: first policy allows frontend on 6379',
    yaml: UNION,
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/a-frontend/ingress[0]',
  },
  {
    name: 'rules of a policy: the second rule decides',
    yaml: TWO_RULES,
    from: '203.0.113.9',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/two-rules/ingress[1]',
  },
  {
    name: 'policy of another namespace does not apply',
    yaml: np('prod-deny', '{ podSelector: {}, policyTypes: [Ingress] }', 'prod'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'open',
  },
  {
    name: 'podSelector matching nothing isolates nothing',
    yaml: np('nothing', '{ podSelector: { matchLabels: { app: nothing } }, policyTypes: [Ingress] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'open',
  },
  // ipBlock
  {
    name: 'ipBlock IPv6',
    yaml: V6,
    from: '2001:db8::1',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/v6/ingress[0]',
  },
  { name: 'ipBlock IPv6: outside', yaml: V6, from: '2001:db9::1', to: 'default/db', port: 6379, expect: 'deny' },
  {
    name: 'ipBlock 0.0.0.0/0 except private: public IP',
    yaml: INTERNET,
    from: '8.8.8.8',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/internet/ingress[0]',
  },
  {
    name: 'ipBlock 0.0.0.0/0 except private: excepted',
    yaml: INTERNET,
    from: '10.2.3.4',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'ipBlock matches a mesh peer by its source address',
    yaml: MESH_IP,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/mesh-ip/ingress[0]',
  },
];

// --- Cilium -------------------------------------------------------------------------------------

const L3 = cnp(
  'l3-rule',
  '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{ matchLabels: { role: frontend } }] }] }',
);
const L3_NS = cnp(
  'from-prod-api',
  "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': prod, app: api } }] }] }",
);
const WILDCARD = cnp(
  'same-ns',
  '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{}] }] }',
);
const CLUSTERWIDE = ccnp(
  'cw',
  '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{}] }] }',
);
const DENY_ALL_C = cnp('deny-all', '{ endpointSelector: {}, ingress: [{}] }');
// The docs' L7 example: GET /public on port 80.
const L7 = cnp(
  'rule1',
  `
  description: "Allow HTTP GET /public from env=prod to app=service"
  endpointSelector: { matchLabels: { app: web } }
  ingress:
    - toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules:
            http:
              - method: GET
                path: "/public"`,
  'prod',
);
const L7_RULE = 'CiliumNetworkPolicy/prod/rule1/ingress[0]';
const HEADERS = cnp(
  'header-rule',
  "{ endpointSelector: { matchLabels: { app: web } }, ingress: [{ toPorts: [{ ports: [{ port: '80', protocol: TCP }], rules: { http: [{ path: '/.*', headers: ['X-My-Header: true'] }] } }] }] }",
  'prod',
);
const DENY_OVER_ALLOW = cnp(
  'deny-frontend',
  '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEntities: [all] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { role: frontend } }] }] }',
);
const DENY_PORT = cnp(
  'deny-80',
  "{ endpointSelector: { matchLabels: { app: web } }, ingress: [{ fromEntities: [all] }], ingressDeny: [{ toPorts: [{ ports: [{ port: '80', protocol: TCP }] }] }] }",
  'prod',
);
const DENY_ONLY = cnp(
  'deny-only',
  '{ endpointSelector: { matchLabels: { app: db } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { role: frontend } }] }] }',
);
const NO_DEFAULT_DENY = cnp(
  'no-default-deny',
  '{ endpointSelector: { matchLabels: { app: db } }, enableDefaultDeny: { ingress: false }, ingress: [{ fromEndpoints: [{ matchLabels: { role: frontend } }] }] }',
);
const L7_AND_L4 = cnp(
  'mixed',
  `
  endpointSelector: { matchLabels: { app: web } }
  ingress:
    - toPorts: [{ ports: [{ port: "80", protocol: TCP }], rules: { http: [{ method: GET, path: "/public" }] } }]
    - fromEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": default, role: frontend } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]`,
  'prod',
);
const SPECS = cnp(
  'multi',
  `specs:
  - endpointSelector: { matchLabels: { app: web } }
    ingress: [{ fromEntities: [world] }]
  - endpointSelector: { matchLabels: { app: api } }
    ingress: [{ fromEndpoints: [{ matchLabels: { app: web } }] }]`,
  'prod',
);

const CILIUM_CASES: readonly Case[] = [
  {
    name: 'L3 fromEndpoints: selected peer',
    yaml: L3,
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/l3-rule/ingress[0]',
  },
  {
    name: 'L3 fromEndpoints: other peer',
    yaml: L3,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'L3 fromEndpoints confined to the policy namespace',
    yaml: L3,
    from: 'dev/web',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'endpointSelector: unselected endpoint stays open',
    yaml: L3,
    from: 'default/client',
    to: 'default/frontend',
    port: 80,
    expect: 'open',
  },
  {
    name: 'fromEndpoints with k8s:io.kubernetes.pod.namespace',
    yaml: L3_NS,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/from-prod-api/ingress[0]',
  },
  {
    name: 'fromEndpoints with namespace label: other app',
    yaml: L3_NS,
    from: 'prod/web',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'fromEndpoints [{}] in a CNP: same namespace',
    yaml: WILDCARD,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/same-ns/ingress[0]',
  },
  {
    name: 'fromEndpoints [{}] in a CNP: not other namespaces',
    yaml: WILDCARD,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'fromEndpoints [{}] in a CCNP: the whole cluster',
    yaml: CLUSTERWIDE,
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumClusterwideNetworkPolicy/cw/ingress[0]',
  },
  {
    name: 'ingress [{}]: default deny',
    yaml: DENY_ALL_C,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'egress-only Cilium rule does not isolate ingress',
    yaml: cnp('egress-only', '{ endpointSelector: {}, egress: [{ toEntities: [world] }] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'open',
  },
  {
    name: 'L4 only: any source on the port',
    yaml: cnp(
      'l4-rule',
      "{ endpointSelector: { matchLabels: { app: web } }, ingress: [{ toPorts: [{ ports: [{ port: '80', protocol: TCP }] }] }] }",
      'prod',
    ),
    from: '1.2.3.4',
    to: 'prod/web',
    port: 80,
    expect: 'allow CiliumNetworkPolicy/prod/l4-rule/ingress[0]',
  },
  {
    name: 'L4 only: other port',
    yaml: cnp(
      'l4-rule',
      "{ endpointSelector: { matchLabels: { app: web } }, ingress: [{ toPorts: [{ ports: [{ port: '80', protocol: TCP }] }] }] }",
      'prod',
    ),
    from: '1.2.3.4',
    to: 'prod/web',
    port: 443,
    expect: 'deny',
  },
  {
    name: 'L3+L4: peer and port',
    yaml: cnp(
      'l3l4',
      "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{ matchLabels: { role: frontend } }], toPorts: [{ ports: [{ port: '6379' }] }] }] }",
    ),
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/l3l4/ingress[0]',
  },
  {
    name: 'L3+L4: peer on another port',
    yaml: cnp(
      'l3l4',
      "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{ matchLabels: { role: frontend } }], toPorts: [{ ports: [{ port: '6379' }] }] }] }",
    ),
    from: 'default/frontend',
    to: 'default/db',
    port: 9100,
    expect: 'deny',
  },
  {
    name: 'fromEntities world: plaintext outside peer',
    yaml: cnp('world', '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEntities: [world] }] }'),
    from: '198.51.100.7',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/world/ingress[0]',
  },
  {
    name: 'fromEntities world: not a mesh identity',
    yaml: cnp('world', '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEntities: [world] }] }'),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'fromEntities cluster: any mesh identity',
    yaml: cnp('cluster', '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEntities: [cluster] }] }'),
    from: 'prod/api',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/cluster/ingress[0]',
  },
  {
    name: 'fromEntities cluster: not plaintext peers',
    yaml: cnp('cluster', '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEntities: [cluster] }] }'),
    from: '198.51.100.7',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'fromEntities all',
    yaml: DENY_OVER_ALLOW,
    from: '198.51.100.7',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/deny-frontend/ingress[0]',
  },
  {
    name: 'fromCIDR',
    yaml: cnp('cidr', '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromCIDR: [192.0.2.0/24] }] }'),
    from: '192.0.2.5',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/cidr/ingress[0]',
  },
  {
    name: 'fromCIDR: outside',
    yaml: cnp('cidr', '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromCIDR: [192.0.2.0/24] }] }'),
    from: '198.51.100.1',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'fromCIDRSet with except: inside',
    yaml: cnp(
      'cidrset',
      '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromCIDRSet: [{ cidr: 10.0.0.0/8, except: [10.96.0.0/12] }] }] }',
    ),
    from: '10.1.1.1',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/cidrset/ingress[0]',
  },
  {
    name: 'fromCIDRSet with except: excepted',
    yaml: cnp(
      'cidrset',
      '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromCIDRSet: [{ cidr: 10.0.0.0/8, except: [10.96.0.0/12] }] }] }',
    ),
    from: '10.96.0.1',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  // L7
  {
    name: 'L7: GET /public',
    yaml: L7,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'GET', path: '/public' },
    expect: `allow ${L7_RULE}`,
  },
  {
    name: 'L7: GET /private',
    yaml: L7,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'GET', path: '/private' },
    expect: 'deny',
  },
  {
    name: 'L7: POST /public',
    yaml: L7,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'POST', path: '/public' },
    expect: 'deny',
  },
  // Cilium matches the regex against the whole :path header, query included.
  {
    name: 'L7: path regex is a full match of :path',
    yaml: L7,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'GET', path: '/public?x=1' },
    expect: 'deny',
  },
  {
    name: 'L7 rule at L4 fails closed',
    yaml: L7,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    mode: 'l4',
    expect: 'deny',
  },
  {
    name: 'L7 rule: other port not allowed',
    yaml: L7,
    from: 'default/client',
    to: 'prod/web',
    port: 443,
    http: { method: 'GET', path: '/public' },
    expect: 'deny',
  },
  {
    name: 'L7 headers: "Name: value" present',
    yaml: HEADERS,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'GET', path: '/x', headers: { 'x-my-header': 'true' } },
    expect: 'allow CiliumNetworkPolicy/prod/header-rule/ingress[0]',
  },
  {
    name: 'L7 headers: missing header',
    yaml: HEADERS,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'GET', path: '/x' },
    expect: 'deny',
  },
  {
    name: 'L7 + L4 rules: L4 rule admits the peer at L4',
    yaml: L7_AND_L4,
    from: 'default/frontend',
    to: 'prod/web',
    port: 80,
    expect: 'allow CiliumNetworkPolicy/prod/mixed/ingress[1]',
  },
  {
    name: 'L7 + L4 rules: other peers need L7 (fail closed at L4)',
    yaml: L7_AND_L4,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    expect: 'deny',
  },
  {
    name: 'L7 + L4 rules: other peers at L7',
    yaml: L7_AND_L4,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    http: { method: 'GET', path: '/public' },
    expect: 'allow CiliumNetworkPolicy/prod/mixed/ingress[0]',
  },
  // deny
  {
    name: 'ingressDeny wins over an allow',
    yaml: DENY_OVER_ALLOW,
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'deny CiliumNetworkPolicy/default/deny-frontend/ingressDeny[0]',
  },
  {
    name: 'ingressDeny: others still allowed',
    yaml: DENY_OVER_ALLOW,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/deny-frontend/ingress[0]',
  },
  {
    name: 'ingressDeny on port 80 (docs deny table)',
    yaml: DENY_PORT,
    from: 'default/client',
    to: 'prod/web',
    port: 80,
    expect: 'deny CiliumNetworkPolicy/prod/deny-80/ingressDeny[0]',
  },
  {
    name: 'ingressDeny on port 80: port 443 allowed',
    yaml: DENY_PORT,
    from: 'default/client',
    to: 'prod/web',
    port: 443,
    expect: 'allow CiliumNetworkPolicy/prod/deny-80/ingress[0]',
  },
  {
    name: 'ingressDeny alone puts the endpoint in default deny',
    yaml: DENY_ONLY,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'ingressDeny alone: the denied peer',
    yaml: DENY_ONLY,
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'deny CiliumNetworkPolicy/default/deny-only/ingressDeny[0]',
  },
  {
    name: 'enableDefaultDeny.ingress false: not isolating',
    yaml: NO_DEFAULT_DENY,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'open',
  },
  {
    name: "enableDefaultDeny false still adds to another policy's allow list",
    yaml: NO_DEFAULT_DENY + DENY_ALL_C,
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/no-default-deny/ingress[0]',
  },
  {
    name: 'enableDefaultDeny false with another default-deny policy: others refused',
    yaml: NO_DEFAULT_DENY + DENY_ALL_C,
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  // ports, specs, mixing
  {
    name: 'named port in toPorts',
    yaml: cnp(
      'named',
      '{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ toPorts: [{ ports: [{ port: tcp, protocol: TCP }] }] }] }',
    ),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/named/ingress[0]',
  },
  {
    name: 'port range with endPort',
    yaml: cnp(
      'range',
      "{ endpointSelector: { matchLabels: { app: api } }, ingress: [{ toPorts: [{ ports: [{ port: '8000', endPort: 8100, protocol: TCP }] }] }] }",
      'prod',
    ),
    from: 'default/client',
    to: 'prod/api',
    port: 8080,
    expect: 'allow CiliumNetworkPolicy/prod/range/ingress[0]',
  },
  {
    name: 'port range with endPort: outside',
    yaml: cnp(
      'range',
      "{ endpointSelector: { matchLabels: { app: api } }, ingress: [{ toPorts: [{ ports: [{ port: '8000', endPort: 8100, protocol: TCP }] }] }] }",
      'prod',
    ),
    from: 'default/client',
    to: 'prod/api',
    port: 9090,
    expect: 'deny',
  },
  {
    name: 'UDP port never matches TCP',
    yaml: cnp(
      'udp',
      "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ toPorts: [{ ports: [{ port: '6379', protocol: UDP }] }] }] }",
    ),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'deny',
  },
  {
    name: 'protocol ANY (default) matches TCP',
    yaml: cnp(
      'any',
      "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ toPorts: [{ ports: [{ port: '6379' }] }] }] }",
    ),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/any/ingress[0]',
  },
  {
    name: 'specs[]: rule names carry the spec index',
    yaml: SPECS,
    from: 'prod/web',
    to: 'prod/api',
    port: 8080,
    expect: 'allow CiliumNetworkPolicy/prod/multi/specs[1]/ingress[0]',
  },
  {
    name: 'specs[]: first spec selects other endpoints',
    yaml: SPECS,
    from: '203.0.113.1',
    to: 'prod/web',
    port: 80,
    expect: 'allow CiliumNetworkPolicy/prod/multi/specs[0]/ingress[0]',
  },
  {
    name: 'CCNP selecting by namespace labels',
    yaml: ccnp(
      'ns-labels',
      "{ endpointSelector: { matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.env': dev } }, ingress: [{ fromEntities: [cluster] }] }",
    ),
    from: 'prod/api',
    to: 'dev/tool',
    port: 8000,
    expect: 'allow CiliumClusterwideNetworkPolicy/ns-labels/ingress[0]',
  },
  {
    name: 'CCNP selecting by namespace labels: other namespace open',
    yaml: ccnp(
      'ns-labels',
      "{ endpointSelector: { matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.env': dev } }, ingress: [{ fromEntities: [cluster] }] }",
    ),
    from: 'dev/tool',
    to: 'prod/api',
    port: 8080,
    expect: 'open',
  },
  {
    name: 'NetworkPolicy and CiliumNetworkPolicy: one union (Cilium rule)',
    yaml:
      UNION +
      cnp(
        'c-client',
        "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{ matchLabels: { role: client } }], toPorts: [{ ports: [{ port: '6379' }] }] }] }",
      ),
    from: 'default/client',
    to: 'default/db',
    port: 6379,
    expect: 'allow CiliumNetworkPolicy/default/c-client/ingress[0]',
  },
  {
    name: 'NetworkPolicy and CiliumNetworkPolicy: one union (NetworkPolicy rule)',
    yaml:
      UNION +
      cnp(
        'c-client',
        "{ endpointSelector: { matchLabels: { app: db } }, ingress: [{ fromEndpoints: [{ matchLabels: { role: client } }], toPorts: [{ ports: [{ port: '6379' }] }] }] }",
      ),
    from: 'default/frontend',
    to: 'default/db',
    port: 6379,
    expect: 'allow NetworkPolicy/default/a-frontend/ingress[0]',
  },
];

test(`NetworkPolicy table (${NETWORK_POLICY_CASES.length} cases)`, async (t) => {
  assert.ok(NETWORK_POLICY_CASES.length >= 50);
  for (const c of NETWORK_POLICY_CASES) await t.test(c.name, () => run(c));
});

test(`CiliumNetworkPolicy table (${CILIUM_CASES.length} cases)`, async (t) => {
  assert.ok(CILIUM_CASES.length >= 30);
  for (const c of CILIUM_CASES) await t.test(c.name, () => run(c));
});

// --- egress (exposed, not wired into the outbound path yet) ----------------------------------------

interface EgressCase {
  readonly name: string;
  readonly yaml: string;
  readonly from: string;
  readonly toIp: string;
  readonly port: number;
  readonly expect: string;
}

const EGRESS_CASES: readonly EgressCase[] = [
  {
    name: 'docs example: egress to 10.0.0.0/24:5978',
    yaml: TEST_NP,
    from: 'default/db',
    toIp: '10.0.0.5',
    port: 5978,
    expect: 'allow NetworkPolicy/default/test-network-policy/egress[0]',
  },
  { name: 'docs example: other port', yaml: TEST_NP, from: 'default/db', toIp: '10.0.0.5', port: 80, expect: 'deny' },
  {
    name: 'docs example: other address',
    yaml: TEST_NP,
    from: 'default/db',
    toIp: '10.1.0.5',
    port: 5978,
    expect: 'deny',
  },
  {
    name: 'ingress-only policy does not isolate egress',
    yaml: DENY_ALL,
    from: 'default/db',
    toIp: '10.1.0.5',
    port: 1,
    expect: 'open',
  },
  {
    name: 'podSelector egress peer: its address',
    yaml: np(
      'to-api',
      '{ podSelector: { matchLabels: { app: client } }, policyTypes: [Egress], egress: [{ to: [{ namespaceSelector: { matchLabels: { project: myproject } }, podSelector: { matchLabels: { app: api } } }], ports: [{ port: http }] }] }',
    ),
    from: 'default/client',
    toIp: '10.0.1.11',
    port: 8080,
    expect: 'allow NetworkPolicy/default/to-api/egress[0]',
  },
  {
    name: 'podSelector egress peer: named port resolves on the destination',
    yaml: np(
      'to-api',
      '{ podSelector: { matchLabels: { app: client } }, policyTypes: [Egress], egress: [{ to: [{ namespaceSelector: { matchLabels: { project: myproject } }, podSelector: { matchLabels: { app: api } } }], ports: [{ port: http }] }] }',
    ),
    from: 'default/client',
    toIp: '10.0.1.11',
    port: 9090,
    expect: 'deny',
  },
  {
    name: 'Cilium toEndpoints + toPorts',
    yaml: cnp(
      'to-api',
      "{ endpointSelector: { matchLabels: { app: client } }, egress: [{ toEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': prod, app: api } }], toPorts: [{ ports: [{ port: '8080', protocol: TCP }] }] }] }",
    ),
    from: 'default/client',
    toIp: '10.0.1.11',
    port: 8080,
    expect: 'allow CiliumNetworkPolicy/default/to-api/egress[0]',
  },
  {
    name: 'Cilium toEndpoints: other workload',
    yaml: cnp(
      'to-api',
      "{ endpointSelector: { matchLabels: { app: client } }, egress: [{ toEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': prod, app: api } }], toPorts: [{ ports: [{ port: '8080', protocol: TCP }] }] }] }",
    ),
    from: 'default/client',
    toIp: '10.0.1.10',
    port: 8080,
    expect: 'deny',
  },
  {
    name: 'Cilium toCIDR',
    yaml: cnp(
      'to-cidr',
      '{ endpointSelector: { matchLabels: { app: client } }, egress: [{ toCIDR: [203.0.113.0/24] }] }',
    ),
    from: 'default/client',
    toIp: '203.0.113.8',
    port: 443,
    expect: 'allow CiliumNetworkPolicy/default/to-cidr/egress[0]',
  },
  {
    name: 'Cilium toEntities world excludes mesh addresses',
    yaml: cnp('to-world', '{ endpointSelector: { matchLabels: { app: client } }, egress: [{ toEntities: [world] }] }'),
    from: 'default/client',
    toIp: '10.0.1.11',
    port: 8080,
    expect: 'deny',
  },
];

test(`egress filters (${EGRESS_CASES.length} cases)`, async (t) => {
  for (const c of EGRESS_CASES) {
    await t.test(c.name, () => {
      const m = model(c.yaml);
      const src = workload(m, c.from);
      const compiled = compileRbacFilters(egressNetworkPolicyFilters(m, src, { layer: 'network' }), 'l4');
      assert.deepEqual(compiled.problems, []);
      const d = compiled.evaluate({
        principal: src.identity,
        sourceIp: src.address,
        destinationIp: c.toIp,
        destinationPort: c.port,
      });
      check(d, c.expect);
    });
  }
});

test('filter shape: one DENY then one ALLOW network RBAC filter, separate from AuthorizationPolicy', () => {
  const m = model(DENY_OVER_ALLOW + np('np', '{ podSelector: {}, ingress: [{}] }'));
  const f = ingressNetworkPolicyFilters(m, workload(m, 'default/db'), { layer: 'network', statPrefix: 'inbound|6379' });
  assert.deepEqual(
    f.map((x) => [x.name, (x.typed_config as { rules: { action: string; policies: object } }).rules.action]),
    [
      ['trellis.networkpolicy.ingress-deny', 'DENY'],
      ['trellis.networkpolicy.ingress', 'ALLOW'],
    ],
  );
  const allow = f[1]!.typed_config as { stat_prefix: string; rules: { policies: object } };
  assert.equal(allow.stat_prefix, 'inbound|6379');
  assert.deepEqual(Object.keys(allow.rules.policies), [
    'CiliumNetworkPolicy/default/deny-frontend/ingress[0]',
    'NetworkPolicy/default/np/ingress[0]',
  ]);
  assert.deepEqual(ingressNetworkPolicyFilters(m, workload(m, 'prod/web'), { layer: 'network' }), []);
});

test('node proxy: the inbound listener carries the NetworkPolicy filter after the AuthorizationPolicy ones', () => {
  const shop = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources;
  const extra = loadDocuments(
    parseYamlFile(
      'np.yaml',
      np(
        'api-from-frontend',
        '{ podSelector: { matchLabels: { app: api } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: frontend } } }], ports: [{ port: http }] }] }',
        'shop',
      ),
    ).documents,
  );
  assert.deepEqual(extra.diagnostics, []);
  const snap = proxylessSnapshot(compileModel([...shop, ...extra.resources]));
  const inbound = [...snap.resources(TYPE_URLS.listener).values()].find((l) =>
    l.name.endsWith('/inbound/127.0.0.1:9081'),
  );
  assert.ok(inbound, 'api-v1 inbound listener');
  const chain = (inbound.body as { filter_chains: { filters: EnvoyFilter[] }[] }).filter_chains[0]!;
  const names = chain.filters.map((f) => f.name);
  assert.equal(names.at(-1), 'trellis.networkpolicy.ingress');
  assert.ok(
    names.slice(0, -1).length > 0 && names.slice(0, -1).every((n) => n.startsWith('envoy.filters.network.rbac')),
  );
  // Encodable as the Envoy network RBAC message.
  const back = roundTrip(chain.filters.at(-1)!.typed_config);
  assert.deepEqual(Object.keys((back.rules as { policies: object }).policies), [
    'NetworkPolicy/shop/api-from-frontend/ingress[0]',
  ]);
  // Both layers must allow: the waypoint identity passes the AuthorizationPolicy, not the NetworkPolicy.
  const rbac = compileRbacFilters(chain.filters, 'l4');
  const conn = (principal: string): RbacAttributes => ({
    principal,
    sourceIp: '127.0.0.1',
    destinationIp: '127.0.0.1',
    destinationPort: 9081,
  });
  const waypoint = rbac.evaluate(conn(`spiffe://${TD}/ns/shop/sa/waypoint`));
  assert.equal(waypoint.allowed, false);
  assert.match(waypoint.reason, /no ALLOW policy matched/);
});
