// The service graph and golden signals, from the nodes' Istio metrics (Kiali's method, with
// our scrapes in place of Prometheus). Pure: samples and the mesh model in, counters out;
// rates are differences between two scrapes.
//
// Which series make which edge (each request or connection is counted once):
// - HTTP edges from istio_requests_total, reported by the L7 engine that handled the request:
//   a waypoint (reporter "waypoint": caller -> the service it serves) or a gateway (reporter
//   "source": the gateway -> the backend service; plus "external" -> the gateway).
// - TCP edges from istio_tcp_* reported by the caller's node (reporter "source", which knows
//   both the calling workload and the service dialed); inbound ("destination") series only
//   for callers without an identity (plaintext), which no source node reports.
// - Connections to or from a gateway or waypoint are hops inside HTTP edges, not edges: they
//   only tell the HTTP edge its mTLS mark.
import type { MeshModel } from '../model/mesh-model.js';
import type { PromSample } from './prom-text.js';
import type {
  GraphEdge,
  GraphNode,
  MtlsMark,
  ServiceGraph,
  ServiceSignals,
  SignalPoint,
  SignalsAnswer,
} from './graph-types.js';
import { serviceParts, spiffeParts } from './metrics-registry.js';

/** The metric families the graph reads (the scraper parses only these). */
export const GRAPH_FAMILIES: ReadonlySet<string> = new Set([
  'istio_requests_total',
  'istio_request_duration_milliseconds_bucket',
  'istio_tcp_connections_opened_total',
  'istio_tcp_sent_bytes_total',
  'istio_tcp_received_bytes_total',
]);

/** Cumulative counters of one edge as one node reported them. */
export interface EdgeCounters {
  total: number;
  errors: number;
  denied: number;
  mtls: number;
  plaintext: number;
  bytes: number;
  /** Request duration histogram: upper bound (ms, Infinity last) -> cumulative count. */
  readonly buckets: Map<number, number>;
}

export interface EdgeKey {
  readonly protocol: 'http' | 'tcp';
  readonly source: string;
  readonly target: string;
}

/** One scrape of one mesh node, reduced to edges. */
export interface NodeCounters {
  readonly edges: Map<string, EdgeCounters>;
  /** mTLS seen on the hops of HTTP edges (connections to and from L7 engines), by HTTP edge key. */
  readonly hopTls: Map<string, { mtls: number; plaintext: number }>;
}

/** One scrape of every mesh node. */
export interface Scrape {
  readonly time: number;
  readonly nodes: ReadonlyMap<string, NodeCounters>;
  readonly graphNodes: ReadonlyMap<string, GraphNode>;
  readonly unreachable: readonly string[];
}

const EXTERNAL: GraphNode = { id: 'external', kind: 'external', name: 'external' };
const UNKNOWN: GraphNode = { id: 'unknown', kind: 'external', name: 'unknown' };

export function edgeKey(k: EdgeKey): string {
  return `${k.protocol} ${k.source} ${k.target}`;
}

function parseEdgeKey(key: string): EdgeKey {
  const [protocol, source, target] = key.split(' ') as ['http' | 'tcp', string, string];
  return { protocol, source, target };
}

/** Names the graph's nodes from metric labels, with the mesh model's help. */
export class GraphResolver {
  readonly nodes = new Map<string, GraphNode>();
  readonly #servicesByHost = new Map<string, GraphNode>();
  /** Workload "ns/name" -> its service node (the one with the most endpoints selecting it). */
  readonly #serviceOfWorkload = new Map<string, GraphNode>();
  /** SPIFFE ID -> the workloads ("ns/name") holding it. */
  readonly #workloadsOfIdentity = new Map<string, string[]>();
  /** Gateways' and waypoints' SPIFFE IDs -> gateway node (waypoints: undefined, they are not nodes). */
  readonly #l7 = new Map<string, GraphNode | undefined>();

