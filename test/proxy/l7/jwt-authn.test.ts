// The jwt_authn filter through the real L7 engine: the config is what the translation builds
// from a RequestAuthentication, the JWKS comes from a real HTTPS server on loopback (certificate
// from Trellis' CA, trusted through the filter's `ca` option), keys and tokens from node:crypto.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, sign, constants, type KeyObject } from 'node:crypto';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { tlsPem } from '../../../src/identity/tls-credentials.js';
import { defaultFilters } from '../../../src/proxy/l7/engine.js';
import type { EnvoyObject } from '../../../src/proxy/l7/config.js';
import type { HttpFilterFactory } from '../../../src/proxy/l7/filter.js';
import { jwtAuthnFilter } from '../../../src/proxy/l7/filters/jwt-authn.js';
import { REQUEST_AUTH_STATE, type RequestAuth } from '../../../src/proxy/rbac/evaluate.js';
import { jwtAuthnFilter as translateJwtAuthn } from '../../../src/xds/translate/jwt-authn.js';
import type { RequestAuthenticationSpec } from '../../../src/xds/translate/security.js';
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
  type Running,
} from './helpers.js';

const HOUR = 3_600_000;
const ISS = 'https://issuer.test';
const now = () => Math.floor(Date.now() / 1000);

// --- keys and tokens -----------------------------------------------------------------------------

interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly priv: KeyObject;
  readonly jwk: Record<string, unknown>;
}

function key(kid: string, alg: 'RS256' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA'): SigningKey {
  const pair =
    alg === 'RS256' || alg === 'PS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' });
  return { kid, alg, priv: pair.privateKey, jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, use: 'sig' } };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

function token(k: SigningKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64({ alg: k.alg, typ: 'JWT', kid: k.kid, ...header })}.${b64(claims)}`;
  const data = Buffer.from(input);
  const hash = k.alg === 'EdDSA' ? null : k.alg === 'ES384' ? 'sha384' : 'sha256';
  const sig =
    k.alg === 'PS256'
      ? sign(hash, data, { key: k.priv, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
      : k.alg.startsWith('ES')
        ? sign(hash, data, { key: k.priv, dsaEncoding: 'ieee-p1363' })
        : sign(hash, data, k.priv);
  return `${input}.${sig.toString('base64url')}`;
}

const claims = (extra: Record<string, unknown> = {}) => ({
  iss: ISS,
  sub: 'alice',
  aud: 'api',
  exp: now() + 600,
  groups: ['dev', 'ops'],
  ...extra,
});

// --- JWKS server --------------------------------------------------------------------------------

interface JwksServer {
  readonly uri: string;
  readonly ca: string;
  keys: SigningKey[];
  requests: number;
  delayMs: number;
  close(): Promise<void>;
}

const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: HOUR });
const serverTls = tlsPem({
  svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/auth/sa/jwks', ttlMs: HOUR, dnsNames: ['localhost'] }),
  bundle: ca.roots,
});

async function startJwks(keys: SigningKey[]): Promise<JwksServer> {
  const sockets = new Set<import('node:net').Socket>();
  const s: JwksServer = { uri: '', ca: serverTls.ca, keys, requests: 0, delayMs: 0, close: async () => {} };
  const server = https.createServer({ cert: serverTls.cert, key: serverTls.key }, (req, res) => {
    s.requests++;
    const body = JSON.stringify({ keys: s.keys.map((k) => k.jwk) });
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(body), s.delayMs);
  });
  server.on('secureConnection', (c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((r) => server.listen(0, 'localhost', r));
  Object.assign(s, {
    uri: `https://localhost:${(server.address() as AddressInfo).port}/jwks`,
    close: () =>
      new Promise<void>((r) => {
        for (const c of sockets) c.destroy();
        server.close(() => r());
      }),
  });
  return s;
}

// --- engine ------------------------------------------------------------------------------------

/** Copies what jwt_authn left for RBAC into a request header, so the upstream can show it. */
const exposeRequestAuth: HttpFilterFactory = {
  name: 'test.expose-request-auth',
  create: () => ({
    onRequest(ctx) {
      const auth = ctx.filterState.get(REQUEST_AUTH_STATE) as RequestAuth | undefined;
      if (auth) ctx.headers['x-test-principal'] = `${auth.principal} groups=${String(auth.claims.groups)}`;
    },
  }),
};

