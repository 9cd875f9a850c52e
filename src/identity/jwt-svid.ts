// JWT-SVIDs (SPIFFE JWT-SVID specification): ES256 tokens signed by a mesh key, with the
// SPIFFE ID as `sub`, audience-bound (`aud`, required), short-lived (`exp`), verifiable with
// the trust domain's JWKS bundle.
import { createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { createLocalJWKSet, exportJWK, jwtVerify, SignJWT, type JSONWebKeySet, type JWK } from 'jose';
import { parseSpiffeId } from './spiffe-id.js';

export interface JwtSvid {
  readonly spiffeId: string;
  readonly token: string;
  readonly expiresAt: Date;
}

export type JwtValidation =
  | { readonly ok: true; readonly spiffeId: string; readonly claims: Readonly<Record<string, unknown>> }
  | { readonly ok: false; readonly reason: string };

interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly jwk: JWK;
}

/** Signs JWT-SVIDs for one trust domain; keeps old public keys in the JWKS while tokens signed with them live. */
export class JwtSvidAuthority {
  readonly trustDomain: string;
  #current: SigningKey;
  #published: SigningKey[];

  private constructor(trustDomain: string, key: SigningKey) {
    this.trustDomain = trustDomain;
    this.#current = key;
    this.#published = [key];
  }

  static async create(trustDomain: string, privateKey?: KeyObject): Promise<JwtSvidAuthority> {
    return new JwtSvidAuthority(trustDomain, await signingKey(privateKey));
  }

  /** A new signing key; the previous public key stays in the bundle until `retire`. */
  async rotate(): Promise<void> {
    this.#current = await signingKey();
    this.#published = [...this.#published, this.#current];
  }

  /** Drops all but the current key from the bundle (after the old tokens expired). */
  retire(): void {
    this.#published = [this.#current];
  }

  async issue(spiffeId: string, audiences: readonly string[], ttlMs: number): Promise<JwtSvid> {
    const id = parseSpiffeId(spiffeId);
    if (typeof id === 'string') throw new Error(`invalid SPIFFE ID ${JSON.stringify(spiffeId)}: ${id}`);
    if (id.trustDomain !== this.trustDomain) throw new Error(`${spiffeId} is not in trust domain ${this.trustDomain}`);
    if (audiences.length === 0) throw new Error('a JWT-SVID needs at least one audience');
    const now = Math.floor(Date.now() / 1000);
    const exp = now + Math.max(1, Math.floor(ttlMs / 1000));
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.#current.kid, typ: 'JWT' })
      .setSubject(spiffeId)
      .setAudience([...audiences])
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(this.#current.privateKey);
    return { spiffeId, token, expiresAt: new Date(exp * 1000) };
  }

  /** The JWT bundle: public keys as a JWKS (`use: jwt-svid`, as SPIFFE bundles mark them). */
  jwks(): JSONWebKeySet {
    return { keys: this.#published.map((k) => ({ ...k.jwk })) };
  }

  [inspect.custom](): string {
    return `JwtSvidAuthority { trustDomain: ${this.trustDomain}, keys: ${this.#published.length}, private: [redacted] }`;
  }

  toJSON(): unknown {
    return { trustDomain: this.trustDomain, keys: this.#published.map((k) => k.kid) };
  }
}

async function signingKey(privateKey?: KeyObject): Promise<SigningKey> {
  const key = privateKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const kid = randomUUID();
  const jwk = { ...(await exportJWK(createPublicKey(key))), kid, alg: 'ES256', use: 'jwt-svid' };
  return { kid, privateKey: key, jwk };
}

/**
 * Validates a JWT-SVID against JWKS bundles (by trust domain) for one audience:
 * signature, exp, aud, and a `sub` that is a SPIFFE ID of a trust domain we hold a bundle for.
 */
export async function validateJwtSvid(
  token: string,
  audience: string,
  bundles: ReadonlyMap<string, JSONWebKeySet>,
): Promise<JwtValidation> {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'malformed token: not a compact JWS' };
  let sub: unknown;
  try {
    sub = (JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
  } catch {
    return { ok: false, reason: 'malformed token: payload is not JSON' };
  }
  if (typeof sub !== 'string') return { ok: false, reason: 'token has no sub claim' };
  const id = parseSpiffeId(sub);
  if (typeof id === 'string') return { ok: false, reason: `sub is not a SPIFFE ID: ${id}` };
  const jwks = bundles.get(id.trustDomain);
  if (!jwks) return { ok: false, reason: `no JWT bundle for trust domain ${id.trustDomain}` };
  try {
    // SPIFFE bundles mark keys `use: jwt-svid`; a JOSE key set only takes `sig` (or none).
    const keys = jwks.keys
      .filter((k) => k.use === undefined || k.use === 'jwt-svid' || k.use === 'sig')
      .map((k) => ({ ...k, use: 'sig' }));
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys }), {
      audience,
      algorithms: ['ES256', 'ES384', 'RS256', 'PS256'],
      requiredClaims: ['exp', 'aud', 'sub'],
    });
    return { ok: true, spiffeId: sub, claims: payload as Record<string, unknown> };
  } catch (e) {
    const code = (e as { code?: string }).code;
    const reason =
      code === 'ERR_JWT_EXPIRED'
        ? 'token expired'
        : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED'
          ? `claim check failed: ${(e as Error).message}`
          : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || code === 'ERR_JWKS_NO_MATCHING_KEY'
            ? 'signature does not verify with the trust domain bundle'
            : (e as Error).message;
    return { ok: false, reason };
  }
}
