// Istio AuthorizationPolicy semantics, case by case, through the whole pipeline: YAML loaded as
// user config -> compileModel (bindings, analysis) -> SecurityIndex (what applies to the api
// workload / Service) -> rbacFilters (xDS) -> compileRbacFilters -> evaluate at L4 or L7.
// The cases follow the istio.io reference ("Authorization Policy", "Authorization Policy
// Conditions") and its examples; each names the expected verdict and the policy rule deciding it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDocuments } from '../../../src/config/load.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import { compileModel } from '../../../src/model/compile.js';
import type { MeshModel } from '../../../src/model/mesh-model.js';
import { compileRbacFilters, type CompiledRbac, type RbacAttributes } from '../../../src/proxy/rbac/evaluate.js';
import { rbacFilters } from '../../../src/xds/translate/rbac.js';
import { policySpecsFromModel, SecurityIndex } from '../../../src/xds/translate/security.js';

const TD = 'cluster.local';

/** The api workload (shop/api, 10.0.0.10:8080) behind Service shop/api, and a peer in ns web. */
const MESH = `
apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: corpus }
spec:
  trustDomain: ${TD}
  mtls: { mode: STRICT }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api, namespace: shop }
spec: { address: 10.0.0.10, labels: { app: api }, serviceAccount: api, ports: { http: 8080 } }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: shop }
spec:
  selector: { app: api }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: web, namespace: web }
spec: { address: 10.0.0.20, labels: { app: web }, serviceAccount: web }
`;

/** One AuthorizationPolicy; spec written as JSON (JSON is YAML). */
function ap(name: string, spec: object, ns = 'shop'): string {
  return `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: ${JSON.stringify(spec)}
`;
}

interface Built {
  readonly model: MeshModel;
  readonly l4: CompiledRbac;
  readonly l7: CompiledRbac;
}

const cache = new Map<string, Built>();

function build(policies: string): Built {
  const hit = cache.get(policies);
  if (hit) return hit;
  const parsed = parseYamlFile('corpus.yaml', MESH + policies);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  const model = compileModel(loaded.resources);
  const security = new SecurityIndex(model, policySpecsFromModel(model));
  // What applies to the api workload: its selector/namespace/mesh policies and those on its Service.
  const applied = security
    .authorizationPolicies(['WorkloadEntry/shop/api'], ['Service/shop/api'])
    .map((a) => ({ namespace: a.binding.namespace ?? '', name: a.binding.source.name, spec: a.spec }));
  const filters = rbacFilters(applied, model.mesh.trustDomain);
  const built: Built = { model, l4: compileRbacFilters(filters, 'l4'), l7: compileRbacFilters(filters, 'l7') };
  assert.deepEqual(built.l7.problems, [], 'rbac.ts output is understood completely');
  assert.deepEqual(built.l4.problems, []);
  cache.set(policies, built);
  return built;
}

interface Req {
  /** "ns/sa" (a SPIFFE ID in the trust domain), a full "spiffe://..." URI, or null: plaintext. */
  readonly from?: string | null;
  readonly ip?: string;
  readonly port?: number;
  readonly destIp?: string;
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A verified JWT: its claims (iss and sub make the request principal "iss/sub"). */
  readonly jwt?: Readonly<Record<string, unknown>>;
  readonly sni?: string;
}

interface Case {
  readonly name: string;
  readonly policies: string;
  readonly mode?: 'l4' | 'l7';
  readonly req?: Req;
  readonly allow: boolean;
  /** The policy rule named by the decision; undefined: none (no policy applies, or no ALLOW matched). */
  readonly by?: string;
}

function attrs(r: Req, mode: 'l4' | 'l7'): RbacAttributes {
  const from = r.from === undefined ? 'web/web' : r.from;
  const principal =
    from === null ? undefined : from.startsWith('spiffe://') ? from : `spiffe://${TD}/ns/${from.replace('/', '/sa/')}`;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
  const jwt = r.jwt;
  return {
    ...(principal !== undefined ? { principal } : {}),
    sourceIp: r.ip ?? '10.0.0.20',
    sourcePort: 40000,
    destinationIp: r.destIp ?? '10.0.0.10',
    destinationPort: r.port ?? 8080,
    ...(r.sni !== undefined ? { sni: r.sni } : {}),
    ...(jwt ? { requestAuth: { principal: `${String(jwt.iss)}/${String(jwt.sub)}`, claims: jwt } } : {}),
    ...(mode === 'l7'
      ? {
          http: {
            method: r.method ?? 'GET',
            path: r.path ?? '/',
            host: r.host ?? 'api.shop.svc.cluster.local',
            header: (n: string) => headers[n],
          },
        }
      : {}),
  };
}

