// Traffic management in the L7 engine over real sockets: fault injection (envoy.filters.http.fault),
// CORS (envoy.filters.http.cors and the legacy RouteAction.cors), request mirroring
// (request_mirror_policies), and route-table actions (redirects, rewrites, direct responses,
// weighted clusters with zero weights, case-insensitive and query matches, a 1,100-route table).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import {
  cla,
  closable,
  edsCluster,
  get,
  h2get,
  json,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  vhost,
  type Echo,
} from './helpers.js';
import type { EnvoyObject } from '../../../src/proxy/l7/config.js';
import { L7ConfigError } from '../../../src/proxy/l7/config.js';
import { MAX_SHADOW_BODY, shadowHost } from '../../../src/proxy/l7/filters/mirror.js';
import { fractionalPercent, sampled } from '../../../src/proxy/l7/matchers.js';

const FAULT = 'envoy.filters.http.fault';
const CORS = 'envoy.filters.http.cors';

async function closeAll(items: { close(): Promise<void> }[]): Promise<void> {
  await Promise.all(items.map((i) => i.close()));
}

function configFor(
  backends: Echo[],
  routes: EnvoyObject[],
  extraClusters: EnvoyObject[] = [],
  extraCla: EnvoyObject[] = [],
) {
  return l7Config(
    [routeConfig('rc', [vhost('all', ['*'], routes)])],
    [...backends.map((b) => edsCluster(b.name)), ...extraClusters],
    [...backends.map((b) => cla(b.name, [{ port: b.port }])), ...extraCla],
  );
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

async function timed<T>(p: () => Promise<T>): Promise<[T, number]> {
  const start = Date.now();
  const v = await p();
  return [v, Date.now() - start];
}

// --- fault --------------------------------------------------------------------------------------

test('fault: aborts (HTTP, gRPC, percentages), fixed delays, header-controlled faults, per-route disable', async () => {
  const [b] = await Promise.all([startEcho('b')]);
  const fault = (f: EnvoyObject) => ({ typed_per_filter_config: { [FAULT]: f } });
  const routes: EnvoyObject[] = [
    {
      match: { path: '/abort' },
      route: { cluster: 'b' },
      ...fault({ abort: { http_status: 503, percentage: { numerator: 100 } } }),
    },
    {
      match: { path: '/grpc' },
      route: { cluster: 'b' },
      ...fault({ abort: { grpc_status: 14, percentage: { numerator: 100 } } }),
    },
    { match: { path: '/never' }, route: { cluster: 'b' }, ...fault({ abort: { http_status: 500 } }) },
    {
      match: { path: '/half' },
      route: { cluster: 'b' },
      ...fault({ abort: { http_status: 418, percentage: { numerator: 5000, denominator: 'TEN_THOUSAND' } } }),
    },
    {
      match: { path: '/delay' },
      route: { cluster: 'b' },
      ...fault({ delay: { fixed_delay: '0.2s', percentage: { numerator: 1_000_000, denominator: 'MILLION' } } }),
    },
    {
      match: { path: '/delay-abort' },
      route: { cluster: 'b' },
      ...fault({
        delay: { fixed_delay: { seconds: 0, nanos: 150_000_000 }, percentage: { numerator: 100 } },
        abort: { http_status: 429, percentage: { numerator: 100 } },
      }),
    },
    {
      match: { path: '/header' },
      route: { cluster: 'b' },
      ...fault({
        delay: { header_delay: {}, percentage: { numerator: 100 } },
        abort: { header_abort: {}, percentage: { numerator: 100 } },
      }),
    },
    {
      match: { path: '/only-if-header' },
      route: { cluster: 'b' },
      ...fault({
        abort: { http_status: 451, percentage: { numerator: 100 } },
        headers: [{ name: 'x-chaos', present_match: true }],
      }),
    },
    {
      match: { prefix: '/off' },
      route: { cluster: 'b' },
      typed_per_filter_config: {
        [FAULT]: { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', disabled: true },
      },
    },
    { match: { prefix: '/' }, route: { cluster: 'b' } },
  ];
  const config = configFor([b!], routes);
  // The virtual host aborts everything it does not override (routes above override or disable).
  (config.routes.get('rc')!.virtual_hosts as EnvoyObject[])[0]!.typed_per_filter_config = {
    [FAULT]: { abort: { http_status: 502, percentage: { numerator: 100 } } },
  };
  const proxy = await startEngine(config, 'rc');
  try {
    const abort = await get(proxy.port, '/abort');
    assert.equal(abort.status, 503);
    assert.equal(abort.body, 'fault filter abort');
    const grpc = await get(proxy.port, '/grpc', { headers: { 'content-type': 'application/grpc' } });
    assert.equal(grpc.status, 200);
    assert.equal(grpc.headers['grpc-status'], '14');
    assert.equal((await get(proxy.port, '/never')).status, 200, 'an unset percentage is 0%');
    let aborted = 0;
    for (let i = 0; i < 400; i += 50)
      aborted += (await Promise.all(Array.from({ length: 50 }, () => get(proxy.port, '/half')))).filter(
        (r) => r.status === 418,
      ).length;
    assert.ok(aborted > 140 && aborted < 260, `5000/TEN_THOUSAND aborted ${aborted} of 400`);
    const [delayed, ms] = await timed(() => get(proxy.port, '/delay'));
    assert.equal(delayed.status, 200);
    assert.ok(ms >= 190, `delayed ${ms} ms`);
    const [da, ms2] = await timed(() => get(proxy.port, '/delay-abort'));
    assert.equal(da.status, 429, 'delay, then abort');
    assert.ok(ms2 >= 140, `delay before abort ${ms2} ms`);
    assert.equal((await get(proxy.port, '/header')).status, 200, 'header faults need the headers');
    const [hd, ms3] = await timed(() =>
      get(proxy.port, '/header', {
        headers: { 'x-envoy-fault-delay-request': '120', 'x-envoy-fault-abort-request': '504' },
      }),
    );
    assert.equal(hd.status, 504);
    assert.ok(ms3 >= 110, `header delay ${ms3} ms`);
    assert.equal(
      (
        await get(proxy.port, '/header', {
          headers: { 'x-envoy-fault-abort-request': '504', 'x-envoy-fault-abort-request-percentage': '0' },
        })
      ).status,
      200,
      'the percentage header lowers the configured percentage',
    );
    assert.equal((await get(proxy.port, '/only-if-header')).status, 200);
    assert.equal((await get(proxy.port, '/only-if-header', { headers: { 'x-chaos': '1' } })).status, 451);
    assert.equal((await get(proxy.port, '/off/x')).status, 200, 'FilterConfig disabled');
    assert.equal((await get(proxy.port, '/other')).status, 502, 'the virtual host level applies');
    await waitFor(() => proxy.logs.some((l) => l.path === '/delay'));
    assert.deepEqual(proxy.logs.find((l) => l.path === '/abort')?.responseFlags, ['FI']);
    assert.equal(proxy.logs.find((l) => l.path === '/abort')?.details, 'fault_filter_abort');
    assert.deepEqual(proxy.logs.find((l) => l.path === '/delay')?.responseFlags, ['DI']);
    assert.equal(b!.count > 0, true);
  } finally {
    await closeAll([proxy, b!]);
  }
});

test('fault: max_active_faults caps concurrent faults; bad fault config is rejected', async () => {
  const b = await startEcho('b');
  const routes: EnvoyObject[] = [
    {
      match: { prefix: '/' },
      route: { cluster: 'b' },
      typed_per_filter_config: {
        [FAULT]: { delay: { fixed_delay: '1s', percentage: { numerator: 100 } }, max_active_faults: { value: 1 } },
      },
    },
  ];
  const proxy = await startEngine(configFor([b], routes), 'rc');
  try {
    const times = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i * 30));
        return (await timed(() => get(proxy.port, '/', { agent: false })))[1];
      }),
    );
    const slow = times.filter((t) => t >= 900).length;
    assert.equal(slow, 1, `one delayed request at a time: ${times.join(', ')} ms`);
    // After the fault ends, the next request is delayed again.
    const [, again] = await timed(() => get(proxy.port, '/'));
    assert.ok(again >= 900, `next request delayed ${again} ms`);
    const bad = configFor(
      [b],
      [{ ...routes[0], typed_per_filter_config: { [FAULT]: { abort: { http_status: 99 } } } }],
    );
    assert.throws(() => proxy.engine.update(bad), L7ConfigError);
    assert.equal((await timed(() => get(proxy.port, '/')))[0].status, 200, 'previous config keeps serving');
  } finally {
    await closeAll([proxy, b]);
  }
});

