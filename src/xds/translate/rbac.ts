// Istio AuthorizationPolicy -> Envoy RBAC HTTP filters (envoy.extensions.filters.http.rbac.v3.RBAC)
// for xDS-enabled gRPC servers (gRFC A41, grpc-js-xds with GRPC_XDS_EXPERIMENTAL_RBAC=true), the
// L7 engine (waypoints, gateways) and, as network RBAC, the node proxy's inbound listeners (L4).
//
// As istiod builds them: one DENY filter holding every DENY policy, then one ALLOW filter
// holding every ALLOW policy (present as soon as one ALLOW policy applies, so an ALLOW policy
// without rules allows nothing). One RBAC policy per rule, named ns[NS]-policy[NAME]-rule[i].
// Inside a rule: `from` entries are ORed, the fields of one source ANDed, the values of one
// field ORed; the same for `to`/operation; `when` conditions are ANDed to the rest.
//
// Evaluation order as Istio: CUSTOM, then DENY, then ALLOW. Trellis has no ext_authz, so a CUSTOM
// policy fails closed: its rules go into a DENY filter placed first, each named after the
// provider it would have asked (ns[NS]-policy[NAME]-rule[i]-provider[P]). AUDIT is skipped
// (it never changes the verdict, and gRPC rejects the LOG action).
//
// JWT attributes (requestPrincipals, request.auth.*) are encoded as Istio does: metadata matchers
// on filter istio_authn (keys request.auth.principal, .audiences, .presenter, .claims[...]), which
// the L7 engine answers from the request's verified JWT (src/proxy/rbac/rules.ts) and the node
// proxy (L4) cannot answer (unknown: fails closed). grpc-js-xds evaluates every metadata matcher as
// false, which under a negation or in a DENY rule would fail open; rules using them therefore carry
// a guard that is constant (no effect) wherever metadata is evaluated and fails closed where it is not.
// Other attributes nobody here can check (experimental.envoy.filters.*) fail closed: in an ALLOW
// rule they never match, in a DENY rule they always match.
import type { AuthorizationPolicySpec } from './security.js';
import type { EnvoyObject } from './route-match.js';

export const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';

export interface AppliedPolicy {
  readonly namespace: string;
  readonly name: string;
  /** undefined: bound but its spec is unknown to the translation (fails closed: deny all). */
  readonly spec: AuthorizationPolicySpec | undefined;
}

/** The filter metadata namespace Istio's authn filter writes the request's JWT attributes under. */
export const ISTIO_AUTHN = 'istio_authn';

type Action = 'ALLOW' | 'DENY';
type Source = NonNullable<NonNullable<NonNullable<AuthorizationPolicySpec['rules']>[number]['from']>[number]['source']>;
type Operation = NonNullable<
  NonNullable<NonNullable<AuthorizationPolicySpec['rules']>[number]['to']>[number]['operation']
>;
type Condition = NonNullable<NonNullable<AuthorizationPolicySpec['rules']>[number]['when']>[number];

/** The RBAC http_filters (CUSTOM, DENY, then ALLOW) for the policies on one server; [] when none applies. */
export function rbacFilters(policies: readonly AppliedPolicy[], trustDomain: string): EnvoyObject[] {
  const custom: Record<string, EnvoyObject> = {};
  const deny: Record<string, EnvoyObject> = {};
  const allow: Record<string, EnvoyObject> = {};
  let hasAllow = false;
  let hasDeny = false;
  let hasCustom = false;
  for (const p of policies) {
    const prefix = `ns[${p.namespace}]-policy[${p.name}]`;
    if (!p.spec) {
      hasDeny = true;
      deny[`${prefix}-unknown`] = { permissions: [{ any: true }], principals: [{ any: true }] };
      continue;
    }
    const action = p.spec.action ?? 'ALLOW';
    if (action === 'AUDIT') continue;
    const rules = p.spec.rules ?? [];
    if (action === 'CUSTOM') {
      // No ext_authz server to ask: whatever the provider would have decided, deny (fail closed).
      hasCustom = true;
      const provider = p.spec.provider?.name ?? '';
      rules.forEach((rule, i) => {
        custom[`${prefix}-rule[${i}]-provider[${provider}]`] = policyFor(rule, 'DENY', p.namespace, trustDomain);
      });
      continue;
    }
    const effective: Action = action === 'ALLOW' ? 'ALLOW' : 'DENY';
    if (effective === 'ALLOW') hasAllow = true;
    else hasDeny = true;
    const target = effective === 'ALLOW' ? allow : deny;
    rules.forEach((rule, i) => {
      target[`${prefix}-rule[${i}]`] = policyFor(rule, effective, p.namespace, trustDomain);
    });
  }
  const out: EnvoyObject[] = [];
  if (hasCustom) out.push(filter('envoy.filters.http.rbac.custom', 'DENY', custom));
  if (hasDeny) out.push(filter('envoy.filters.http.rbac.deny', 'DENY', deny));
  if (hasAllow) out.push(filter('envoy.filters.http.rbac.allow', 'ALLOW', allow));
  return out;
}

