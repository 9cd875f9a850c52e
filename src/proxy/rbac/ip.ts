// IP addresses as 32-bit words (one for IPv4, four for IPv6) so per-connection CIDR checks
// are a few integer operations: no BigInt, and each address string is parsed once (cached).
import { isIPv4, isIPv6 } from 'node:net';

export interface Ip {
  readonly v6: boolean;
  /** IPv4: [u32]; IPv6: four u32 words, most significant first. */
  readonly words: readonly number[];
}

export interface CidrMatch {
  readonly v6: boolean;
  readonly net: readonly number[];
  readonly mask: readonly number[];
}

function v4Word(s: string): number {
  const p = s.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

/** Parses an address literal (zone ids dropped); undefined when it is not one. */
export function parseIp(text: string): Ip | undefined {
  if (isIPv4(text)) return { v6: false, words: [v4Word(text)] };
  const zone = text.indexOf('%');
  const s = zone >= 0 ? text.slice(0, zone) : text;
  if (!isIPv6(s)) return undefined;
  const hextets: number[] = [];
  const [head, tail] = s.split('::') as [string, string | undefined];
  const part = (t: string): number[] => {
    if (t === '') return [];
    const out: number[] = [];
    for (const g of t.split(':')) {
      if (g.includes('.')) {
        const w = v4Word(g); // embedded IPv4 tail (::ffff:1.2.3.4)
        out.push(w >>> 16, w & 0xffff);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  hextets.push(...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t);
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2) words.push(((hextets[i]! << 16) | hextets[i + 1]!) >>> 0);
  return { v6: true, words };
}

/** ::ffff:a.b.c.d (what a dual-stack Node socket reports for IPv4 peers) is the IPv4 peer. */
function unmap(ip: Ip): Ip {
  const w = ip.words;
  return ip.v6 && w[0] === 0 && w[1] === 0 && w[2] === 0xffff ? { v6: false, words: [w[3]!] } : ip;
}

// Addresses recur (one peer, many requests): parse each once. Bounded; cleared when full.
const CACHE_LIMIT = 4096;
const cache = new Map<string, Ip | null>();
let lastText: string | undefined;
let lastIp: Ip | null = null;

/** The attribute address, IPv4-mapped IPv6 normalized to IPv4; undefined when unparseable. */
export function attributeIp(text: string): Ip | undefined {
  if (text === lastText) return lastIp ?? undefined;
  let ip = cache.get(text);
  if (ip === undefined) {
    const parsed = parseIp(text);
    ip = parsed ? unmap(parsed) : null;
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(text, ip);
  }
  lastText = text;
  lastIp = ip;
  return ip ?? undefined;
}

function maskWord(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

/** Envoy CidrRange; an IPv6 range inside ::ffff:0:0/96 becomes its IPv4 equivalent (see unmap). */
export function compileCidr(address: string, prefixLen: number): CidrMatch | string {
  const parsed = parseIp(address);
  if (!parsed) return `address_prefix ${JSON.stringify(address)} is not an IP address`;
  const bits = parsed.v6 ? 128 : 32;
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > bits)
    return `prefix_len ${prefixLen} is not 0-${bits} for ${address}`;
  let ip = parsed;
  let len = prefixLen;
  const w = parsed.words;
  if (parsed.v6 && prefixLen >= 96 && w[0] === 0 && w[1] === 0 && w[2] === 0xffff) {
    ip = { v6: false, words: [w[3]!] };
    len = prefixLen - 96;
  }
  const mask = ip.words.map((_, i) => maskWord(len - 32 * i));
  return { v6: ip.v6, mask, net: ip.words.map((x, i) => (x & mask[i]!) >>> 0) };
}

export function inCidr(ip: Ip, c: CidrMatch): boolean {
  if (ip.v6 !== c.v6) return false;
  const w = ip.words;
  for (let i = 0; i < w.length; i++) if ((w[i]! & c.mask[i]!) >>> 0 !== c.net[i]) return false;
  return true;
}
