// Istio AuthorizationPolicy -> Envoy RBAC HTTP filters (envoy.extensions.filters.http.rbac.v3.RBAC)
// for xDS-enabled gRPC servers (gRFC A41, grpc-js-xds with GRPC_XDS_EXPERIMENTAL_RBAC=true).
//
// As istiod builds them: one DENY filter holding every DENY policy, then one ALLOW filter
// holding every ALLOW policy (present as soon as one ALLOW policy applies, so an ALLOW policy
// without rules allows nothing). One RBAC policy per rule, named ns[NS]-policy[NAME]-rule[i].
// Inside a rule: `from` entries are ORed, the fields of one source ANDed, the values of one
// field ORed; the same for `to`/operation; `when` conditions are ANDed to the rest.
//
// What a proxyless server cannot check (JWT request principals, request.auth.* conditions,
// SNI...) fails closed: in an ALLOW rule it never matches, in a DENY rule it always matches.
// CUSTOM (external authorization) is not available to gRPC servers: its rules deny.
// AUDIT is skipped (gRPC rejects the LOG action).
import type { AuthorizationPolicySpec } from './security.js';
import type { EnvoyObject } from './route-match.js';

export const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';

export interface AppliedPolicy {
  readonly namespace: string;
  readonly name: string;
  /** undefined: bound but its spec is unknown to the translation (fails closed: deny all). */
  readonly spec: AuthorizationPolicySpec | undefined;
}

type Action = 'ALLOW' | 'DENY';
type Source = NonNullable<NonNullable<NonNullable<AuthorizationPolicySpec['rules']>[number]['from']>[number]['source']>;
type Operation = NonNullable<
  NonNullable<NonNullable<AuthorizationPolicySpec['rules']>[number]['to']>[number]['operation']
>;
type Condition = NonNullable<NonNullable<AuthorizationPolicySpec['rules']>[number]['when']>[number];

/** The RBAC http_filters (DENY first, then ALLOW) for the policies on one server; [] when none applies. */
export function rbacFilters(policies: readonly AppliedPolicy[], trustDomain: string): EnvoyObject[] {
  const deny: Record<string, EnvoyObject> = {};
  const allow: Record<string, EnvoyObject> = {};
  let hasAllow = false;
  let hasDeny = false;
  for (const p of policies) {
    const prefix = `ns[${p.namespace}]-policy[${p.name}]`;
    if (!p.spec) {
      hasDeny = true;
      deny[`${prefix}-unknown`] = { permissions: [{ any: true }], principals: [{ any: true }] };
      continue;
    }
    const action = p.spec.action;
    if (action === 'AUDIT') continue;
    const effective: Action = action === 'ALLOW' ? 'ALLOW' : 'DENY';
    if (effective === 'ALLOW') hasAllow = true;
    else hasDeny = true;
    const target = effective === 'ALLOW' ? allow : deny;
    (p.spec.rules ?? []).forEach((rule, i) => {
      target[`${prefix}-rule[${i}]`] = policyFor(rule, effective, p.namespace, trustDomain);
    });
  }
  const out: EnvoyObject[] = [];
  if (hasDeny) out.push(filter('envoy.filters.http.rbac.deny', 'DENY', deny));
  if (hasAllow) out.push(filter('envoy.filters.http.rbac.allow', 'ALLOW', allow));
  return out;
}

function filter(name: string, action: Action, policies: Record<string, EnvoyObject>): EnvoyObject {
  return { name, typed_config: { '@type': RBAC_TYPE, rules: { action, policies } } };
}

type Rule = NonNullable<AuthorizationPolicySpec['rules']>[number];

function policyFor(rule: Rule, action: Action, namespace: string, td: string): EnvoyObject {
  const ctx: Ctx = { action, namespace, td };
  const perms: EnvoyObject[] = [];
  const ids: EnvoyObject[] = [];
  if (rule.to?.length) perms.push(orPerm(rule.to.map((t) => operationPerm(t.operation))));
  if (rule.from?.length) ids.push(orIds(rule.from.map((f) => sourceId(f.source, ctx))));
  for (const w of rule.when ?? []) {
    const c = condition(w, ctx);
    if ('permission' in c) perms.push(c.permission);
    else ids.push(c.principal);
  }
  return { permissions: [andPerm(perms)], principals: [andIds(ids)] };
}