function filter(name: string, action: Action, policies: Record<string, EnvoyObject>): EnvoyObject {
  return { name, typed_config: { '@type': RBAC_TYPE, rules: { action, policies } } };
}

type Rule = NonNullable<AuthorizationPolicySpec['rules']>[number];

function policyFor(rule: Rule, action: Action, namespace: string, td: string): EnvoyObject {
  const ctx: Ctx = { action, namespace, td, requestAuth: false };
  const perms: EnvoyObject[] = [];
  const ids: EnvoyObject[] = [];
  if (rule.to?.length) perms.push(orPerm(rule.to.map((t) => operationPerm(t.operation))));
  if (rule.from?.length) ids.push(orIds(rule.from.map((f) => sourceId(f.source, ctx))));
  for (const w of rule.when ?? []) {
    const c = condition(w, ctx);
    if ('permission' in c) perms.push(c.permission);
    else ids.push(c.principal);
  }
  let principal = andIds(ids);
  if (ctx.requestAuth) {
    // See the header: a no-op where istio_authn metadata is evaluated, fail closed where it is not.
    principal =
      action === 'ALLOW' ? andIds([principal, METADATA_EVALUATED]) : orIds([principal, notId(METADATA_EVALUATED)]);
  }
  return { permissions: [andPerm(perms)], principals: [principal] };
}

interface Ctx {
  readonly action: Action;
  readonly namespace: string;
  readonly td: string;
  /** Set when the rule uses istio_authn metadata (JWT attributes). */
  requestAuth: boolean;
}

const ANY_PERM: EnvoyObject = { any: true };
const ANY_ID: EnvoyObject = { any: true };
const NO_PERM: EnvoyObject = { not_rule: { any: true } };

function andPerm(rules: EnvoyObject[]): EnvoyObject {
  return rules.length === 0 ? ANY_PERM : rules.length === 1 ? rules[0]! : { and_rules: { rules } };
}
function orPerm(rules: EnvoyObject[]): EnvoyObject {
  return rules.length === 1 ? rules[0]! : { or_rules: { rules } };
}
function andIds(ids: EnvoyObject[]): EnvoyObject {
  return ids.length === 0 ? ANY_ID : ids.length === 1 ? ids[0]! : { and_ids: { ids } };
}
function orIds(ids: EnvoyObject[]): EnvoyObject {
  return ids.length === 1 ? ids[0]! : { or_ids: { ids } };
}

/** An attribute the server cannot check: ALLOW never matches it, DENY always does. */
function unsupportedPerm(ctx: Ctx): EnvoyObject {
  return ctx.action === 'ALLOW' ? NO_PERM : ANY_PERM;
}

/** values ORed; notValues: NOT(values ORed); both ANDed. */
function field<T>(
  values: readonly string[] | undefined,
  notValues: readonly string[] | undefined,
  one: (v: string) => T,
  or: (x: T[]) => T,
  not: (x: T) => T,
): T[] {
  const out: T[] = [];
  if (values?.length) out.push(or(values.map(one)));
  if (notValues?.length) out.push(not(or(notValues.map(one))));
  return out;
}

const notPerm = (r: EnvoyObject): EnvoyObject => ({ not_rule: r });
const notId = (r: EnvoyObject): EnvoyObject => ({ not_id: r });

