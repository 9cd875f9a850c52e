// The engine over real sockets with an HTTP/1.1 client: virtual hosts, every match type and
// their order, actions (cluster, weighted, direct response, redirect), header mutations, local
// errors (404, 503, 504) and the access log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
  type Echo,
} from './helpers.js';
import type { EnvoyObject } from '../../../src/proxy/l7/config.js';

async function echoes(...names: string[]): Promise<Echo[]> {
  return Promise.all(names.map((n) => startEcho(n)));
}

async function closeAll(items: { close(): Promise<void> }[]): Promise<void> {
  await Promise.all(items.map((i) => i.close()));
}

/** One route config "rc" over clusters named like their echo backend. */
function configFor(backends: Echo[], vhosts: EnvoyObject[], rcExtra: EnvoyObject = {}) {
  return l7Config(
    [routeConfig('rc', vhosts, rcExtra)],
    backends.map((b) => edsCluster(b.name)),
    backends.map((b) => cla(b.name, [{ port: b.port }])),
  );
}

test('virtual host selection: exact, suffix wildcard, prefix wildcard, default, with and without port', async () => {
  const bs = await echoes('exact', 'suffix', 'longsuffix', 'prefix', 'default', 'withport');
  const r = (c: string) => [toCluster(c)];
  const proxy = await startEngine(
    configFor(bs, [
      vhost('exact', ['api.example.com'], r('exact')),
      vhost('suffix', ['*.example.com'], r('suffix')),
      vhost('longsuffix', ['*.eu.example.com'], r('longsuffix')),
      vhost('prefix', ['api.*'], r('prefix')),
      vhost('withport', ['svc.local:8080'], r('withport')),
      vhost('default', ['*'], r('default')),
    ]),
    'rc',
  );
  try {
    const who = async (host: string) => json(await get(proxy.port, '/', { headers: { host } })).name;
    assert.equal(await who('api.example.com'), 'exact');
    assert.equal(await who('API.Example.COM'), 'exact', 'domains are case-insensitive');
    assert.equal(await who('api.example.com:9999'), 'exact', 'port-stripped match');
    assert.equal(await who('www.example.com'), 'suffix');
    assert.equal(await who('x.eu.example.com'), 'longsuffix', 'the longest suffix wins');
    assert.equal(await who('api.other.org'), 'prefix', 'suffix wildcards before prefix wildcards');
    assert.equal(await who('svc.local:8080'), 'withport');
    assert.equal(await who('svc.local:9090'), 'default');
    assert.equal(await who('nothing.here'), 'default');
    assert.equal(await who('example.com'), 'default', 'a wildcard stands for at least one character');
  } finally {
    await closeAll([proxy, ...bs]);
  }
});