const rule = (policy: string, i = 0, ns = 'shop'): string => `ns[${ns}]-policy[${policy}]-rule[${i}]`;
const allowAll = ap('allow-all', { rules: [{}] });
const JWT = { iss: 'https://accounts.example.com', sub: 'alice', aud: ['api', 'web'], azp: 'client-1' };

const CASES: Case[] = [
  // ---- no policy, allow-nothing, deny-all, allow-all --------------------------------------------
  { name: 'no policy: allow', policies: '', allow: true },
  { name: 'no policy at L4: allow', policies: '', mode: 'l4', allow: true },
  { name: 'allow-nothing (spec: {})', policies: ap('allow-nothing', {}), allow: false },
  { name: 'allow-nothing at L4', policies: ap('allow-nothing', {}), mode: 'l4', allow: false },
  { name: 'allow-nothing, explicit ALLOW without rules', policies: ap('n', { action: 'ALLOW' }), allow: false },
  { name: 'allow-all rules: [{}]', policies: allowAll, allow: true, by: rule('allow-all') },
  {
    name: 'allow-all at L4, plaintext peer',
    policies: allowAll,
    mode: 'l4',
    req: { from: null },
    allow: true,
    by: rule('allow-all'),
  },
  {
    name: 'deny-all rules: [{}]',
    policies: ap('deny-all', { action: 'DENY', rules: [{}] }),
    allow: false,
    by: rule('deny-all'),
  },
  {
    name: 'deny-all at L4',
    policies: ap('deny-all', { action: 'DENY', rules: [{}] }),
    mode: 'l4',
    allow: false,
    by: rule('deny-all'),
  },
  {
    name: 'DENY only, not matching: allowed (no ALLOW policy)',
    policies: ap('d', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['ops'] } }] }] }),
    allow: true,
  },
  {
    name: 'deny-all beats allow-all',
    policies: allowAll + ap('deny-all', { action: 'DENY', rules: [{}] }),
    allow: false,
    by: rule('deny-all'),
  },
  {
    name: 'allow-nothing plus allow-all: one ALLOW match is enough',
    policies: ap('allow-nothing', {}) + allowAll,
    allow: true,
    by: rule('allow-all'),
  },
  { name: 'mesh-wide allow-nothing (root namespace)', policies: ap('mesh-deny', {}, 'istio-system'), allow: false },
  { name: 'policy of another namespace does not apply', policies: ap('other', {}, 'web'), allow: true },

  // ---- principals / namespaces ------------------------------------------------------------------
  {
    name: 'principals exact',
    policies: ap('p', { rules: [{ from: [{ source: { principals: [`${TD}/ns/web/sa/web`] } }] }] }),
    allow: true,
    by: rule('p'),
  },
  {
    name: 'principals exact, other peer',
    policies: ap('p', { rules: [{ from: [{ source: { principals: [`${TD}/ns/web/sa/web`] } }] }] }),
    req: { from: 'web/other' },
    allow: false,
  },
  {
    name: 'principals at L4 (mTLS identity is L4)',
    policies: ap('p', { rules: [{ from: [{ source: { principals: [`${TD}/ns/web/sa/web`] } }] }] }),
    mode: 'l4',
    allow: true,
    by: rule('p'),
  },
  {
    name: 'principals prefix wildcard',
    policies: ap('p', { rules: [{ from: [{ source: { principals: [`${TD}/ns/web/*`] } }] }] }),
    req: { from: 'web/any' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'principals suffix wildcard',
    policies: ap('p', { rules: [{ from: [{ source: { principals: ['*/sa/web'] } }] }] }),
    req: { from: 'ops/web' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'principals "*" needs mTLS: plaintext denied',
    policies: ap('p', { rules: [{ from: [{ source: { principals: ['*'] } }] }] }),
    req: { from: null },
    allow: false,
  },
  {
    name: 'principals "*" any authenticated peer',
    policies: ap('p', { rules: [{ from: [{ source: { principals: ['*'] } }] }] }),
    req: { from: 'spiffe://other.td/ns/x/sa/y' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'notPrincipals excludes',
    policies: ap('p', { rules: [{ from: [{ source: { notPrincipals: [`${TD}/ns/web/sa/web`] } }] }] }),
    allow: false,
  },
  {
    name: 'notPrincipals matches others',
    policies: ap('p', { rules: [{ from: [{ source: { notPrincipals: [`${TD}/ns/web/sa/web`] } }] }] }),
    req: { from: 'ops/x' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'DENY notPrincipals "*" denies plaintext (require mTLS)',
    policies: ap('mtls', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] }),
    req: { from: null },
    allow: false,
    by: rule('mtls'),
  },
  {
    name: 'DENY notPrincipals "*" lets mTLS through',
    policies: ap('mtls', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] }),
    allow: true,
  },
  {
    name: 'namespaces',
    policies: ap('n', { rules: [{ from: [{ source: { namespaces: ['web'] } }] }] }),
    allow: true,
    by: rule('n'),
  },
  {
    name: 'namespaces, other namespace',
    policies: ap('n', { rules: [{ from: [{ source: { namespaces: ['web'] } }] }] }),
    req: { from: 'ops/web' },
    allow: false,
  },
  {
    name: 'namespaces need mTLS',
    policies: ap('n', { rules: [{ from: [{ source: { namespaces: ['web'] } }] }] }),
    req: { from: null },
    allow: false,
  },
  {
    name: 'notNamespaces (DENY from outside foo, istio.io example)',
    policies: ap('d', { action: 'DENY', rules: [{ from: [{ source: { notNamespaces: ['shop'] } }] }] }),
    allow: false,
    by: rule('d'),
  },
  {
    name: 'notNamespaces, same namespace passes',
    policies: ap('d', { action: 'DENY', rules: [{ from: [{ source: { notNamespaces: ['shop'] } }] }] }),
    req: { from: 'shop/x' },
    allow: true,
  },
  {
    name: 'serviceAccounts (bare name: policy namespace)',
    policies: ap('s', { rules: [{ from: [{ source: { serviceAccounts: ['frontend'] } }] }] }),
    req: { from: 'shop/frontend' },
    allow: true,
    by: rule('s'),
  },
  {
    name: 'from entries are ORed',
    policies: ap('o', {
      rules: [{ from: [{ source: { namespaces: ['ops'] } }, { source: { principals: [`${TD}/ns/web/sa/web`] } }] }],
    }),
    allow: true,
    by: rule('o'),
  },
  {
    name: 'source fields are ANDed',
    policies: ap('a', { rules: [{ from: [{ source: { namespaces: ['web'], ipBlocks: ['192.168.0.0/16'] } }] }] }),
    allow: false,
  },

  // ---- ipBlocks / remoteIpBlocks ------------------------------------------------------------------
  {
    name: 'ipBlocks CIDR',
    policies: ap('ip', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/24'] } }] }] }),
    mode: 'l4',
    allow: true,
    by: rule('ip'),
  },
  {
    name: 'ipBlocks single address',
    policies: ap('ip', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.21'] } }] }] }),
    mode: 'l4',
    allow: false,
  },
  {
    name: 'notIpBlocks',
    policies: ap('ip', { action: 'DENY', rules: [{ from: [{ source: { notIpBlocks: ['10.0.0.0/8'] } }] }] }),
    req: { ip: '172.16.0.1' },
    allow: false,
    by: rule('ip'),
  },
  {
    name: 'notIpBlocks, inside',
    policies: ap('ip', { action: 'DENY', rules: [{ from: [{ source: { notIpBlocks: ['10.0.0.0/8'] } }] }] }),
    allow: true,
  },
  {
    name: 'ipBlocks IPv6',
    policies: ap('ip', { rules: [{ from: [{ source: { ipBlocks: ['2001:db8::/32'] } }] }] }),
    req: { ip: '2001:db8::7' },
    allow: true,
    by: rule('ip'),
  },
  {
    name: 'ipBlocks matches an IPv4-mapped peer',
    policies: ap('ip', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/24'] } }] }] }),
    req: { ip: '::ffff:10.0.0.20' },
    allow: true,
    by: rule('ip'),
  },
  {
    name: 'remoteIpBlocks (no trusted XFF: the peer)',
    policies: ap('r', { rules: [{ from: [{ source: { remoteIpBlocks: ['203.0.113.0/24'] } }] }] }),
    req: { ip: '203.0.113.5' },
    allow: true,
    by: rule('r'),
  },
  {
    name: 'notRemoteIpBlocks',
    policies: ap('r', { action: 'DENY', rules: [{ from: [{ source: { notRemoteIpBlocks: ['10.0.0.0/8'] } }] }] }),
    req: { ip: '203.0.113.5' },
    allow: false,
    by: rule('r'),
  },

  // ---- operations: hosts ---------------------------------------------------------------------------
  {
    name: 'hosts exact',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['api.example.com'] } }] }] }),
    req: { host: 'api.example.com' },
    allow: true,
    by: rule('h'),
  },
  {
    name: 'hosts case-insensitive',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['api.example.com'] } }] }] }),
    req: { host: 'API.Example.COM' },
    allow: true,
    by: rule('h'),
  },
  {
    name: 'hosts: port stripped',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['api.example.com'] } }] }] }),
    req: { host: 'api.example.com:8080' },
    allow: true,
    by: rule('h'),
  },
  {
    name: 'hosts: other host',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['api.example.com'] } }] }] }),
    req: { host: 'api.example.com.evil' },
    allow: false,
  },
  {
    name: 'hosts with port: exact',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['api.example.com:8080'] } }] }] }),
    req: { host: 'api.example.com:9090' },
    allow: false,
  },
  {
    name: 'hosts suffix wildcard',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['*.example.com'] } }] }] }),
    req: { host: 'a.b.EXAMPLE.com:443' },
    allow: true,
    by: rule('h'),
  },
  {
    name: 'hosts prefix wildcard',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['api.*'] } }] }] }),
    req: { host: 'api.internal' },
    allow: true,
    by: rule('h'),
  },
  {
    name: 'notHosts',
    policies: ap('h', { action: 'DENY', rules: [{ to: [{ operation: { notHosts: ['api.example.com'] } }] }] }),
    req: { host: 'evil.com' },
    allow: false,
    by: rule('h'),
  },
  {
    name: 'notHosts, the host itself (with port)',
    policies: ap('h', { action: 'DENY', rules: [{ to: [{ operation: { notHosts: ['api.example.com'] } }] }] }),
    req: { host: 'Api.Example.com:80' },
    allow: true,
  },
  {
    name: 'hosts at L4: unknown, ALLOW fails closed',
    policies: ap('h', { rules: [{ to: [{ operation: { hosts: ['*'] } }] }] }),
    mode: 'l4',
    allow: false,
  },

  // ---- operations: ports, methods ----------------------------------------------------------------
  {
    name: 'ports',
    policies: ap('p', { rules: [{ to: [{ operation: { ports: ['8080'] } }] }] }),
    mode: 'l4',
    allow: true,
    by: rule('p'),
  },
  {
    name: 'ports, other port',
    policies: ap('p', { rules: [{ to: [{ operation: { ports: ['8080'] } }] }] }),
    mode: 'l4',
    req: { port: 9090 },
    allow: false,
  },
  {
    name: 'notPorts',
    policies: ap('p', { action: 'DENY', rules: [{ to: [{ operation: { notPorts: ['8080'] } }] }] }),
    mode: 'l4',
    req: { port: 15000 },
    allow: false,
    by: rule('p'),
  },
  {
    name: 'methods',
    policies: ap('m', { rules: [{ to: [{ operation: { methods: ['GET', 'HEAD'] } }] }] }),
    req: { method: 'HEAD' },
    allow: true,
    by: rule('m'),
  },
  {
    name: 'methods are case-sensitive',
    policies: ap('m', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
    req: { method: 'get' },
    allow: false,
  },
  {
    name: 'notMethods',
    policies: ap('m', { action: 'DENY', rules: [{ to: [{ operation: { notMethods: ['GET'] } }] }] }),
    req: { method: 'POST' },
    allow: false,
    by: rule('m'),
  },
  {
    name: 'methods at L4: DENY fails closed',
    policies: ap('m', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] }),
    mode: 'l4',
    allow: false,
    by: rule('m'),
  },
  {
    name: 'notMethods at L4: ALLOW fails closed (no fail-open negation)',
    policies: ap('m', { rules: [{ to: [{ operation: { notMethods: ['DELETE'] } }] }] }),
    mode: 'l4',
    allow: false,
  },

  // ---- operations: paths ----------------------------------------------------------------------------
  {
    name: 'paths exact',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['/info'] } }] }] }),
    req: { path: '/info' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'paths exact ignores the query',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['/info'] } }] }] }),
    req: { path: '/info?x=1' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'paths exact, longer path',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['/info'] } }] }] }),
    req: { path: '/info/x' },
    allow: false,
  },
  {
    name: 'paths prefix',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['/info*'] } }] }] }),
    req: { path: '/information' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'paths suffix',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['*/healthz'] } }] }] }),
    req: { path: '/a/b/healthz' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'paths presence "*"',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['*'] } }] }] }),
    req: { path: '/anything' },
    allow: true,
    by: rule('p'),
  },
  {
    name: 'paths are case-sensitive',
    policies: ap('p', { rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }),
    req: { path: '/ADMIN' },
    allow: false,
  },
  {
    name: 'path template {*}: one segment',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{*}'] } }] }] }),
    req: { path: '/foo/bar' },
    allow: true,
    by: rule('t'),
  },
  {
    name: 'path template {*}: not two segments',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{*}'] } }] }] }),
    req: { path: '/foo/bar/baz' },
    allow: false,
  },
  {
    name: 'path template {*}: not empty',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{*}'] } }] }] }),
    req: { path: '/foo/' },
    allow: false,
  },
  {
    name: 'path template {*} in the middle',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{*}/bar'] } }] }] }),
    req: { path: '/foo/x/bar' },
    allow: true,
    by: rule('t'),
  },
  {
    name: 'path template {**}: several segments',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{**}'] } }] }] }),
    req: { path: '/foo/a/b/c' },
    allow: true,
    by: rule('t'),
  },
  {
    name: 'path template {**} then a literal',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{**}/bar'] } }] }] }),
    req: { path: '/foo/a/b/bar' },
    allow: true,
    by: rule('t'),
  },
  {
    name: 'path template {**} then a literal, wrong end',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/foo/{**}/bar'] } }] }] }),
    req: { path: '/foo/a/b/baz' },
    allow: false,
  },
  {
    name: 'path template {*} and {**}',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/v1/{*}/items/{**}'] } }] }] }),
    req: { path: '/v1/shop/items/1/2' },
    allow: true,
    by: rule('t'),
  },
  {
    name: 'path template: literal dot is literal',
    policies: ap('t', { rules: [{ to: [{ operation: { paths: ['/{*}/x.txt'] } }] }] }),
    req: { path: '/a/xxtxt' },
    allow: false,
  },
  {
    name: 'notPaths (DENY everything but /public)',
    policies: ap('p', { action: 'DENY', rules: [{ to: [{ operation: { notPaths: ['/public/*'] } }] }] }),
    req: { path: '/private' },
    allow: false,
    by: rule('p'),
  },
  {
    name: 'notPaths, excluded path',
    policies: ap('p', { action: 'DENY', rules: [{ to: [{ operation: { notPaths: ['/public/*'] } }] }] }),
    req: { path: '/public/x' },
    allow: true,
  },
  {
    name: 'paths at L4: DENY fails closed',
    policies: ap('p', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }),
    mode: 'l4',
    allow: false,
    by: rule('p'),
  },
  {
    name: 'operation fields are ANDed',
    policies: ap('p', { rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }] }] }),
    req: { method: 'POST', path: '/info' },
    allow: false,
  },
  {
    name: 'istio.io example: GET /info* or POST /data from sleep or ns test',
    policies: ap('httpbin', {
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: [`${TD}/ns/default/sa/sleep`] } }, { source: { namespaces: ['test'] } }],
          to: [
            { operation: { methods: ['GET'], paths: ['/info*'] } },
            { operation: { methods: ['POST'], paths: ['/data'] } },
          ],
        },
      ],
    }),
    req: { from: 'test/x', method: 'POST', path: '/data' },
    allow: true,
    by: rule('httpbin'),
  },
  {
    name: 'istio.io example, GET /data is not allowed',
    policies: ap('httpbin', {
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: [`${TD}/ns/default/sa/sleep`] } }, { source: { namespaces: ['test'] } }],
          to: [
            { operation: { methods: ['GET'], paths: ['/info*'] } },
            { operation: { methods: ['POST'], paths: ['/data'] } },
          ],
        },
      ],
    }),
    req: { from: 'default/sleep', method: 'GET', path: '/data' },
    allow: false,
  },

  // ---- when conditions -------------------------------------------------------------------------------
  {
    name: 'request.headers values',
    policies: ap('w', { rules: [{ when: [{ key: 'request.headers[User-Agent]', values: ['Mozilla/*'] }] }] }),
    req: { headers: { 'user-agent': 'Mozilla/5.0' } },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.headers absent',
    policies: ap('w', { rules: [{ when: [{ key: 'request.headers[User-Agent]', values: ['Mozilla/*'] }] }] }),
    allow: false,
  },
  {
    name: 'request.headers "*" is presence (empty value too)',
    policies: ap('w', { rules: [{ when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }] }),
    req: { headers: { 'x-debug': '' } },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.headers notValues',
    policies: ap('w', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-env]', notValues: ['prod'] }] }] }),
    req: { headers: { 'x-env': 'dev' } },
    allow: false,
    by: rule('w'),
  },
  {
    name: 'request.headers at L4: DENY fails closed',
    policies: ap('w', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-env]', values: ['dev'] }] }] }),
    mode: 'l4',
    allow: false,
    by: rule('w'),
  },
  {
    name: 'source.ip',
    policies: ap('w', { rules: [{ when: [{ key: 'source.ip', values: ['10.0.0.0/16'] }] }] }),
    mode: 'l4',
    allow: true,
    by: rule('w'),
  },
  {
    name: 'source.ip notValues',
    policies: ap('w', { rules: [{ when: [{ key: 'source.ip', notValues: ['10.0.0.20'] }] }] }),
    mode: 'l4',
    allow: false,
  },
  {
    name: 'remote.ip',
    policies: ap('w', { action: 'DENY', rules: [{ when: [{ key: 'remote.ip', values: ['10.0.0.20'] }] }] }),
    allow: false,
    by: rule('w'),
  },
  {
    name: 'source.namespace',
    policies: ap('w', { rules: [{ when: [{ key: 'source.namespace', values: ['web'] }] }] }),
    mode: 'l4',
    allow: true,
    by: rule('w'),
  },
  {
    name: 'source.principal notValues',
    policies: ap('w', { rules: [{ when: [{ key: 'source.principal', notValues: [`${TD}/ns/web/sa/web`] }] }] }),
    allow: false,
  },
  {
    name: 'destination.ip',
    policies: ap('w', { rules: [{ when: [{ key: 'destination.ip', values: ['10.0.0.10'] }] }] }),
    mode: 'l4',
    allow: true,
    by: rule('w'),
  },
  {
    name: 'destination.port',
    policies: ap('w', { rules: [{ when: [{ key: 'destination.port', values: ['9090'] }] }] }),
    mode: 'l4',
    allow: false,
  },
  {
    name: 'connection.sni',
    policies: ap('w', { rules: [{ when: [{ key: 'connection.sni', values: ['*.example.com'] }] }] }),
    req: { sni: 'api.example.com' },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'connection.sni, no SNI sent',
    policies: ap('w', { rules: [{ when: [{ key: 'connection.sni', values: ['*.example.com'] }] }] }),
    allow: false,
  },
  {
    name: 'experimental.envoy.filters.*: ALLOW never matches',
    policies: ap('w', {
      rules: [{ when: [{ key: 'experimental.envoy.filters.network.mysql_proxy[db.table]', values: ['[update]'] }] }],
    }),
    allow: false,
  },
  {
    name: 'experimental.envoy.filters.*: DENY always matches',
    policies: ap('w', {
      action: 'DENY',
      rules: [{ when: [{ key: 'experimental.envoy.filters.network.mysql_proxy[db.table]', values: ['[update]'] }] }],
    }),
    allow: false,
    by: rule('w'),
  },
  {
    name: 'when conditions are ANDed',
    policies: ap('w', {
      rules: [
        {
          when: [
            { key: 'source.namespace', values: ['web'] },
            { key: 'destination.port', values: ['9090'] },
          ],
        },
      ],
    }),
    allow: false,
  },

  // ---- request authentication (JWT) --------------------------------------------------------------
  {
    name: 'requestPrincipals "*": a valid JWT',
    policies: ap('jwt', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
    req: { jwt: JWT },
    allow: true,
    by: rule('jwt'),
  },
  {
    name: 'requestPrincipals "*": no JWT',
    policies: ap('jwt', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
    allow: false,
  },
  {
    name: 'requestPrincipals exact iss/sub',
    policies: ap('jwt', {
      rules: [{ from: [{ source: { requestPrincipals: ['https://accounts.example.com/alice'] } }] }],
    }),
    req: { jwt: JWT },
    allow: true,
    by: rule('jwt'),
  },
  {
    name: 'requestPrincipals other subject',
    policies: ap('jwt', {
      rules: [{ from: [{ source: { requestPrincipals: ['https://accounts.example.com/bob'] } }] }],
    }),
    req: { jwt: JWT },
    allow: false,
  },
  {
    name: 'requestPrincipals issuer prefix',
    policies: ap('jwt', { rules: [{ from: [{ source: { requestPrincipals: ['https://accounts.example.com/*'] } }] }] }),
    req: { jwt: JWT },
    allow: true,
    by: rule('jwt'),
  },
  {
    name: 'requestPrincipals at L4: ALLOW never matches',
    policies: ap('jwt', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
    mode: 'l4',
    req: { jwt: JWT },
    allow: false,
  },
  {
    name: 'DENY notRequestPrincipals "*" (require JWT), no token',
    policies: ap('req-jwt', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] }),
    allow: false,
    by: rule('req-jwt'),
  },
  {
    name: 'DENY notRequestPrincipals "*", with token',
    policies: ap('req-jwt', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] }),
    req: { jwt: JWT },
    allow: true,
  },
  {
    name: 'DENY requestPrincipals at L4: fails closed',
    policies: ap('d', { action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: ['x/y'] } }] }] }),
    mode: 'l4',
    allow: false,
    by: rule('d'),
  },
  {
    name: 'ALLOW notRequestPrincipals at L4: no fail-open',
    policies: ap('a', { rules: [{ from: [{ source: { notRequestPrincipals: ['x/y'] } }] }] }),
    mode: 'l4',
    allow: false,
  },
  {
    name: 'request.auth.principal',
    policies: ap('w', {
      rules: [{ when: [{ key: 'request.auth.principal', values: ['https://accounts.example.com/alice'] }] }],
    }),
    req: { jwt: JWT },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.audiences (list aud)',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.audiences', values: ['web'] }] }] }),
    req: { jwt: JWT },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.audiences, other audience',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.audiences', values: ['admin'] }] }] }),
    req: { jwt: JWT },
    allow: false,
  },
  {
    name: 'request.auth.presenter',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.presenter', values: ['client-*'] }] }] }),
    req: { jwt: JWT },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims[iss] (istio.io example)',
    policies: ap('w', {
      rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['https://accounts.example.com'] }] }],
    }),
    req: { jwt: JWT },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims list-valued: one element matches',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.claims[groups]', values: ['admins'] }] }] }),
    req: { jwt: { ...JWT, groups: ['dev', 'admins'] } },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims list-valued: none matches',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.claims[groups]', values: ['admins'] }] }] }),
    req: { jwt: { ...JWT, groups: ['dev'] } },
    allow: false,
  },
  {
    name: 'request.auth.claims nested [a][b]',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.claims[realm_access][roles]', values: ['editor'] }] }] }),
    req: { jwt: { ...JWT, realm_access: { roles: ['viewer', 'editor'] } } },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims nested, missing',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.claims[realm_access][roles]', values: ['editor'] }] }] }),
    req: { jwt: JWT },
    allow: false,
  },
  {
    name: 'request.auth.claims[scope] space-delimited',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.claims[scope]', values: ['write'] }] }] }),
    req: { jwt: { ...JWT, scope: 'read write' } },
    allow: true,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims notValues (DENY)',
    policies: ap('w', {
      action: 'DENY',
      rules: [{ when: [{ key: 'request.auth.claims[group]', notValues: ['staff'] }] }],
    }),
    req: { jwt: { ...JWT, group: 'guest' } },
    allow: false,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims notValues (DENY), staff passes',
    policies: ap('w', {
      action: 'DENY',
      rules: [{ when: [{ key: 'request.auth.claims[group]', notValues: ['staff'] }] }],
    }),
    req: { jwt: { ...JWT, group: 'staff' } },
    allow: true,
  },
  {
    name: 'request.auth.claims at L4: DENY fails closed',
    policies: ap('w', {
      action: 'DENY',
      rules: [{ when: [{ key: 'request.auth.claims[group]', values: ['guest'] }] }],
    }),
    mode: 'l4',
    allow: false,
    by: rule('w'),
  },
  {
    name: 'request.auth.claims, no JWT: ALLOW does not match',
    policies: ap('w', { rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['*'] }] }] }),
    allow: false,
  },

  // ---- actions: CUSTOM, AUDIT, ordering, naming ---------------------------------------------------
  {
    name: 'CUSTOM fails closed, naming the provider',
    policies: ap('ext', {
      action: 'CUSTOM',
      provider: { name: 'opa' },
      rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }],
    }),
    req: { path: '/admin/x' },
    allow: false,
    by: `${rule('ext')}-provider[opa]`,
  },
  {
    name: 'CUSTOM does not touch what its rules do not match',
    policies: ap('ext', {
      action: 'CUSTOM',
      provider: { name: 'opa' },
      rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }],
    }),
    req: { path: '/public' },
    allow: true,
  },
  {
    name: 'CUSTOM is evaluated before DENY',
    policies:
      ap('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] }) +
      ap('d', { action: 'DENY', rules: [{}] }),
    allow: false,
    by: `${rule('ext')}-provider[opa]`,
  },
  {
    name: 'CUSTOM at L4 with HTTP rules: fails closed',
    policies: ap('ext', {
      action: 'CUSTOM',
      provider: { name: 'opa' },
      rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }],
    }),
    mode: 'l4',
    allow: false,
    by: `${rule('ext')}-provider[opa]`,
  },
  {
    name: 'AUDIT never changes the verdict (allow)',
    policies: ap('audit', { action: 'AUDIT', rules: [{}] }),
    allow: true,
  },
  {
    name: 'AUDIT never changes the verdict (deny)',
    policies: ap('audit', { action: 'AUDIT', rules: [{}] }) + ap('allow-nothing', {}),
    allow: false,
  },
  {
    name: 'DENY before ALLOW',
    policies: allowAll + ap('d', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }),
    req: { path: '/admin' },
    allow: false,
    by: rule('d'),
  },
  {
    name: 'ALLOW names the rule that matched',
    policies: ap('multi', {
      rules: [{ to: [{ operation: { paths: ['/a'] } }] }, { to: [{ operation: { paths: ['/b'] } }] }],
    }),
    req: { path: '/b' },
    allow: true,
    by: rule('multi', 1),
  },
  {
    name: 'DENY names the rule that matched',
    policies: ap('multi', {
      action: 'DENY',
      rules: [{ to: [{ operation: { paths: ['/a'] } }] }, { to: [{ operation: { paths: ['/b'] } }] }],
    }),
    req: { path: '/b' },
    allow: false,
    by: rule('multi', 1),
  },
  {
    name: 'mesh-wide DENY (root namespace) names its namespace',
    policies: ap(
      'global-deny',
      { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['web'] } }] }] },
      'istio-system',
    ),
    allow: false,
    by: rule('global-deny', 0, 'istio-system'),
  },
  {
    name: 'selector policy applies to its workload',
    policies: ap('sel', { selector: { matchLabels: { app: 'api' } } }),
    allow: false,
  },
  {
    name: 'selector policy for another workload does not apply',
    policies: ap('sel', { selector: { matchLabels: { app: 'other' } } }),
    allow: true,
  },
  {
    name: 'targetRefs Service policy applies at L7',
    policies: ap('svc', {
      targetRefs: [{ kind: 'Service', group: '', name: 'api' }],
      rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
    }),
    req: { method: 'GET' },
    allow: true,
    by: rule('svc'),
  },
];

