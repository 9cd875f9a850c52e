// Pod address arithmetic, pure: a cluster CIDR split into one pod CIDR per node, and the
// addresses of a pod CIDR that can be given to pods. IPv4 only for now.
import { isIPv4 } from 'node:net';
import { cidrContainsIp, ipToBigInt, parseCidr, type Cidr } from '../../../util/cidr.js';

/** The longest pod CIDR prefix: a /30 leaves one pod address next to network, gateway and broadcast. */
export const MAX_POD_PREFIX = 30;

export function ipv4ToText(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
}

function ipv4Value(ip: string): bigint {
  return ipToBigInt(ip)!.value;
}

/** An IPv4 CIDR in canonical form (no host bits set), or a message saying what is wrong. */
export function parseIpv4Cidr(text: string): Cidr | string {
  const example = 'an IPv4 CIDR like 10.244.1.0/24';
  const c = parseCidr(text);
  if (typeof c === 'string') return `expected ${example}, got ${JSON.stringify(text)}: ${c}`;
  if (c.family === 6) return `${JSON.stringify(text)} is IPv6: IPv6 is not supported yet, expected ${example}`;
  const canonical = `${ipv4ToText(c.network)}/${c.prefix}`;
  if (canonical !== text)
    return `${JSON.stringify(text)} has host bits set (or is not in canonical form): did you mean ${canonical}?`;
  return c;
}

/**
 * Splits `clusterCidr` into consecutive /`maskSize` pod CIDRs, one per node in the order given
 * (the first node gets the first block). Throws when the mask or the node count does not fit.
 */
export function nodePodCidrs(clusterCidr: string, maskSize: number, nodeNames: readonly string[]): Map<string, string> {
  const cluster = parseIpv4Cidr(clusterCidr);
  if (typeof cluster === 'string') throw new Error(`cluster CIDR: ${cluster}`);
  if (!Number.isInteger(maskSize) || maskSize <= cluster.prefix || maskSize > MAX_POD_PREFIX)
    throw new Error(
      `node pod CIDR mask size: expected an integer from ${cluster.prefix + 1} to ${MAX_POD_PREFIX} ` +
        `(longer than the cluster's /${cluster.prefix}, short enough to leave pod addresses), got ${maskSize}`,
    );
  const blocks = 1n << BigInt(maskSize - cluster.prefix);
  if (BigInt(nodeNames.length) > blocks)
    throw new Error(
      `${clusterCidr} holds ${blocks} pod CIDRs of /${maskSize} but there are ${nodeNames.length} nodes: ` +
        `use a larger cluster CIDR or a longer mask size`,
    );
  const blockSize = 1n << BigInt(32 - maskSize);
  const out = new Map<string, string>();
  nodeNames.forEach((name, i) => {
    if (out.has(name)) throw new Error(`node ${JSON.stringify(name)} is listed twice`);
    out.set(name, `${ipv4ToText(cluster.network + BigInt(i) * blockSize)}/${maskSize}`);
  });
  return out;
}

export interface PodRangeOptions {
  /** Default: the first host address. */
  readonly gateway?: string;
  /** First address given to pods; default the first host address (the gateway is skipped). */
  readonly rangeStart?: string;
  /** Last address given to pods; default the last host address (before broadcast). */
  readonly rangeEnd?: string;
}

/** The addresses of one pod CIDR; numbers are IPv4 addresses as integers. */
export interface PodRange {
  readonly cidr: Cidr;
  readonly gateway: bigint;
  readonly first: bigint;
  readonly last: bigint;
  /** How many addresses can be given to pods: [first, last] without the gateway. */
  readonly size: number;
}

/** Thrown for an invalid pod CIDR or range; `field` is the option at fault. */
export class PodRangeError extends Error {
  readonly field: 'podCIDR' | keyof PodRangeOptions;
  constructor(field: PodRangeError['field'], msg: string) {
    super(msg);
    this.name = 'PodRangeError';
    this.field = field;
  }
}

/** The pod CIDR's gateway and allocatable addresses: every host address but the gateway (network and broadcast never). */
export function podRange(podCidr: string, opts: PodRangeOptions = {}): PodRange {
  const cidr = parseIpv4Cidr(podCidr);
  if (typeof cidr === 'string') throw new PodRangeError('podCIDR', cidr);
  if (cidr.prefix > MAX_POD_PREFIX)
    throw new PodRangeError(
      'podCIDR',
      `${podCidr} has no address for pods after network, gateway and broadcast: use /${MAX_POD_PREFIX} or shorter`,
    );
  const network = cidr.network;
  const broadcast = network + (1n << BigInt(32 - cidr.prefix)) - 1n;
  // A host address of this CIDR (not network, not broadcast), or the reason it is not.
  const host = (field: keyof PodRangeOptions, ip: string): bigint => {
    if (!isIPv4(ip)) throw new PodRangeError(field, `expected an IPv4 address, got ${JSON.stringify(ip)}`);
    if (!cidrContainsIp(cidr, ip)) throw new PodRangeError(field, `${ip} is not inside ${podCidr}`);
    const v = ipv4Value(ip);
    if (v === network || v === broadcast)
      throw new PodRangeError(field, `${ip} is the ${v === network ? 'network' : 'broadcast'} address of ${podCidr}`);
    return v;
  };
  const gateway = opts.gateway !== undefined ? host('gateway', opts.gateway) : network + 1n;
  const first = opts.rangeStart !== undefined ? host('rangeStart', opts.rangeStart) : network + 1n;
  const last = opts.rangeEnd !== undefined ? host('rangeEnd', opts.rangeEnd) : broadcast - 1n;
  if (first > last)
    throw new PodRangeError('rangeEnd', `${ipv4ToText(last)} is before rangeStart ${ipv4ToText(first)}`);
  const size = Number(last - first + 1n) - (gateway >= first && gateway <= last ? 1 : 0);
  if (size < 1) throw new PodRangeError('rangeEnd', `${ipv4ToText(first)}-${ipv4ToText(last)} holds only the gateway`);
  return { cidr, gateway, first, last, size };
}

/** True when `ip` may be given to a pod. */
export function isAllocatable(r: PodRange, ip: string): boolean {
  if (!isIPv4(ip)) return false;
  const v = ipv4Value(ip);
  return v >= r.first && v <= r.last && v !== r.gateway;
}

/** The allocatable addresses after `after` (exclusive), wrapping around once: round-robin from the last one given. */
export function* allocatableFrom(r: PodRange, after?: string): Generator<string> {
  const a = after !== undefined && isAllocatable(r, after) ? ipv4Value(after) : r.last;
  const span = r.last - r.first + 1n;
  for (let i = 1n; i <= span; i++) {
    const v = r.first + ((a - r.first + i) % span);
    if (v !== r.gateway) yield ipv4ToText(v);
  }
}
