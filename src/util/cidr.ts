import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  /** Network address with host bits cleared. */
  readonly network: bigint;
  readonly prefix: number;
  readonly text: string;
}

export function ipToBigInt(ip: string): { family: 4 | 6; value: bigint } | undefined {
  if (isIPv4(ip)) {
    let v = 0n;
    for (const part of ip.split('.')) v = (v << 8n) | BigInt(Number(part));
    return { family: 4, value: v };
  }
  if (isIPv6(ip)) {
    let text = ip;
    // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
    if (v4) {
      const n = ipToBigInt(v4[1]!)!.value;
      text = text.slice(0, -v4[1]!.length) + ((n >> 16n) & 0xffffn).toString(16) + ':' + (n & 0xffffn).toString(16);
    }
    const [head, tail] = text.split('::') as [string, string | undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
    let v = 0n;
    for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
    return { family: 6, value: v };
  }
  return undefined;
}

/** Parses "a.b.c.d/n" or "x::y/n". Returns a message when invalid. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  if (slash < 0) return `${JSON.stringify(text)} has no prefix length`;
  const addr = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const ip = ipToBigInt(addr);
  if (!ip) return `${JSON.stringify(addr)} is not an IPv4 or IPv6 address`;
  const bits = ip.family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    return `prefix length ${JSON.stringify(prefixText)} is not 0-${bits}`;
  }
  const prefix = Number(prefixText);
  const hostBits = BigInt(bits - prefix);
  const network = (ip.value >> hostBits) << hostBits;
  return { family: ip.family, network, prefix, text };
}

/** True when `inner` lies entirely inside `outer`. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefix < outer.prefix) return false;
  const bits = outer.family === 4 ? 32 : 128;
  const shift = BigInt(bits - outer.prefix);
  return inner.network >> shift === outer.network >> shift;
}

export function cidrContainsIp(outer: Cidr, ip: string): boolean {
  const v = ipToBigInt(ip);
  if (!v || v.family !== outer.family) return false;
  const bits = outer.family === 4 ? 32 : 128;
  const shift = BigInt(bits - outer.prefix);
  return v.value >> shift === outer.network >> shift;
}