interface Setup {
  readonly proxy: Running;
  readonly echo: Echo;
  readonly filter: ReturnType<typeof jwtAuthnFilter>;
  close(): Promise<void>;
}

/** The translation of `spec`, optionally with a shorter JWKS cache duration (ms). */
type JwtRule = NonNullable<RequestAuthenticationSpec['jwtRules']>[number];

function translated(spec: { jwtRules: Partial<JwtRule>[] }, cacheMs?: number): EnvoyObject {
  const jwtRules = spec.jwtRules.map((r) => ({ forwardOriginalToken: false, ...r }));
  const f = translateJwtAuthn([{ id: 'RequestAuthentication/prod/jwt', spec: { jwtRules } }]);
  assert.ok(f);
  if (cacheMs !== undefined) {
    for (const p of Object.values((f.typed_config as { providers: Record<string, EnvoyObject> }).providers)) {
      const r = p.remote_jwks as EnvoyObject | undefined;
      if (r) r.cache_duration = { seconds: 0, nanos: cacheMs * 1e6 };
    }
  }
  return f;
}

async function setup(httpFilter: EnvoyObject, jwksCa: string): Promise<Setup> {
  const echo = await startEcho('api');
  const filter = jwtAuthnFilter(() => [httpFilter], { ca: jwksCa });
  const proxy = await startEngine(
    l7Config(
      [routeConfig('rc', [vhost('vh', ['*'], [toCluster('api')])])],
      [edsCluster('api')],
      [cla('api', [{ port: echo.port }])],
    ),
    'rc',
    { filters: [filter, exposeRequestAuth, ...defaultFilters()] },
  );
  return {
    proxy,
    echo,
    filter,
    close: async () => {
      filter.jwks.close();
      await proxy.close();
      await echo.close();
    },
  };
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function until(what: string, ok: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

// --- tests -------------------------------------------------------------------------------------

test(
  'valid RS256 / PS256 / ES256 / ES384 / EdDSA tokens pass; upstream sees payload and claim headers, not the token',
  { timeout: 10_000 },
  async () => {
    const keys = [
      key('rsa', 'RS256'),
      key('pss', 'PS256'),
      key('ec', 'ES256'),
      key('ec384', 'ES384'),
      key('ed', 'EdDSA'),
    ];
    const jwks = await startJwks(keys);
    const s = await setup(
      translated({
        jwtRules: [
          {
            issuer: ISS,
            audiences: ['api'],
            jwksUri: jwks.uri,
            forwardOriginalToken: false,
            outputPayloadToHeader: 'x-jwt-payload',
            outputClaimToHeaders: [
              { header: 'x-sub', claim: 'sub' },
              { header: 'x-groups', claim: 'groups' },
            ],
          },
        ],
      }),
      jwks.ca,
    );
    try {
      for (const k of keys) {
        const c = claims({ alg: k.alg });
        const r = await get(s.proxy.port, '/x', { headers: { ...bearer(token(k, c)), 'x-sub': 'forged' } });
        assert.equal(r.status, 200, `${k.alg}: ${r.body}`);
        const h = json(r).headers;
        assert.equal(h.authorization, undefined, 'token removed (forwardOriginalToken: false)');
        assert.deepEqual(JSON.parse(Buffer.from(String(h['x-jwt-payload']), 'base64url').toString()), c);
        assert.equal(h['x-sub'], 'alice');
        assert.equal(h['x-groups'], 'dev,ops');
        assert.equal(h['x-test-principal'], `${ISS}/alice groups=dev,ops`);
      }
      // Fetched once, then served from the cache.
      assert.equal(jwks.requests, 1);
      // access_token query parameter: Envoy's default location besides Authorization: Bearer.
      const q = await get(s.proxy.port, `/q?access_token=${token(keys[0]!, claims())}`);
      assert.equal(q.status, 200, q.body);
      assert.equal(json(q).headers['x-sub'], 'alice');
    } finally {
      await s.close();
      await jwks.close();
    }
  },
);

test(
  'a request without a token passes with no identity; forged output headers are dropped',
  { timeout: 10_000 },
  async () => {
    const k = key('rsa', 'RS256');
    const jwks = await startJwks([k]);
    const s = await setup(
      translated({
        jwtRules: [
          { issuer: ISS, jwksUri: jwks.uri, forwardOriginalToken: false, outputPayloadToHeader: 'x-jwt-payload' },
        ],
      }),
      jwks.ca,
    );
    try {
      const r = await get(s.proxy.port, '/open', { headers: { 'x-jwt-payload': b64({ sub: 'root' }) } });
      assert.equal(r.status, 200, r.body);
      const h = json(r).headers;
      assert.equal(h['x-jwt-payload'], undefined);
      assert.equal(h['x-test-principal'], undefined);
      // A token in a location the provider does not read is no token.
      const other = await get(s.proxy.port, '/open', { headers: { 'x-token': 'garbage' } });
      assert.equal(other.status, 200);
    } finally {
      await s.close();
      await jwks.close();
    }
  },
);

test(
  'invalid tokens are rejected 401 with Envoy’s reason: signature, exp, nbf, aud, iss, kid, format',
  { timeout: 10_000 },
  async () => {
    const k = key('k1', 'RS256');
    const impostor = { ...key('k1', 'RS256') }; // same kid, another key
    const jwks = await startJwks([k]);
    const s = await setup(
      translated({ jwtRules: [{ issuer: ISS, audiences: ['api', 'web'], jwksUri: jwks.uri }] }),
      jwks.ca,
    );
    try {
      const cases: [string, string, string][] = [
        ['bad signature', token(impostor, claims()), 'Jwt verification fails'],
        [
          'tampered payload',
          token(k, claims()).replace(/\.[^.]+\./, `.${b64(claims({ sub: 'mallory' }))}.`),
          'Jwt verification fails',
        ],
        ['expired beyond the 60s skew', token(k, claims({ exp: now() - 120 })), 'Jwt is expired'],
        ['nbf in the future beyond the skew', token(k, claims({ nbf: now() + 300 })), 'Jwt not yet valid'],
        ['wrong audience', token(k, claims({ aud: ['other'] })), 'Audiences in Jwt are not allowed'],
        ['wrong issuer', token(k, claims({ iss: 'https://evil.test' })), 'Jwt issuer is not configured'],
        ['unknown kid', token(k, claims(), { kid: 'nope' }), "Jwks doesn't have key to match kid or alg from Jwt"],
        ['not a JWT', 'abc.def', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
      ];
      for (const [name, t, reason] of cases) {
        const r = await get(s.proxy.port, '/x', { headers: bearer(t) });
        assert.equal(r.status, 401, `${name}: ${r.body}`);
        assert.equal(r.body, reason, name);
        assert.match(
          String(r.headers['www-authenticate']),
          /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/x", error="invalid_token"$/,
        );
      }
      assert.equal(s.echo.count, 0, 'nothing reached the upstream');
      // Within the clock skew, and with one of several audiences: accepted.
      const ok = await get(s.proxy.port, '/x', {
        headers: bearer(token(k, claims({ exp: now() - 30, nbf: now() + 30, aud: ['x', 'web'] }))),
      });
      assert.equal(ok.status, 200, ok.body);
    } finally {
      await s.close();
      await jwks.close();
    }
  },
);

test('JWKS rotation: a new kid is picked up after the background refresh', { timeout: 10_000 }, async () => {
  const old = key('old', 'ES256');
  const next = key('new', 'ES256');
  const jwks = await startJwks([old]);
  const s = await setup(translated({ jwtRules: [{ issuer: ISS, jwksUri: jwks.uri }] }, 300), jwks.ca);
  try {
    assert.equal((await get(s.proxy.port, '/', { headers: bearer(token(old, claims())) })).status, 200);
    const before = await get(s.proxy.port, '/', { headers: bearer(token(next, claims())) });
    assert.equal(before.status, 401);
    jwks.keys = [next];
    await until(
      'the new key',
      async () => (await get(s.proxy.port, '/', { headers: bearer(token(next, claims())) })).status === 200,
    );
    assert.ok(jwks.requests >= 2);
    // The old key left the set: its tokens now fail.
    assert.equal((await get(s.proxy.port, '/', { headers: bearer(token(old, claims())) })).status, 401);
  } finally {
    await s.close();
    await jwks.close();
  }
});

test('JWKS server down: the last good keys stay in use', { timeout: 10_000 }, async () => {
  const k = key('k', 'EdDSA');
  const jwks = await startJwks([k]);
  const s = await setup(translated({ jwtRules: [{ issuer: ISS, jwksUri: jwks.uri }] }, 200), jwks.ca);
  try {
    assert.equal((await get(s.proxy.port, '/', { headers: bearer(token(k, claims())) })).status, 200);
    await jwks.close();
    const set = s.filter.jwks.sets[0]!;
    await until('a failed refresh', async () => {
      await get(s.proxy.port, '/', { headers: bearer(token(k, claims())) });
      return set.lastError !== undefined;
    });
    assert.match(set.lastError!.message, new RegExp(`fetching JWKS from ${jwks.uri.replace(/[/.]/g, '\\$&')}`));
    const r = await get(s.proxy.port, '/', { headers: bearer(token(k, claims())) });
    assert.equal(r.status, 200, r.body);
  } finally {
    await s.close();
  }
});

test(
  'before the first fetch a request waits for the keys; an unreachable JWKS fails bounded',
  { timeout: 10_000 },
  async () => {
    const k = key('k', 'RS256');
    const jwks = await startJwks([k]);
    jwks.delayMs = 300;
    const s = await setup(translated({ jwtRules: [{ issuer: ISS, jwksUri: jwks.uri }] }), jwks.ca);
    // JWKS on a port nothing listens on (the closed server's), timeout 1s.
    const dead = await startJwks([k]);
    await dead.close();
    const d = await setup(translated({ jwtRules: [{ issuer: ISS, jwksUri: dead.uri, timeout: '1s' }] }), dead.ca);
    try {
      const t0 = Date.now();
      const [a, b] = await Promise.all([
        get(s.proxy.port, '/', { headers: bearer(token(k, claims())) }),
        get(s.proxy.port, '/', { headers: bearer(token(k, claims())) }),
      ]);
      assert.equal(a.status, 200, a.body);
      assert.equal(b.status, 200, b.body);
      assert.ok(Date.now() - t0 >= 250, 'waited for the fetch');
      assert.equal(jwks.requests, 1, 'one fetch for both requests');
      const start = Date.now();
      const r = await get(d.proxy.port, '/', { headers: bearer(token(k, claims())) });
      assert.equal(r.status, 401);
      assert.equal(r.body, 'Jwks remote fetch is failed');
      assert.ok(Date.now() - start < 3000);
      // Without a token the dead JWKS does not matter.
      assert.equal((await get(d.proxy.port, '/')).status, 200);
    } finally {
      await s.close();
      await d.close();
      await jwks.close();
    }
  },
);

test(
  'inline JWKS (local_jwks) and a custom header location with prefix, forwarded when asked',
  { timeout: 10_000 },
  async () => {
    const k = key('k', 'ES256');
    const s = await setup(
      translated({
        jwtRules: [
          {
            issuer: ISS,
            jwks: JSON.stringify({ keys: [k.jwk] }),
            fromHeaders: [{ name: 'x-jwt', prefix: 'Token ' }],
            forwardOriginalToken: true,
          },
        ],
      }),
      serverTls.ca,
    );
    try {
      const t = token(k, claims());
      const r = await get(s.proxy.port, '/', { headers: { 'x-jwt': `Token ${t}` } });
      assert.equal(r.status, 200, r.body);
      assert.equal(json(r).headers['x-jwt'], `Token ${t}`);
      // Authorization is not one of this provider's locations: ignored.
      assert.equal((await get(s.proxy.port, '/', { headers: bearer('garbage') })).status, 200);
      assert.equal((await get(s.proxy.port, '/', { headers: { 'x-jwt': 'Token garbage' } })).status, 401);
    } finally {
      await s.close();
    }
  },
);
