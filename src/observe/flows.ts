// Flow records (Hubble's idea): one structured record per connection a node proxy handled,
// with both identities and the verdict; and the Istio-named L4 counters derived from them.

export type Verdict = 'FORWARDED' | 'DENIED' | 'ERROR';

export interface FlowRecord {
  readonly time: string;
  readonly node: string;
  /** The node's worker process that handled it (when the node runs several). */
  readonly worker?: number;
  readonly direction: 'outbound' | 'inbound';
  readonly verdict: Verdict;
  /** Why it was denied or failed (a verify.ts reason, an RBAC decision, a connect error). */
  readonly reason?: string;
  readonly source: { readonly identity?: string; readonly address?: string; readonly workload?: string };
  readonly destination: {
    readonly identity?: string;
    readonly address?: string;
    readonly service?: string;
    readonly workload?: string;
  };
  /** What carried it: "hbone" (mTLS tunnel), "waypoint", "passthrough", "plaintext" (inbound, no tunnel). */
  readonly via?: string;
  /**
   * "none" on an inbound connection the peer made in plaintext (a PERMISSIVE or DISABLE port):
   * Istio's connection_security_policy="none". Absent on everything else, which is mTLS inbound.
   */
  readonly tls?: 'none';
  readonly bytesSent?: number;
  readonly bytesReceived?: number;
  readonly durationMs?: number;
}

type Labels = Readonly<Record<string, string>>;

/** Counters by label set, rendered in the Prometheus text format. */
export class L4Metrics {
  readonly #counters = new Map<string, Map<string, { labels: Labels; value: number }>>();

  add(name: string, labels: Labels, by = 1): void {
    let series = this.#counters.get(name);
    if (!series) this.#counters.set(name, (series = new Map()));
    const key = JSON.stringify(labels);
    const s = series.get(key);
    if (s) s.value += by;
    else series.set(key, { labels, value: by });
  }

  /** Every series, for adding up the counters of several worker processes. */
  snapshot(): [name: string, labels: Labels, value: number][] {
    const out: [string, Labels, number][] = [];
    for (const [name, series] of this.#counters) for (const s of series.values()) out.push([name, s.labels, s.value]);
    return out;
  }

  merge(series: readonly (readonly [name: string, labels: Labels, value: number])[]): void {
    for (const [name, labels, value] of series) this.add(name, labels, value);
  }

  record(f: FlowRecord, phase: 'open' | 'close'): void {
    const labels: Labels = {
      reporter: f.direction === 'inbound' ? 'destination' : 'source',
      source_principal: f.source.identity ?? 'unknown',
      destination_principal: f.destination.identity ?? 'unknown',
      destination_service: f.destination.service ?? f.destination.address ?? 'unknown',
      response_flags: f.verdict === 'FORWARDED' ? '-' : f.verdict === 'DENIED' ? 'RBAC' : 'UF',
    };
    if (phase === 'open') this.add('istio_tcp_connections_opened_total', labels);
    else {
      this.add('istio_tcp_connections_closed_total', labels);
      if (f.bytesSent) this.add('istio_tcp_sent_bytes_total', labels, f.bytesSent);
      if (f.bytesReceived) this.add('istio_tcp_received_bytes_total', labels, f.bytesReceived);
    }
  }

  render(): string {
    const out: string[] = [];
    for (const [name, series] of [...this.#counters].sort(([a], [b]) => (a < b ? -1 : 1))) {
      out.push(`# TYPE ${name} counter`);
      for (const { labels, value } of series.values()) {
        const l = Object.entries(labels)
          .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
          .join(',');
        out.push(`${name}{${l}} ${value}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}
