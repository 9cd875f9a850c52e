// The evaluator's identity index (policies looked up by the caller's SPIFFE ID, namespace, or
// IPv4 source CIDR)
// must never change a decision: random RBAC configs are decided with the index and with the
// same policies written so the index cannot take them (same meaning), and every decision —
// verdict, deciding policy and reason — must be the same.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileRbacFilters, type RbacAttributes } from '../../../src/proxy/rbac/evaluate.js';

type Obj = Record<string, unknown>;

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NS = ['prod', 'dev', 'ops'];
const SA = ['a', 'b', 'c', 'd'];
const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

function principal(r: () => number, indexable: boolean): Obj {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const kind = r();
  if (kind < 0.4) {
    const exact = id(pick(NS), pick(SA));
    // Same meaning, but a regex the index does not read.
    return indexable
      ? { authenticated: { principal_name: { exact } } }
      : { authenticated: { principal_name: { safe_regex: { regex: exact.replace(/\./g, '\\.') } } } };
  }
  if (kind < 0.7) {
    const ns = pick(NS);
    return {
      authenticated: {
        principal_name: {
          safe_regex: {
            regex: indexable ? `spiffe://[^/]+/ns/${ns}/sa/[^/]+` : `spiffe://[^/]+/ns/(?:${ns})/sa/[^/]+`,
          },
        },
      },
    };
  }
  if (kind < 0.8) {
    const len = pick([8, 16, 24, 32]);
    const cidr = {
      direct_remote_ip: {
        address_prefix: `10.0.${Math.floor(r() * 3)}.${len === 32 ? Math.floor(r() * 4) : 0}`,
        prefix_len: len === 8 ? 8 : len,
      },
    };
    // Same meaning (OR with what never matches), but a form the CIDR index does not take.
    return indexable ? cidr : { or_ids: { ids: [cidr, { not_id: { any: true } }] } };
  }
  if (kind < 0.9) return { any: true };
  return { or_ids: { ids: [principal(r, indexable), principal(r, indexable)] } };
}

function config(seed: number, indexable: boolean): Obj[] {
  const r = rng(seed);
  const filter = (action: 'ALLOW' | 'DENY', n: number): Obj => {
    const policies: Obj = {};
    for (let i = 0; i < n; i++) {
      const principals = Array.from({ length: 1 + Math.floor(r() * 2) }, () => principal(r, indexable));
      const port = 8000 + Math.floor(r() * 3);
      policies[`p${String(i).padStart(3, '0')}`] = {
        permissions: [r() < 0.5 ? { any: true } : { destination_port: port }],
        principals:
          r() < 0.3
            ? [
                {
                  and_ids: {
                    ids: [principals[0]!, { direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: 16 } }],
                  },
                },
              ]
            : principals,
      };
    }
    return {
      name: `envoy.filters.network.rbac.${action.toLowerCase()}`,
      typed_config: { rules: { action, policies } },
    };
  };
  return [filter('DENY', 15), filter('ALLOW', 60)];
}

test('the identity and CIDR index never changes a decision (random configs, 4,000 decisions)', () => {
  for (let seed = 1; seed <= 8; seed++) {
    const indexed = compileRbacFilters(config(seed, true), 'l4');
    const scanned = compileRbacFilters(config(seed, false), 'l4');
    const r = rng(seed * 7919);
    for (let k = 0; k < 500; k++) {
      const attrs: RbacAttributes = {
        ...(r() < 0.85 ? { principal: id(NS[Math.floor(r() * 3)]!, SA[Math.floor(r() * 4)]!) } : {}),
        // Mostly IPv4 in and around the CIDRs; sometimes IPv6 or none (every CIDR policy is then evaluated).
        ...(r() < 0.9
          ? { sourceIp: r() < 0.9 ? `10.0.${Math.floor(r() * 4)}.${Math.floor(r() * 6)}` : '::ffff:10.0.1.2' }
          : r() < 0.5
            ? { sourceIp: 'fd00::1' }
            : {}),
        destinationPort: 8000 + Math.floor(r() * 3),
      };
      const a = indexed.evaluate(attrs);
      const b = scanned.evaluate(attrs);
      assert.deepEqual(
        { allowed: a.allowed, policy: a.policy, reason: a.reason },
        { allowed: b.allowed, policy: b.policy, reason: b.reason },
        `seed ${seed}, decision ${k}: ${JSON.stringify(attrs)}`,
      );
    }
  }
});
