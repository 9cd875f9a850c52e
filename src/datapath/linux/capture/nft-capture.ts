// Transparent capture as an nftables script (pure: options in, text out, deterministic): the
// table `ip trellis-capture`, replaced whole in one transaction, whose nat prerouting chain
// redirects pods' outbound TCP to the node proxy's capture port (Istio ambient's model, with
// the node's netfilter standing in for the in-pod rules). The proxy reads where each
// connection was going with SO_ORIGINAL_DST (original-dst.ts).
//
// - Pods are recognised by the interface their packets enter the node through: every
//   host-side veth trellis-cni creates is named "trl..." (hostVethName), so no pod address
//   list has to be kept in sync.
// - Only prerouting is hooked, never output: nothing the node originates is captured, so the
//   proxy's own upstream connections (to pods, to other nodes, HBONE) cannot loop back into it.
// - Pods keep reaching the proxy's own ports on the node directly (HBONE, the capture ports,
//   metrics): capturing a pod's HBONE or metrics connection would hand the proxy a connection
//   to itself.
// - Inbound (off by default): plaintext TCP arriving from outside the node for a local pod is
//   redirected to the inbound capture port. "For a local pod" is the route lookup the kernel
//   would do (fib daddr oifname "trl*"), again with no address list; HBONE is addressed to the
//   node (:15008), not to a pod, so it never matches, and a pod's own port 15008 is left alone
//   for meshes that address HBONE to pods.
import { cidrContains, parseCidr, type Cidr } from '../../../util/cidr.js';

export const CAPTURE_TABLE = 'trellis-capture';
/** Host-side pod veths (trellis-cni's hostVethName). */
export const POD_INTERFACE_PREFIX = 'trl';

export interface CaptureOptions {
  /** The outbound capture listener; default 15001. */
  readonly outboundPort?: number;
  /** The inbound capture listener; default 15006. */
  readonly inboundPort?: number;
  /** The node proxy's HBONE port; default 15008. */
  readonly hbonePort?: number;
  /** The node proxy's metrics port; default 15020. */
  readonly metricsPort?: number;
  /** Destinations pods reach directly, never captured (IPv4 CIDRs or addresses). */
  readonly excludeCidrs?: readonly string[];
  /** Destination ports pods reach directly, never captured (e.g. 53 for a node-local resolver). */
  readonly excludePorts?: readonly number[];
  /** Also capture plaintext TCP from outside the node to local pods; default false. */
  readonly inbound?: boolean;
}

function ipv4Text(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
}

function port(what: string, p: number, problems: string[]): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) problems.push(`${what}: ${p} is not a port (1-65535)`);
  return p;
}

/** IPv4 CIDRs normalized (host bits cleared), those inside another dropped, sorted. */
function cidrs(list: readonly string[], problems: string[]): string[] {
  const parsed: Cidr[] = [];
  for (const text of list) {
    const c = parseCidr(text.includes('/') ? text : `${text}/32`);
    if (typeof c === 'string') problems.push(`excludeCidrs: ${c}`);
    else if (c.family !== 4) problems.push(`excludeCidrs: ${text} is not IPv4 (capture is IPv4 only)`);
    else parsed.push(c);
  }
  // nft refuses overlapping intervals in one set; a CIDR inside another adds nothing.
  const kept = parsed.filter(
    (c, i) => !parsed.some((o, j) => cidrContains(o, c) && (o.prefix < c.prefix || (o.prefix === c.prefix && j < i))),
  );
  kept.sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : a.prefix - b.prefix));
  return kept.map((c) => `${ipv4Text(c.network)}/${c.prefix}`);
}

function set(items: readonly (string | number)[]): string {
  return items.length === 1 ? String(items[0]) : `{ ${items.join(', ')} }`;
}

/** The whole `ip trellis-capture` table; apply with applyNft (one transaction). Throws on bad options. */
export function captureNftScript(opts: CaptureOptions = {}): string {
  const problems: string[] = [];
  const outbound = port('outboundPort', opts.outboundPort ?? 15001, problems);
  const inbound = port('inboundPort', opts.inboundPort ?? 15006, problems);
  const hbone = port('hbonePort', opts.hbonePort ?? 15008, problems);
  const metrics = port('metricsPort', opts.metricsPort ?? 15020, problems);
  const proxyPorts = [...new Set([hbone, outbound, inbound, metrics])].sort((a, b) => a - b);
  const excludePorts = [...new Set((opts.excludePorts ?? []).map((p) => port('excludePorts', p, problems)))].sort(
    (a, b) => a - b,
  );
  const excludeCidrs = cidrs(opts.excludeCidrs ?? [], problems);
  if (problems.length > 0) throw new Error(`capture rules: ${problems.join('; ')}`);

  const pods = `"${POD_INTERFACE_PREFIX}*"`;
  const lines = [
    `# Trellis transparent capture (generated). The first two commands make the replace valid`,
    `# whether or not the table exists; the whole script is one transaction.`,
    `table ip ${CAPTURE_TABLE} {}`,
    `delete table ip ${CAPTURE_TABLE}`,
    `table ip ${CAPTURE_TABLE} {`,
    `\tchain prerouting {`,
    // Before the services table (dstnat): a captured connection goes to the proxy, not to a DNAT.
    `\t\ttype nat hook prerouting priority dstnat - 5; policy accept;`,
    `\t\tiifname ${pods} meta l4proto tcp jump pod-outbound`,
    ...(opts.inbound
      ? [
          `\t\t# plaintext from outside the node to a local pod (HBONE goes to the node)`,
          `\t\tiifname != ${pods} iifname != "lo" fib daddr oifname ${pods} tcp dport != ${hbone} redirect to :${inbound}`,
        ]
      : []),
    `\t}`,
    `\tchain pod-outbound {`,
    `\t\t# the node proxy's own ports on the node: HBONE, capture, metrics`,
    `\t\tfib daddr type local tcp dport ${set(proxyPorts)} return`,
    ...(excludeCidrs.length > 0 ? [`\t\tip daddr ${set(excludeCidrs)} return`] : []),
    ...(excludePorts.length > 0 ? [`\t\ttcp dport ${set(excludePorts)} return`] : []),
    `\t\tmeta l4proto tcp redirect to :${outbound}`,
    `\t}`,
    `}`,
  ];
  return lines.join('\n') + '\n';
}