interface Ctx {
  readonly action: Action;
  readonly namespace: string;
  readonly td: string;
}

const ANY_PERM: EnvoyObject = { any: true };
const ANY_ID: EnvoyObject = { any: true };
const NO_PERM: EnvoyObject = { not_rule: { any: true } };
const NO_ID: EnvoyObject = { not_id: { any: true } };

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
function unsupportedId(ctx: Ctx): EnvoyObject {
  return ctx.action === 'ALLOW' ? NO_ID : ANY_ID;
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

function sourceId(s: Source, ctx: Ctx): EnvoyObject {
  const parts: EnvoyObject[] = [
    ...field(s.principals, s.notPrincipals, principal, orIds, notId),
    ...field(s.namespaces, s.notNamespaces, namespaceId, orIds, notId),
    ...field(s.serviceAccounts, s.notServiceAccounts, (v) => serviceAccountId(v, ctx), orIds, notId),
    ...field(s.ipBlocks, s.notIpBlocks, (v) => ({ direct_remote_ip: cidr(v) }), orIds, notId),
    ...field(s.remoteIpBlocks, s.notRemoteIpBlocks, (v) => ({ remote_ip: cidr(v) }), orIds, notId),
  ];
  // JWT request principals: proxyless gRPC servers have no RequestAuthentication.
  if (s.requestPrincipals?.length || s.notRequestPrincipals?.length) parts.push(unsupportedId(ctx));
  return andIds(parts);
}

/** Istio path templates: {*} one segment, {**} the rest; otherwise Istio string matching. */
function pathMatcher(v: string): EnvoyObject {
  if (v.includes('{')) {
    const re = v
      .split(/(\{\*\*\}|\{\*\})/)
      .map((part) => (part === '{**}' ? '.+' : part === '{*}' ? '[^/]+' : escapeRegex(part)))
      .join('');
    return { safe_regex: { regex: re } };
  }
  return istioString(v);
}

function header(name: string, v: string): EnvoyObject {
  return { header: { name, string_match: istioString(v) } };
}

function operationPerm(o: Operation): EnvoyObject {
  const parts: EnvoyObject[] = [
    ...field(o.paths, o.notPaths, (v) => ({ url_path: { path: pathMatcher(v) } }), orPerm, notPerm),
    ...field(o.methods, o.notMethods, (v) => header(':method', v), orPerm, notPerm),
    ...field(
      o.hosts,
      o.notHosts,
      (v) => ({ header: { name: ':authority', string_match: { ...istioString(v), ignore_case: true } } }),
      orPerm,
      notPerm,
    ),
    ...field(o.ports, o.notPorts, (v) => ({ destination_port: Number(v) }), orPerm, notPerm),
  ];
  return andPerm(parts);
}

type ConditionResult = { permission: EnvoyObject } | { principal: EnvoyObject };

function condition(c: Condition, ctx: Ctx): ConditionResult {
  const key = c.key;
  const headerName = /^request\.headers\[(.+)\]$/.exec(key)?.[1];
  const p = (one: (v: string) => EnvoyObject): ConditionResult => ({
    principal: andIds(field(c.values, c.notValues, one, orIds, notId)),
  });
  const q = (one: (v: string) => EnvoyObject): ConditionResult => ({
    permission: andPerm(field(c.values, c.notValues, one, orPerm, notPerm)),
  });
  if (headerName !== undefined)
    return p((v) => ({ header: { name: headerName.toLowerCase(), string_match: istioString(v) } }));
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
    case 'destination.ip':
      return q((v) => ({ destination_ip: cidr(v) }));
    case 'destination.port':
      return q((v) => ({ destination_port: Number(v) }));
    default:
      // request.auth.*, connection.sni, experimental.*: not available to a proxyless server.
      return { permission: unsupportedPerm(ctx) };
  }
}