/** Istio string matching: "*" anything (non-empty), "x*" prefix, "*x" suffix, else exact. */
function istioString(v: string, prefix = ''): EnvoyObject {
  if (v === '*') return { safe_regex: { regex: `${escapeRegex(prefix)}.+` } };
  if (v.endsWith('*')) return { prefix: prefix + v.slice(0, -1) };
  if (v.startsWith('*'))
    return prefix
      ? { safe_regex: { regex: `${escapeRegex(prefix)}.*${escapeRegex(v.slice(1))}` } }
      : { suffix: v.slice(1) };
  return { exact: prefix + v };
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

function principalName(matcher: EnvoyObject): EnvoyObject {
  return { authenticated: { principal_name: matcher } };
}

/** "td/ns/x/sa/y" -> URI SAN spiffe://td/ns/x/sa/y (wildcards as Istio). */
function principal(v: string): EnvoyObject {
  return principalName(istioString(v, 'spiffe://'));
}

function namespaceId(ns: string): EnvoyObject {
  const nsRe = ns === '*' ? '[^/]+' : ns.split('*').map(escapeRegex).join('[^/]*');
  return principalName({ safe_regex: { regex: `spiffe://[^/]+/ns/${nsRe}/sa/[^/]+` } });
}

function serviceAccountId(v: string, ctx: Ctx): EnvoyObject {
  const [ns, sa] = v.includes('/') ? (v.split('/') as [string, string]) : [ctx.namespace, v];
  return principalName({ exact: `spiffe://${ctx.td}/ns/${ns}/sa/${sa}` });
}

function cidr(v: string): EnvoyObject {
  const [addr, len] = v.split('/') as [string, string | undefined];
  return {
    address_prefix: addr,
    prefix_len: { value: len !== undefined ? Number(len) : addr.includes(':') ? 128 : 32 },
  };
}

/** A metadata matcher on the request's JWT attributes, as Istio writes it (filter istio_authn). */
function authn(keys: readonly string[], value: EnvoyObject, ctx: Ctx): EnvoyObject {
  ctx.requestAuth = true;
  return { metadata: { filter: ISTIO_AUTHN, path: keys.map((key) => ({ key })), value } };
}

const authnString =
  (key: string, ctx: Ctx) =>
  (v: string): EnvoyObject =>
    authn([key], { string_match: istioString(v) }, ctx);

/**
 * True wherever istio_authn metadata is evaluated (present OR not present), false where every
 * metadata matcher reads as false (grpc-js-xds).
 */
const PRINCIPAL_PRESENT = {
  filter: ISTIO_AUTHN,
  path: [{ key: 'request.auth.principal' }],
  value: { present_match: true },
};
const METADATA_EVALUATED: EnvoyObject = {
  or_ids: { ids: [{ metadata: PRINCIPAL_PRESENT }, { metadata: { ...PRINCIPAL_PRESENT, invert: true } }] },
};

function sourceId(s: Source, ctx: Ctx): EnvoyObject {
  const parts: EnvoyObject[] = [
    ...field(s.principals, s.notPrincipals, principal, orIds, notId),
    ...field(s.requestPrincipals, s.notRequestPrincipals, authnString('request.auth.principal', ctx), orIds, notId),
    ...field(s.namespaces, s.notNamespaces, namespaceId, orIds, notId),
    ...field(s.serviceAccounts, s.notServiceAccounts, (v) => serviceAccountId(v, ctx), orIds, notId),
    ...field(s.ipBlocks, s.notIpBlocks, (v) => ({ direct_remote_ip: cidr(v) }), orIds, notId),
    ...field(s.remoteIpBlocks, s.notRemoteIpBlocks, (v) => ({ remote_ip: cidr(v) }), orIds, notId),
  ];
  return andIds(parts);
}

// Envoy's uri_template globs (RFC 3986 pchar): {*} one non-empty segment, {**} anything, "/" included.
const PCHAR = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=]";

/**
 * Istio path templates ({*}, {**}) as the regex Envoy's uri_template matcher compiles them to
 * (safe_regex is understood by every consumer, grpc-js-xds included); else Istio string matching.
 */