  constructor(model: MeshModel | undefined) {
    if (!model) return;
    const workloadById = new Map(model.workloads.map((w) => [w.id, w]));
    const byEndpoints = [...model.services].sort(
      (a, b) => b.endpoints.length - a.endpoints.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
    for (const s of byEndpoints) {
      const node: GraphNode = {
        id: `svc:${s.namespace}/${s.name}`,
        kind: 'service',
        name: s.name,
        namespace: s.namespace,
        ...(s.waypoint ? { waypoint: true } : {}),
      };
      this.#servicesByHost.set(s.hostname, node);
      for (const e of s.endpoints) {
        const w = workloadById.get(e.workload);
        const key = w ? `${w.namespace}/${w.name}` : undefined;
        if (key && !this.#serviceOfWorkload.has(key)) this.#serviceOfWorkload.set(key, node);
      }
    }
    for (const w of model.workloads) {
      const list = this.#workloadsOfIdentity.get(w.identity) ?? [];
      list.push(`${w.namespace}/${w.name}`);
      this.#workloadsOfIdentity.set(w.identity, list);
    }
    for (const g of model.gateways)
      this.#l7.set(
        g.identity,
        g.role === 'gateway'
          ? { id: `gw:${g.namespace}/${g.name}`, kind: 'gateway', name: g.name, namespace: g.namespace }
          : undefined,
      );
  }

  #use(n: GraphNode): GraphNode {
    if (!this.nodes.has(n.id)) this.nodes.set(n.id, n);
    return n;
  }

  /** A gateway's or waypoint's identity. */
  isL7(principal: string): boolean {
    return this.#l7.has(principal);
  }

  gateway(principal: string): GraphNode | undefined {
    const g = this.#l7.get(principal);
    return g ? this.#use(g) : undefined;
  }

  /** The caller: its workload's service, else by identity, else a workload node; "external" without either. */
  source(workload: string, namespace: string, principal: string): GraphNode {
    const known = principal !== 'unknown' ? principal : undefined;
    const gw = known ? this.#l7.get(known) : undefined;
    if (gw) return this.#use(gw);
    const direct = this.#serviceOfWorkload.get(`${namespace}/${workload}`);
    if (direct) return this.#use(direct);
    if (known) {
      // Reporters that only see the peer's certificate label it with its service account.
      const services = new Set((this.#workloadsOfIdentity.get(known) ?? []).map((w) => this.#serviceOfWorkload.get(w)));
      const only = services.size === 1 ? [...services][0] : undefined;
      if (only) return this.#use(only);
      const id = spiffeParts(known);
      if (id)
        return this.#use({
          id: `wl:${id.namespace}/${id.serviceAccount}`,
          kind: 'workload',
          name: id.serviceAccount,
          namespace: id.namespace,
        });
    }
    if (workload !== 'unknown')
      return this.#use({
        id: `wl:${namespace}/${workload}`,
        kind: 'workload',
        name: workload,
        ...(namespace !== 'unknown' ? { namespace } : {}),
      });
    return this.#use(EXTERNAL);
  }

  external(): GraphNode {
    return this.#use(EXTERNAL);
  }

  /** The service dialed: by host, else the destination workload's service; "unknown" when neither is known. */
  target(host: string, workload: string, namespace: string): GraphNode {
    if (host !== 'unknown') {
      const known = this.#servicesByHost.get(host);
      if (known) return this.#use(known);
      const p = serviceParts(host);
      return this.#use({
        id: `svc:${p.namespace}/${p.name}`,
        kind: 'service',
        name: p.name,
        ...(p.namespace !== 'unknown' ? { namespace: p.namespace } : {}),
      });
    }
    const svc = this.#serviceOfWorkload.get(`${namespace}/${workload}`);
    if (svc) return this.#use(svc);
    if (workload !== 'unknown')
      return this.#use({ id: `wl:${namespace}/${workload}`, kind: 'workload', name: workload, namespace });
    return this.#use(UNKNOWN);
  }
}

function counters(): EdgeCounters {
  return { total: 0, errors: 0, denied: 0, mtls: 0, plaintext: 0, bytes: 0, buckets: new Map() };
}

function label(s: PromSample, name: string): string {
  return s.labels[name] ?? 'unknown';
}