// --- CORS ---------------------------------------------------------------------------------------

test('cors: preflight answered locally, simple requests get headers, origins by StringMatcher, legacy RouteAction.cors', async () => {
  const b = await startEcho('b');
  const policy = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
    allow_origin_string_match: [{ exact: 'https://app.example.com' }, { suffix: '.trusted.io' }],
    allow_methods: 'GET, POST',
    allow_headers: 'x-token, content-type',
    expose_headers: 'x-trace',
    max_age: '600',
    allow_credentials: { value: true },
  };
  const routes: EnvoyObject[] = [
    { match: { prefix: '/typed' }, route: { cluster: 'b' }, typed_per_filter_config: { [CORS]: policy } },
    {
      match: { prefix: '/strict' },
      route: { cluster: 'b' },
      typed_per_filter_config: { [CORS]: { ...policy, forward_not_matching_preflights: { value: false } } },
    },
    {
      match: { prefix: '/star' },
      route: { cluster: 'b', cors: { allow_origin_string_match: [{ exact: 'https://x.io' }] } },
      typed_per_filter_config: {
        [CORS]: {
          allow_origin_string_match: [{ safe_regex: { regex: 'https://[a-z]+\\.io' } }],
          allow_methods: '*',
          allow_headers: '*',
        },
      },
    },
    {
      match: { prefix: '/legacy' },
      route: { cluster: 'b', cors: { allow_origin_string_match: [{ prefix: '' }], allow_methods: 'PUT' } },
    },
    { match: { prefix: '/' }, route: { cluster: 'b' } },
  ];
  const proxy = await startEngine(configFor([b], routes), 'rc');
  try {
    const pre = (path: string, origin: string) =>
      get(proxy.port, path, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      });
    const before = b.count;
    const ok = await pre('/typed/x', 'https://app.example.com');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(ok.headers['access-control-allow-methods'], 'GET, POST');
    assert.equal(ok.headers['access-control-allow-headers'], 'x-token, content-type');
    assert.equal(ok.headers['access-control-max-age'], '600');
    assert.equal(ok.headers['access-control-allow-credentials'], 'true');
    assert.equal(b.count, before, 'the preflight did not go upstream');
    const sub = await pre('/typed/x', 'https://a.trusted.io');
    assert.equal(sub.headers['access-control-allow-origin'], 'https://a.trusted.io');
    const bad = await pre('/typed/x', 'https://evil.example');
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
    assert.equal(json(bad).method, 'OPTIONS', 'a preflight from another origin is forwarded');
    const strict = await pre('/strict/x', 'https://evil.example');
    assert.equal(strict.status, 200);
    assert.equal(strict.body, '');
    assert.equal(strict.headers['access-control-allow-origin'], undefined);
    assert.equal(strict.headers['access-control-allow-methods'], 'GET, POST', 'the other preflight headers stay');
    const star = await get(proxy.port, '/star', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://y.io',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'x-a',
      },
    });
    assert.equal(star.headers['access-control-allow-origin'], 'https://y.io', 'typed policy wins over legacy cors');
    assert.equal(star.headers['access-control-allow-methods'], 'PATCH', '"*" echoes the requested method');
    assert.equal(star.headers['access-control-allow-headers'], 'x-a');
    assert.equal(b.count, before + 1, 'only the non-strict bad preflight went upstream');

    const simple = await get(proxy.port, '/typed/y', { headers: { origin: 'https://app.example.com' } });
    assert.equal(simple.status, 200);
    assert.equal(json(simple).name, 'b');
    assert.equal(simple.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(simple.headers['access-control-allow-credentials'], 'true');
    assert.equal(simple.headers['access-control-expose-headers'], 'x-trace');
    const noOrigin = await get(proxy.port, '/typed/y');
    assert.equal(noOrigin.headers['access-control-allow-origin'], undefined);
    const otherOrigin = await get(proxy.port, '/typed/y', { headers: { origin: 'https://evil.example' } });
    assert.equal(otherOrigin.headers['access-control-allow-origin'], undefined);

    const legacy = await pre('/legacy', 'https://anyone.example');
    assert.equal(legacy.headers['access-control-allow-origin'], 'https://anyone.example');
    assert.equal(legacy.headers['access-control-allow-methods'], 'PUT');
    assert.equal(legacy.headers['access-control-allow-credentials'], undefined);
    const none = await pre('/plain', 'https://app.example.com');
    assert.equal(none.headers['access-control-allow-origin'], undefined, 'no policy, no CORS');
  } finally {
    await closeAll([proxy, b]);
  }
});

