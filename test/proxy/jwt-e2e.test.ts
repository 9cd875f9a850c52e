// JWT impersonation attempts through a running mesh: `trellis up` on a copy of the shop whose
// Service api carries a RequestAuthentication (inline JWKS, one ES256 key) and whose
// api-allow-frontend AuthorizationPolicy also requires a request principal of that issuer. The
// frontend's outbound proxy (HTTP_PROXY, absolute-form) is the client; api's waypoint enforces
// both. Istio's semantics: a valid token passes; no token is left to authorization (403, the
// requestPrincipals are unmet); a token that fails verification is 401, whatever the reason —
// forged signature, expired, wrong audience, an issuer no rule names, alg games.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { meshUp, proxyProblems, type HttpResult, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ISS = 'https://issuer.shop.test';
const AUD = 'shop-api';
const KID = 'shop-key-1';
const API = 'http://api.shop.svc.cluster.local:8080/';
const now = (): number => Math.floor(Date.now() / 1000);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

function ecKey(): { priv: KeyObject; jwk: Record<string, unknown> } {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    priv: pair.privateKey,
    jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid: KID, alg: 'ES256', use: 'sig' },
  };
}

/** An ES256 JWT (JOSE signature: r||s). */
function es256(priv: KeyObject, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64({ alg: 'ES256', typ: 'JWT', kid: KID, ...header })}.${b64(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key: priv, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: ISS,
  sub: 'alice',
  aud: AUD,
  iat: now(),
  exp: now() + 600,
  ...extra,
});

