// Locality-aware load balancing for one client locality, with Istio's semantics
// (pilot/pkg/networking/core/loadbalancer): `distribute` reweights localities, and failover
// (`failover` region pairs and/or `failoverPriority` labels) assigns EDS priorities. Failover
// only applies with outlier detection (otherwise nothing ever ejects the local endpoints), and
// is on by default then, unless `enabled: false`. Pure.
import type { TrafficPolicy } from '../../config/kinds/istio/destination-rule.js';
import type { Locality } from '../../model/mesh-model.js';

/** The calling client's locality (bootstrap node.locality), optionally its labels for failoverPriority. */
export interface ClientLocality {
  readonly region?: string;
  readonly zone?: string;
  readonly subzone?: string;
  /** Workload labels of the client (Istio's proxy labels), matched by `failoverPriority`. */
  readonly labels?: Readonly<Record<string, string>>;
}

type LocalityLbSetting = NonNullable<NonNullable<TrafficPolicy['loadBalancer']>['localityLbSetting']>;

const REGION = 'topology.kubernetes.io/region';
const ZONE = 'topology.kubernetes.io/zone';
const SUBZONE = 'topology.istio.io/subzone';

/** One endpoint group before priorities: a locality's endpoints with their labels. */
export interface LocalityEndpoint<T> {
  readonly locality: Locality;
  readonly labels: Readonly<Record<string, string>>;
  readonly weight: number;
  readonly value: T;
}

export interface PrioritizedGroup<T> {
  readonly locality: Locality;
  readonly priority: number;
  readonly weight: number;
  readonly members: T[];
}

/** util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere. */
export function lbPriority(client: Locality, ep: Locality): number {
  if (client.region !== ep.region) return 3;
  if (client.zone !== ep.zone) return 2;
  return client.subzone === ep.subzone ? 0 : 1;
}

/** util.LocalityMatch: "region[/zone[/subzone]]" with "*" and omitted parts matching anything. */
export function localityMatch(loc: Locality, rule: string): boolean {
  const [r = '', z = '', s = ''] = rule.split('/');
  return (
    (r === '*' || r === loc.region) &&
    (z === '*' || z === '' || z === loc.zone) &&
    (s === '*' || s === '' || s === loc.subzone)
  );
}

/** Region failover: a priority-3 endpoint outside the failover target region of the client's region drops to 4. */
function failoverPriority(client: Locality, ep: Locality, failover: LocalityLbSetting['failover']): number {
  const p = lbPriority(client, ep);
  if (p !== 3) return p;
  const f = (failover ?? []).find((x) => (x.from ?? '') === client.region);
  return f && ep.region !== (f.to ?? '') ? 4 : p;
}

function withTopology(labels: Readonly<Record<string, string>>, loc: Locality): Record<string, string> {
  return { [REGION]: loc.region, [ZONE]: loc.zone, [SUBZONE]: loc.subzone, ...labels };
}

/**
 * failoverPriority: the number of labels (from the end) below the first one the endpoint does not
 * share with the client; "label=value" compares the endpoint against that value instead.
 */
function labelPriority(
  order: readonly string[],
  client: Readonly<Record<string, string>>,
  ep: Readonly<Record<string, string>>,
): number {
  for (let j = 0; j < order.length; j++) {
    const spec = order[j]!;
    const eq = spec.indexOf('=');
    const key = eq >= 0 ? spec.slice(0, eq) : spec;
    const want = eq >= 0 ? spec.slice(eq + 1) : client[key];
    if (want !== ep[key]) return order.length - j;
  }
  return 0;
}

/**
 * Groups endpoints by (priority, locality) for `client`, with priorities contiguous from 0 (as
 * gRPC requires) and `distribute` weights applied. Without a client locality, or with nothing to
 * apply, every locality gets priority 0 and its endpoints' summed weight.
 */
export function prioritize<T>(
  eps: readonly LocalityEndpoint<T>[],
  policy: TrafficPolicy | undefined,
  client: ClientLocality | undefined,
): PrioritizedGroup<T>[] {
  const lb = policy?.loadBalancer?.localityLbSetting;
  const me: Locality | undefined = client
    ? { region: client.region ?? '', zone: client.zone ?? '', subzone: client.subzone ?? '' }
    : undefined;
  const distribute =
    me && lb?.distribute?.length ? lb.distribute.find((d) => localityMatch(me, d.from ?? '')) : undefined;
  const failover = !!me && !lb?.distribute?.length && !!policy?.outlierDetection && lb?.enabled !== false;
  const clientLabels = me ? withTopology(client?.labels ?? {}, me) : {};

  const groups = new Map<string, { locality: Locality; raw: number; weight: number; members: T[] }>();
  for (const e of eps) {
    let raw = 0;
    if (failover && me) {
      const order = lb?.failoverPriority ?? [];
      if (order.length > 0) {
        raw = labelPriority(order, clientLabels, withTopology(e.labels, e.locality));
        if (lb?.failover?.length) raw = raw * 5 + failoverPriority(me, e.locality, lb.failover);
      } else raw = failoverPriority(me, e.locality, lb?.failover);
    }
    const key = `${raw}|${e.locality.region}/${e.locality.zone}/${e.locality.subzone}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { locality: e.locality, raw, weight: 0, members: [] }));
    g.weight += e.weight;
    g.members.push(e.value);
  }
  let list = [...groups.entries()].sort(([a, ga], [b, gb]) => ga.raw - gb.raw || (a < b ? -1 : a > b ? 1 : 0));

  if (distribute) {
    // applyLocalityWeights: each "to" pattern takes the groups not yet matched and shares its
    // weight among them by their own weights (rounded up); unmatched localities get no traffic.
    const weights = new Map<string, number>();
    const unmatched = new Set(list.map(([k]) => k));
    for (const [pattern, w] of Object.entries(distribute.to ?? {})) {
      const hit = list.filter(([k, g]) => unmatched.has(k) && localityMatch(g.locality, pattern));
      const total = hit.reduce((s, [, g]) => s + Math.max(1, g.weight), 0);
      for (const [k, g] of hit) {
        unmatched.delete(k);
        const dw = (Math.max(1, g.weight) * w) / total;
        weights.set(k, dw > 0 ? Math.ceil(dw) : Math.max(1, g.weight));
      }
    }
    list = list.filter(([k]) => !unmatched.has(k)).map(([k, g]) => [k, { ...g, weight: weights.get(k)! }]);
  }

  const dense = new Map([...new Set(list.map(([, g]) => g.raw))].sort((a, b) => a - b).map((p, i) => [p, i]));
  return list.map(([, g]) => ({
    locality: g.locality,
    priority: dense.get(g.raw)!,
    weight: g.weight,
    members: g.members,
  }));
}
