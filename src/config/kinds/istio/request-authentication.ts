// security.istio.io RequestAuthentication: https://istio.io/latest/docs/reference/config/security/request_authentication/
// and JWTRule: https://istio.io/latest/docs/reference/config/security/jwt/
//
// Rules: the CRD schema (jwtRules at most 4096, non-empty audiences / locations / cookie names, jwksUri 1-2048
// characters with an http(s) scheme, outputClaimToHeaders header pattern, timeout >= 1ms, "only one of jwks or
// jwksUri can be set") and istio/istio ValidateRequestAuthentication / validateJwtRule (issuer or jwksUri must be
// set, jwks must parse).
import { array } from '../../schema/collections.js';
import { goDuration } from '../../schema/formats.js';
import { def, object, opt, req, type ObjectOf } from '../../schema/object.js';
import { boolean, string, unchecked } from '../../schema/primitives.js';
import { INVALID, type Invalid, type IssueSink, type Path, type Schema } from '../../schema/schema.js';
import { parseGoDuration } from '../../../util/duration.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  checkDryRunAnnotation,
  checkOneTargeting,
  ISTIO_SECURITY_GROUP,
  ISTIO_SECURITY_VERSIONS,
  targetingFields,
} from './security-common.js';

/** CEL `url(self).getScheme() in ['http', 'https']` on jwksUri. */
export function jwksUriProblem(v: string): string | undefined {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return `${JSON.stringify(v)} is not a URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return `url must have scheme http:// or https://, got ${JSON.stringify(u.protocol.replace(/:$/, ''))}`;
  }
  return undefined;
}

const JWK_KEY_TYPES = ['RSA', 'EC', 'OKP', 'oct'];

/** An inline JSON Web Key Set: a JSON object whose `keys` list holds keys with a known `kty`. */
export function jwksProblem(v: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(v);
  } catch (e) {
    return `jwks parse error: not valid JSON (${e instanceof Error ? e.message : String(e)})`;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return 'jwks parse error: must be a JSON object with a "keys" list';
  }
  const keys = (doc as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) return 'jwks parse error: the JSON object has no "keys" list';
  if (keys.length === 0) return 'jwks parse error: "keys" is empty';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as { kty?: unknown } | null;
    if (typeof k !== 'object' || k === null || Array.isArray(k)) return `jwks parse error: keys[${i}] is not an object`;
    if (typeof k.kty !== 'string') return `jwks parse error: keys[${i}] has no "kty"`;
    if (!JWK_KEY_TYPES.includes(k.kty)) {
      return `jwks parse error: keys[${i}] has unsupported kty ${JSON.stringify(k.kty)} (expected ${JWK_KEY_TYPES.join(', ')})`;
    }
  }
  return undefined;
}

const jwksUri = (): Schema<string> =>
  string({
    minLength: 1,
    maxLength: 2048,
    expected: 'an http:// or https:// URL of the JSON Web Key Set',
    check: jwksUriProblem,
  });

/** A Go duration of at least 1ms (CEL `duration(self) >= duration('1ms')`). */
function jwksTimeout(): Schema<string> {
  const base = goDuration();
  return {
    expected: 'a duration of at least 1ms, such as "5s"',
    parse(input: unknown, path: Path, sink: IssueSink): string | Invalid {
      const v = base.parse(input, path, sink);
      if (v === INVALID) return INVALID;
      if ((parseGoDuration(v) ?? 0) < 1) {
        sink.report(path, 'range', 'must be a valid duration greater than 1ms', 'a duration of at least 1ms');
        return INVALID;
      }
      return v;
    },
  };
}

export const jwtHeader = object({
  name: req(string({ minLength: 1, expected: 'an HTTP header name' })),
  prefix: opt(string({ expected: 'a prefix to strip, e.g. "Bearer "' })),
});

export const claimToHeader = object({
  header: req(
    string({
      minLength: 1,
      pattern: /^[-_A-Za-z0-9]+$/,
      expected: 'an HTTP header name: letters, digits, "-" and "_"',
    }),
  ),
  claim: req(string({ minLength: 1, expected: 'a claim name' })),
});

export const jwtRule = object(
  {
    issuer: opt(string({ minLength: 1, expected: 'the issuer (iss claim), e.g. "https://accounts.google.com"' })),
    audiences: opt(array(string({ minLength: 1, expected: 'a non-empty audience' }))),
    jwksUri: opt(jwksUri()),
    // The CRD schema also lists the proto name of jwksUri.
    jwks_uri: opt(jwksUri()),
    jwks: opt(string({ expected: 'an inline JSON Web Key Set, e.g. {"keys": [...]}', check: jwksProblem })),
    fromHeaders: opt(array(jwtHeader)),
    fromParams: opt(array(string({ minLength: 1, expected: 'a query parameter name' }))),
    fromCookies: opt(array(string({ minLength: 1, expected: 'a cookie name' }))),
    outputPayloadToHeader: opt(string({ expected: 'an HTTP header name' })),
    forwardOriginalToken: def(boolean(), false),
    outputClaimToHeaders: opt(array(claimToHeader)),
    timeout: opt(jwksTimeout()),
  },
  {
    check: (r, report) => {
      const keySources = (['jwksUri', 'jwks_uri', 'jwks'] as const).filter((f) => r[f] !== undefined);
      if (keySources.length > 1) {
        report(
          [keySources[1]!],
          `only one of jwks or jwksUri can be set: found both "${keySources[0]}" and "${keySources[1]}"`,
          'either jwksUri or jwks',
          'conflict',
        );
      }
      if (r.issuer === undefined && r.jwksUri === undefined && r.jwks_uri === undefined) {
        report(
          ['issuer'],
          'required field "issuer" is missing (it may only be left out when jwksUri is set)',
          'the issuer (iss claim)',
          'required',
        );
      }
    },
    // jwks_uri is the same field as jwksUri.
    complete: (r) => {
      if (r.jwks_uri === undefined) return r;
      const { jwks_uri, ...rest } = r;
      return { ...rest, jwksUri: jwks_uri };
    },
  },
);
export type JwtRule = ObjectOf<typeof jwtRule.fields>;

export const requestAuthenticationSpec = object(
  {
    ...targetingFields,
    jwtRules: opt(array(jwtRule, { max: 4096 })),
  },
  { check: (spec, report) => checkOneTargeting(spec, report) },
);
export type RequestAuthenticationSpec = ObjectOf<typeof requestAuthenticationSpec.fields>;

export const requestAuthenticationKind = defineKind({
  group: ISTIO_SECURITY_GROUP,
  kind: 'RequestAuthentication',
  versions: ISTIO_SECURITY_VERSIONS,
  namespaced: true,
  summary: 'Which JWTs (issuer, keys, token locations) a workload accepts; invalid tokens are rejected.',
  fields: { spec: def(requestAuthenticationSpec, (): RequestAuthenticationSpec => ({})), status: opt(unchecked()) },
  check: (doc, report) => checkDryRunAnnotation(doc, report),
});
export type RequestAuthenticationBody = BodyOf<typeof requestAuthenticationKind>;