// --- mirror -------------------------------------------------------------------------------------

interface Recorder {
  port: number;
  seen: {
    host: string | undefined;
    url: string | undefined;
    method: string | undefined;
    hdr: string | undefined;
    body: string;
  }[];
  close(): Promise<void>;
}

async function recorder(delayMs = 0): Promise<Recorder> {
  const seen: Recorder['seen'] = [];
  const server = http.createServer((req, res) => {
    const entry = {
      host: req.headers.host,
      url: req.url,
      method: req.method,
      hdr: req.headers['x-added'] as string,
      body: '',
    };
    seen.push(entry);
    req.on('data', (c: Buffer) => (entry.body += c.toString()));
    req.on('end', () => {
      const reply = () => res.writeHead(500, { 'content-type': 'text/plain' }).end('shadow says no');
      if (delayMs) setTimeout(reply, delayMs);
      else reply();
    });
  });
  const close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, seen, close };
}

test('mirror: a copy goes to the mirror cluster with a -shadow host; its answer, slowness or absence never affects the request', async () => {
  const main = await startEcho('main');
  const shadow = await recorder();
  const slow = await recorder(2000);
  const routes: EnvoyObject[] = [
    {
      match: { prefix: '/m/' },
      request_headers_to_add: [{ header: { key: 'x-added', value: 'yes' } }],
      route: {
        cluster: 'main',
        prefix_rewrite: '/rewritten/',
        request_mirror_policies: [{ cluster: 'shadow' }],
      },
    },
    { match: { prefix: '/slow' }, route: { cluster: 'main', request_mirror_policies: [{ cluster: 'slow' }] } },
    {
      match: { prefix: '/dead' },
      route: { cluster: 'main', request_mirror_policies: [{ cluster: 'dead' }, { cluster: 'missing' }] },
    },
    {
      match: { prefix: '/none' },
      route: {
        cluster: 'main',
        request_mirror_policies: [{ cluster: 'shadow', runtime_fraction: { default_value: { numerator: 0 } } }],
      },
    },
    {
      match: { prefix: '/nosuffix' },
      route: {
        cluster: 'main',
        request_mirror_policies: [{ cluster: 'shadow', disable_shadow_host_suffix_append: true }],
      },
    },
  ];
  const config = configFor(
    [main],
    routes,
    [edsCluster('shadow'), edsCluster('slow'), edsCluster('dead')],
    [cla('shadow', [{ port: shadow.port }]), cla('slow', [{ port: slow.port }]), cla('dead', [{ port: 1 }])],
  );
  const proxy = await startEngine(config, 'rc');
  try {
    const r = await get(proxy.port, '/m/a?q=1', { headers: { host: 'api.svc:8080' } });
    assert.equal(r.status, 200);
    assert.equal(json(r).url, '/rewritten/a?q=1');
    assert.ok(await waitFor(() => shadow.seen.length === 1), 'the shadow got the copy');
    assert.deepEqual(shadow.seen[0], {
      host: 'api.svc-shadow:8080',
      url: '/rewritten/a?q=1',
      method: 'GET',
      hdr: 'yes',
      body: '',
    });

    const [s, ms] = await timed(() => get(proxy.port, '/slow'));
    assert.equal(s.status, 200);
    assert.ok(ms < 1000, `a slow shadow does not delay the request (${ms} ms)`);
    assert.ok(await waitFor(() => slow.seen.length === 1));
    const dead = await get(proxy.port, '/dead');
    assert.equal(dead.status, 200, 'a dead or missing mirror cluster changes nothing');

    for (let i = 0; i < 20; i++) assert.equal((await get(proxy.port, '/none')).status, 200);
    assert.equal((await get(proxy.port, '/nosuffix', { headers: { host: 'plain' } })).status, 200);
    assert.ok(await waitFor(() => shadow.seen.length === 2));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(shadow.seen.length, 2, 'runtime_fraction 0: no copies');
    assert.equal(shadow.seen[1]!.host, 'plain');

    // A request with a body: the primary gets it unchanged, the shadow a copy of the same body.
    const post = await get(proxy.port, '/m/b', { method: 'POST', body: 'payload' });
    assert.equal(json(post).bodyLength, 7);
    assert.ok(await waitFor(() => shadow.seen.length === 3 && shadow.seen[2]!.body === 'payload'));
    assert.equal(shadow.seen[2]!.method, 'POST');
    // A body over the shadow bound still reaches the primary whole; it is not mirrored.
    const big = Buffer.alloc(MAX_SHADOW_BODY + 1, 120);
    const bigPost = await get(proxy.port, '/m/c', { method: 'POST', body: big });
    assert.equal(json(bigPost).bodyLength, big.length);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(shadow.seen.length, 3, 'a body over MAX_SHADOW_BODY is not mirrored');
  } finally {
    await closeAll([proxy, main, shadow, slow]);
  }
});

