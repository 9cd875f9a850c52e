// Envoy RBAC evaluation for the node proxy (L4) and the L7 engine: the RBAC configs the control
// plane builds (src/xds/translate/rbac.ts, envoy.extensions.filters.{http,network}.rbac.v3.RBAC)
// compiled once into closures, then evaluated per connection or request.
//
// Semantics (Envoy's filter chain, as Istio and ztunnel use it): every DENY filter first (a matching
// policy denies), then every ALLOW filter (each needs a matching policy). A policy matches when one
// of its permissions and one of its principals match. Matching is three-valued (tri.ts): what this
// caller cannot know (HTTP attributes at L4 or without a request, metadata, CEL conditions) is
// UNKNOWN, which never matches an ALLOW policy and always matches a DENY policy (fail closed).
import type { EnvoyObject } from '../../xds/translate/route-match.js';
import { array as list, get, isObj, oneOf, type Obj } from '../envoy/values.js';
import { permission, principal, PRINCIPAL, type CompileContext } from './rules.js';
import { and, NO, or, UNKNOWN, UNKNOWN_NODE, YES, type Eval } from './tri.js';
import type { RbacAttributes } from './attributes.js';
import { namespaceOf, namespaceOfRegex } from './spiffe-namespace.js';
import { attributeIp, parseIp } from './ip.js';

export { REQUEST_AUTH_STATE, type RbacAttributes, type RequestAuth } from './attributes.js';

export interface RbacDecision {
  readonly allowed: boolean;
  /** The policy (rule) that decided: the DENY one that denied, or the ALLOW one that allowed; undefined otherwise. */
  readonly policy?: string;
  /** e.g. "denied by ns[shop]-policy[x]-rule[0]", "no ALLOW policy matched". */
  readonly reason: string;
}

export interface CompiledRbac {
  /** No enforcing RBAC filter: every evaluation allows. */
  readonly empty: boolean;
  /** What was not understood and therefore fails closed (for logs; empty for rbac.ts output). */
  readonly problems: readonly string[];
  evaluate(attrs: RbacAttributes): RbacDecision;
}

export const HTTP_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
export const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
const RBAC_TYPES: ReadonlySet<string> = new Set([HTTP_RBAC_TYPE, NETWORK_RBAC_TYPE]);

const decision = (allowed: boolean, reason: string, policy?: string): RbacDecision =>
  Object.freeze(policy === undefined ? { allowed, reason } : { allowed, policy, reason });

const NO_FILTERS = decision(true, 'no RBAC policy applies');
const NO_DENY_MATCHED = decision(true, 'no DENY policy matched');
const NO_ALLOW_MATCHED = decision(false, 'no ALLOW policy matched');
const NO_ALLOW_MATCHED_UNKNOWN = decision(
  false,
  'no ALLOW policy matched (some depend on attributes not available here, e.g. HTTP at L4)',
);

interface Policy {
  readonly match: Eval;
  readonly allowed: RbacDecision;
  readonly denied: RbacDecision;
  readonly deniedUnknown: RbacDecision;
}

function compiledPolicy(name: string, match: Eval): Policy {
  return {
    match,
    allowed: decision(true, `allowed by ${name}`, name),
    denied: decision(false, `denied by ${name}`, name),
    deniedUnknown: decision(
      false,
      `denied by ${name} (fail closed: it depends on attributes not available here, e.g. HTTP at L4)`,
      name,
    ),
  };
}

/**
 * One RBAC filter's policies, in name order (Envoy reports the first match by name), indexed the
 * way Cilium's policy maps are keyed by identity: a policy that can only match callers with one
 * of a few exact SPIFFE IDs, or callers of a few namespaces (Istio's `namespaces` sources), is
 * looked up by the caller's ID and namespace; the rest are always evaluated. So a decision
 * costs the same with 10 or 10,000 identity-scoped policies in force.
 */
interface Gate {
  readonly policies: readonly Policy[];
  /** Indexes of policies that only match these exact principals... */
  readonly byPrincipal: ReadonlyMap<string, readonly number[]>;
  /** ...or principals of these namespaces. */
  readonly byNamespace: ReadonlyMap<string, readonly number[]>;
  /**
   * ...or peers whose IPv4 source address is in these CIDRs (NetworkPolicy ipBlock, Cilium
   * fromCIDR): prefix length -> network -> indexes, so a lookup costs one probe per length.
   */
  readonly byCidr: ReadonlyMap<number, ReadonlyMap<number, readonly number[]>>;
  /** Indexes of the policies not restricted that way (all, when nothing is indexed). */
  readonly always: readonly number[];
}

const NONE: readonly number[] = [];

/**
 * Visit the policies a caller can match, in name order: the always-evaluated ones merged with
 * the ones indexed under the caller's ID and namespace (each once). `visit` returns true to stop.
 */