test(`AuthorizationPolicy corpus: ${CASES.length} cases through model, xDS translation and evaluation`, () => {
  assert.ok(CASES.length >= 90);
  const names = new Set<string>();
  for (const c of CASES) {
    assert.ok(!names.has(c.name), `duplicate case name ${c.name}`);
    names.add(c.name);
    const mode = c.mode ?? 'l7';
    const built = build(c.policies);
    const d = built[mode].evaluate(attrs(c.req ?? {}, mode));
    assert.equal(d.allowed, c.allow, `${c.name}: ${d.reason}`);
    assert.equal(d.policy, c.by, `${c.name}: ${d.reason}`);
    if (c.by !== undefined) assert.ok(d.reason.includes(c.by), `${c.name}: the reason names the rule: ${d.reason}`);
  }
});

test('the model warns about CUSTOM (no ext_authz) and about JWT rules bound by selector (need a waypoint)', () => {
  const custom = build(ap('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] })).model;
  const warn = custom.analysis.find((a) => a.name === 'ExternalAuthorizationUnavailable');
  assert.ok(warn, 'CUSTOM is reported');
  assert.equal(warn.level, 'Warning');
  assert.equal(warn.resource.name, 'ext');
  assert.match(warn.message, /"opa"/);

  const jwt = build(
    ap('jwt-sel', {
      selector: { matchLabels: { app: 'api' } },
      rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }],
    }),
  ).model;
  assert.ok(jwt.analysis.some((a) => a.name === 'L7PolicyWithoutWaypoint' && a.resource.name === 'jwt-sel'));
  const claims = build(
    ap('claims-sel', {
      selector: { matchLabels: { app: 'api' } },
      rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }],
    }),
  ).model;
  assert.ok(claims.analysis.some((a) => a.name === 'L7PolicyWithoutWaypoint' && a.resource.name === 'claims-sel'));
  const l4 = build(
    ap('l4-sel', {
      selector: { matchLabels: { app: 'api' } },
      rules: [{ from: [{ source: { namespaces: ['web'] } }] }],
    }),
  ).model;
  assert.ok(!l4.analysis.some((a) => a.name === 'L7PolicyWithoutWaypoint'));
});

