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
import { array as list, get, isObj, type Obj } from '../envoy/values.js';
import { permission, principal, type CompileContext } from './rules.js';
import { and, NO, or, UNKNOWN, UNKNOWN_NODE, YES, type Eval } from './tri.js';

export interface RbacAttributes {
  /** The peer's authenticated identity, the SPIFFE ID URI "spiffe://td/ns/x/sa/y" (undefined: plaintext peer). */
  readonly principal?: string;
  readonly sourceIp?: string;
  readonly sourcePort?: number;
  readonly destinationIp?: string;
  readonly destinationPort?: number;
  /** The TLS SNI; undefined: none was sent (matched as "", as Envoy does). */
  readonly sni?: string;
  readonly http?: {
    readonly method: string;
    /** With the query string. */
    readonly path: string;
    readonly host: string;
    /** Lowercase name; repeated headers joined with ",". */
    header(name: string): string | undefined;
  };
}

export interface RbacDecision {
  readonly allowed: boolean;
  /** The DENY policy that denied; undefined otherwise. */
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
    allowed: decision(true, `allowed by ${name}`),
    denied: decision(false, `denied by ${name}`, name),
    deniedUnknown: decision(
      false,
      `denied by ${name} (fail closed: it depends on attributes not available here, e.g. HTTP at L4)`,
      name,
    ),
  };
}

type Gate = readonly Policy[];

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
      deny.push([compiledPolicy(`${label} (unreadable RBAC config)`, () => YES)]);
      return;
    }
    const gate = compileGate(config, ctx, label);
    if (gate) (gate.action === 'DENY' ? deny : allow).push(gate.policies);
  });
  const problems = Object.freeze([...ctx.problems]);
  if (deny.length === 0 && allow.length === 0) return { empty: true, problems, evaluate: () => NO_FILTERS };
  const passed = allow.length === 0 ? NO_DENY_MATCHED : undefined;
  return {
    empty: false,
    problems,
    evaluate(attrs: RbacAttributes): RbacDecision {
      for (let g = 0; g < deny.length; g++) {
        const gate = deny[g]!;
        for (let i = 0; i < gate.length; i++) {
          const p = gate[i]!;
          const v = p.match(attrs);
          if (v !== NO) return v === YES ? p.denied : p.deniedUnknown;
        }
      }
      let result = passed;
      for (let g = 0; g < allow.length; g++) {
        const gate = allow[g]!;
        let matched: Policy | undefined;
        let unknown = false;
        for (let i = 0; i < gate.length; i++) {
          const p = gate[i]!;
          const v = p.match(attrs);
          if (v === YES) {
            matched = p;
            break;
          }
          if (v === UNKNOWN) unknown = true;
        }
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
): { action: 'ALLOW' | 'DENY'; policies: Policy[] } | undefined {
  const rules = get(config, 'rules');
  if (rules === undefined) {
    // No rules: Envoy enforces nothing (shadow rules only log), unless the matcher API is used.
    if (get(config, 'matcher') === undefined) return undefined;
    ctx.problems.push(`${label}: the RBAC matcher API is not supported; denies every request`);
    return { action: 'DENY', policies: [compiledPolicy(`${label} (unsupported RBAC matcher)`, () => YES)] };
  }
  if (!isObj(rules)) {
    ctx.problems.push(`${label}: rules is not an object; denies every request`);
    return { action: 'DENY', policies: [compiledPolicy(`${label} (unreadable RBAC rules)`, () => YES)] };
  }
  const rawAction = get(rules, 'action') ?? 'ALLOW'; // proto3 default (0)
  const action = ACTIONS.get(rawAction);
  if (action === 'LOG') return undefined; // LOG only records, it never denies
  if (action === undefined) {
    ctx.problems.push(`${label}: unknown action ${JSON.stringify(rawAction)}; denies every request`);
    return { action: 'DENY', policies: [compiledPolicy(`${label} (unknown RBAC action)`, () => YES)] };
  }
  const policiesObj = get(rules, 'policies');
  const byName = isObj(policiesObj) ? policiesObj : {};
  // Envoy keeps policies in a std::map: by name, which decides the one reported.
  const names = Object.keys(byName).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const policies: Policy[] = [];
  for (const name of names) {
    const p = byName[name];
    const where = `${label} policy ${name}`;
    if (!isObj(p)) {
      ctx.problems.push(`${where}: not an object; treated as unknown`);
      policies.push(compiledPolicy(name, () => UNKNOWN));
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
    policies.push(compiledPolicy(name, node.f));
  }
  return { action, policies };
}
