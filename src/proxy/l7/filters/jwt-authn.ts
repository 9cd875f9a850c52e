// envoy.filters.http.jwt_authn (envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication):
// the JWTs a listener's HCM verifies before authorization, as Envoy does.
//
// Per request: the first rule whose match accepts the path gives the requirement; no rule, no
// check. A provider extracts its token from from_headers / from_params / from_cookies (none
// given: "Authorization: Bearer <t>" and the access_token query parameter, Envoy's defaults),
// then checks, in Envoy's order: the issuer ("Jwt issuer is not configured"), exp / nbf with
// clock_skew_seconds (default 60), the audiences, then the signature against the provider's
// JWKS (local_jwks inline, or remote_jwks fetched and cached, see jwks.ts). Requirements:
// provider_name, provider_and_audiences, requires_any, requires_all, allow_missing,
// allow_missing_or_failed. A failed requirement answers 401 with Envoy's status text as the
// body (e.g. "Jwt verification fails", "Jwt is expired") and a WWW-Authenticate challenge.
//
// On success the first verified token's issuer/subject and claims go to ctx.filterState under
// REQUEST_AUTH_STATE (RBAC's request principal and request.auth.claims); the token is removed
// from its header unless `forward`; forward_payload_header gets the base64url payload and
// claim_to_headers the named claims. Those output headers are first removed from the incoming
// request, so a client cannot forge them by sending them without a token.
// Not read: per-route PerRouteConfig, filter_state_rules, subjects, max_lifetime, jwt_cache_config.
import { createHmac, timingSafeEqual, verify as cryptoVerify, constants as cryptoConstants } from 'node:crypto';
import { REQUEST_AUTH_STATE, type RequestAuth } from '../../rbac/evaluate.js';
import { get, oneOf } from '../../envoy/values.js';
import { bool, durationMs, list, num, obj, str, strList, L7ConfigError, type EnvoyObject } from '../config.js';
import type { LocalReply, RequestContext } from '../context.js';
import type { HttpFilterFactory } from '../filter.js';
import { cookieValue, first, type HeaderMap } from '../headers.js';
import { headerMatcher, pathMatcher, type RequestPredicate, type StringPredicate } from '../matchers.js';
import {
  DEFAULT_CACHE_DURATION_MS,
  JwksCache,
  parseJwks,
  type RemoteJwks,
  type RemoteJwksOptions,
  type VerificationKey,
} from '../jwks.js';

export const JWT_AUTHN_FILTER_NAME = 'envoy.filters.http.jwt_authn';
const JWT_AUTHN_TYPE_SUFFIX = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const DEFAULT_CLOCK_SKEW_S = 60;
const DEFAULT_FETCH_TIMEOUT_MS = 5000;

/** Envoy's (jwt_verify_lib) status texts: the 401 body. */
export const JwtStatus = {
  missing: 'Jwt is missing',
  badFormat: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  headerBase64: 'Jwt header is an invalid Base64url encoded',
  headerJson: 'Jwt header is an invalid JSON',
  badAlg: 'Jwt header [alg] field is required and must be a string',
  unsupportedAlg: 'Jwt header [alg] is not supported',
  payloadBase64: 'Jwt payload is an invalid Base64url encoded',
  payloadJson: 'Jwt payload is an invalid JSON',
  signatureBase64: 'Jwt signature is an invalid Base64url encoded',
  expired: 'Jwt is expired',
  notYetValid: 'Jwt not yet valid',
  expRequired: 'Jwt does not have exp',
  audience: 'Audiences in Jwt are not allowed',
  unknownIssuer: 'Jwt issuer is not configured',
  kidAlgMismatch: "Jwks doesn't have key to match kid or alg from Jwt",
  jwksFetch: 'Jwks remote fetch is failed',
  jwksParse: 'Jwks is an invalid JSON or has no usable key',
  verification: 'Jwt verification fails',
} as const;
type Status = (typeof JwtStatus)[keyof typeof JwtStatus];

// --- compiled config ---------------------------------------------------------------------------