function forCandidates(
  gate: Gate,
  principal: string | undefined,
  sourceIp: string | undefined,
  visit: (p: Policy) => boolean,
): void {
  const a = gate.always;
  let b = NONE;
  let c = NONE;
  if (principal !== undefined) {
    b = gate.byPrincipal.get(principal) ?? NONE;
    if (gate.byNamespace.size > 0) {
      const ns = namespaceOf(principal);
      if (ns !== undefined) c = gate.byNamespace.get(ns) ?? NONE;
    }
  }
  if (gate.byCidr.size > 0) return forCidrCandidates(gate, [a, b, c], sourceIp, visit);
  let i = 0;
  let j = 0;
  let l = 0;
  let last = -1;
  const END = Number.MAX_SAFE_INTEGER;
  for (;;) {
    const x = i < a.length ? a[i]! : END;
    const y = j < b.length ? b[j]! : END;
    const z = l < c.length ? c[l]! : END;
    const k = x < y ? (x < z ? x : z) : y < z ? y : z;
    if (k === END) return;
    if (k === x) i++;
    else if (k === y) j++;
    else l++;
    if (k === last) continue; // indexed under both the ID and the namespace
    last = k;
    if (visit(gate.policies[k]!)) return;
  }
}

/** forCandidates with CIDR-indexed policies too: the lists merged in name order, each policy once. */
function forCidrCandidates(
  gate: Gate,
  lists: readonly (readonly number[])[],
  sourceIp: string | undefined,
  visit: (p: Policy) => boolean,
): void {
  const all = lists.flat();
  const ip = sourceIp === undefined ? undefined : attributeIp(sourceIp);
  for (const [len, byNet] of gate.byCidr) {
    if (ip && !ip.v6) {
      const hit = byNet.get(maskedV4(ip.words[0]!, len));
      if (hit) all.push(...hit);
    } else {
      // No IPv4 source to look up: every CIDR policy is evaluated, so an unknown still fails closed.
      for (const hit of byNet.values()) all.push(...hit);
    }
  }
  all.sort((x, y) => x - y);
  let last = -1;
  for (const k of all) {
    if (k === last) continue;
    last = k;
    if (visit(gate.policies[k]!)) return;
  }
}