/** GET through an HTTP proxy in absolute-form (as an HTTP_PROXY client), with extra headers. */
function getVia(
  proxy: string,
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 5000,
): Promise<HttpResult> {
  const u = new URL(url);
  const [host, port] = proxy.split(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        path: u.href,
        headers: { host: u.host, ...headers },
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url} via ${proxy}`)));
    req.on('error', reject);
    req.end();
  });
}

const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

test(
  'JWT impersonation attempts through the waypoint of api are refused as Istio does',
  { timeout: 40_000 },
  async () => {
    const good = ecKey();
    const other = ecKey(); // same kid, another key: a forger's
    const dir = mkdtempSync(join(tmpdir(), 'trellis-jwt-e2e-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    const policy = readFileSync(join(dir, 'policy.yaml'), 'utf8');
    const withJwt = policy.replace(
      /(name: api-allow-frontend[\s\S]*?principals: \['cluster\.local\/ns\/shop\/sa\/frontend'\])/,
      `$1\n            requestPrincipals: ['${ISS}/*']`,
    );
    assert.notEqual(withJwt, policy, 'policy.yaml no longer has the api-allow-frontend rule this test extends');
    writeFileSync(join(dir, 'policy.yaml'), withJwt);
    writeFileSync(
      join(dir, 'jwt.yaml'),
      [
        'apiVersion: security.istio.io/v1',
        'kind: RequestAuthentication',
        'metadata:',
        '  name: api-jwt',
        '  namespace: shop',
        'spec:',
        '  targetRefs:',
        '    - kind: Service',
        "      group: ''",
        '      name: api',
        '  jwtRules:',
        `    - issuer: ${JSON.stringify(ISS)}`,
        `      audiences: [${JSON.stringify(AUD)}]`,
        `      jwks: ${JSON.stringify(JSON.stringify({ keys: [good.jwk] }))}`,
        '',
      ].join('\n'),
    );
    let mesh: MeshUp | undefined;
    try {
      mesh = await meshUp(dir, 30_000);
      const m = /shop\/frontend\s.*HTTP_PROXY=([^\s,]+)/.exec(mesh.stdout());
      assert.ok(m, mesh.stdout());
      const proxy = m[1]!;
      const diag = (r: HttpResult): string => `${r.status} ${r.body}\n${proxyProblems(mesh!)}`;

      // A valid token from frontend: api answers (the waypoint's first request may race its config: retry briefly).
      const valid = es256(good.priv, claims());
      let ok = await getVia(proxy, API, bearer(valid));
      for (let i = 0; i < 20 && ok.status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 250));
        ok = await getVia(proxy, API, bearer(valid));
      }
      assert.equal(ok.status, 200, diag(ok));
      assert.match(ok.body, /api-v[12]/, ok.body);
      // The token as an access_token query parameter (Envoy's other default location) passes too.
      const q = await getVia(proxy, `${API}?access_token=${valid}`);
      assert.equal(q.status, 200, diag(q));

      // No token: jwt_authn lets it through, RBAC refuses it (requestPrincipals unmet).
      const none = await getVia(proxy, API);
      assert.equal(none.status, 403, diag(none));
      assert.match(none.body, /RBAC: access denied/);
      // A non-Bearer Authorization header is no token either.
      const basic = await getVia(proxy, API, { authorization: `Basic ${Buffer.from('alice:x').toString('base64')}` });
      assert.equal(basic.status, 403, diag(basic));

      // Each forgery: 401 from jwt_authn, with Envoy's status text and a Bearer challenge.
      const header = (h: Record<string, unknown>, c: Record<string, unknown>, sig: string): string =>
        `${b64(h)}.${b64(c)}.${sig}`;
      const hsWithPublicKey = (): string => {
        // alg confusion: HS256 "signed" with the published EC key's JSON as the secret.
        const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: KID })}.${b64(claims())}`;
        return `${input}.${createHmac('sha256', JSON.stringify(good.jwk)).update(input).digest('base64url')}`;
      };
      const validSig = valid.split('.')[2]!;
      const cases: [string, string, RegExp][] = [
        ['signed by another key (same kid)', es256(other.priv, claims()), /^Jwt verification fails$/],
        ['expired (beyond the 60 s clock skew)', es256(good.priv, claims({ exp: now() - 120 })), /^Jwt is expired$/],
        ['for another audience', es256(good.priv, claims({ aud: 'shop-admin' })), /^Audiences in Jwt are not allowed$/],
        [
          'from another issuer',
          es256(other.priv, claims({ iss: 'https://evil.test' })),
          /^Jwt issuer is not configured$/,
        ],
        [
          'from another issuer, signed with the real key',
          es256(good.priv, claims({ iss: 'https://evil.test' })),
          /^Jwt issuer is not configured$/,
        ],
        ['not yet valid', es256(good.priv, claims({ nbf: now() + 3600 })), /^Jwt not yet valid$/],
        [
          'valid claims swapped under a valid signature',
          `${valid.split('.')[0]}.${b64(claims({ sub: 'admin' }))}.${validSig}`,
          /^Jwt verification fails$/,
        ],
        ['alg none', header({ alg: 'none', typ: 'JWT' }, claims(), ''), /^Jwt header \[alg\] is not supported$/],
        [
          'HS256 with the public key as secret',
          hsWithPublicKey(),
          /^Jwks doesn't have key to match kid or alg from Jwt$/,
        ],
        ['garbage', 'not-a-jwt', /^Jwt is not in the form of Header\.Payload\.Signature with two dots and 3 sections$/],
      ];
      for (const [what, t, text] of cases) {
        const r = await getVia(proxy, API, bearer(t));
        assert.equal(r.status, 401, `${what}: ${diag(r)}`);
        assert.match(r.body, text, `${what}: ${r.body}`);
        assert.match(String(r.headers['www-authenticate']), /^Bearer realm=".*", error="invalid_token"$/, what);
      }
      // A forged token in the access_token query parameter is refused the same way.
      const fq = await getVia(proxy, `${API}?access_token=${es256(other.priv, claims())}`);
      assert.equal(fq.status, 401, diag(fq));

      // A valid end-user token does not make another workload frontend: api-v1 presenting it is refused
      // by RBAC (the peer principal is sa/api), the token itself having passed jwt_authn.
      const a = /shop\/api-v1\s.*HTTP_PROXY=([^\s,]+)/.exec(mesh.stdout());
      assert.ok(a, mesh.stdout());
      const fromApi = await getVia(a[1]!, API, bearer(valid));
      assert.equal(fromApi.status, 403, diag(fromApi));
      assert.match(fromApi.body, /RBAC: access denied/);

      // The valid token still works after all that (no state was poisoned).
      const again = await getVia(proxy, API, bearer(es256(good.priv, claims({ sub: 'bob' }))));
      assert.equal(again.status, 200, diag(again));
    } finally {
      await mesh?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