/** A request or connection refused by policy (Envoy's RBAC flag, Istio's UAEX for ext-authz). */
function isDenied(flags: string): boolean {
  return flags.split(',').some((f) => f === 'RBAC' || f === 'UAEX');
}

/** The HTTP edges a request series belongs to: caller -> service, and external -> gateway for a gateway's. */
function httpEdges(s: PromSample, r: GraphResolver): EdgeKey[] {
  const reporter = label(s, 'reporter');
  const target = r.target(
    label(s, 'destination_service'),
    label(s, 'destination_workload'),
    label(s, 'destination_workload_namespace'),
  );
  const source = r.source(
    label(s, 'source_workload'),
    label(s, 'source_workload_namespace'),
    label(s, 'source_principal'),
  );
  const edges: EdgeKey[] = [{ protocol: 'http', source: source.id, target: target.id }];
  if (reporter === 'source' && source.kind === 'gateway')
    edges.push({ protocol: 'http', source: r.external().id, target: source.id });
  return edges;
}

/** The TCP edge a connection series is, or the HTTP edge whose hop it is. */
function tcpEdge(s: PromSample, r: GraphResolver): { key: EdgeKey; hop: boolean } | undefined {
  const reporter = label(s, 'reporter');
  const srcPrincipal = label(s, 'source_principal');
  const dstPrincipal = label(s, 'destination_principal');
  if (reporter === 'source') {
    if (r.isL7(dstPrincipal)) return undefined; // caller -> waypoint: the waypoint reports the requests
    const target = r.target(
      label(s, 'destination_service'),
      label(s, 'destination_workload'),
      label(s, 'destination_workload_namespace'),
    );
    if (r.isL7(srcPrincipal)) {
      const gw = r.gateway(srcPrincipal);
      return gw ? { key: { protocol: 'http', source: gw.id, target: target.id }, hop: true } : undefined;
    }
    const source = r.source(label(s, 'source_workload'), label(s, 'source_workload_namespace'), srcPrincipal);
    return { key: { protocol: 'tcp', source: source.id, target: target.id }, hop: false };
  }
  if (reporter === 'destination' && srcPrincipal === 'unknown') {
    const target = r.target('unknown', label(s, 'destination_workload'), label(s, 'destination_workload_namespace'));
    return { key: { protocol: 'tcp', source: r.external().id, target: target.id }, hop: false };
  }
  return undefined;
}

/** One node's metrics page (the GRAPH_FAMILIES samples) -> its edge counters. */
export function nodeCounters(samples: readonly PromSample[], r: GraphResolver): NodeCounters {
  const edges = new Map<string, EdgeCounters>();
  const hopTls = new Map<string, { mtls: number; plaintext: number }>();
  const at = (k: EdgeKey): EdgeCounters => {
    const key = edgeKey(k);
    let c = edges.get(key);
    if (!c) edges.set(key, (c = counters()));
    return c;
  };
  for (const s of samples) {
    const tls = label(s, 'connection_security_policy');
    switch (s.name) {
      case 'istio_requests_total':
        for (const k of httpEdges(s, r)) {
          const c = at(k);
          const code = Number(label(s, 'response_code'));
          c.total += s.value;
          if (!(code > 0 && code < 500)) c.errors += s.value;
          if (isDenied(label(s, 'response_flags'))) c.denied += s.value;
          if (tls === 'mutual_tls') c.mtls += s.value;
          else if (tls === 'none') c.plaintext += s.value;
        }
        break;
      case 'istio_request_duration_milliseconds_bucket': {
        const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
        if (Number.isNaN(le)) break;
        // A gateway's request time is also what its external callers saw.
        for (const k of httpEdges(s, r)) {
          const c = at(k);
          c.buckets.set(le, (c.buckets.get(le) ?? 0) + s.value);
        }
        break;
      }
      case 'istio_tcp_connections_opened_total': {
        const e = tcpEdge(s, r);
        if (!e) break;
        if (e.hop) {
          const key = edgeKey(e.key);
          const h = hopTls.get(key) ?? { mtls: 0, plaintext: 0 };
          if (tls === 'mutual_tls') h.mtls += s.value;
          else if (tls === 'none') h.plaintext += s.value;
          hopTls.set(key, h);
          break;
        }
        const c = at(e.key);
        const flags = label(s, 'response_flags');
        c.total += s.value;
        if (isDenied(flags)) c.denied += s.value;
        else if (flags !== '-') c.errors += s.value;
        if (tls === 'mutual_tls') c.mtls += s.value;
        else if (tls === 'none') c.plaintext += s.value;
        break;
      }
      case 'istio_tcp_sent_bytes_total':
      case 'istio_tcp_received_bytes_total': {
        const e = tcpEdge(s, r);
        if (e && !e.hop) at(e.key).bytes += s.value;
        break;
      }
    }
  }
  return { edges, hopTls };
}

