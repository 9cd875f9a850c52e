// A small Prometheus registry: counter, gauge and histogram families with fixed label names,
// rendered in the text exposition format (0.0.4). Series are handles the caller keeps: the hot
// path increments a handle it looked up once, never builds a label key per observation.
// snapshot()/merge() carry every family (histograms included) between a node's worker processes,
// whose primary adds them up.

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Counter and gauge series. */
export class Scalar {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
  set(v: number): void {
    this.value = v;
  }
}

/** Histogram series: per-bucket (non-cumulative) counts, the last one for +Inf. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }
  observe(v: number): void {
    // A linear scan: ~20 bounds, cheaper than a binary search's branches at this size.
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export type HistogramValue = { readonly counts: readonly number[]; readonly sum: number; readonly count: number };

export interface FamilySnapshot {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly buckets?: readonly number[];
  readonly series: readonly (readonly [values: readonly string[], value: number | HistogramValue])[];
}

const KEY_SEP = '\u0000';

export class Family<T extends Scalar | Histogram> {
  readonly #series = new Map<string, { values: readonly string[]; s: T }>();
  constructor(
    readonly name: string,
    readonly type: MetricType,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly buckets: readonly number[] | undefined,
  ) {}

  /** The series of these label values (in labelNames order), created on first use. */
  with(values: readonly string[]): T {
    if (values.length !== this.labelNames.length)
      throw new Error(`${this.name}: ${values.length} label values for ${this.labelNames.length} labels`);
    const key = values.join(KEY_SEP);
    let e = this.#series.get(key);
    if (!e) {
      const s = (this.type === 'histogram' ? new Histogram(this.buckets!) : new Scalar()) as T;
      this.#series.set(key, (e = { values: [...values], s }));
    }
    return e.s;
  }

  get size(): number {
    return this.#series.size;
  }

  snapshot(): FamilySnapshot {
    const series: [readonly string[], number | HistogramValue][] = [];
    for (const { values, s } of this.#series.values())
      series.push([values, s instanceof Histogram ? { counts: [...s.counts], sum: s.sum, count: s.count } : s.value]);
    return {
      name: this.name,
      type: this.type,
      help: this.help,
      labelNames: this.labelNames,
      ...(this.buckets ? { buckets: this.buckets } : {}),
      series,
    };
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`);
    for (const { values, s } of this.#series.values()) {
      const labels = this.labelNames.map((n, i) => `${n}="${escapeLabel(values[i]!)}"`);
      if (s instanceof Histogram) {
        const base = labels.length ? `${labels.join(',')},` : '';
        let cumulative = 0;
        for (let i = 0; i < s.bounds.length; i++) {
          cumulative += s.counts[i]!;
          out.push(`${this.name}_bucket{${base}le="${formatNumber(s.bounds[i]!)}"} ${cumulative}`);
        }
        out.push(`${this.name}_bucket{${base}le="+Inf"} ${s.count}`);
        const l = labels.length ? `{${labels.join(',')}}` : '';
        out.push(`${this.name}_sum${l} ${formatNumber(s.sum)}`, `${this.name}_count${l} ${s.count}`);
      } else out.push(`${this.name}${labels.length ? `{${labels.join(',')}}` : ''} ${formatNumber(s.value)}`);
    }
  }
}

export class MetricsRegistry {
  readonly #families = new Map<string, Family<Scalar | Histogram>>();

  counter(name: string, help: string, labelNames: readonly string[]): Family<Scalar> {
    return this.#family(name, 'counter', help, labelNames, undefined) as Family<Scalar>;
  }

  gauge(name: string, help: string, labelNames: readonly string[]): Family<Scalar> {
    return this.#family(name, 'gauge', help, labelNames, undefined) as Family<Scalar>;
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Family<Histogram> {
    return this.#family(name, 'histogram', help, labelNames, buckets) as Family<Histogram>;
  }

  /** Declaring a family twice returns the first one (so a new filter instance finds its series). */
  #family(
    name: string,
    type: MetricType,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[] | undefined,
  ): Family<Scalar | Histogram> {
    const f = this.#families.get(name);
    if (f) {
      if (f.type !== type || f.labelNames.join() !== labelNames.join() || f.buckets?.join() !== buckets?.join())
        throw new Error(`metric ${name} declared twice with different types, labels or buckets`);
      return f;
    }
    const created = new Family(name, type, help, labelNames, buckets ? [...buckets].sort((a, b) => a - b) : undefined);
    this.#families.set(name, created);
    return created;
  }

  snapshot(): FamilySnapshot[] {
    return [...this.#families.values()].map((f) => f.snapshot());
  }

  /** Adds another registry's snapshot (a worker's) to this one: counters, gauges and histograms summed. */
  merge(snapshot: readonly FamilySnapshot[]): void {
    for (const fs of snapshot) {
      const f = this.#family(fs.name, fs.type, fs.help, fs.labelNames, fs.buckets);
      for (const [values, v] of fs.series) {
        const s = f.with(values);
        if (s instanceof Histogram) {
          const h = v as HistogramValue;
          for (let i = 0; i < s.counts.length; i++) s.counts[i]! += h.counts[i] ?? 0;
          s.sum += h.sum;
          s.count += h.count;
        } else s.value += v as number;
      }
    }
  }

  render(): string {
    const out: string[] = [];
    for (const f of [...this.#families.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      // A family with no series yet is left out: HELP/TYPE alone add nothing.
      if (f.size > 0) f.render(out);
    }
    return out.length ? `${out.join('\n')}\n` : '';
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Label values from a SPIFFE ID (spiffe://td/ns/<ns>/sa/<sa>): namespace and service account, or undefined. */
export function spiffeParts(id: string | undefined): { namespace: string; serviceAccount: string } | undefined {
  if (!id) return undefined;
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  return m ? { namespace: m[1]!, serviceAccount: m[2]! } : undefined;
}

/** "name.ns.svc.<domain>" -> name and namespace; another host is its own name, namespace unknown. */
export function serviceParts(host: string): { name: string; namespace: string } {
  const m = /^([^.]+)\.([^.]+)\.svc(\.|$)/.exec(host);
  return m ? { name: m[1]!, namespace: m[2]! } : { name: host, namespace: 'unknown' };
}

/** The service host of an Istio-style cluster name ("outbound|8080|v1|api.shop.svc.cluster.local"), else the name. */
export function clusterHost(cluster: string): string {
  if (!cluster.startsWith('outbound|')) return cluster;
  return cluster.slice(cluster.lastIndexOf('|') + 1);
}
