// A finished span as proxies hand it to an exporter (OTLP or a test sink).

export interface FinishedSpan {
  /** 32 lowercase hex. */
  readonly traceId: string;
  /** 16 lowercase hex. */
  readonly spanId: string;
  /** The caller's span; undefined for a trace started here. */
  readonly parentSpanId: string | undefined;
  /** W3C trace-flags (bit 0: sampled). */
  readonly traceFlags: number;
  readonly traceState: string | undefined;
  readonly name: string;
  /** Epoch ms. */
  readonly startMs: number;
  readonly endMs: number;
  readonly error: boolean;
  readonly attributes: Readonly<Record<string, string | number>>;
}

export interface SpanSink {
  /** Must not block: queue or drop. */
  record(span: FinishedSpan): void;
}