interface TokenLocation {
  readonly kind: 'header' | 'param' | 'cookie';
  readonly name: string;
  readonly prefix: string;
}

interface Provider {
  readonly name: string;
  readonly issuer: string | undefined;
  readonly audiences: readonly string[];
  readonly locations: readonly TokenLocation[];
  readonly keys: { readonly local: VerificationKey[] } | { readonly problem: string } | { readonly remote: RemoteJwks };
  readonly forward: boolean;
  readonly payloadHeader: string | undefined;
  readonly padPayload: boolean;
  readonly claimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  readonly clockSkewS: number;
  readonly requireExpiration: boolean;
}

type Requirement =
  | { readonly kind: 'provider'; readonly provider: Provider; readonly audiences?: readonly string[] }
  | { readonly kind: 'any' | 'all'; readonly list: readonly Requirement[] }
  | { readonly kind: 'allowMissing' | 'allowMissingOrFailed' };

interface Rule {
  readonly path: StringPredicate;
  readonly headers: readonly RequestPredicate[];
  readonly requires: Requirement | undefined;
}

interface CompiledJwtAuthn {
  readonly rules: readonly Rule[];
  readonly providers: readonly Provider[];
  readonly bypassCorsPreflight: boolean;
}

function compileProvider(name: string, p: EnvoyObject, cache: JwksCache): Provider {
  const locations: TokenLocation[] = [];
  for (const h of list(get(p, 'from_headers')))
    locations.push({
      kind: 'header',
      name: (str(get(h, 'name')) ?? '').toLowerCase(),
      prefix: str(get(h, 'value_prefix')) ?? '',
    });
  for (const q of strList(get(p, 'from_params'))) locations.push({ kind: 'param', name: q, prefix: '' });
  for (const c of strList(get(p, 'from_cookies'))) locations.push({ kind: 'cookie', name: c, prefix: '' });
  if (locations.length === 0) {
    locations.push({ kind: 'header', name: 'authorization', prefix: 'Bearer ' });
    locations.push({ kind: 'param', name: 'access_token', prefix: '' });
  }
  const source = oneOf(p, ['local_jwks', 'remote_jwks'] as const, 'jwks_source_specifier');
  let keys: Provider['keys'];
  if ('problem' in source) {
    keys = { problem: `provider ${name}: no JWKS (${source.problem})` };
  } else if (source.kind === 'local_jwks') {
    const ds = obj(source.value) ?? {};
    const text =
      str(get(ds, 'inline_string')) ??
      (get(ds, 'inline_bytes') !== undefined ? bytesText(get(ds, 'inline_bytes')) : undefined);
    if (text === undefined) keys = { problem: `provider ${name}: local_jwks has no inline_string / inline_bytes` };
    else {
      try {
        keys = { local: parseJwks(text) };
      } catch (e) {
        keys = { problem: `provider ${name}: ${e instanceof Error ? e.message : String(e)}` };
      }
    }
  } else {
    const r = obj(source.value) ?? {};
    const httpUri = obj(get(r, 'http_uri'));
    const uri = httpUri ? str(get(httpUri, 'uri')) : undefined;
    if (!uri) throw new L7ConfigError(`jwt_authn provider ${name}: remote_jwks.http_uri.uri is missing`);
    keys = {
      remote: cache.get(
        uri,
        durationMs(get(r, 'cache_duration')) ?? DEFAULT_CACHE_DURATION_MS,
        durationMs(get(httpUri!, 'timeout')) ?? DEFAULT_FETCH_TIMEOUT_MS,
      ),
    };
  }
  return {
    name,
    issuer: str(get(p, 'issuer')) || undefined,
    audiences: strList(get(p, 'audiences')),
    locations,
    keys,
    forward: bool(get(p, 'forward')) === true,
    payloadHeader: (str(get(p, 'forward_payload_header')) || undefined)?.toLowerCase(),
    padPayload: bool(get(p, 'pad_forward_payload_header')) === true,
    claimToHeaders: list(get(p, 'claim_to_headers')).map((c) => ({
      header: (str(get(c, 'header_name')) ?? '').toLowerCase(),
      claim: str(get(c, 'claim_name')) ?? '',
    })),
    clockSkewS: num(get(p, 'clock_skew_seconds')) || DEFAULT_CLOCK_SKEW_S,
    requireExpiration: bool(get(p, 'require_expiration')) === true,
  };
}

