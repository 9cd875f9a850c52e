// Cluster lb_policy implementations over the hosts of one priority level. Built on update();
// pick() is the per-request part and allocates nothing.
import { hash32 } from './hash-policy.js';

export interface LbHost {
  /** load_balancing_weight (>= 1). */
  readonly weight: number;
  /** Stable identity for hashing onto a ring ("address:port"). */
  readonly key: string;
  /** Requests in flight to this host (shared across config versions). */
  readonly stats: { active: number };
}

export interface LoadBalancer<H extends LbHost> {
  /** Whether pick() uses the request hash (compute it only then). */
  readonly usesHash: boolean;
  pick(hash: number | undefined): H | undefined;
}

export interface LbOptions {
  readonly minimumRingSize?: number;
  readonly maximumRingSize?: number;
  readonly maglevTableSize?: number;
  readonly choiceCount?: number;
}

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'RING_HASH' | 'MAGLEV';

export function createLoadBalancer<H extends LbHost>(
  policy: LbPolicy,
  hosts: readonly H[],
  options: LbOptions = {},
): LoadBalancer<H> {
  if (hosts.length === 0) return { usesHash: false, pick: () => undefined };
  if (hosts.length === 1) {
    const only = hosts[0]!;
    return { usesHash: false, pick: () => only };
  }
  switch (policy) {
    case 'LEAST_REQUEST':
      return new LeastRequest(hosts, options.choiceCount ?? 2);
    case 'RANDOM':
      return new WeightedRandom(hosts);
    case 'RING_HASH':
      return new RingHash(hosts, options.minimumRingSize ?? 1024, options.maximumRingSize ?? 8 * 1024 * 1024);
    case 'MAGLEV':
      return new Maglev(hosts, options.maglevTableSize ?? 65537);
    default:
      return new RoundRobin(hosts);
  }
}

const equalWeights = (hosts: readonly LbHost[]): boolean => hosts.every((h) => h.weight === hosts[0]!.weight);

/**
 * Smooth weighted round robin (nginx): every pick adds each weight to its host's credit and
 * takes the host with the most credit, which then pays the total. Equal weights: a plain
 * rotation. Starts at a random host so that many workers do not hit the same host first.
 */
class RoundRobin<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash = false;
  readonly #hosts: readonly H[];
  readonly #equal: boolean;
  readonly #credit: Float64Array;
  readonly #total: number;
  #next: number;

  constructor(hosts: readonly H[]) {
    this.#hosts = hosts;
    this.#equal = equalWeights(hosts);
    this.#credit = new Float64Array(hosts.length);
    this.#total = hosts.reduce((s, h) => s + h.weight, 0);
    this.#next = Math.floor(Math.random() * hosts.length);
  }

  pick(): H {
    const hosts = this.#hosts;
    if (this.#equal) {
      const h = hosts[this.#next]!;
      this.#next = this.#next + 1 === hosts.length ? 0 : this.#next + 1;
      return h;
    }
    const credit = this.#credit;
    let best = 0;
    for (let i = 0; i < hosts.length; i++) {
      credit[i]! += hosts[i]!.weight;
      if (credit[i]! > credit[best]!) best = i;
    }
    credit[best]! -= this.#total;
    return hosts[best]!;
  }
}

/** Power of N choices on requests in flight, scaled by weight (Envoy's default choice_count 2). */
class LeastRequest<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash = false;
  readonly #hosts: readonly H[];
  readonly #choices: number;

  constructor(hosts: readonly H[], choices: number) {
    this.#hosts = hosts;
    this.#choices = Math.max(2, Math.min(choices, hosts.length));
  }

  pick(): H {
    const hosts = this.#hosts;
    const n = hosts.length;
    const i = Math.floor(Math.random() * n);
    let best = hosts[i]!;
    if (this.#choices === 2) {
      // Two distinct hosts (with two hosts, sampling with replacement would pick the busy one 25% of the time).
      let j = Math.floor(Math.random() * (n - 1));
      if (j >= i) j++;
      return this.#better(hosts[j]!, best);
    }
    for (let c = 1; c < this.#choices; c++) best = this.#better(hosts[Math.floor(Math.random() * n)]!, best);
    return best;
  }

  /** Fewer requests in flight per unit of weight wins; ties keep the incumbent. */
  #better(h: H, best: H): H {
    return (h.stats.active + 1) / h.weight < (best.stats.active + 1) / best.weight ? h : best;
  }
}