/** Counter increase from `a` to `b`; a smaller `b` means the node restarted (Prometheus' reset rule). */
function increase(a: number | undefined, b: number): number {
  return a === undefined || b < a ? b : b - a;
}

function deltaCounters(a: EdgeCounters | undefined, b: EdgeCounters): EdgeCounters {
  const reset = a !== undefined && b.total < a.total;
  const base = reset ? undefined : a;
  const buckets = new Map<number, number>();
  for (const [le, n] of b.buckets) buckets.set(le, increase(base?.buckets.get(le), n));
  return {
    total: increase(base?.total, b.total),
    errors: increase(base?.errors, b.errors),
    denied: increase(base?.denied, b.denied),
    mtls: increase(base?.mtls, b.mtls),
    plaintext: increase(base?.plaintext, b.plaintext),
    bytes: increase(base?.bytes, b.bytes),
    buckets,
  };
}

function addInto(into: EdgeCounters, d: EdgeCounters): void {
  into.total += d.total;
  into.errors += d.errors;
  into.denied += d.denied;
  into.mtls += d.mtls;
  into.plaintext += d.plaintext;
  into.bytes += d.bytes;
  for (const [le, n] of d.buckets) into.buckets.set(le, (into.buckets.get(le) ?? 0) + n);
}

/** What happened on each edge between two scrapes, all nodes together. */
function increases(older: Scrape | undefined, newer: Scrape): Map<string, EdgeCounters> {
  const edges = new Map<string, EdgeCounters>();
  for (const [node, now] of newer.nodes) {
    const before = older?.nodes.get(node);
    for (const [key, c] of now.edges) {
      let sum = edges.get(key);
      if (!sum) edges.set(key, (sum = counters()));
      addInto(sum, deltaCounters(before?.edges.get(key), c));
    }
  }
  return edges;
}

/**
 * Each edge's mTLS mark from everything the nodes counted so far (not only the window: a
 * keep-alive connection opened before it still carries the edge's requests).
 */
function cumulativeTls(newer: Scrape): Map<string, { mtls: number; plaintext: number }> {
  const out = new Map<string, { mtls: number; plaintext: number }>();
  for (const now of newer.nodes.values())
    for (const source of [now.edges, now.hopTls])
      for (const [key, c] of source) {
        const sum = out.get(key) ?? { mtls: 0, plaintext: 0 };
        sum.mtls += c.mtls;
        sum.plaintext += c.plaintext;
        out.set(key, sum);
      }
  return out;
}

/** Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank. */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? (bounds.length ? buckets.get(bounds[bounds.length - 1]!)! : 0);
  if (!total) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const le of bounds) {
    const count = buckets.get(le)!;
    if (count >= rank) {
      if (le === Infinity) return prevBound;
      if (count === prevCount) return le;
      return prevBound + ((le - prevBound) * (rank - prevCount)) / (count - prevCount);
    }
    prevBound = le;
    prevCount = count;
  }
  return prevBound;
}

function mtlsMark(mtls: number, plaintext: number): MtlsMark {
  if (mtls > 0 && plaintext > 0) return 'mixed';
  if (mtls > 0) return 'mutual_tls';
  if (plaintext > 0) return 'none';
  return 'unknown';
}