function bytesText(v: unknown): string | undefined {
  if (typeof v === 'string') return Buffer.from(v, 'base64').toString('utf8');
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  return undefined;
}

function compileRequirement(r: EnvoyObject, providers: ReadonlyMap<string, Provider>, where: string): Requirement {
  const kinds = [
    'provider_name',
    'provider_and_audiences',
    'requires_any',
    'requires_all',
    'allow_missing_or_failed',
    'allow_missing',
  ] as const;
  const k = oneOf(r, kinds, 'requires_type');
  if ('problem' in k) throw new L7ConfigError(`jwt_authn ${where}: ${k.problem}`);
  const named = (name: string | undefined): Provider => {
    const p = name !== undefined ? providers.get(name) : undefined;
    if (!p) throw new L7ConfigError(`jwt_authn ${where}: unknown provider ${JSON.stringify(name)}`);
    return p;
  };
  switch (k.kind) {
    case 'provider_name':
      return { kind: 'provider', provider: named(str(k.value)) };
    case 'provider_and_audiences': {
      const pa = obj(k.value) ?? {};
      return {
        kind: 'provider',
        provider: named(str(get(pa, 'provider_name'))),
        audiences: strList(get(pa, 'audiences')),
      };
    }
    case 'requires_any':
    case 'requires_all': {
      const items = list(get(obj(k.value) ?? {}, 'requirements'));
      return {
        kind: k.kind === 'requires_any' ? 'any' : 'all',
        list: items.map((x, i) => compileRequirement(x, providers, `${where}.${k.kind}[${i}]`)),
      };
    }
    case 'allow_missing':
      return { kind: 'allowMissing' };
    case 'allow_missing_or_failed':
      return { kind: 'allowMissingOrFailed' };
  }
}

export function compileJwtAuthn(config: EnvoyObject, cache: JwksCache): CompiledJwtAuthn {
  const providers = new Map<string, Provider>();
  const raw = obj(get(config, 'providers')) ?? {};
  for (const name of Object.keys(raw).sort()) {
    const p = obj(raw[name]);
    if (p) providers.set(name, compileProvider(name, p, cache));
  }
  const rules = list(get(config, 'rules')).map((rule, i): Rule => {
    const match = obj(get(rule, 'match')) ?? {};
    const req = obj(get(rule, 'requires'));
    if (get(rule, 'requirement_name') !== undefined) {
      const name = str(get(rule, 'requirement_name'));
      const fromMap = obj(obj(get(config, 'requirement_map'))?.[name ?? '']);
      if (!fromMap)
        throw new L7ConfigError(
          `jwt_authn rules[${i}]: requirement_name ${JSON.stringify(name)} is not in requirement_map`,
        );
      return {
        path: pathMatcher(match),
        headers: list(get(match, 'headers')).map(headerMatcher),
        requires: compileRequirement(fromMap, providers, `rules[${i}]`),
      };
    }
    return {
      path: pathMatcher(match),
      headers: list(get(match, 'headers')).map(headerMatcher),
      requires: req ? compileRequirement(req, providers, `rules[${i}].requires`) : undefined,
    };
  });
  return {
    rules,
    providers: [...providers.values()],
    bypassCorsPreflight: bool(get(config, 'bypass_cors_preflight')) === true,
  };
}

// --- verification --------------------------------------------------------------------------------

type Outcome =
  | {
      readonly ok: true;
      readonly token: Extracted;
      readonly payload: Record<string, unknown>;
      readonly payloadB64: string;
    }
  | { readonly ok: false; readonly status: Status };

interface Extracted {
  readonly location: TokenLocation;
  readonly token: string;
}

