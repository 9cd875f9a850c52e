// A node's policy maps as one nft script for table `inet trellis-policy`: applied with
// `nft -f -` it replaces the previous policy in a single transaction, so a packet meets the old
// policy or the new one, never a mix. Pure and deterministic.
//
// Lookups are constant-time whatever the number of rules (Cilium's design, in nftables):
//   ipcache          interval map  address -> identity (disjoint fragments, see ipcache.ts)
//   ingress_allow    set (hash)    dst pod IP . src identity . l4proto . dport
//   egress_allow     set (hash)    src pod IP . dst identity . l4proto . dport
//   *_allow_ranges   interval set  the same with a port range (endPort, Cilium ranges)
// Single ports and ranges live apart because a concatenated set with `flags interval` is a
// pipapo set in the kernel, whose lookup grows with its size (measured: +250 µs per new
// connection at 10,000 elements); a plain set is a hash, constant-time. Ranges are few.
//   *_isolated       set           pod IPs some policy isolates in that direction
//   *_drops          dynamic set   src . dst . l4proto . dport, with a counter per element
// The forward hook accepts established/related traffic first, so only a connection's first
// packets are looked up (and counted when dropped). The identity is carried in the packet mark
// between the ipcache lookup and the set lookup (nft 1.0.6 cannot put a map lookup inside a
// concatenation); that happens only in the sub-chains of isolated pods' new connections.
//
// The drop sets are declared with `add set` and never deleted, so an update keeps the drops
// counted so far; everything else is deleted and declared again in the same transaction.
// Node-originated traffic (output hook) and pod-to-node traffic (input hook) are not filtered:
// Kubernetes lets a node reach its pods, and the node proxy is how pods reach the mesh.
import type { AllowEntry, NodePolicy, WorkloadPolicy } from './policy-map.js';
import { numberToIpv4 } from './ipcache.js';

export const POLICY_TABLE = 'trellis-policy';
export const POLICY_FAMILY = 'inet';
export const DROP_SETS = { ingress: 'ingress_drops', egress: 'egress_drops' } as const;
/** Bounds the kernel memory drop accounting can take; new drops past it are dropped uncounted. */
export const DROP_SET_SIZE = 65536;

const T = `${POLICY_FAMILY} ${POLICY_TABLE}`;
const ALLOW_TYPE = 'ipv4_addr . mark . inet_proto . inet_service';
const DROP_TYPE = 'ipv4_addr . ipv4_addr . inet_proto . inet_service';

/** The declarations replaced on every apply (name -> declaration body). */
const REPLACED: readonly [kind: 'map' | 'set', name: string, decl: string][] = [
  ['map', 'ipcache', 'type ipv4_addr : mark; flags interval;'],
  ['set', 'ingress_allow', `type ${ALLOW_TYPE};`],
  ['set', 'egress_allow', `type ${ALLOW_TYPE};`],
  ['set', 'ingress_allow_ranges', `type ${ALLOW_TYPE}; flags interval;`],
  ['set', 'egress_allow_ranges', `type ${ALLOW_TYPE}; flags interval;`],
  ['set', 'ingress_isolated', 'type ipv4_addr;'],
  ['set', 'egress_isolated', 'type ipv4_addr;'],
];
const CHAINS = ['forward', 'ingress', 'egress'] as const;

const range = (from: number, to: number): string => (from === to ? `${from}` : `${from}-${to}`);

function elements(items: readonly string[]): string {
  return items.length ? ` elements = {\n    ${items.join(',\n    ')}\n  }` : '';
}

/** The allow entries with one port (ranges: false) or with a port range (ranges: true). */
function allowElements(ps: readonly WorkloadPolicy[], ranges: boolean): string[] {
  const out: string[] = [];
  for (const p of ps)
    for (const e of p.allow as AllowEntry[])
      if ((e.from !== e.to) === ranges)
        out.push(`${p.workload.address} . ${e.identity} . ${e.proto} . ${range(e.from, e.to)}`);
  return out;
}

/** The chain that drops what a direction's allow set lacks, counting it per flow. */
function directionChain(dir: 'ingress' | 'egress'): string[] {
  const [pod, peer] = dir === 'ingress' ? ['daddr', 'saddr'] : ['saddr', 'daddr'];
  const drops = `@${DROP_SETS[dir]}`;
  return [
    `meta mark set ip ${peer} map @ipcache`,
    `ip ${pod} . meta mark . meta l4proto . th dport @${dir}_allow return`,
    `ip ${pod} . meta mark . meta l4proto . th dport @${dir}_allow_ranges return`,
    `meta l4proto { tcp, udp, sctp } update ${drops} { ip saddr . ip daddr . meta l4proto . th dport } drop`,
    // Protocols without ports (ICMP...): counted with port 0.
    `update ${drops} { ip saddr . ip daddr . meta l4proto . 0 } drop`,
  ];
}

/** The whole script: applying it is one transaction. */
export function renderPolicyScript(policy: NodePolicy): string {
  const lines: string[] = [`add table ${T}`];
  for (const name of Object.values(DROP_SETS))
    lines.push(`add set ${T} ${name} { type ${DROP_TYPE}; size ${DROP_SET_SIZE}; flags dynamic; counter; }`);
  lines.push(`add chain ${T} forward { type filter hook forward priority filter; policy accept; }`);
  for (const c of CHAINS.slice(1)) lines.push(`add chain ${T} ${c}`);
  // Rules go first (they reference the sets), then the sets: "add" then "delete" works whether or not it existed.
  for (const c of CHAINS) lines.push(`flush chain ${T} ${c}`);
  for (const [kind, name, decl] of REPLACED)
    lines.push(`add ${kind} ${T} ${name} { ${decl} }`, `delete ${kind} ${T} ${name}`);

  const ipcache = policy.ipcache.fragments.map((f) => `${range2(f.start, f.end)} : ${f.identity}`);
  const isolated = (ps: readonly WorkloadPolicy[]) => ps.map((p) => p.workload.address);
  const body: Record<string, string[]> = {
    ipcache,
    ingress_allow: allowElements(policy.ingress, false),
    egress_allow: allowElements(policy.egress, false),
    ingress_allow_ranges: allowElements(policy.ingress, true),
    egress_allow_ranges: allowElements(policy.egress, true),
    ingress_isolated: isolated(policy.ingress),
    egress_isolated: isolated(policy.egress),
  };
  lines.push(`table ${T} {`);
  for (const [kind, name, decl] of REPLACED) lines.push(`  ${kind} ${name} { ${decl}${elements(body[name] ?? [])} }`);
  const chains: Record<(typeof CHAINS)[number], string[]> = {
    forward: [
      'ct state established,related accept',
      'ip saddr @egress_isolated jump egress',
      'ip daddr @ingress_isolated jump ingress',
    ],
    ingress: directionChain('ingress'),
    egress: directionChain('egress'),
  };
  for (const c of CHAINS) lines.push(`  chain ${c} {`, ...chains[c].map((r) => `    ${r}`), '  }');
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

function range2(start: number, end: number): string {
  return start === end ? numberToIpv4(start) : `${numberToIpv4(start)}-${numberToIpv4(end)}`;
}

/** The script that removes the policy (and its drop counts). */
export function renderRemoveScript(): string {
  return `add table ${T}\ndelete table ${T}\n`;
}