class WeightedRandom<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash = false;
  readonly #hosts: readonly H[];
  readonly #cumulative: Float64Array | undefined;

  constructor(hosts: readonly H[]) {
    this.#hosts = hosts;
    if (!equalWeights(hosts)) {
      this.#cumulative = new Float64Array(hosts.length);
      let sum = 0;
      hosts.forEach((h, i) => (this.#cumulative![i] = sum += h.weight));
    }
  }

  pick(): H {
    const hosts = this.#hosts;
    const cum = this.#cumulative;
    if (!cum) return hosts[Math.floor(Math.random() * hosts.length)]!;
    return hosts[upperBound(cum, Math.random() * cum[cum.length - 1]!)]!;
  }
}

/** First index whose value is > x (x below the last value). */
function upperBound(arr: Float64Array | Uint32Array, x: number): number {
  let lo = 0;
  let hi = arr.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Ketama-style ring: each host gets points in proportion to its weight; a request takes the next point clockwise. */
class RingHash<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash = true;
  readonly #hosts: readonly H[];
  readonly #points: Uint32Array;
  readonly #owners: Uint32Array;

  constructor(hosts: readonly H[], minSize: number, maxSize: number) {
    this.#hosts = hosts;
    const total = hosts.reduce((s, h) => s + h.weight, 0);
    const minWeight = Math.min(...hosts.map((h) => h.weight)) / total;
    // As Envoy: enough points that the lightest host gets at least one, within [min, max].
    const size = Math.min(Math.max(Math.ceil(minWeight * minSize) / minWeight, minSize), maxSize);
    const entries: [number, number][] = [];
    hosts.forEach((h, i) => {
      const n = Math.max(1, Math.round((size * h.weight) / total));
      for (let k = 0; k < n; k++) entries.push([hash32(`${h.key}_${k}`), i]);
    });
    entries.sort((a, b) => a[0] - b[0]);
    this.#points = Uint32Array.from(entries, (e) => e[0]);
    this.#owners = Uint32Array.from(entries, (e) => e[1]);
  }

  pick(hash: number | undefined): H {
    if (hash === undefined) return this.#hosts[Math.floor(Math.random() * this.#hosts.length)]!;
    const points = this.#points;
    // The first point >= hash, wrapping to the start of the ring.
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return this.#hosts[this.#owners[lo === points.length ? 0 : lo]!]!;
  }
}

/** Maglev (Eisenbud et al. 2016): a lookup table filled by per-host permutations, weighted turns. */
class Maglev<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash = true;
  readonly #hosts: readonly H[];
  readonly #table: Uint32Array;

  constructor(hosts: readonly H[], size: number) {
    this.#hosts = hosts;
    const m = size;
    const table = new Uint32Array(m).fill(0xffffffff);
    const offset = hosts.map((h) => hash32(h.key) % m);
    const skip = hosts.map((h) => (hash32(`${h.key}#skip`) % (m - 1)) + 1);
    const next = new Array<number>(hosts.length).fill(0);
    const maxWeight = Math.max(...hosts.map((h) => h.weight));
    const credit = new Array<number>(hosts.length).fill(0);
    let filled = 0;
    while (filled < m) {
      for (let i = 0; i < hosts.length && filled < m; i++) {
        credit[i]! += hosts[i]!.weight / maxWeight;
        if (credit[i]! < 1) continue;
        credit[i]! -= 1;
        let c = (offset[i]! + next[i]! * skip[i]!) % m;
        while (table[c] !== 0xffffffff) {
          next[i]!++;
          c = (offset[i]! + next[i]! * skip[i]!) % m;
        }
        table[c] = i;
        next[i]!++;
        filled++;
      }
    }
    this.#table = table;
  }

  pick(hash: number | undefined): H {
    if (hash === undefined) return this.#hosts[Math.floor(Math.random() * this.#hosts.length)]!;
    return this.#hosts[this.#table[hash % this.#table.length]!]!;
  }
}