test('route matches: path specifiers, case, headers, query parameters, first match wins', async () => {
  const names = [
    'exact',
    'regex',
    'sep',
    'nocase',
    'hdr-exact',
    'hdr-prefix',
    'hdr-suffix',
    'hdr-contains',
    'hdr-regex',
    'hdr-present',
    'hdr-absent',
    'hdr-invert',
    'method',
    'authority',
    'q-exact',
    'q-present',
    'grpc',
    'prefix',
    'fallback',
  ];
  const bs = await echoes(...names);
  const routes: EnvoyObject[] = [
    toCluster('exact', { path: '/exact' }),
    toCluster('regex', { safe_regex: { regex: '/items/[0-9]+' } }),
    toCluster('sep', { path_separated_prefix: '/seg' }),
    toCluster('nocase', { prefix: '/NoCase', case_sensitive: { value: false } }),
    toCluster('hdr-exact', { prefix: '/h', headers: [{ name: 'x-h', string_match: { exact: 'exact' } }] }),
    toCluster('hdr-prefix', { prefix: '/h', headers: [{ name: 'x-h', string_match: { prefix: 'pre-' } }] }),
    toCluster('hdr-suffix', { prefix: '/h', headers: [{ name: 'x-h', string_match: { suffix: '-suf' } }] }),
    toCluster('hdr-contains', { prefix: '/h', headers: [{ name: 'x-h', string_match: { contains: 'mid' } }] }),
    toCluster('hdr-regex', {
      prefix: '/h',
      headers: [{ name: 'x-h', string_match: { safe_regex: { regex: 'r[0-9]' } } }],
    }),
    toCluster('hdr-present', { prefix: '/h', headers: [{ name: 'x-present', present_match: true }] }),
    toCluster('hdr-invert', {
      prefix: '/h',
      headers: [{ name: 'x-inv', string_match: { exact: 'no' }, invert_match: true }],
    }),
    toCluster('hdr-absent', { prefix: '/h', headers: [{ name: 'x-inv', present_match: false }] }),
    toCluster('method', { prefix: '/m', headers: [{ name: ':method', string_match: { exact: 'DELETE' } }] }),
    toCluster('authority', {
      prefix: '/m',
      headers: [{ name: ':authority', string_match: { prefix: 'special' } }],
    }),
    toCluster('q-exact', { prefix: '/q', query_parameters: [{ name: 'v', string_match: { exact: '1' } }] }),
    toCluster('q-present', { prefix: '/q', query_parameters: [{ name: 'flag', present_match: true }] }),
    toCluster('grpc', { prefix: '/g', grpc: {} }),
    toCluster('prefix', { prefix: '/p' }),
    toCluster('fallback', { prefix: '' }),
  ];
  const proxy = await startEngine(configFor(bs, [vhost('all', ['*'], routes)]), 'rc');
  try {
    const who = async (path: string, headers: Record<string, string> = {}, method = 'GET') =>
      json(await get(proxy.port, path, { headers, method })).name;
    assert.equal(await who('/exact'), 'exact');
    assert.equal(await who('/exact?x=1'), 'exact', 'the query is not part of the path');
    assert.equal(await who('/exact/more'), 'fallback');
    assert.equal(await who('/items/42'), 'regex');
    assert.equal(await who('/items/42x'), 'fallback', 'safe_regex is a full match');
    assert.equal(await who('/seg'), 'sep');
    assert.equal(await who('/seg/x'), 'sep');
    assert.equal(await who('/segx'), 'fallback', 'path_separated_prefix matches whole segments');
    assert.equal(await who('/nocase/x'), 'nocase');
    assert.equal(await who('/h', { 'x-h': 'exact' }), 'hdr-exact');
    assert.equal(await who('/h', { 'x-h': 'pre-1' }), 'hdr-prefix');
    assert.equal(await who('/h', { 'x-h': '1-suf' }), 'hdr-suffix');
    assert.equal(await who('/h', { 'x-h': 'a-mid-b' }), 'hdr-contains');
    assert.equal(await who('/h', { 'x-h': 'r7' }), 'hdr-regex');
    assert.equal(await who('/h', { 'x-h': 'r77', 'x-present': '' }), 'hdr-present', 'header regex is a full match');
    assert.equal(await who('/h', { 'x-inv': 'yes' }), 'hdr-invert');
    assert.equal(await who('/h', { 'x-inv': 'no' }), 'fallback', 'inverted match');
    assert.equal(
      await who('/h'),
      'hdr-absent',
      'invert_match never matches a missing header; present_match false does',
    );
    assert.equal(await who('/m', {}, 'DELETE'), 'method');
    assert.equal(await who('/m', { host: 'special.svc' }), 'authority');
    assert.equal(await who('/m'), 'fallback');
    assert.equal(await who('/q?a=b&v=1'), 'q-exact');
    assert.equal(await who('/q?v=2&flag'), 'q-present');
    assert.equal(await who('/q?v=2'), 'fallback');
    assert.equal(await who('/g', { 'content-type': 'application/grpc' }), 'grpc');
    assert.equal(await who('/g'), 'fallback');
    assert.equal(await who('/pp'), 'prefix');
    assert.equal(await who('/zzz'), 'fallback');
  } finally {
    await closeAll([proxy, ...bs]);
  }
});

test('weighted clusters split 90/10 within 3% over 2,000 requests', async () => {
  const bs = await echoes('v1', 'v2');
  const route = {
    match: { prefix: '/' },
    route: {
      weighted_clusters: {
        clusters: [
          { name: 'v1', weight: { value: 90 } },
          { name: 'v2', weight: { value: 10 } },
        ],
      },
    },
  };
  const proxy = await startEngine(configFor(bs, [vhost('all', ['*'], [route])]), 'rc');
  try {
    const n = 2000;
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, () => get(proxy.port, '/')));
    const share = bs[0]!.count / n;
    assert.ok(Math.abs(share - 0.9) < 0.03, `v1 got ${share}`);
    assert.equal(bs[0]!.count + bs[1]!.count, n);
  } finally {
    await closeAll([proxy, ...bs]);
  }
});

