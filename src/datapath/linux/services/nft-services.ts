// The service load-balancing ruleset (kube-proxy's nftables mode, without kube-proxy): one
// nft script that replaces table `ip trellis-services` in a single transaction. Packets to a
// VIP.proto.port are looked up in the `services` verdict map in the nat prerouting (pods,
// routed through the node) and output (the node's own processes) hooks, which go to the
// service port's chain: ClientIP affinity first, else `numgen random` over the endpoints'
// chains, each a DNAT to address:targetPort. Only a connection's first packet meets these
// rules; conntrack keeps the DNAT for the rest, so replacing the table never moves or breaks
// an established connection. Pure: the same services give the same script.
import type { ServiceModel } from '../../../model/mesh-model.js';
import { compareStrings } from '../../../util/compare.js';
import type { AffinityEntries } from './affinity-carry.js';
import { planServices, type EndpointPlan, type PlanOptions, type ServicePortPlan, type ServicesPlan } from './plan.js';

export const TABLE_FAMILY = 'ip';
export const TABLE_NAME = 'trellis-services';

/**
 * The packet mark bit that asks for masquerading (kube-proxy's mark-for-masquerade; it uses
 * 0x4000, this one is distinct so both can run side by side while migrating).
 */
export const MASQUERADE_MARK = 0x2000;

/**
 * Numeric priorities: nft 1.0.6 accepts the names "dstnat"/"srcnat" only on the hooks where
 * they are standard (prerouting, postrouting), not on output.
 */
const PRIORITY_DSTNAT = -100;
const PRIORITY_SRCNAT = 100;
/** Filtering sees the packet before DNAT (its VIP as destination), as kube-proxy's does. */
const PRIORITY_FILTER = PRIORITY_DSTNAT - 10;

const MARK = `0x${MASQUERADE_MARK.toString(16).padStart(8, '0')}`;
const TUPLE_TYPE = 'ipv4_addr . inet_proto . inet_service';
const LOOKUP = 'ip daddr . meta l4proto . th dport';

export interface ScriptOptions extends PlanOptions {
  /** Affinity entries to keep from the table being replaced (affinityEntriesOf). */
  readonly affinity?: AffinityEntries;
}

/** A comment nft can hold (quoted; no quotes or backslashes inside; at most 128 bytes). */
function comment(text: string): string {
  return `comment "${text.replace(/["\\]/g, '_').slice(0, 120)}"`;
}

function block(head: string, lines: readonly string[]): string[] {
  return [`\t${head} {`, ...lines.map((l) => `\t\t${l}`), '\t}'];
}

function elements(entries: readonly string[]): string[] {
  return entries.length === 0 ? [] : ['elements = {', ...entries.map((e) => `\t${e},`), '}'];
}

function serviceElements(plan: ServicesPlan, withEndpoints: boolean): string[] {
  return plan.ports
    .filter((p) => p.endpoints.length > 0 === withEndpoints)
    .flatMap((p) =>
      p.frontends.map((f) =>
        withEndpoints
          ? `${f.address} . ${p.protocol} . ${f.port} : goto ${p.chain}`
          : `${f.address} . ${p.protocol} . ${f.port} ${comment(p.key)} : goto reject-chain`,
      ),
    );
}

/** Fixed chains: hooks, rejection of service ports without endpoints, masquerading. */
function baseChains(): string[] {
  const newToVip = `ct state new ${LOOKUP} vmap @no-endpoint-services`;
  return [
    // kube-proxy's answer for a service without endpoints: ICMP port unreachable, so clients
    // fail at once (ECONNREFUSED) instead of waiting for a timeout.
    ...block('chain reject-chain', ['reject with icmp type port-unreachable']),
    // Rejecting in prerouting needs kernel >= 5.9 (kube-proxy, for older kernels, uses input and
    // forward); here it works whether or not the node has a route for the service CIDR.
    ...block('chain filter-prerouting', [
      `type filter hook prerouting priority ${PRIORITY_FILTER}; policy accept;`,
      newToVip,
    ]),
    ...block('chain filter-output', [`type filter hook output priority ${PRIORITY_FILTER}; policy accept;`, newToVip]),
    ...block('chain nat-prerouting', [
      `type nat hook prerouting priority ${PRIORITY_DSTNAT}; policy accept;`,
      `${LOOKUP} vmap @services`,
    ]),
    ...block('chain nat-output', [
      `type nat hook output priority ${PRIORITY_DSTNAT}; policy accept;`,
      `${LOOKUP} vmap @services`,
    ]),
    ...block('chain nat-postrouting', [
      `type nat hook postrouting priority ${PRIORITY_SRCNAT}; policy accept;`,
      'jump masquerading',
    ]),
    ...block('chain mark-for-masquerade', [`meta mark set meta mark | ${MARK}`]),
    // The mark is cleared before masquerading so it does not leak into later processing.
    ...block('chain masquerading', [
      `meta mark & ${MARK} == 0 return`,
      `meta mark set meta mark ^ ${MARK}`,
      'masquerade fully-random',
    ]),
  ];
}

