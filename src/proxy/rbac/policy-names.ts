// Which policy and rule an RBAC policy name stands for. Every kind compiles to RBAC policies
// whose names say where they came from: istiod's "ns[NS]-policy[NAME]-rule[I]" for
// AuthorizationPolicy, "Kind/NS/NAME/<rule path>" for the network policy kinds. Used by the
// proxies (what a denial's flow record names) and by policy check / replay.
import { get, isObj, type Obj } from '../envoy/values.js';
import type { RbacDecision } from './evaluate.js';

export interface DecisionSource {
  /** "AuthorizationPolicy/shop/api-allow" — the policy resource. */
  readonly policy: string;
  /** "spec.rules[0]" — the rule in it. */
  readonly rule?: string;
}

// CUSTOM rules carry a "-provider[P]" suffix.
const ISTIO = /^ns\[([^\]]*)\]-policy\[([^\]]*)\]-rule\[(\d+)\](?:-provider\[[^\]]*\])?$/;
// Kind/NS/NAME/<path> for namespaced kinds, Kind/NAME/<path> for cluster-wide ones; the path is
// the rule's place in the resource ("ingress[0]", "specs[1]/ingress[0]").
const NAMESPACED = /^(NetworkPolicy|CiliumNetworkPolicy)\/([^/]+)\/([^/]+)\/(.+)$/;
const CLUSTER = /^(CiliumClusterwideNetworkPolicy)\/([^/]+)\/(.+)$/;

function rulePath(path: string): string {
  // "<rule>/via-waypoint": the node's entry letting the waypoint that enforced the rule's L7 part in.
  const via = path.endsWith('/via-waypoint');
  const dotted = (via ? path.slice(0, -'/via-waypoint'.length) : path).replace(/\//g, '.');
  const rule = dotted.startsWith('specs[') ? dotted : `spec.${dotted}`;
  return via ? `${rule} (through its waypoint)` : rule;
}

/** The policy and rule an RBAC policy name stands for (undefined for names no translation made). */
export function sourceOfPolicyName(name: string): DecisionSource | undefined {
  const istio = ISTIO.exec(name);
  if (istio) return { policy: `AuthorizationPolicy/${istio[1]}/${istio[2]}`, rule: `spec.rules[${istio[3]}]` };
  const ns = NAMESPACED.exec(name);
  if (ns) return { policy: `${ns[1]}/${ns[2]}/${ns[3]}`, rule: rulePath(ns[4]!) };
  const cluster = CLUSTER.exec(name);
  if (cluster) return { policy: `${cluster[1]}/${cluster[2]}`, rule: rulePath(cluster[3]!) };
  return undefined;
}

/** The RBAC policy name behind a decision: the denying one, or the one an allow names. */
export function policyNameOf(d: RbacDecision): string | undefined {
  if (d.policy) return d.policy;
  const m = /^allowed by (\S+)/.exec(d.reason);
  return m?.[1];
}

export function sourceOf(d: RbacDecision): DecisionSource | undefined {
  const name = policyNameOf(d);
  return name === undefined ? undefined : (sourceOfPolicyName(name) ?? { policy: name });
}

const ALLOW_ACTIONS: ReadonlySet<unknown> = new Set([undefined, 'ALLOW', 0]);

/**
 * The ALLOW policies in force in RBAC filter configs, for "no ALLOW rule matched" messages:
 * as policy resources ("AuthorizationPolicy/shop/api-allow") or as rule names.
 */
export function allowPolicies(filters: readonly unknown[], as: 'policy' | 'rule' = 'policy'): string[] {
  const out = new Set<string>();
  for (const f of filters) {
    const tc = isObj(f) ? get(f, 'typed_config') : undefined;
    const rules = isObj(tc) ? get(tc, 'rules') : undefined;
    if (!isObj(rules) || !ALLOW_ACTIONS.has(get(rules, 'action'))) continue;
    const policies = get(rules, 'policies');
    for (const name of Object.keys(isObj(policies) ? (policies as Obj) : {}))
      out.add(as === 'rule' ? name : (sourceOfPolicyName(name)?.policy ?? name));
  }
  return [...out].sort();
}