test('JWT rules: the guard keeps them fail-closed for consumers that never evaluate metadata (grpc-js-xds)', () => {
  // grpc-js-xds reads every metadata matcher as false; model that by rewriting them to "never".
  const neverMetadata = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(neverMetadata);
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    if ('metadata' in o && Object.keys(o).length === 1) return { not_id: { any: true } };
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, neverMetadata(x)]));
  };
  const grpc = (policies: string): CompiledRbac => {
    const model = build(policies).model;
    const security = new SecurityIndex(model, policySpecsFromModel(model));
    const applied = security
      .authorizationPolicies(['WorkloadEntry/shop/api'], ['Service/shop/api'])
      .map((a) => ({ namespace: a.binding.namespace ?? '', name: a.binding.source.name, spec: a.spec }));
    return compileRbacFilters(neverMetadata(rbacFilters(applied, TD)) as never, 'l7');
  };
  const req = attrs({ jwt: JWT }, 'l7');
  // ALLOW with a negated JWT field would match everyone if metadata were simply false.
  assert.equal(
    grpc(ap('a', { rules: [{ from: [{ source: { notRequestPrincipals: ['x/y'] } }] }] })).evaluate(req).allowed,
    false,
  );
  // DENY on a JWT field would never deny if metadata were simply false.
  const deny = grpc(ap('d', { action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: ['x/y'] } }] }] }));
  assert.equal(deny.evaluate(req).allowed, false);
  assert.equal(deny.evaluate(req).policy, rule('d'));
  // Rules without JWT fields are untouched.
  assert.equal(grpc(ap('n', { rules: [{ from: [{ source: { namespaces: ['web'] } }] }] })).evaluate(req).allowed, true);
});