test('shadowHost appends -shadow to the host part', () => {
  const cases: [string, string][] = [
    ['svc', 'svc-shadow'],
    ['svc:8080', 'svc-shadow:8080'],
    ['[::1]:80', '[::1]-shadow:80'],
    ['[::1]', '[::1]-shadow'],
  ];
  for (const [a, b] of cases) assert.equal(shadowHost(a), b);
});

// --- route table actions --------------------------------------------------------------------------

test('route table: redirects, rewrites, direct responses, weights, case and query matches (table-driven)', async () => {
  const [b, c] = await Promise.all([startEcho('b'), startEcho('c')]);
  const routes: EnvoyObject[] = [
    { match: { path: '/r/scheme' }, redirect: { scheme_redirect: 'https' } },
    { match: { path: '/r/host' }, redirect: { host_redirect: 'other.example', response_code: 'SEE_OTHER' } },
    { match: { path: '/r/port' }, redirect: { port_redirect: 9000, response_code: 'TEMPORARY_REDIRECT' } },
    { match: { path: '/r/path' }, redirect: { path_redirect: '/new', response_code: 'PERMANENT_REDIRECT' } },
    { match: { path: '/r/strip' }, redirect: { path_redirect: '/s', strip_query: true } },
    { match: { prefix: '/r/pre/' }, redirect: { prefix_rewrite: '/moved/' } },
    {
      match: { prefix: '/r/re/' },
      redirect: { regex_rewrite: { pattern: { regex: '/r/re/(\\w+)' }, substitution: '/x/\\1' } },
    },
    { match: { path: '/direct' }, direct_response: { status: 503, body: { inline_string: 'maintenance' } } },
    { match: { path: '/direct-empty' }, direct_response: { status: 204 } },
    { match: { prefix: '/rw/' }, route: { cluster: 'b', prefix_rewrite: '/', host_rewrite_literal: 'rewritten.host' } },
    {
      match: { prefix: '/w' },
      route: {
        weighted_clusters: {
          clusters: [
            { name: 'b', weight: 0 },
            { name: 'c', weight: { value: 5 } },
          ],
        },
      },
    },
    { match: { path: '/CaSe', case_sensitive: { value: false } }, route: { cluster: 'c' } },
    {
      match: { prefix: '/q', query_parameters: [{ name: 'v', string_match: { prefix: 'x', ignore_case: true } }] },
      route: { cluster: 'c' },
    },
    { match: { prefix: '/' }, route: { cluster: 'b' } },
  ];
  const proxy = await startEngine(configFor([b, c], routes), 'rc');
  try {
    const cases: {
      path: string;
      host?: string;
      status: number;
      location?: string;
      backend?: string;
      url?: string;
      hostSeen?: string;
      body?: string;
    }[] = [
      { path: '/r/scheme', host: 'h.example:80', status: 301, location: 'https://h.example/r/scheme' },
      { path: '/r/host?a=1', host: 'h', status: 303, location: 'http://other.example/r/host?a=1' },
      { path: '/r/port', host: 'h:1234', status: 307, location: 'http://h:9000/r/port' },
      { path: '/r/path?k=v', host: 'h', status: 308, location: 'http://h/new?k=v' },
      { path: '/r/strip?k=v', host: 'h', status: 301, location: 'http://h/s' },
      { path: '/r/pre/a/b', host: 'h', status: 301, location: 'http://h/moved/a/b' },
      { path: '/r/re/abc', host: 'h', status: 301, location: 'http://h/x/abc' },
      { path: '/direct', status: 503, body: 'maintenance' },
      { path: '/direct-empty', status: 204, body: '' },
      { path: '/rw/a/b?z=1', status: 200, backend: 'b', url: '/a/b?z=1', hostSeen: 'rewritten.host' },
      { path: '/w', status: 200, backend: 'c' },
      { path: '/case', status: 200, backend: 'c' },
      { path: '/CASE', status: 200, backend: 'c' },
      { path: '/q?v=Xyz', status: 200, backend: 'c' },
      { path: '/q?v=y', status: 200, backend: 'b' },
    ];
    for (const k of cases) {
      const r = await get(proxy.port, k.path, { headers: k.host ? { host: k.host } : {} });
      assert.equal(r.status, k.status, k.path);
      if (k.location !== undefined) assert.equal(r.headers.location, k.location, k.path);
      if (k.body !== undefined) assert.equal(r.body, k.body, k.path);
      if (k.backend !== undefined) assert.equal(json(r).name, k.backend, k.path);
      if (k.url !== undefined) assert.equal(json(r).url, k.url, k.path);
      if (k.hostSeen !== undefined) assert.equal(json(r).headers.host, k.hostSeen, k.path);
    }
    for (let i = 0; i < 20; i++)
      assert.equal(json(await get(proxy.port, '/w')).name, 'c', 'a zero weight gets nothing');
    const allZero = configFor(
      [b, c],
      [
        {
          match: { prefix: '/' },
          route: {
            weighted_clusters: {
              clusters: [
                { name: 'b', weight: 0 },
                { name: 'c', weight: 0 },
              ],
            },
          },
        },
      ],
    );
    assert.throws(() => proxy.engine.update(allZero), L7ConfigError, 'all-zero weights are a config error (Envoy)');
    const badRedirect = configFor(
      [b],
      [{ match: { safe_regex: { regex: '/x.*' } }, redirect: { prefix_rewrite: '/y' } }],
    );
    assert.throws(() => proxy.engine.update(badRedirect), L7ConfigError, 'prefix_rewrite needs a prefix/path match');
  } finally {
    await closeAll([proxy, b, c]);
  }
});

