// The ipcache (Cilium's name): every IPv4 address -> the numeric security identity policy
// decisions are made on. Identities are the model's workloads (by their SPIFFE ID and labels,
// Cilium's label identities), every CIDR the policies mention, and "world" (everything else).
// nftables interval maps reject overlapping elements, so the address space is cut into
// disjoint intervals, each carrying the identity of its most specific prefix (a pod's /32
// beats any policy CIDR). Pure: a function of the model's workloads and the policy CIDRs.
import type { WorkloadModel } from '../../../model/mesh-model.js';

/** Cilium's reserved:world. */
export const WORLD_IDENTITY = 2;
/** Cilium's first cluster-local identity: workload identities are numbered from here. */
export const FIRST_WORKLOAD_IDENTITY = 256;
/** Cilium's local (CIDR) identity scope (1 << 24): CIDR identities are numbered from here. */
export const FIRST_CIDR_IDENTITY = 0x1000000;

const MAX_IPV4 = 0xffffffff;

export interface Identity {
  readonly id: number;
  readonly kind: 'workload' | 'cidr' | 'world';
  /** The SPIFFE ID (workload), "cidr:10.0.0.0/8", or "world": how flow records name it. */
  readonly name: string;
  /** The SPIFFE ID the policy engine matches (workload identities only). */
  readonly principal?: string;
  /** The policy CIDR (cidr identities), "0.0.0.0/0" for world. */
  readonly cidr?: string;
  /** Workload ids ("WorkloadEntry/ns/name") sharing it, sorted. */
  readonly workloads: readonly string[];
  /** Addresses to evaluate the policy engine with: every member's pod IP, or one address of each CIDR fragment. */
  readonly samples: readonly string[];
}

/** [start, end] inclusive, as 32-bit unsigned numbers. */
export interface Fragment {
  readonly start: number;
  readonly end: number;
  readonly identity: number;
}

export interface Ipcache {
  /** Sorted by id. */
  readonly identities: readonly Identity[];
  /** Disjoint, sorted, covering 0.0.0.0-255.255.255.255, adjacent fragments of one identity merged. */
  readonly fragments: readonly Fragment[];
  /** Pod IP -> workload id (the first by id when two claim one address). */
  readonly workloadByAddress: ReadonlyMap<string, string>;
  readonly problems: readonly string[];
}

