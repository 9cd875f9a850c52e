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
  /** Its locality (an index into the assignment) and that locality's load_balancing_weight. */
  readonly locality?: number;
  readonly localityWeight?: number;
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
  /** common_lb_config.locality_weighted_lb_config: pick a locality by weight first. */
  readonly localityWeighted?: boolean;
  /** Overprovisioning factor in percent (140), for locality availability. */
  readonly overprovisioningFactor?: number;
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

/**
 * The balancer of one priority level's `hosts` (its usable ones; `all` = every host of the
 * level): Envoy's locality weighted balancing when the cluster asks for it and the hosts span
 * several weighted localities — a locality by effective weight (its load_balancing_weight x
 * min(1, overprovisioning x usable / all of its hosts)), then a host in it by the policy.
 * Otherwise the policy over all of them.
 */
export function levelBalancer<H extends LbHost>(
  policy: LbPolicy,
  hosts: readonly H[],
  all: readonly H[],
  options: LbOptions = {},
): LoadBalancer<H> {
  if (!options.localityWeighted || hosts.length < 2) return createLoadBalancer(policy, hosts, options);
  const groups = new Map<number, H[]>();
  for (const h of hosts) {
    const g = groups.get(h.locality ?? 0);
    if (g) g.push(h);
    else groups.set(h.locality ?? 0, [h]);
  }
  if (groups.size < 2) return createLoadBalancer(policy, hosts, options);
  const totals = new Map<number, number>();
  for (const h of all) totals.set(h.locality ?? 0, (totals.get(h.locality ?? 0) ?? 0) + 1);
  const over = (options.overprovisioningFactor ?? 140) / 100;
  const entries: { weight: number; lb: LoadBalancer<H> }[] = [];
  for (const [loc, members] of groups) {
    const availability = Math.min(1, (over * members.length) / (totals.get(loc) ?? members.length));
    const weight = (members[0]!.localityWeight ?? 0) * availability;
    if (weight > 0) entries.push({ weight, lb: createLoadBalancer(policy, members, options) });
  }
  if (entries.length === 0) return createLoadBalancer(policy, hosts, options);
  if (entries.length === 1) return entries[0]!.lb;
  return new LocalityWeighted(entries);
}