test('a 1,100-route table over sockets: late exact, prefix, regex and header routes, first match in order', async () => {
  const bs = await Promise.all(['early', 'late', 'hdr', 'fallback'].map((n) => startEcho(n)));
  const routes: EnvoyObject[] = [];
  for (let i = 0; i < 400; i++)
    routes.push({ match: { path: `/svc-${i}/get` }, route: { cluster: i === 399 ? 'late' : 'early' } });
  for (let i = 0; i < 400; i++)
    routes.push({ match: { prefix: `/p-${i}/` }, route: { cluster: i === 399 ? 'late' : 'early' } });
  for (let i = 0; i < 200; i++)
    routes.push({
      match: { safe_regex: { regex: `/r-${i}/[0-9]+` } },
      route: { cluster: i === 199 ? 'late' : 'early' },
    });
  // Shadowed by the earlier prefix route /p-1/: must never be chosen.
  routes.push({
    match: { prefix: '/p-1/', headers: [{ name: 'x-tenant', string_match: { exact: 't-1' } }] },
    route: { cluster: 'hdr' },
  });
  for (let i = 0; i < 100; i++)
    routes.push({
      match: { prefix: '/', headers: [{ name: 'x-tenant', string_match: { exact: `t-${i}` } }] },
      route: { cluster: 'hdr' },
    });
  routes.push({ match: { prefix: '/' }, route: { cluster: 'fallback' } });
  const proxy = await startEngine(configFor(bs, routes), 'rc');
  try {
    const who = async (path: string, headers: Record<string, string> = {}) =>
      json(await get(proxy.port, path, { headers })).name;
    assert.equal(await who('/svc-399/get'), 'late');
    assert.equal(await who('/svc-3/get'), 'early');
    assert.equal(await who('/p-399/x'), 'late');
    assert.equal(await who('/r-199/7'), 'late');
    assert.equal(await who('/r-199/x'), 'fallback');
    assert.equal(await who('/api', { 'x-tenant': 't-99' }), 'hdr');
    assert.equal(await who('/p-1/x', { 'x-tenant': 't-1' }), 'early', 'first match in order wins');
    assert.equal(await who('/api', { 'x-tenant': 't-100' }), 'fallback');
  } finally {
    await closeAll([proxy, ...bs]);
  }
});

