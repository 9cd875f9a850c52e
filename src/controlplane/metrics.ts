// The control plane's own metrics, served at GET /metrics on the admin (monitoring) port in
// the Prometheus text format 0.0.4. Names follow istiod's (pilot_*, citadel_*) so existing
// dashboards and alerts work; what istiod has no name for is trellis_*.
//
// istiod exposes its counters without the `_total` suffix (pilot_xds_pushes,
// pilot_total_xds_rejects); we keep those names as they are, which promtool's linter flags.
import { X509Certificate } from 'node:crypto';
import type { AdsMetricsSink } from '../xds/server/ads-server.js';
import { TYPE_URLS } from '../xds/snapshot.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** istiod's buckets for pilot_proxy_convergence_time. */
export const CONVERGENCE_BUCKETS: readonly number[] = [0.1, 0.5, 1, 3, 5, 10, 20, 30];
/** istiod's buckets for pilot_xds_push_time. */
export const PUSH_TIME_BUCKETS: readonly number[] = [0.01, 0.1, 1, 3, 5, 10, 20, 30];
/** Compiling and translating a configuration: milliseconds for small meshes, seconds for big ones. */
export const TRANSLATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

type Labels = Readonly<Record<string, string>>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return Number.isNaN(v) ? 'NaN' : String(v);
}

/** A stable key for a label set (label order as given by the code, which is fixed per family). */
function key(labels: Labels): string {
  return JSON.stringify(labels);
}

interface HistogramSeries {
  readonly labels: Labels;
  readonly counts: number[];
  sum: number;
  count: number;
}

/** A histogram family with fixed buckets; series are created on first observation. */
export class Histogram {
  readonly #series = new Map<string, HistogramSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  observe(value: number, labels: Labels = {}): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket${labelText(s.labels, ['le', num(b)])} ${s.counts[i]}`),
      );
      out.push(`${this.name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${s.count}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`);
      out.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
  }
}

/** A counter family (monotonic; series created on first increment). */
export class Counter {
  readonly #series = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    const s = this.#series.get(k);
    if (s) s.value += by;
    else this.#series.set(k, { labels, value: by });
  }

  value(labels: Labels = {}): number {
    return this.#series.get(key(labels))?.value ?? 0;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    for (const s of this.#series.values()) out.push(`${this.name}${labelText(s.labels)} ${num(s.value)}`);
  }
}

/** A gauge family computed at scrape time. */
function renderGauge(out: string[], name: string, help: string, samples: Iterable<[Labels, number]>): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
  for (const [labels, v] of samples) out.push(`${name}${labelText(labels)} ${num(v)}`);
}

const SHORT_TYPES: Readonly<Record<string, string>> = {
  [TYPE_URLS.cluster]: 'cds',
  [TYPE_URLS.endpoint]: 'eds',
  [TYPE_URLS.listener]: 'lds',
  [TYPE_URLS.route]: 'rds',
  [TYPE_URLS.secret]: 'sds',
};