function maskedV4(word: number, len: number): number {
  return len === 0 ? 0 : (word & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
}

/** What a principal matcher can only match: these exact IDs, IDs of these namespaces, peers in these IPv4 CIDRs. */
interface Restriction {
  readonly ids: Set<string>;
  readonly namespaces: Set<string>;
  /** "network/len" keys, network a u32 with host bits cleared. */
  readonly cidrs: Set<string>;
}

/** An IPv4 CidrRange (Envoy's address_prefix + prefix_len) as a "network/len" key; undefined otherwise. */
function cidrKey(v: unknown): string | undefined {
  if (!isObj(v)) return undefined;
  const prefix = get(v, 'address_prefix');
  const lenObj = get(v, 'prefix_len');
  const len = isObj(lenObj) ? get(lenObj, 'value') : lenObj;
  if (typeof prefix !== 'string' || typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > 32)
    return undefined;
  const ip = parseIp(prefix);
  if (!ip || ip.v6) return undefined;
  return `${maskedV4(ip.words[0]!, len)}/${len}`;
}

/**
 * The restriction of a principal matcher (raw Envoy config), or undefined when it can match
 * others: authenticated.principal_name exact, or the namespace regex Istio's `namespaces`
 * compile to; or_ids of such; and_ids with such a member. Anything else (other regexes,
 * prefixes, not_id, IPs, headers...) is unrestricted.
 */
function restrictionOf(v: unknown): Restriction | undefined {
  if (!isObj(v)) return undefined;
  // The member the evaluator itself reads (rules.ts): a malformed principal (several members,
  // a discriminator naming another) evaluates as unknown for every caller, so it is never indexed.
  const member = oneOf(v, PRINCIPAL, 'identifier');
  if ('problem' in member) return undefined;
  switch (member.kind) {
    case 'authenticated': {
      const auth = member.value;
      const m = isObj(auth) ? get(auth, 'principal_name') : undefined;
      if (!isObj(m) || get(m, 'ignore_case') === true) return undefined;
      const exact = get(m, 'exact');
      if (typeof exact === 'string') return { ids: new Set([exact]), namespaces: new Set(), cidrs: new Set() };
      const re = get(m, 'safe_regex');
      const regex = isObj(re) ? get(re, 'regex') : undefined;
      const ns = typeof regex === 'string' ? namespaceOfRegex(regex) : undefined;
      return ns ? { ids: new Set(), namespaces: new Set([ns]), cidrs: new Set() } : undefined;
    }
    // The peer's own address (never XFF, see rules.ts): indexable by CIDR.
    case 'direct_remote_ip':
    case 'source_ip':
    case 'remote_ip': {
      const key = cidrKey(member.value);
      return key ? { ids: new Set(), namespaces: new Set(), cidrs: new Set([key]) } : undefined;
    }
    case 'or_ids':
      return isObj(member.value) ? unionOf(list(get(member.value, 'ids'))) : undefined;
    case 'and_ids':
      if (isObj(member.value))
        for (const id of list(get(member.value, 'ids'))) {
          const r = restrictionOf(id);
          if (r) return r;
        }
      return undefined;
    default:
      return undefined;
  }
}

function unionOf(ids: readonly unknown[]): Restriction | undefined {
  if (ids.length === 0) return undefined;
  const out: Restriction = { ids: new Set(), namespaces: new Set(), cidrs: new Set() };
  for (const id of ids) {
    const r = restrictionOf(id);
    if (!r) return undefined;
    for (const s of r.ids) out.ids.add(s);
    for (const s of r.namespaces) out.namespaces.add(s);
    for (const s of r.cidrs) out.cidrs.add(s);
  }
  return out;
}

function gateOf(entries: readonly { policy: Policy; principals?: Restriction }[]): Gate {
  const byPrincipal = new Map<string, number[]>();
  const byNamespace = new Map<string, number[]>();
  const byCidr = new Map<number, Map<number, number[]>>();
  const always: number[] = [];
  const add = (m: Map<string, number[]>, key: string, i: number): void => {
    const l = m.get(key);
    if (l) l.push(i);
    else m.set(key, [i]);
  };
  entries.forEach((e, i) => {
    if (!e.principals) always.push(i);
    else {
      for (const id of e.principals.ids) add(byPrincipal, id, i);
      for (const ns of e.principals.namespaces) add(byNamespace, ns, i);
      for (const key of e.principals.cidrs) {
        const [net, len] = key.split('/').map(Number) as [number, number];
        let byNet = byCidr.get(len);
        if (!byNet) byCidr.set(len, (byNet = new Map()));
        const l = byNet.get(net);
        if (l) l.push(i);
        else byNet.set(net, [i]);
      }
    }
  });
  return { policies: entries.map((e) => e.policy), byPrincipal, byNamespace, byCidr, always };
}

const single = (policy: Policy): Gate => gateOf([{ policy }]);

/** Compile once per config; evaluate per connection/request. */
export function compileRbacFilters(filters: readonly EnvoyObject[], mode: 'l4' | 'l7'): CompiledRbac {
  const ctx: CompileContext = { mode, problems: [] };
  const deny: Gate[] = [];
  const allow: Gate[] = [];
  filters.forEach((entry, i) => {
    const label = isObj(entry) && typeof entry.name === 'string' ? `filters[${i}] ${entry.name}` : `filters[${i}]`;
    const config = rbacConfig(entry);
    if (config === undefined) return;
    if (typeof config === 'string') {
      // An RBAC filter we cannot read would enforce something we cannot know: deny everything.
      ctx.problems.push(`${label}: ${config}; denies every request`);
      deny.push(single(compiledPolicy(`${label} (unreadable RBAC config)`, () => YES)));
      return;
    }
    const gate = compileGate(config, ctx, label);
    if (gate) (gate.action === 'DENY' ? deny : allow).push(gate.gate);
  });
  const problems = Object.freeze([...ctx.problems]);
  if (deny.length === 0 && allow.length === 0) return { empty: true, problems, evaluate: () => NO_FILTERS };
  const passed = allow.length === 0 ? NO_DENY_MATCHED : undefined;
  return {
    empty: false,
    problems,
    evaluate(attrs: RbacAttributes): RbacDecision {
      let denied: RbacDecision | undefined;
      for (let g = 0; g < deny.length && !denied; g++) {
        forCandidates(deny[g]!, attrs.principal, attrs.sourceIp, (p) => {
          const v = p.match(attrs);
          if (v === NO) return false;
          denied = v === YES ? p.denied : p.deniedUnknown;
          return true;
        });
      }
      if (denied) return denied;
      let result = passed;
      for (let g = 0; g < allow.length; g++) {
        let matched: Policy | undefined;
        let unknown = false;
        forCandidates(allow[g]!, attrs.principal, attrs.sourceIp, (p) => {
          const v = p.match(attrs);
          if (v === YES) matched = p;
          else if (v === UNKNOWN) unknown = true;
          return matched !== undefined;
        });
        if (!matched) return unknown ? NO_ALLOW_MATCHED_UNKNOWN : NO_ALLOW_MATCHED;
        result ??= matched.allowed;
      }
      return result ?? NO_DENY_MATCHED;
    },
  };
}

function isRbacFilterName(name: unknown): boolean {
  return (
    typeof name === 'string' &&
    ['envoy.filters.http.rbac', 'envoy.filters.network.rbac'].some((n) => name === n || name.startsWith(`${n}.`))
  );
}

/**
 * The RBAC message of an http_filters/filters entry or a bare config; undefined for other filters;
 * a string when it is an RBAC filter whose config cannot be read (packed Any, ECDS...).
 */
function rbacConfig(entry: unknown): Obj | string | undefined {
  if (!isObj(entry)) return undefined;
  if ('typed_config' in entry || 'typedConfig' in entry || 'config_discovery' in entry || 'name' in entry) {
    if (get(entry, 'disabled') === true) return undefined; // Envoy skips it unless a route enables it
    const tc = get(entry, 'typed_config');
    if (tc === undefined) return isRbacFilterName(entry.name) ? 'no inline typed_config' : undefined;
    if (!isObj(tc)) return isRbacFilterName(entry.name) ? 'typed_config is not an object' : undefined;
    const type = tc['@type'] ?? get(tc, 'type_url');
    if (typeof type === 'string') {
      if (!RBAC_TYPES.has(type)) return undefined;
      return 'value' in tc && !('rules' in tc) ? 'typed_config is still a packed Any' : tc;
    }
    return isRbacFilterName(entry.name) ? tc : undefined;
  }
  const type = entry['@type'];
  if (typeof type === 'string') return RBAC_TYPES.has(type) ? entry : undefined;
  return get(entry, 'rules') !== undefined || get(entry, 'matcher') !== undefined ? entry : undefined;
}

// Enum names, or numbers when decoded with enums as numbers.
const ACTIONS = new Map<unknown, 'ALLOW' | 'DENY' | 'LOG'>([
  ['ALLOW', 'ALLOW'],
  [0, 'ALLOW'],
  ['DENY', 'DENY'],
  [1, 'DENY'],
  ['LOG', 'LOG'],
  [2, 'LOG'],
]);

function compileGate(
  config: Obj,
  ctx: CompileContext,
  label: string,
): { action: 'ALLOW' | 'DENY'; gate: Gate } | undefined {
  const rules = get(config, 'rules');
  if (rules === undefined) {
    // No rules: Envoy enforces nothing (shadow rules only log), unless the matcher API is used.
    if (get(config, 'matcher') === undefined) return undefined;
    ctx.problems.push(`${label}: the RBAC matcher API is not supported; denies every request`);
    return { action: 'DENY', gate: single(compiledPolicy(`${label} (unsupported RBAC matcher)`, () => YES)) };
  }
  if (!isObj(rules)) {
    ctx.problems.push(`${label}: rules is not an object; denies every request`);
    return { action: 'DENY', gate: single(compiledPolicy(`${label} (unreadable RBAC rules)`, () => YES)) };
  }
  const rawAction = get(rules, 'action') ?? 'ALLOW'; // proto3 default (0)
  const action = ACTIONS.get(rawAction);
  if (action === 'LOG') return undefined; // LOG only records, it never denies
  if (action === undefined) {
    ctx.problems.push(`${label}: unknown action ${JSON.stringify(rawAction)}; denies every request`);
    return { action: 'DENY', gate: single(compiledPolicy(`${label} (unknown RBAC action)`, () => YES)) };
  }
  const policiesObj = get(rules, 'policies');
  const byName = isObj(policiesObj) ? policiesObj : {};
  // Envoy keeps policies in a std::map: by name, which decides the one reported.
  const names = Object.keys(byName).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const policies: { policy: Policy; principals?: Restriction }[] = [];
  for (const name of names) {
    const p = byName[name];
    const where = `${label} policy ${name}`;
    if (!isObj(p)) {
      ctx.problems.push(`${where}: not an object; treated as unknown`);
      policies.push({ policy: compiledPolicy(name, () => UNKNOWN) });
      continue;
    }
    const perms = or(list(get(p, 'permissions')).map((x, i) => permission(x, ctx, `${where} permissions[${i}]`)));
    const ids = or(list(get(p, 'principals')).map((x, i) => principal(x, ctx, `${where} principals[${i}]`)));
    const parts = [perms, ids];
    if (get(p, 'condition') !== undefined || get(p, 'checked_condition') !== undefined) {
      ctx.problems.push(`${where}: CEL conditions are not evaluated; treated as unknown`);
      parts.push(UNKNOWN_NODE);
    }
    const node = and(parts);
    if (node.constant === NO) continue; // can never match: nothing to evaluate
    const principals = unionOf(list(get(p, 'principals')));
    policies.push(
      principals ? { policy: compiledPolicy(name, node.f), principals } : { policy: compiledPolicy(name, node.f) },
    );
  }
  return { action, gate: gateOf(policies) };
}