function extract(ctx: RequestContext, p: Provider, query: URLSearchParams | undefined): Extracted | undefined {
  for (const loc of p.locations) {
    let v: string | undefined;
    if (loc.kind === 'header') v = first(ctx.headers[loc.name]);
    else if (loc.kind === 'cookie') v = cookieValue(ctx.headers.cookie, loc.name);
    else v = query?.get(loc.name) ?? undefined;
    if (v === undefined) continue;
    if (loc.prefix) {
      if (!v.startsWith(loc.prefix)) continue;
      v = v.slice(loc.prefix.length);
    }
    v = v.trim();
    if (v !== '') return { location: loc, token: v };
  }
  return undefined;
}

interface Parsed {
  readonly header: Record<string, unknown>;
  readonly payload: Record<string, unknown>;
  readonly signingInput: Buffer;
  readonly signature: Buffer;
  readonly payloadB64: string;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function parseJwt(token: string): Parsed | Status {
  const parts = token.split('.');
  if (parts.length !== 3) return JwtStatus.badFormat;
  const [h, p, s] = parts as [string, string, string];
  if (!B64URL.test(h)) return JwtStatus.headerBase64;
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  } catch {
    return JwtStatus.headerJson;
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return JwtStatus.headerJson;
  if (typeof (header as { alg?: unknown }).alg !== 'string') return JwtStatus.badAlg;
  if (!B64URL.test(p)) return JwtStatus.payloadBase64;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    return JwtStatus.payloadJson;
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return JwtStatus.payloadJson;
  if (!B64URL.test(s)) return JwtStatus.signatureBase64;
  return {
    header: header as Record<string, unknown>,
    payload: payload as Record<string, unknown>,
    signingInput: Buffer.from(`${h}.${p}`, 'ascii'),
    signature: Buffer.from(s, 'base64url'),
    payloadB64: p,
  };
}

interface AlgSpec {
  readonly kty: VerificationKey['kty'];
  readonly hash: string | null;
  readonly crv?: readonly string[];
  readonly pss?: boolean;
}

const ALGS: Readonly<Record<string, AlgSpec>> = {
  RS256: { kty: 'RSA', hash: 'sha256' },
  RS384: { kty: 'RSA', hash: 'sha384' },
  RS512: { kty: 'RSA', hash: 'sha512' },
  PS256: { kty: 'RSA', hash: 'sha256', pss: true },
  PS384: { kty: 'RSA', hash: 'sha384', pss: true },
  PS512: { kty: 'RSA', hash: 'sha512', pss: true },
  ES256: { kty: 'EC', hash: 'sha256', crv: ['P-256'] },
  ES384: { kty: 'EC', hash: 'sha384', crv: ['P-384'] },
  ES512: { kty: 'EC', hash: 'sha512', crv: ['P-521'] },
  EdDSA: { kty: 'OKP', hash: null, crv: ['Ed25519', 'Ed448'] },
  HS256: { kty: 'oct', hash: 'sha256' },
  HS384: { kty: 'oct', hash: 'sha384' },
  HS512: { kty: 'oct', hash: 'sha512' },
};

function verifySignature(parsed: Parsed, keys: readonly VerificationKey[]): Status | undefined {
  const alg = parsed.header.alg as string;
  const spec = ALGS[alg];
  if (!spec) return JwtStatus.unsupportedAlg;
  const kid = typeof parsed.header.kid === 'string' ? parsed.header.kid : undefined;
  const candidates = keys.filter(
    (k) =>
      k.kty === spec.kty &&
      (k.alg === undefined || k.alg === alg) &&
      (kid === undefined || k.kid === undefined || k.kid === kid) &&
      (!spec.crv || k.crv === undefined || spec.crv.includes(k.crv)),
  );
  if (candidates.length === 0) return JwtStatus.kidAlgMismatch;
  for (const k of candidates) {
    try {
      if (spec.kty === 'oct') {
        const mac = createHmac(spec.hash!, k.key).update(parsed.signingInput).digest();
        if (mac.length === parsed.signature.length && timingSafeEqual(mac, parsed.signature)) return undefined;
      } else if (
        cryptoVerify(
          spec.hash,
          parsed.signingInput,
          spec.kty === 'EC'
            ? { key: k.key, dsaEncoding: 'ieee-p1363' }
            : spec.pss
              ? {
                  key: k.key,
                  padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
                  saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST,
                }
              : k.key,
          parsed.signature,
        )
      ) {
        return undefined;
      }
    } catch {
      // A key of the right type that cannot check this signature (wrong curve, size): next key.
    }
  }
  return JwtStatus.verification;
}

function audienceOk(payload: Record<string, unknown>, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true;
  const aud = payload.aud;
  const list =
    typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
  return list.some((a) => allowed.includes(a));
}

/** Checks that need no keys; undefined when they pass. */
function checkClaims(parsed: Parsed, p: Provider, audiences: readonly string[]): Status | undefined {
  const iss = parsed.payload.iss;
  if (p.issuer !== undefined && iss !== p.issuer) return JwtStatus.unknownIssuer;
  const now = Math.floor(Date.now() / 1000);
  const exp = parsed.payload.exp;
  const nbf = parsed.payload.nbf;
  if (typeof exp === 'number' && now > exp + p.clockSkewS) return JwtStatus.expired;
  if (exp === undefined && p.requireExpiration) return JwtStatus.expRequired;
  if (typeof nbf === 'number' && now + p.clockSkewS < nbf) return JwtStatus.notYetValid;
  if (!audienceOk(parsed.payload, audiences)) return JwtStatus.audience;
  return undefined;
}

/** Verifies one provider's token for one request (memoised per request: requirements repeat providers). */
class RequestVerification {
  readonly #ctx: RequestContext;
  readonly #query: URLSearchParams | undefined;
  readonly #results = new Map<string, Outcome | 'missing' | Promise<Outcome | 'missing'>>();
  /** Verified tokens, in the order they succeeded. */
  readonly verified: { provider: Provider; outcome: Extract<Outcome, { ok: true }> }[] = [];