/** Smooth weighted round robin over localities, then the locality's own balancer. */
class LocalityWeighted<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash: boolean;
  readonly #entries: readonly { weight: number; lb: LoadBalancer<H> }[];
  readonly #credit: Float64Array;
  readonly #total: number;

  constructor(entries: readonly { weight: number; lb: LoadBalancer<H> }[]) {
    this.#entries = entries;
    this.#credit = new Float64Array(entries.length);
    this.#total = entries.reduce((s, e) => s + e.weight, 0);
    this.usesHash = entries.some((e) => e.lb.usesHash);
  }

  pick(hash: number | undefined): H | undefined {
    const c = this.#credit;
    let best = 0;
    for (let i = 0; i < c.length; i++) {
      c[i]! += this.#entries[i]!.weight;
      if (c[i]! > c[best]!) best = i;
    }
    c[best]! -= this.#total;
    return this.#entries[best]!.lb.pick(hash);
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

/** The hosts of one priority level, and whether each is healthy now. */
export interface PriorityLevel<H extends LbHost> {
  readonly priority: number;
  readonly hosts: readonly H[];
}

export interface PriorityOptions<H extends LbHost> {
  /** common_lb_config.healthy_panic_threshold in percent (default 50; 0 disables panic). */
  readonly panicThreshold: number;
  /** ClusterLoadAssignment.policy.overprovisioning_factor in percent (default 140). */
  readonly overprovisioningFactor: number;
  readonly isHealthy: (h: H) => boolean;
  /** Bumped when any host's health changes: the priority loads are recomputed on the next pick. */
  readonly source: { readonly epoch: number };
}

/**
 * Envoy's priority load and panic threshold over per-priority load balancers. Health of a level
 * = min(100, overprovisioning x healthy/total); levels take load in priority order up to their
 * health, normalised by the total health (capped at 100). When the normalised total is below 100,
 * a level whose healthy share is below the panic threshold balances over all its hosts; when every
 * level is in panic, load is spread by host count. Recomputed only when health changes; pick()
 * allocates nothing.
 */
export class PriorityLoadBalancer<H extends LbHost> implements LoadBalancer<H> {
  readonly usesHash: boolean;
  readonly #levels: readonly PriorityLevel<H>[];
  readonly #policy: LbPolicy;
  readonly #options: LbOptions;
  readonly #p: PriorityOptions<H>;
  /** Per level, the balancer over all its hosts (panic), built once. */
  readonly #all: LoadBalancer<H>[];
  #epoch = -1;
  #lbs: LoadBalancer<H>[] = [];
  /** Cumulative load per level, out of 100. */
  #cumulative = new Float64Array(0);
  /** Last computed per-level load and panic (for tests and stats). */
  loads: number[] = [];
  panic: boolean[] = [];

  constructor(policy: LbPolicy, levels: readonly PriorityLevel<H>[], options: LbOptions, p: PriorityOptions<H>) {
    this.#levels = levels;
    this.#policy = policy;
    this.#options = options;
    this.#p = p;
    this.#all = levels.map((l) => levelBalancer(policy, l.hosts, l.hosts, options));
    this.usesHash = this.#all.some((lb) => lb.usesHash);
    this.#refresh();
  }

  pick(hash: number | undefined): H | undefined {
    if (this.#epoch !== this.#p.source.epoch) this.#refresh();
    const cum = this.#cumulative;
    const n = cum.length;
    if (n === 0) return undefined;
    let i = 0;
    if (n > 1) {
      const r = hash === undefined ? Math.random() * 100 : hash % 100;
      while (i < n - 1 && cum[i]! <= r) i++;
    }
    return this.#lbs[i]!.pick(hash);
  }

  #refresh(): void {
    this.#epoch = this.#p.source.epoch;
    const levels = this.#levels;
    const { isHealthy, overprovisioningFactor, panicThreshold } = this.#p;
    const healthy = levels.map((l) => l.hosts.filter(isHealthy));
    const health = levels.map((l, i) =>
      l.hosts.length === 0
        ? 0
        : Math.min(100, Math.floor((overprovisioningFactor * healthy[i]!.length) / l.hosts.length)),
    );
    const total = Math.min(
      100,
      health.reduce((s, h) => s + h, 0),
    );
    const threshold = Math.min(100, panicThreshold);
    const panic = levels.map(
      (l, i) =>
        total < 100 && (l.hosts.length === 0 ? threshold > 0 : (100 * healthy[i]!.length) / l.hosts.length < threshold),
    );
    let loads: number[];
    if (total === 0 || panic.every(Boolean)) {
      // Total panic: spread by host count over all hosts (panic disabled and nothing healthy: level 0).
      const hostCount = levels.reduce((s, l) => s + l.hosts.length, 0);
      loads =
        threshold === 0 && total === 0
          ? levels.map((_, i) => (i === 0 ? 100 : 0))
          : levels.map((l) => (hostCount === 0 ? 0 : (100 * l.hosts.length) / hostCount));
      if (threshold > 0) panic.fill(true);
    } else {
      let left = 100;
      loads = health.map((h) => {
        const l = Math.min(left, (h * 100) / total);
        left -= l;
        return l;
      });
      if (left > 0) {
        const first = loads.findIndex((l) => l > 0);
        loads[first < 0 ? 0 : first]! += left;
      }
    }
    this.loads = loads;
    this.panic = panic;
    // Levels with load, in order, with their balancers.
    const lbs: LoadBalancer<H>[] = [];
    const cum: number[] = [];
    let sum = 0;
    levels.forEach((l, i) => {
      if (loads[i]! <= 0) return;
      const hosts = panic[i] ? l.hosts : healthy[i]!;
      if (hosts.length === 0 && !panic[i]) return;
      sum += loads[i]!;
      cum.push(sum);
      lbs.push(
        panic[i] || hosts.length === l.hosts.length
          ? this.#all[i]!
          : levelBalancer(this.#policy, hosts, l.hosts, this.#options),
      );
    });
    this.#lbs = lbs;
    this.#cumulative = Float64Array.from(cum.map((c) => (c * 100) / (sum || 1)));
  }
}
