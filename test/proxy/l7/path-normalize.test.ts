// normalize_path (Istio's BASE normalization): RFC 3986 dot segments, encoded dots and
// backslashes resolved before routing and authorization; ordinary paths untouched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultFilters } from '../../../src/proxy/l7/engine.js';
import { rbacFilter } from '../../../src/proxy/l7/filters/rbac.js';
import { normalizePath } from '../../../src/proxy/l7/path-normalize.js';
import {
  cla,
  edsCluster,
  get,
  json,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  toCluster,
  vhost,
} from './helpers.js';

test('paths are normalized per RFC 3986 (dot segments, %2e, backslash), query kept, slashes not merged', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['/api/items?x=../y', '/api/items?x=../y'],
    ['/a/../admin', '/admin'],
    ['/a/./b', '/a/b'],
    ['/a/b/../../c', '/c'],
    ['/../admin', '/admin'],
    ['/..', '/'],
    ['/a/.', '/a/'],
    ['/a/..', '/'],
    ['/%2e%2e/admin', '/admin'],
    ['/%2E%2e/admin?q=1', '/admin?q=1'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public\\..\\admin', '/admin'],
    ['//double//slash', '//double//slash'],
    ['/a..b/c', '/a..b/c'],
    ['/.well-known/x', '/.well-known/x'],
    ['*', '*'],
  ];
  for (const [input, want] of cases) assert.equal(normalizePath(input), want, input);
  // Nothing to do: the very same string comes back (no allocation on the hot path).
  const p = '/api/v1/items/42?sort=asc';
  assert.equal(normalizePath(p), p);
});

test('through the engine: a DENY rule on /admin cannot be walked around with dot segments; the upstream gets the normalized path', async () => {
  const echo = await startEcho('app');
  const denyAdmin = {
    name: 'envoy.filters.http.rbac.deny',
    typed_config: {
      rules: {
        action: 'DENY',
        policies: {
          'no-admin': { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: [{ any: true }] },
        },
      },
    },
  };
  const proxy = await startEngine(
    l7Config(
      [routeConfig('rc', [vhost('vh', ['*'], [toCluster('app')])])],
      [edsCluster('app')],
      [cla('app', [{ port: echo.port }])],
    ),
    'rc',
    { filters: [rbacFilter(() => [denyAdmin]), ...defaultFilters()] },
  );
  try {
    for (const path of ['/admin', '/public/../admin', '/%2e%2e/admin/users', '/x/./../admin', '/public\\..\\admin'])
      assert.equal((await get(proxy.port, path)).status, 403, path);
    // Envoy's details name the denying policy (access logs and flow records carry it).
    assert.ok(proxy.logs.some((r) => r.details === 'rbac_access_denied_matched_policy[no-admin]'));
    const ok = await get(proxy.port, '/public/../items/./1?q=..');
    assert.equal(ok.status, 200);
    assert.equal(json(ok).url, '/items/1?q=..');
  } finally {
    await proxy.close();
    await echo.close();
  }
});