export function ipv4ToNumber(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** "10.0.0.0/8" -> [start, end]; the address is masked (as the policy engine does); undefined when not IPv4. */
export function ipv4Range(cidr: string): { start: number; end: number; len: number } | undefined {
  const [addr, lenText] = cidr.split('/') as [string, string | undefined];
  const n = ipv4ToNumber(addr);
  const len = lenText === undefined ? 32 : Number(lenText);
  if (n === undefined || !Number.isInteger(len) || len < 0 || len > 32) return undefined;
  const size = 2 ** (32 - len);
  const start = Math.floor(n / size) * size;
  return { start, end: start + size - 1, len };
}

const canonical = (r: { start: number; len: number }): string => `${numberToIpv4(r.start)}/${r.len}`;

/** One prefix to place: its range, specificity (pods rank above any CIDR) and identity key. */
interface Item {
  readonly start: number;
  readonly end: number;
  readonly rank: number;
  readonly key: string;
}

/**
 * Disjoint fragments from laminar prefixes (any two are nested or disjoint, as CIDRs are):
 * a sweep with a stack of the prefixes enclosing the cursor; the innermost one owns each piece.
 */
export function fragment(items: readonly Item[]): { start: number; end: number; key: string }[] {
  const sorted = [...items].sort((a, b) => a.start - b.start || b.end - a.end || a.rank - b.rank);
  const out: { start: number; end: number; key: string }[] = [];
  const emit = (start: number, end: number, key: string): void => {
    const last = out[out.length - 1];
    if (last && last.key === key && last.end + 1 === start) out[out.length - 1] = { ...last, end };
    else out.push({ start, end, key });
  };
  const stack: Item[] = [];
  let cursor = 0;
  const closeBefore = (limit: number): void => {
    while (stack.length && stack[stack.length - 1]!.end < limit) {
      const top = stack.pop()!;
      if (cursor <= top.end) {
        emit(cursor, top.end, top.key);
        cursor = top.end + 1;
      }
    }
  };
  for (const item of sorted) {
    closeBefore(item.start);
    const top = stack[stack.length - 1];
    if (top && cursor < item.start) {
      emit(cursor, item.start - 1, top.key);
      cursor = item.start;
    }
    stack.push(item);
  }
  closeBefore(MAX_IPV4 + 1);
  return out;
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Cilium's identity is the label set; the SPIFFE ID carries namespace and service account. */
function workloadKey(w: WorkloadModel, cidr: string): string {
  const labels = Object.keys(w.labels)
    .sort()
    .map((k) => `${k}=${w.labels[k]}`)
    .join(',');
  return `${w.identity}|${labels}|${cidr}`;
}

/**
 * Builds the ipcache. A workload whose pod IP lies inside a policy CIDR gets an identity of
 * its own for that CIDR, so decisions made on (identity, port) stay exact for ipBlock rules that
 * cover pod addresses. Non-IPv4 workloads and CIDRs are left out (reported in problems).
 */
export function buildIpcache(workloads: readonly WorkloadModel[], cidrs: readonly string[]): Ipcache {
  const problems: string[] = [];
  const prefixes = new Map<string, { start: number; end: number; len: number }>();
  for (const c of cidrs) {
    const r = ipv4Range(c);
    if (r) prefixes.set(canonical(r), r);
    else if (!c.includes(':')) problems.push(`policy CIDR ${c} is not an IPv4 prefix; left out of the ipcache`);
  }
  prefixes.delete('0.0.0.0/0'); // world
  const innermost = (n: number): string => {
    let best: { key: string; len: number } | undefined;
    for (const [key, r] of prefixes)
      if (n >= r.start && n <= r.end && (!best || r.len > best.len)) best = { key, len: r.len };
    return best?.key ?? '';
  };

  const workloadByAddress = new Map<string, string>();
  const members = new Map<string, WorkloadModel[]>();
  for (const w of [...workloads].sort((a, b) => compareStrings(a.id, b.id))) {
    const n = ipv4ToNumber(w.address);
    if (n === undefined) {
      problems.push(`${w.id}: address ${w.address} is not IPv4; not in the ipcache`);
      continue;
    }
    if (workloadByAddress.has(w.address)) {
      problems.push(`${w.id}: address ${w.address} is already ${workloadByAddress.get(w.address)}'s; ignored`);
      continue;
    }
    workloadByAddress.set(w.address, w.id);
    const key = workloadKey(w, innermost(n));
    members.set(key, [...(members.get(key) ?? []), w]);
  }

  const items: Item[] = [{ start: 0, end: MAX_IPV4, rank: 0, key: 'world' }];
  for (const [key, r] of prefixes) items.push({ start: r.start, end: r.end, rank: 1 + r.len, key: `cidr:${key}` });
  for (const [key, ws] of members)
    for (const w of ws) {
      const n = ipv4ToNumber(w.address)!;
      items.push({ start: n, end: n, rank: 100, key: `wl:${key}` });
    }
  const pieces = fragment(items);

  // Deterministic numbering: workloads by key, CIDRs by address then length.
  const byKey = new Map<string, number>([['world', WORLD_IDENTITY]]);
  [...members.keys()].sort(compareStrings).forEach((k, i) => byKey.set(`wl:${k}`, FIRST_WORKLOAD_IDENTITY + i));
  [...prefixes.entries()]
    .sort(([, a], [, b]) => a.start - b.start || a.len - b.len)
    .forEach(([k], i) => byKey.set(`cidr:${k}`, FIRST_CIDR_IDENTITY + i));

  // Every address of a CIDR identity is decided alike (its enclosing prefixes are the same): one sample.
  const samplesOf = new Map<string, string[]>();
  for (const p of pieces)
    if (!p.key.startsWith('wl:') && !samplesOf.has(p.key)) samplesOf.set(p.key, [numberToIpv4(p.start)]);
  const identities: Identity[] = [];
  for (const [key, id] of byKey) {
    if (key === 'world') {
      identities.push({
        id,
        kind: 'world',
        name: 'world',
        cidr: '0.0.0.0/0',
        workloads: [],
        samples: samplesOf.get(key) ?? [],
      });
    } else if (key.startsWith('cidr:')) {
      // A CIDR entirely covered by more specific ones owns no address: nothing to decide for it.
      const samples = samplesOf.get(key);
      if (samples) identities.push({ id, kind: 'cidr', name: key, cidr: key.slice(5), workloads: [], samples });
    } else {
      const ws = members.get(key.slice(3))!;
      identities.push({
        id,
        kind: 'workload',
        name: ws[0]!.identity,
        principal: ws[0]!.identity,
        workloads: ws.map((w) => w.id),
        samples: ws.map((w) => w.address),
      });
    }
  }
  identities.sort((a, b) => a.id - b.id);
  const fragments = pieces.map((p) => ({ start: p.start, end: p.end, identity: byKey.get(p.key)! }));
  return { identities, fragments, workloadByAddress, problems };
}

/** The identity of an address (binary search over the fragments); undefined for non-IPv4. */
export function identityOf(cache: Ipcache, ip: string): Identity | undefined {
  const n = ipv4ToNumber(ip);
  if (n === undefined) return undefined;
  let lo = 0;
  let hi = cache.fragments.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const f = cache.fragments[mid]!;
    if (n < f.start) hi = mid - 1;
    else if (n > f.end) lo = mid + 1;
    else return cache.identities.find((i) => i.id === f.identity);
  }
  return undefined;
}