function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The graph between two scrapes (older undefined: everything since the nodes started, rates 0).
 * Edges seen by the newer scrape appear even when idle in the window, as in Kiali's "idle edges".
 */
export function graphBetween(older: Scrape | undefined, newer: Scrape): ServiceGraph {
  const seconds = older ? (newer.time - older.time) / 1000 : 0;
  const edges = increases(older, newer);
  const tls = cumulativeTls(newer);
  const out: GraphEdge[] = [];
  const used = new Set<string>();
  for (const [key, c] of edges) {
    const k = parseEdgeKey(key);
    // The window's requests when they say; else everything so far, including the hops of the edge
    // (a gateway's requests carry no mTLS label of their own: the mark comes from its connections).
    const all = tls.get(key);
    const mtls = c.mtls || c.plaintext ? mtlsMark(c.mtls, c.plaintext) : mtlsMark(all?.mtls ?? 0, all?.plaintext ?? 0);
    out.push({
      source: k.source,
      target: k.target,
      protocol: k.protocol,
      rate: seconds > 0 ? round(c.total / seconds) : 0,
      errorRate: c.total > 0 ? round(c.errors / c.total, 4) : 0,
      deniedRate: seconds > 0 ? round(c.denied / seconds) : 0,
      p99Ms: k.protocol === 'http' ? nullableRound(histogramQuantile(0.99, c.buckets)) : null,
      bytesRate: seconds > 0 ? round(c.bytes / seconds) : 0,
      mtls,
      total: c.total,
    });
    used.add(k.source).add(k.target);
  }
  out.sort((a, b) => (edgeKey(a) < edgeKey(b) ? -1 : edgeKey(a) > edgeKey(b) ? 1 : 0));
  return {
    time: newer.time,
    windowSeconds: round(seconds, 1),
    nodes: [...newer.graphNodes.values()].filter((n) => used.has(n.id)).sort(byId),
    edges: out,
    unreachable: newer.unreachable,
  };
}

function nullableRound(n: number | null): number | null {
  return n === null ? null : round(n, 2);
}

/**
 * Golden signals per service (inbound: every edge into it), one point per pair of consecutive
 * scrapes. Services appear when any scrape has traffic to them.
 */
export function signals(scrapes: readonly Scrape[], intervalSeconds: number): SignalsAnswer {
  const series = new Map<string, { node: GraphNode; protocol: 'http' | 'tcp'; points: SignalPoint[] }>();
  for (let i = 1; i < scrapes.length; i++) {
    const a = scrapes[i - 1]!;
    const b = scrapes[i]!;
    const seconds = (b.time - a.time) / 1000;
    if (seconds <= 0) continue;
    const into = new Map<string, EdgeCounters & { protocol: 'http' | 'tcp' }>();
    for (const [key, c] of increases(a, b)) {
      const k = parseEdgeKey(key);
      let sum = into.get(k.target);
      if (!sum) into.set(k.target, (sum = { ...counters(), protocol: k.protocol }));
      if (k.protocol === 'http') sum.protocol = 'http';
      addInto(sum, c);
    }
    for (const [target, c] of into) {
      const node = b.graphNodes.get(target);
      if (!node || node.kind === 'external') continue;
      let s = series.get(target);
      if (!s) series.set(target, (s = { node, protocol: c.protocol, points: [] }));
      if (c.protocol === 'http') s.protocol = 'http';
      s.points.push({
        t: b.time,
        rate: round(c.total / seconds),
        errorRate: c.total > 0 ? round(c.errors / c.total, 4) : 0,
        deniedRate: round(c.denied / seconds),
        p50Ms: nullableRound(histogramQuantile(0.5, c.buckets)),
        p99Ms: nullableRound(histogramQuantile(0.99, c.buckets)),
      });
    }
  }
  const services: ServiceSignals[] = [...series.values()]
    .map((s) => ({
      id: s.node.id,
      name: s.node.name,
      ...(s.node.namespace ? { namespace: s.node.namespace } : {}),
      protocol: s.protocol,
      points: s.points,
    }))
    .sort(byId);
  return { intervalSeconds, services };
}