/** istiod's `type` label: cds, eds, lds, rds, sds; anything else by its message name. */
export function xdsTypeLabel(typeUrl: string): string {
  return SHORT_TYPES[typeUrl] ?? typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/** What the metrics read from the rest of the control plane at scrape time. */
export interface ControlPlaneMetricsSources {
  /** Connected xDS streams (AdsServer.clients()). */
  readonly clients?: () => readonly {
    readonly nodeId: string;
    readonly userAgentVersion: string;
    readonly types: readonly { readonly typeUrl: string; readonly status: string }[];
  }[];
  /** The configuration generation in force. */
  readonly generation?: () => number;
  /** Root certificate(s) of the trust bundle and the signing CA certificate. DER or X509Certificate. */
  readonly ca?: () => { readonly roots: readonly Buffer[]; readonly certificate: X509Certificate } | undefined;
  /** Per node: the PEM certificate chains of the SVIDs it is served (leaf first). */
  readonly workloadCerts?: () => Iterable<[node: string, chainsPem: readonly string[]]>;
}

/** Everything the control plane counts about itself, and its /metrics page. */
export class ControlPlaneMetrics implements AdsMetricsSink {
  readonly xdsPushes = new Counter('pilot_xds_pushes', 'xDS responses sent, by type (cds, eds, lds, rds, sds).');
  readonly xdsRejects = new Counter(
    'pilot_total_xds_rejects',
    'Total number of XDS responses from pilot rejected by proxy.',
  );
  readonly convergence = new Histogram(
    'pilot_proxy_convergence_time',
    'Delay in seconds between config change and a proxy receiving all required configuration.',
    CONVERGENCE_BUCKETS,
  );
  readonly pushTime = new Histogram(
    'pilot_xds_push_time',
    'Total time in seconds Pilot takes to push lds, rds, cds and eds.',
    PUSH_TIME_BUCKETS,
  );
  readonly reloads = new Counter(
    'trellis_config_reloads_total',
    'Configuration reloads, by result (applied, or rejected with the last good configuration kept).',
  );
  readonly translation = new Histogram(
    'trellis_config_translation_seconds',
    'Time to compile a configuration into the model (phase=compile) and translate it into xDS (phase=translate).',
    TRANSLATION_BUCKETS,
  );
  readonly #sources: ControlPlaneMetricsSources;
  /** Certificate expiry parsed once per distinct PEM (scrapes would otherwise re-parse every SVID). */
  #certExpiry = new Map<string, number>();

  constructor(sources: ControlPlaneMetricsSources = {}) {
    this.#sources = sources;
  }

  // AdsMetricsSink ---------------------------------------------------------------------

  responseSent(typeUrl: string, buildSeconds: number): void {
    const type = xdsTypeLabel(typeUrl);
    this.xdsPushes.inc({ type });
    this.pushTime.observe(buildSeconds, { type });
  }

  nack(typeUrl: string): void {
    this.xdsRejects.inc({ type: xdsTypeLabel(typeUrl) });
  }

  ack(_typeUrl: string, convergenceSeconds: number | undefined): void {
    if (convergenceSeconds !== undefined) this.convergence.observe(convergenceSeconds);
  }

  // Configuration ----------------------------------------------------------------------

  configReload(result: 'applied' | 'rejected'): void {
    this.reloads.inc({ result });
  }

  /** One compile + translate of the snapshot cache (its PushRecord). */
  translated(push: { readonly compileMs: number; readonly translateMs: number }): void {
    this.translation.observe(push.compileMs / 1000, { phase: 'compile' });
    this.translation.observe(push.translateMs / 1000, { phase: 'translate' });
  }

  // The page ---------------------------------------------------------------------------

  render(): string {
    const out: string[] = [];
    const clients = this.#sources.clients?.() ?? [];
    const byVersion = new Map<string, number>();
    for (const c of clients) {
      if (c.nodeId === '') continue; // no request yet: not a proxy we know
      const v = c.userAgentVersion || 'unknown';
      byVersion.set(v, (byVersion.get(v) ?? 0) + 1);
    }
    renderGauge(
      out,
      'pilot_xds',
      'Number of endpoints connected to this pilot using XDS.',
      [...byVersion].map(([version, n]) => [{ version }, n]),
    );
    this.xdsPushes.render(out);
    this.xdsRejects.render(out);
    // istiod's per-type reject gauges, from the current state: 1 per node whose last response of the type was NACKed.
    for (const type of ['cds', 'eds', 'lds', 'rds']) {
      const nodes = new Set<string>();
      for (const c of clients)
        for (const t of c.types) if (t.status === 'NACKED' && xdsTypeLabel(t.typeUrl) === type) nodes.add(c.nodeId);
      renderGauge(
        out,
        `pilot_xds_${type}_reject`,
        `Pilot rejected ${type.toUpperCase()} configs.`,
        [...nodes].map((node) => [{ node }, 1]),
      );
    }
    this.convergence.render(out);
    this.pushTime.render(out);
    this.reloads.render(out);
    if (this.#sources.generation) {
      renderGauge(out, 'trellis_config_generation', 'Generation of the configuration in force (0: none yet).', [
        [{}, this.#sources.generation()],
      ]);
    }
    this.translation.render(out);
    this.#renderCerts(out);
    return `${out.join('\n')}\n`;
  }

  #renderCerts(out: string[]): void {
    const ca = this.#sources.ca?.();
    if (ca) {
      const roots = ca.roots.map((d) => Date.parse(new X509Certificate(d).validTo));
      renderGauge(
        out,
        'citadel_server_root_cert_expiry_timestamp',
        'The unix timestamp, in seconds, when Citadel root cert will expire.',
        roots.length > 0 ? [[{}, Math.min(...roots) / 1000]] : [],
      );
      renderGauge(
        out,
        'citadel_server_cert_chain_expiry_timestamp',
        'The unix timestamp, in seconds, when Citadel cert chain will expire.',
        [[{}, Date.parse(ca.certificate.validTo) / 1000]],
      );
    }
    if (!this.#sources.workloadCerts) return;
    const seen = new Map<string, number>();
    const samples: [Labels, number][] = [];
    for (const [node, chains] of this.#sources.workloadCerts()) {
      let earliest = Infinity;
      for (const pem of chains) {
        const at = this.#certExpiry.get(pem) ?? Date.parse(new X509Certificate(pem).validTo) / 1000;
        seen.set(pem, at);
        earliest = Math.min(earliest, at);
      }
      if (earliest !== Infinity) samples.push([{ node }, earliest]);
    }
    // Rotated certificates drop out of the cache.
    this.#certExpiry = seen;
    renderGauge(
      out,
      'trellis_workload_cert_expiry_timestamp',
      'The unix timestamp, in seconds, when the earliest SVID served to the node expires.',
      samples,
    );
  }
}
