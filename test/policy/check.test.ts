// trellis policy check: verdicts and the deciding rule at each enforcement point, for every kind
// at once (AuthorizationPolicy at the waypoint and the node, NetworkPolicy, JWT principals), and
// the CLI's errors for a caller or a service it does not know.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkPolicy } from '../../src/policy/check.js';
import { viewFromPaths } from '../../src/policy/view.js';
import { REPO_ROOT, runCli } from '../helpers/run-cli.js';

const SHOP = join(REPO_ROOT, 'examples/shop');

/** A copy of the shop with extra manifests; removed after the test. */
function shopWith(t: { after(fn: () => void): void }, extra: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-policy-'));
  cpSync(SHOP, dir, { recursive: true });
  writeFileSync(join(dir, 'extra.yaml'), extra);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('shop: frontend -> api is allowed at the waypoint (L7) by api-allow-frontend and at each endpoint by api-allow-waypoint', () => {
  const r = checkPolicy(viewFromPaths([SHOP], '-f'), { from: 'shop/frontend', to: 'api.shop.svc.cluster.local:8080' });
  assert.equal(r.verdict, 'ALLOW');
  assert.equal(r.policy, 'AuthorizationPolicy/shop/api-allow-frontend');
  assert.equal(r.rule, 'spec.rules[0]');
  assert.deepEqual(
    r.steps.map((s) => [s.endpoint, s.layer, s.verdict, s.policy, s.caller.replace(/.*\/sa\//, '')]),
    [
      ['api.shop.svc.cluster.local', 'L7', 'ALLOW', 'AuthorizationPolicy/shop/api-allow-frontend', 'frontend'],
      ['shop/api-v1', 'L4', 'ALLOW', 'AuthorizationPolicy/shop/api-allow-waypoint', 'waypoint'],
      ['shop/api-v2', 'L4', 'ALLOW', 'AuthorizationPolicy/shop/api-allow-waypoint', 'waypoint'],
    ],
  );
});

test("shop: frontend -> orders is denied at orders' node; the reason names the ALLOW policy that did not match", () => {
  const view = viewFromPaths([SHOP], '-f');
  const r = checkPolicy(view, { from: 'frontend.shop', to: 'orders.shop:7000' });
  assert.equal(r.verdict, 'DENY');
  assert.equal(r.policy, null);
  assert.match(
    r.reason,
    /no ALLOW policy matched; the ALLOW policies in force here: AuthorizationPolicy\/shop\/orders-allow-api/,
  );
  // The same caller by SPIFFE ID; api is allowed.
  assert.equal(
    checkPolicy(view, { from: 'spiffe://cluster.local/ns/shop/sa/frontend', to: 'orders.shop:7000' }).verdict,
    'DENY',
  );
  const api = checkPolicy(view, { from: 'shop/api-v2', to: 'orders.shop.svc.cluster.local:7000' });
  assert.deepEqual(
    [api.verdict, api.policy, api.rule],
    ['ALLOW', 'AuthorizationPolicy/shop/orders-allow-api', 'spec.rules[0]'],
  );
});

test('a DENY AuthorizationPolicy on the path wins and is named; L7 attributes decide at the waypoint', (t) => {
  const dir = shopWith(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin, namespace: shop }
spec:
  targetRefs: [{ kind: Service, group: '', name: api }]
  action: DENY
  rules:
    - to: [{ operation: { paths: ['/admin/*'] } }]
    - to: [{ operation: { methods: [DELETE] } }]
      when: [{ key: 'request.headers[x-break-glass]', notValues: ['yes'] }]
`,
  );
  const view = viewFromPaths([dir], '-f');
  const get = checkPolicy(view, { from: 'shop/frontend', to: 'api.shop:8080', path: '/items' });
  assert.equal(get.verdict, 'ALLOW');
  const admin = checkPolicy(view, { from: 'shop/frontend', to: 'api.shop:8080', path: '/admin/users' });
  assert.deepEqual(
    [admin.verdict, admin.policy, admin.rule],
    ['DENY', 'AuthorizationPolicy/shop/no-admin', 'spec.rules[0]'],
  );
  assert.equal(admin.steps[0]!.enforcedBy, 'waypoint shop/waypoint');
  const del = checkPolicy(view, { from: 'shop/frontend', to: 'api.shop:8080', method: 'delete', path: '/items/1' });
  assert.deepEqual([del.verdict, del.rule], ['DENY', 'spec.rules[1]']);
  const glass = checkPolicy(view, {
    from: 'shop/frontend',
    to: 'api.shop:8080',
    method: 'DELETE',
    path: '/items/1',
    headers: { 'X-Break-Glass': 'yes' },
  });
  assert.equal(glass.verdict, 'ALLOW');
});

test('a NetworkPolicy is decided by the same engine and named with its rule', (t) => {
  const dir = shopWith(
    t,
    `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: orders-from-api-v1, namespace: shop }
spec:
  podSelector: { matchLabels: { app: orders } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ podSelector: { matchLabels: { app: api } } }]
      ports: [{ port: 9090 }]
`,
  );
  const view = viewFromPaths([dir], '-f');
  const api = checkPolicy(view, { from: 'shop/api-v1', to: 'orders.shop:7000' });
  assert.equal(api.verdict, 'ALLOW');
  const step = api.steps[0]!;
  assert.equal(step.verdict, 'ALLOW');
  // Both layers allow; the step names the first deciding policy (the AuthorizationPolicy).
  assert.equal(step.policy, 'AuthorizationPolicy/shop/orders-allow-api');
  // Without the AuthorizationPolicy's ALLOW, the NetworkPolicy's isolation still denies frontend.
  const frontend = checkPolicy(view, { from: 'shop/frontend', to: 'orders.shop:7000' });
  assert.equal(frontend.verdict, 'DENY');
  assert.match(frontend.reason, /NetworkPolicy\/shop\/orders-from-api-v1/);
});

test('requestPrincipals: a JWT principal allows at the waypoint, a missing or other token does not', (t) => {
  const dir = shopWith(
    t,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: api-allow-frontend, namespace: shop }
spec:
  targetRefs: [{ kind: Service, group: '', name: api }]
  action: ALLOW
  rules:
    - from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'], requestPrincipals: ['https://issuer.example/*'] } }]
      when: [{ key: 'request.auth.claims[groups]', values: [buyers] }]
`,
  );
  // The shop's own api-allow-frontend is replaced by the stricter one above.
  rmSync(join(dir, 'policy.yaml'));
  writeFileSync(
    join(dir, 'policy.yaml'),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: api-allow-waypoint, namespace: shop }
spec:
  selector: { matchLabels: { app: api } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/waypoint'] } }] }]
`,
  );
  const view = viewFromPaths([dir], '-f');
  const claims = { iss: 'https://issuer.example', sub: 'alice', groups: ['buyers'] };
  const ok = checkPolicy(view, {
    from: 'shop/frontend',
    to: 'api.shop:8080',
    requestAuth: { principal: 'https://issuer.example/alice', claims },
  });
  assert.deepEqual([ok.verdict, ok.policy], ['ALLOW', 'AuthorizationPolicy/shop/api-allow-frontend']);
  assert.equal(checkPolicy(view, { from: 'shop/frontend', to: 'api.shop:8080' }).verdict, 'DENY');
  const other = checkPolicy(view, {
    from: 'shop/frontend',
    to: 'api.shop:8080',
    requestAuth: { principal: 'https://issuer.example/bob', claims: { ...claims, sub: 'bob', groups: ['sellers'] } },
  });
  assert.equal(other.verdict, 'DENY');

  // The CLI reads the token's claims from --jwt.
  const jwt = join(dir, 'token.jwt');
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  writeFileSync(jwt, `${b64({ alg: 'RS256' })}.${b64(claims)}.c2ln\n`);
  const cli = runCli([
    'policy',
    'check',
    '-f',
    dir,
    '--from',
    'shop/frontend',
    '--to',
    'api.shop:8080',
    '--jwt',
    jwt,
    '-o',
    'json',
  ]);
  assert.equal(cli.code, 0, cli.stderr);
  const out = JSON.parse(cli.stdout) as { verdict: string; policy: string; rule: string };
  assert.deepEqual(
    [out.verdict, out.policy, out.rule],
    ['ALLOW', 'AuthorizationPolicy/shop/api-allow-frontend', 'spec.rules[0]'],
  );
});

test('CLI: human output, exit 1 on DENY, -o json shape, and clear errors for unknown callers and services', () => {
  const allow = runCli([
    'policy',
    'check',
    '-f',
    SHOP,
    '--from',
    'shop/frontend',
    '--to',
    'api.shop.svc.cluster.local:8080',
  ]);
  assert.equal(allow.code, 0, allow.stderr);
  assert.match(allow.stdout, /Verdict: ALLOW \(AuthorizationPolicy\/shop\/api-allow-frontend spec\.rules\[0\]\)/);
  assert.match(allow.stdout, /waypoint shop\/waypoint\s+L7\s+ALLOW/);

  const deny = runCli([
    'policy',
    'check',
    '-f',
    SHOP,
    '--from',
    'shop/frontend',
    '--to',
    'orders.shop.svc.cluster.local:7000',
    '-o',
    'json',
  ]);
  assert.equal(deny.code, 1);
  const j = JSON.parse(deny.stdout) as Record<string, unknown>;
  assert.equal(j.verdict, 'DENY');
  assert.ok('policy' in j && 'rule' in j);

  const typo = runCli(['policy', 'check', '-f', SHOP, '--from', 'shop/fronted', '--to', 'api.shop:8080']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /--from shop\/fronted: no such workload .*did you mean shop\/frontend\?/);
  assert.doesNotMatch(typo.stderr, /at .*\.js:\d+/, 'no stack trace for a user mistake');

  const svc = runCli([
    'policy',
    'check',
    '-f',
    SHOP,
    '--from',
    'shop/frontend',
    '--to',
    'apii.shop.svc.cluster.local:8080',
  ]);
  assert.equal(svc.code, 2);
  assert.match(
    svc.stderr,
    /--to apii\.shop\.svc\.cluster\.local:8080: no service has host .*did you mean api\.shop\.svc\.cluster\.local\?/,
  );

  const port = runCli(['policy', 'check', '-f', SHOP, '--from', 'shop/frontend', '--to', 'api.shop:9999']);
  assert.equal(port.code, 2);
  assert.match(port.stderr, /has no port 9999 \(ports: 8080\)/);

  const missing = runCli(['policy', 'check', '-f', SHOP, '--to', 'api.shop:8080']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /needs --from/);
});