test('header mutations: add/append/overwrite/if-absent/if-exists/remove at route, vhost and config level', async () => {
  const [b] = await echoes('b');
  const route = {
    match: { prefix: '/' },
    route: { cluster: 'b' },
    request_headers_to_add: [
      { header: { key: 'x-route', value: 'r' } },
      { header: { key: 'x-append', value: 'added' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
      { header: { key: 'x-over', value: 'new' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      { header: { key: 'x-absent', value: 'default' }, append_action: 'ADD_IF_ABSENT' },
      { header: { key: 'x-ifexists', value: 'replaced' }, append_action: 'OVERWRITE_IF_EXISTS' },
      { header: { key: 'x-ifexists-missing', value: 'never' }, append_action: 'OVERWRITE_IF_EXISTS' },
      { header: { key: 'x-legacy', value: 'legacy' }, append: { value: false } },
      { header: { key: 'x-level', value: 'route' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      { header: { key: 'x-peer', value: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%' } },
    ],
    request_headers_to_remove: ['x-secret'],
    response_headers_to_add: [{ header: { key: 'x-resp', value: 'yes' } }],
    response_headers_to_remove: ['x-backend'],
  };
  const vh = vhost('all', ['*'], [route], {
    request_headers_to_add: [
      { header: { key: 'x-level', value: 'vhost' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ],
  });
  const proxy = await startEngine(
    configFor([b!], [vh], {
      request_headers_to_add: [
        { header: { key: 'x-level', value: 'config' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      ],
      response_headers_to_add: [{ header: { key: 'x-config', value: 'c' } }],
    }),
    'rc',
  );
  try {
    const r = await get(proxy.port, '/', {
      headers: {
        'x-append': 'orig',
        'x-over': 'old',
        'x-absent': 'client',
        'x-ifexists': 'orig',
        'x-legacy': 'old',
        'x-secret': 'hide',
      },
    });
    const h = json(r).headers;
    assert.equal(h['x-route'], 'r');
    assert.equal(h['x-append'], 'orig, added');
    assert.equal(h['x-over'], 'new');
    assert.equal(h['x-absent'], 'client');
    assert.equal(h['x-ifexists'], 'replaced');
    assert.equal(h['x-ifexists-missing'], undefined);
    assert.equal(h['x-legacy'], 'legacy');
    assert.equal(h['x-level'], 'config', 'the least specific level is applied last (Envoy default)');
    assert.equal(h['x-peer'], '127.0.0.1');
    assert.equal(h['x-secret'], undefined);
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.match(String(h['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(h.host, '127.0.0.1:' + proxy.port);
    assert.equal(r.headers['x-resp'], 'yes');
    assert.equal(r.headers['x-config'], 'c');
    assert.equal(r.headers['x-backend'], undefined);
    const kept = json(await get(proxy.port, '/', { headers: { 'x-request-id': 'mine' } })).headers;
    assert.equal(kept['x-request-id'], 'mine');
  } finally {
    await closeAll([proxy, b!]);
  }
});

test('hop-by-hop headers are not forwarded', async () => {
  const [b] = await echoes('b');
  const proxy = await startEngine(configFor([b!], [vhost('all', ['*'], [toCluster('b')])]), 'rc');
  try {
    const h = json(
      await get(proxy.port, '/', {
        headers: { connection: 'keep-alive, x-private', 'x-private': '1', 'keep-alive': '5', te: 'gzip', upgrade: 'x' },
      }),
    ).headers;
    assert.equal(h['x-private'], undefined);
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h.te, undefined);
    assert.equal(h.upgrade, undefined);
  } finally {
    await closeAll([proxy, b!]);
  }
});

test('direct response, redirect, rewrites, no route (404 NR), unknown cluster, no endpoints (503 UH), connect refused (503 UF)', async () => {
  const [b] = await echoes('b');
  const routes: EnvoyObject[] = [
    { match: { path: '/direct' }, direct_response: { status: 418, body: { inline_string: 'teapot' } } },
    {
      match: { prefix: '/old/' },
      redirect: { host_redirect: 'new.example.com', prefix_rewrite: '/new/', response_code: 'FOUND' },
    },
    { match: { path: '/secure' }, redirect: { https_redirect: true, port_redirect: 8443 } },
    { match: { prefix: '/api/' }, route: { cluster: 'b', prefix_rewrite: '/v2/', host_rewrite_literal: 'b.internal' } },
    {
      match: { prefix: '/re/' },
      route: { cluster: 'b', regex_rewrite: { pattern: { regex: '^/re/([a-z]+)/(\\d+)$' }, substitution: '/\\2/\\1' } },
    },
    { match: { path: '/missing-cluster' }, route: { cluster: 'nope' } },
    { match: { path: '/empty' }, route: { cluster: 'empty' } },
    { match: { path: '/refused' }, route: { cluster: 'refused' } },
  ];
  const config = l7Config(
    [routeConfig('rc', [vhost('h', ['known.host'], routes)])],
    [edsCluster('b'), edsCluster('empty'), edsCluster('refused')],
    [cla('b', [{ port: b!.port }]), cla('empty', []), cla('refused', [{ port: 1 }])],
  );
  const proxy = await startEngine(config, 'rc');
  try {
    const h = { host: 'known.host' };
    const direct = await get(proxy.port, '/direct', { headers: h });
    assert.equal(direct.status, 418);
    assert.equal(direct.body, 'teapot');
    const redirect = await get(proxy.port, '/old/page?q=1', { headers: h });
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.location, 'http://new.example.com/new/page?q=1');
    const secure = await get(proxy.port, '/secure', { headers: h });
    assert.equal(secure.status, 301);
    assert.equal(secure.headers.location, 'https://known.host:8443/secure');
    const rewritten = json(await get(proxy.port, '/api/items?x=1', { headers: h }));
    assert.equal(rewritten.url, '/v2/items?x=1');
    assert.equal(rewritten.headers.host, 'b.internal');
    assert.equal(json(await get(proxy.port, '/re/abc/12', { headers: h })).url, '/12/abc');
    const noRoute = await get(proxy.port, '/nothing', { headers: h });
    assert.equal(noRoute.status, 404);
    assert.equal(noRoute.body, 'route not found');
    const noVhost = await get(proxy.port, '/direct', { headers: { host: 'other.host' } });
    assert.equal(noVhost.status, 404);
    assert.equal((await get(proxy.port, '/missing-cluster', { headers: h })).status, 503);
    const empty = await get(proxy.port, '/empty', { headers: h });
    assert.equal(empty.status, 503);
    assert.equal(empty.body, 'no healthy upstream');
    const refused = await get(proxy.port, '/refused', { headers: h });
    assert.equal(refused.status, 503);
    assert.match(refused.body, /connection failure/);
    const flags = (path: string) => proxy.logs.find((l) => l.path === path)?.responseFlags;
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(flags('/nothing'), ['NR']);
    assert.equal(proxy.logs.find((l) => l.path === '/nothing')?.details, 'route_not_found');
    assert.deepEqual(flags('/missing-cluster'), ['NC']);
    assert.deepEqual(flags('/empty'), ['UH']);
    assert.deepEqual(flags('/refused'), ['UF']);
    const ok = proxy.logs.find((l) => l.path === '/api/items?x=1')!;
    assert.equal(ok.status, 200);
    assert.equal(ok.upstreamCluster, 'b');
    assert.equal(ok.upstreamHost, `127.0.0.1:${b!.port}`);
    assert.ok(ok.bytesSent > 0);
    assert.equal(ok.method, 'GET');
  } finally {
    await closeAll([proxy, b!]);
  }
});

test('request timeout: 504 before response headers (timeout and max_stream_duration)', async () => {
  const slow = await startEcho('slow', { delayMs: 1000 });
  const routes = [
    { match: { path: '/t' }, route: { cluster: 'slow', timeout: { seconds: '0', nanos: 100_000_000 } } },
    {
      match: { path: '/msd' },
      route: { cluster: 'slow', max_stream_duration: { max_stream_duration: { seconds: 0, nanos: 150_000_000 } } },
    },
  ];
  const proxy = await startEngine(configFor([slow], [vhost('all', ['*'], routes)]), 'rc');
  try {
    const t0 = Date.now();
    const r = await get(proxy.port, '/t');
    assert.equal(r.status, 504);
    assert.equal(r.body, 'upstream request timeout');
    assert.ok(Date.now() - t0 < 900);
    assert.equal((await get(proxy.port, '/msd')).status, 504);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(proxy.logs.find((l) => l.path === '/t')?.responseFlags, ['UT']);
  } finally {
    await closeAll([proxy, slow]);
  }
});