test('FractionalPercent: denominators by name or number, capped numerator, default', () => {
  const cases: [unknown, [number, number]][] = [
    [undefined, [7, 100]],
    [{ numerator: 5 }, [5, 100]],
    [{ numerator: 5, denominator: 'TEN_THOUSAND' }, [5, 10_000]],
    [{ numerator: '250', denominator: 2 }, [250, 1_000_000]],
    [{ numerator: 500, denominator: 'HUNDRED' }, [100, 100]],
  ];
  for (const [v, want] of cases) assert.deepEqual(fractionalPercent(v, [7, 100]), want, JSON.stringify(v));
  assert.throws(() => fractionalPercent({ numerator: 1, denominator: 'BILLION' }, [0, 100]), L7ConfigError);
  assert.equal(sampled(0, 100), false);
  assert.equal(sampled(100, 100), true);
  let hits = 0;
  for (let i = 0; i < 10_000; i++) if (sampled(25, 100)) hits++;
  assert.ok(hits > 2200 && hits < 2800, `25% sampled ${hits} of 10,000`);
});

test('over h2c: CORS preflight, a gRPC fault abort (trailers-only) and a mirrored request', async () => {
  const main = await startEcho('main');
  const shadow = await recorder();
  const routes: EnvoyObject[] = [
    {
      match: { prefix: '/cors' },
      route: { cluster: 'main' },
      typed_per_filter_config: { [CORS]: { allow_origin_string_match: [{ exact: 'https://a.io' }], max_age: '60' } },
    },
    {
      match: { prefix: '/pkg.Svc/' },
      route: { cluster: 'main' },
      typed_per_filter_config: { [FAULT]: { abort: { http_status: 503, percentage: { numerator: 100 } } } },
    },
    { match: { prefix: '/m' }, route: { cluster: 'main', request_mirror_policies: [{ cluster: 'shadow' }] } },
  ];
  const proxy = await startEngine(
    configFor([main], routes, [edsCluster('shadow')], [cla('shadow', [{ port: shadow.port }])]),
    'rc',
  );
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const pre = await h2get(session, '/cors', {
      ':method': 'OPTIONS',
      origin: 'https://a.io',
      'access-control-request-method': 'GET',
    });
    assert.equal(pre.headers[':status'], 200);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://a.io');
    assert.equal(pre.headers['access-control-max-age'], '60');
    const grpc = await h2get(session, '/pkg.Svc/Call', { 'content-type': 'application/grpc', te: 'trailers' });
    assert.equal(grpc.headers[':status'], 200);
    assert.equal(grpc.headers['grpc-status'], '14', 'HTTP 503 maps to UNAVAILABLE');
    const m = await h2get(session, '/m/x', { ':authority': 'svc.local' });
    assert.equal(m.headers[':status'], 200);
    assert.ok(await waitFor(() => shadow.seen.length === 1));
    assert.equal(shadow.seen[0]!.host, 'svc.local-shadow');
  } finally {
    session.destroy();
    await closeAll([proxy, main, shadow]);
  }
});