  constructor(ctx: RequestContext) {
    this.#ctx = ctx;
    const q = ctx.path.indexOf('?');
    this.#query = q >= 0 ? new URLSearchParams(ctx.path.slice(q + 1)) : undefined;
  }

  provider(p: Provider, audiences: readonly string[] | undefined): Outcome | 'missing' | Promise<Outcome | 'missing'> {
    const key = audiences ? `${p.name}\u0000${audiences.join('\u0000')}` : p.name;
    const hit = this.#results.get(key);
    if (hit !== undefined) return hit;
    const r = this.#verify(p, audiences ?? p.audiences);
    this.#results.set(key, r);
    if (r instanceof Promise) void r.then((v) => this.#results.set(key, v));
    return r;
  }

  #verify(p: Provider, audiences: readonly string[]): Outcome | 'missing' | Promise<Outcome | 'missing'> {
    const token = extract(this.#ctx, p, this.#query);
    if (!token) return 'missing';
    const parsed = parseJwt(token.token);
    if (typeof parsed === 'string') return { ok: false, status: parsed };
    const claims = checkClaims(parsed, p, audiences);
    if (claims) return { ok: false, status: claims };
    const finish = (keys: readonly VerificationKey[]): Outcome => {
      const bad = verifySignature(parsed, keys);
      if (bad) return { ok: false, status: bad };
      const outcome = { ok: true as const, token, payload: parsed.payload, payloadB64: parsed.payloadB64 };
      this.verified.push({ provider: p, outcome });
      return outcome;
    };
    if ('problem' in p.keys) return { ok: false, status: JwtStatus.jwksParse };
    if ('local' in p.keys) return finish(p.keys.local);
    const keys = p.keys.remote.keys();
    if (!(keys instanceof Promise)) return finish(keys);
    return keys.then(finish, (): Outcome => ({ ok: false, status: JwtStatus.jwksFetch }));
  }
}

type Verdict = { readonly ok: true } | { readonly ok: false; readonly status: Status };
const OK: Verdict = { ok: true };

/** Prefer a real failure over "missing" / "unknown issuer" (another provider's token), as Envoy's any-verifier. */
function rank(s: Status): number {
  return s === JwtStatus.missing ? 0 : s === JwtStatus.unknownIssuer ? 1 : 2;
}

async function settle<T>(v: T | Promise<T>): Promise<T> {
  return v;
}

function evaluate(req: Requirement, rv: RequestVerification, all: readonly Provider[]): Verdict | Promise<Verdict> {
  switch (req.kind) {
    case 'provider': {
      const r = rv.provider(req.provider, req.audiences);
      const toVerdict = (o: Outcome | 'missing'): Verdict =>
        o === 'missing' ? { ok: false, status: JwtStatus.missing } : o.ok ? OK : { ok: false, status: o.status };
      return r instanceof Promise ? r.then(toVerdict) : toVerdict(r);
    }
    case 'allowMissingOrFailed': {
      // Still verify every token, so a valid one is reported and its outputs applied.
      const pending = all.map((p) => rv.provider(p, undefined)).filter((r) => r instanceof Promise);
      return pending.length ? Promise.all(pending).then(() => OK) : OK;
    }
    case 'allowMissing': {
      // Passes when no provider finds a token, or one verifies; otherwise the token's failure.
      const results = all.map((p) => rv.provider(p, undefined));
      const decide = (rs: readonly (Outcome | 'missing')[]): Verdict => {
        let worst: Status | undefined;
        for (const r of rs) {
          if (r === 'missing') continue;
          if (r.ok) return OK;
          if (worst === undefined || rank(r.status) > rank(worst)) worst = r.status;
        }
        return worst === undefined ? OK : { ok: false, status: worst };
      };
      return results.some((r) => r instanceof Promise)
        ? Promise.all(results.map((r) => settle(r))).then(decide)
        : decide(results as (Outcome | 'missing')[]);
    }
    case 'any':
    case 'all': {
      // Sequential (short-circuits, and keeps the verification order deterministic).
      const items = req.list;
      let worst: Status | undefined;
      const step = (i: number): Verdict | Promise<Verdict> => {
        for (; i < items.length; i++) {
          const v = evaluate(items[i]!, rv, all);
          if (v instanceof Promise) {
            const at = i;
            return v.then((res) => after(res) ?? step(at + 1));
          }
          const done = after(v);
          if (done) return done;
        }
        return req.kind === 'all' ? OK : { ok: false, status: worst ?? JwtStatus.missing };
      };
      const after = (v: Verdict): Verdict | undefined => {
        if (req.kind === 'all') return v.ok ? undefined : v;
        if (v.ok) return OK;
        if (worst === undefined || rank(v.status) > rank(worst)) worst = v.status;
        return undefined;
      };
      return step(0);
    }
  }
}

// --- the filter ------------------------------------------------------------------------------------

function claimValue(payload: Record<string, unknown>, path: string): string | undefined {
  // Nested claims by "." (Envoy: "a.b" reads {"a": {"b": ...}}).
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
  return undefined;
}

function unauthorized(ctx: RequestContext, status: Status): LocalReply {
  const q = ctx.path.indexOf('?');
  const realm = `${ctx.scheme}://${ctx.authority}${q >= 0 ? ctx.path.slice(0, q) : ctx.path}`;
  const headers: HeaderMap = { 'www-authenticate': `Bearer realm="${realm}", error="invalid_token"` };
  return { status: 401, body: status, headers, details: `jwt_authn_access_denied{${status.replace(/\s+/g, '_')}}` };
}

function applyOutputs(ctx: RequestContext, rv: RequestVerification): void {
  const removed = new Set<string>();
  for (const { provider: p, outcome } of rv.verified) {
    if (!p.forward && outcome.token.location.kind === 'header' && !removed.has(outcome.token.location.name)) {
      removed.add(outcome.token.location.name);
      delete ctx.headers[outcome.token.location.name];
    }
    if (p.payloadHeader) {
      const b64 = outcome.payloadB64;
      ctx.headers[p.payloadHeader] = p.padPayload ? b64 + '='.repeat((4 - (b64.length % 4)) % 4) : b64;
    }
    for (const c of p.claimToHeaders) {
      const v = claimValue(outcome.payload, c.claim);
      if (v !== undefined) ctx.headers[c.header] = v;
    }
  }
  const firstOk = rv.verified[0];
  if (firstOk) {
    const { payload } = firstOk.outcome;
    const auth: RequestAuth = {
      principal: `${typeof payload.iss === 'string' ? payload.iss : ''}/${typeof payload.sub === 'string' ? payload.sub : ''}`,
      claims: payload,
    };
    ctx.filterState.set(REQUEST_AUTH_STATE, auth);
  }
}

function isJwtAuthn(f: EnvoyObject): boolean {
  if (str(f.name) === JWT_AUTHN_FILTER_NAME) return true;
  const t = str(obj(get(f, 'typed_config'))?.['@type']);
  return t !== undefined && t.endsWith(JWT_AUTHN_TYPE_SUFFIX);
}

export interface JwtAuthnFilterOptions {
  /** Extra trusted CA certificates (PEM) for https:// JWKS URIs; default the system store. */
  readonly ca?: RemoteJwksOptions['ca'];
}

/**
 * `httpFiltersFor(routeConfig)`: the HCM http_filters of the chain that routes with it (the
 * jwt_authn entries among them apply, in order). Remote key sets are cached across config versions.
 */
export function jwtAuthnFilter(
  httpFiltersFor: (routeConfig: string) => readonly EnvoyObject[],
  options: JwtAuthnFilterOptions = {},
): HttpFilterFactory & { readonly jwks: JwksCache } {
  const jwks = new JwksCache(options.ca);
  return {
    name: JWT_AUTHN_FILTER_NAME,
    jwks,
    create() {
      const compiled = new Map<string, readonly CompiledJwtAuthn[]>();
      const configFor = (routeConfig: string): readonly CompiledJwtAuthn[] => {
        let c = compiled.get(routeConfig);
        if (!c) {
          c = httpFiltersFor(routeConfig)
            .filter(isJwtAuthn)
            .map((f) => compileJwtAuthn(obj(get(f, 'typed_config')) ?? {}, jwks));
          compiled.set(routeConfig, c);
        }
        return c;
      };
      const run = (
        ctx: RequestContext,
        filters: readonly CompiledJwtAuthn[],
        i: number,
      ): void | LocalReply | Promise<void | LocalReply> => {
        for (; i < filters.length; i++) {
          const f = filters[i]!;
          if (
            f.bypassCorsPreflight &&
            ctx.method === 'OPTIONS' &&
            first(ctx.headers.origin) &&
            first(ctx.headers['access-control-request-method'])
          )
            continue;
          const path = ctx.path.split('?', 1)[0]!;
          const rule = f.rules.find((r) => r.path(path) && r.headers.every((h) => h(ctx)));
          if (!rule?.requires) continue;
          // Output headers come only from verified tokens.
          for (const p of f.providers) {
            if (p.payloadHeader) delete ctx.headers[p.payloadHeader];
            for (const c of p.claimToHeaders) delete ctx.headers[c.header];
          }
          const rv = new RequestVerification(ctx);
          const verdict = evaluate(rule.requires, rv, f.providers);
          const conclude = (v: Verdict): LocalReply | undefined => {
            if (!v.ok) return unauthorized(ctx, v.status);
            applyOutputs(ctx, rv);
            return undefined;
          };
          if (verdict instanceof Promise) {
            const at = i;
            return verdict.then((v) => conclude(v) ?? run(ctx, filters, at + 1));
          }
          const reply = conclude(verdict);
          if (reply) return reply;
        }
        return undefined;
      };
      return {
        onRequest(ctx) {
          const filters = configFor(ctx.routeConfig);
          return filters.length === 0 ? undefined : run(ctx, filters, 0);
        },
      };
    },
  };
}