function pathMatcher(v: string): EnvoyObject {
  if (v.includes('{*}') || v.includes('{**}')) {
    const re = v
      .split(/(\{\*\*\}|\{\*\})/)
      .map((part) => (part === '{**}' ? `(?:${PCHAR}|/)*` : part === '{*}' ? `${PCHAR}+` : escapeRegex(part)))
      .join('');
    return { safe_regex: { regex: re } };
  }
  return istioString(v);
}

/** Istio's header matching: "*" is presence (an empty value counts), else exact/prefix/suffix. */
function header(name: string, v: string): EnvoyObject {
  return v === '*' ? { header: { name, present_match: true } } : { header: { name, string_match: istioString(v) } };
}

/**
 * Hosts: case-insensitive, "*" prefix/suffix wildcards, "*" any; a host written without a port
 * also matches the authority with a port ("example.com" matches "Example.com:8080").
 */
function hostMatcher(v: string): EnvoyObject {
  if (v === '*') return { header: { name: ':authority', present_match: true } };
  const port = /:[0-9]+$/.test(v) || v.endsWith('*') ? '' : '(?::[0-9]+)?';
  const body = v.startsWith('*')
    ? `.*${escapeRegex(v.slice(1))}`
    : v.endsWith('*')
      ? `${escapeRegex(v.slice(0, -1))}.*`
      : escapeRegex(v);
  return { header: { name: ':authority', string_match: { safe_regex: { regex: `(?i)${body}${port}` } } } };
}

function operationPerm(o: Operation): EnvoyObject {
  const parts: EnvoyObject[] = [
    ...field(o.paths, o.notPaths, (v) => ({ url_path: { path: pathMatcher(v) } }), orPerm, notPerm),
    ...field(o.methods, o.notMethods, (v) => header(':method', v), orPerm, notPerm),
    ...field(o.hosts, o.notHosts, hostMatcher, orPerm, notPerm),
    ...field(o.ports, o.notPorts, (v) => ({ destination_port: Number(v) }), orPerm, notPerm),
  ];
  return andPerm(parts);
}

type ConditionResult = { permission: EnvoyObject } | { principal: EnvoyObject };

/** "request.auth.claims[a][b]" -> ["a", "b"]; undefined when the key is not a claims key. */
function claimPath(key: string): string[] | undefined {
  const m = /^request\.auth\.claims((?:\[[^\]]+\])+)$/.exec(key);
  return m ? [...m[1]!.matchAll(/\[([^\]]+)\]/g)].map((x) => x[1]!) : undefined;
}

function condition(c: Condition, ctx: Ctx): ConditionResult {
  const key = c.key;
  const headerName = /^request\.headers\[(.+)\]$/.exec(key)?.[1];
  const p = (one: (v: string) => EnvoyObject): ConditionResult => ({
    principal: andIds(field(c.values, c.notValues, one, orIds, notId)),
  });
  const q = (one: (v: string) => EnvoyObject): ConditionResult => ({
    permission: andPerm(field(c.values, c.notValues, one, orPerm, notPerm)),
  });
  if (headerName !== undefined) return p((v) => header(headerName.toLowerCase(), v));
  const claims = claimPath(key);
  if (claims !== undefined) {
    // As Istio: a claim matches when it, or one element of a list-valued claim, matches.
    return p((v) =>
      authn(['request.auth.claims', ...claims], { list_match: { one_of: { string_match: istioString(v) } } }, ctx),
    );
  }
  switch (key) {
    case 'source.ip':
      return p((v) => ({ direct_remote_ip: cidr(v) }));
    case 'remote.ip':
      return p((v) => ({ remote_ip: cidr(v) }));
    case 'source.namespace':
      return p(namespaceId);
    case 'source.principal':
      return p(principal);
    case 'source.serviceAccount':
      return p((v) => serviceAccountId(v, ctx));
    case 'request.auth.principal':
    case 'request.auth.audiences':
    case 'request.auth.presenter':
      return p(authnString(key, ctx));
    case 'destination.ip':
      return q((v) => ({ destination_ip: cidr(v) }));
    case 'destination.port':
      return q((v) => ({ destination_port: Number(v) }));
    case 'connection.sni':
      return q((v) => ({ requested_server_name: istioString(v) }));
    default:
      // experimental.envoy.filters.* (other filters' metadata): nothing here produces it.
      return { permission: unsupportedPerm(ctx) };
  }
}