function affinitySet(ep: EndpointPlan, timeout: number, carried: AffinityEntries | undefined): string[] {
  const live = [...(carried?.get(ep.affinitySet!) ?? [])]
    .sort((a, b) => compareStrings(a.address, b.address))
    .map((e) => `${e.address} expires ${Math.min(e.expiresSeconds, timeout)}s`);
  // "dynamic": the packet path adds to it (update @set); "timeout": entries expire on their own.
  return block(`set ${ep.affinitySet!}`, [
    'type ipv4_addr',
    'flags dynamic,timeout',
    `timeout ${timeout}s`,
    ...elements(live),
  ]);
}

/** Affinity first (a known client goes back to its endpoint), then a random pick by weight. */
function serviceChain(p: ServicePortPlan): string[] {
  const sticky = p.endpoints
    .filter((ep) => ep.affinitySet !== undefined)
    .map((ep) => `ip saddr @${ep.affinitySet} goto ${ep.chain}`);
  const slots = p.endpoints.flatMap((ep) => Array.from({ length: ep.slots }, () => ep.chain));
  const vmap = slots.map((chain, i) => `${i} : goto ${chain}`).join(', ');
  return block(`chain ${p.chain}`, [comment(p.key), ...sticky, `numgen random mod ${slots.length} vmap { ${vmap} }`]);
}

function endpointChain(p: ServicePortPlan, ep: EndpointPlan): string[] {
  return block(`chain ${ep.chain}`, [
    comment(`${p.key} -> ${ep.address}:${ep.port}`),
    // Hairpin: a pod picked as the endpoint of its own connection would see itself as the
    // source and answer itself directly; masqueraded, the reply comes back through the node.
    `ip saddr ${ep.address} jump mark-for-masquerade`,
    // Records the client, or refreshes its timeout, on every new connection it makes.
    ...(ep.affinitySet ? [`update @${ep.affinitySet} { ip saddr }`] : []),
    `meta l4proto ${p.protocol} dnat to ${ep.address}:${ep.port}`,
  ]);
}

/** The script for a plan (see planServices). */
export function renderServices(plan: ServicesPlan, affinity?: AffinityEntries): string {
  const table = `${TABLE_FAMILY} ${TABLE_NAME}`;
  const balanced = plan.ports.filter((p) => p.endpoints.length > 0);
  const body = [
    `\t${comment('Trellis: service VIPs load balanced to endpoints (kube-proxy nftables mode)')}`,
    ...block('map services', [`type ${TUPLE_TYPE} : verdict`, ...elements(serviceElements(plan, true))]),
    ...block('map no-endpoint-services', [`type ${TUPLE_TYPE} : verdict`, ...elements(serviceElements(plan, false))]),
    ...balanced.flatMap((p) =>
      p.affinityTimeoutSeconds === undefined
        ? []
        : p.endpoints.flatMap((ep) => affinitySet(ep, p.affinityTimeoutSeconds!, affinity)),
    ),
    ...baseChains(),
    ...balanced.flatMap((p) => [...serviceChain(p), ...p.endpoints.flatMap((ep) => endpointChain(p, ep))]),
  ];
  // "add" makes the "delete" valid when the table does not exist yet; all three commit together.
  return [`add table ${table}`, `delete table ${table}`, `table ${table} {`, ...body, '}', ''].join('\n');
}

/** The model's services -> the script that replaces the table with their load balancing. */
export function servicesScript(services: readonly ServiceModel[], opts: ScriptOptions = {}): string {
  return renderServices(planServices(services, opts), opts.affinity);
}
