// Istio RequestAuthentication -> Envoy's envoy.filters.http.jwt_authn (JwtAuthentication), as
// istiod builds it (pilot/pkg/security/authn policy_applier, convertToEnvoyJwtConfig). Pure.
//
// One provider per JWT rule ("origins-<i>", rules sorted by issuer so the output is stable), and
// Istio's requirement: a request without a token passes (authorization decides), a request with
// a token that fails every provider is rejected (401). With one provider:
//   requires_any { provider, allow_missing }
// with several (they may share a token location, so the inner AND alone would always fail):
//   requires_any { P1, P2, ..., requires_all { any{P1, allow_missing}, any{P2, allow_missing}, ... } }
// Where it applies (ambient): a waypoint enforces the policies attached to a service it serves
// (targetRefs to the Service, or to the waypoint itself) and the policies that select the
// service's workloads: ztunnel cannot check a JWT, so a workload-selecting policy would otherwise
// never be enforced. A gateway enforces the policies attached to it (or to its GatewayClass).
import type { GatewayModel, ServiceModel } from '../../model/mesh-model.js';
import { parseGoDuration } from '../../util/duration.js';
import { compareStrings } from '../../util/compare.js';
import type { EnvoyObject } from './route-match.js';
import type { RequestAuthenticationSpec, SecurityIndex } from './security.js';

export const JWT_AUTHN_FILTER = 'envoy.filters.http.jwt_authn';
export const JWT_AUTHN_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
/** Istio's remote_jwks cache_duration (5 minutes). */
export const ISTIO_JWKS_CACHE_SECONDS = 300;
/** Istio's JWKS fetch timeout when the rule sets none (5s). */
export const ISTIO_JWKS_TIMEOUT_MS = 5000;

type JwtRule = NonNullable<RequestAuthenticationSpec['jwtRules']>[number];

export interface AppliedRequestAuthentication {
  /** "RequestAuthentication/ns/name". */
  readonly id: string;
  readonly spec: RequestAuthenticationSpec;
}

/**
 * The RequestAuthentications bound to any of `workloadIds` (selector, namespace, mesh) or
 * `targetIds` (targetRefs), by id. A binding whose spec is unknown is left out.
 */
export function requestAuthentications(
  security: SecurityIndex,
  workloadIds: readonly string[],
  targetIds: readonly string[],
): AppliedRequestAuthentication[] {
  const workloads = new Set(workloadIds);
  const targets = new Set(targetIds);
  const out: AppliedRequestAuthentication[] = [];
  for (const b of security.model.policies) {
    if (b.kind !== 'RequestAuthentication') continue;
    const hit =
      b.scope === 'target' ? b.targets.some((t) => targets.has(t)) : b.workloads.some((w) => workloads.has(w));
    if (!hit) continue;
    const spec = security.requestAuthenticationSpec(b.id) ?? b.requestAuthentication;
    if (spec) out.push({ id: b.id, spec });
  }
  return out.sort((a, b) => compareStrings(a.id, b.id));
}

/** What a waypoint enforces for one service it serves. */
export function waypointRequestAuthentications(
  security: SecurityIndex,
  svc: ServiceModel,
): AppliedRequestAuthentication[] {
  return requestAuthentications(
    security,
    svc.endpoints.map((e) => e.workload),
    [svc.id, ...(svc.waypoint ? [svc.waypoint] : [])],
  );
}

/** What an ingress gateway enforces: policies attached to it or to its class. */
export function gatewayRequestAuthentications(
  security: SecurityIndex,
  gw: GatewayModel,
): AppliedRequestAuthentication[] {
  return requestAuthentications(security, [], [gw.id, `GatewayClass/${gw.className}`]);
}

/** The jwt_authn HTTP filter for these policies; undefined when they carry no JWT rule. */
export function jwtAuthnFilter(policies: readonly AppliedRequestAuthentication[]): EnvoyObject | undefined {
  const rules = policies.flatMap((p) => p.spec.jwtRules ?? []);
  if (rules.length === 0) return undefined;
  // Stable: by issuer (Istio's order), ties keep policy-id then rule order.
  const sorted = rules
    .map((rule, i) => ({ rule, i }))
    .sort((a, b) => compareStrings(a.rule.issuer ?? '', b.rule.issuer ?? '') || a.i - b.i)
    .map((x) => x.rule);
  const providers: Record<string, EnvoyObject> = {};
  const inner: EnvoyObject[] = [];
  const outer: EnvoyObject[] = [];
  sorted.forEach((rule, i) => {
    const name = `origins-${i}`;
    providers[name] = provider(rule);
    inner.push({ requires_any: { requirements: [{ provider_name: name }, { allow_missing: {} }] } });
    outer.push({ provider_name: name });
  });
  const requires =
    inner.length === 1
      ? inner[0]!
      : { requires_any: { requirements: [...outer, { requires_all: { requirements: inner } }] } };
  return {
    name: JWT_AUTHN_FILTER,
    typed_config: {
      '@type': JWT_AUTHN_TYPE,
      providers,
      rules: [{ match: { prefix: '/' }, requires }],
      bypass_cors_preflight: true,
    },
  };
}

function provider(rule: JwtRule): EnvoyObject {
  const p: EnvoyObject = {};
  if (rule.issuer) p.issuer = rule.issuer;
  if (rule.audiences?.length) p.audiences = [...rule.audiences];
  if (rule.jwks !== undefined) {
    p.local_jwks = { inline_string: rule.jwks };
  } else if ((rule.jwksUri ?? rule.jwks_uri) !== undefined) {
    const uri = (rule.jwksUri ?? rule.jwks_uri)!;
    const u = new URL(uri);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    const timeoutMs = (rule.timeout !== undefined ? parseGoDuration(rule.timeout) : undefined) ?? ISTIO_JWKS_TIMEOUT_MS;
    p.remote_jwks = {
      http_uri: { uri, cluster: `jwks|${u.hostname}:${port}`, timeout: duration(timeoutMs) },
      cache_duration: { seconds: ISTIO_JWKS_CACHE_SECONDS, nanos: 0 },
    };
  }
  // Envoy's defaults (Authorization: Bearer, access_token) apply when no location is given.
  if (rule.fromHeaders?.length)
    p.from_headers = rule.fromHeaders.map((h) => ({ name: h.name, ...(h.prefix ? { value_prefix: h.prefix } : {}) }));
  if (rule.fromParams?.length) p.from_params = [...rule.fromParams];
  if (rule.fromCookies?.length) p.from_cookies = [...rule.fromCookies];
  if (rule.forwardOriginalToken) p.forward = true;
  if (rule.outputPayloadToHeader) p.forward_payload_header = rule.outputPayloadToHeader;
  if (rule.outputClaimToHeaders?.length)
    p.claim_to_headers = rule.outputClaimToHeaders.map((c) => ({ header_name: c.header, claim_name: c.claim }));
  if (rule.issuer) p.payload_in_metadata = rule.issuer;
  return p;
}

function duration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
