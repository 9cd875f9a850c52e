// A batching OTLP/HTTP trace exporter (the OpenTelemetry SDK's BatchSpanProcessor + OTLP exporter
// in one): spans are queued, sent as protobuf ExportTraceServiceRequests (POST <endpoint>/v1/traces,
// Content-Type application/x-protobuf) up to maxBatch at a time, when a batch is full or every
// flushIntervalMs. The queue is bounded: when full, spans are dropped and counted, so a slow or
// absent collector never holds requests or memory. One request in flight at a time; a failed
// batch is counted and dropped (no retry: the next batch is newer and as important).
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { FinishedSpan, SpanSink } from './span.js';

/** The SDK's ReadableSpan, as the serializer takes it (no direct dependency on the SDK packages). */
type ReadableSpan = Parameters<typeof ProtobufTraceSerializer.serializeRequest>[0][number];
type Resource = ReadableSpan['resource'];
type SpanContext = ReturnType<ReadableSpan['spanContext']>;
type TraceState = NonNullable<SpanContext['traceState']>;
type HrTime = ReadableSpan['startTime'];

export interface OtlpExporterOptions {
  /** The collector's base URL ("http://127.0.0.1:4318"); a URL ending in /v1/traces is used as is. */
  readonly endpoint: string;
  /** Resource attribute service.name. */
  readonly serviceName: string;
  /** More resource attributes. */
  readonly resourceAttributes?: Readonly<Record<string, string>>;
  /** Spans per request; default 512. */
  readonly maxBatch?: number;
  /** Spans waiting at most; default 2048 (the SDK's maxQueueSize). */
  readonly maxQueue?: number;
  /** Send what is queued at least this often (ms); default 1000. */
  readonly flushIntervalMs?: number;
  /** Per request (ms); default 10000. */
  readonly timeoutMs?: number;
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface OtlpExporterStats {
  /** Spans the collector accepted (2xx). */
  readonly exported: number;
  /** Spans dropped because the queue was full (or the exporter closed). */
  readonly dropped: number;
  /** Spans in batches that failed (connection error, timeout, non-2xx). */
  readonly failed: number;
  readonly queued: number;
}

/** SDK SpanKind.SERVER (the serializer adds 1 for the proto enum). */
const SPAN_KIND_SERVER = 1 as ReadableSpan['kind'];
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;

function hrTime(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

/** A received tracestate, kept as a string (we add no entries of our own). */
class OpaqueTraceState implements TraceState {
  constructor(readonly value: string) {}
  set(): TraceState {
    return this;
  }
  unset(): TraceState {
    return this;
  }
  get(): string | undefined {
    return undefined;
  }
  serialize(): string {
    return this.value;
  }
}

function resourceOf(attributes: Record<string, string>): Resource {
  const resource: Resource = {
    attributes,
    merge: (other) =>
      other ? resourceOf({ ...attributes, ...(other.attributes as Record<string, string>) }) : resource,
    getRawAttributes: () => Object.entries(attributes),
  };
  return resource;
}

export function tracesUrl(endpoint: string): URL {
  const base = endpoint.replace(/\/+$/, '');
  return new URL(base.endsWith('/v1/traces') ? base : `${base}/v1/traces`);
}

export class OtlpTraceExporter implements SpanSink {
  readonly #url: URL;
  readonly #resource: Resource;
  readonly #scope = { name: 'trellis' };
  readonly #maxBatch: number;
  readonly #maxQueue: number;
  readonly #timeoutMs: number;
  readonly #agent: HttpAgent;
  readonly #log: OtlpExporterOptions['log'];
  readonly #timer: NodeJS.Timeout;
  #queue: FinishedSpan[] = [];
  #sending: Promise<void> | undefined;
  #scheduled = false;
  #closed = false;
  #exported = 0;
  #dropped = 0;
  #failed = 0;
  #warned = false;

  constructor(opts: OtlpExporterOptions) {
    this.#url = tracesUrl(opts.endpoint);
    this.#resource = resourceOf({ 'service.name': opts.serviceName, ...opts.resourceAttributes });
    this.#maxBatch = opts.maxBatch ?? 512;
    this.#maxQueue = opts.maxQueue ?? 2048;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#log = opts.log;
    this.#agent =
      this.#url.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: 1 })
        : new HttpAgent({ keepAlive: true, maxSockets: 1 });
    this.#timer = setInterval(() => this.#kick(), opts.flushIntervalMs ?? 1000);
    this.#timer.unref();
  }

  record(span: FinishedSpan): void {
    if (this.#closed || this.#queue.length >= this.#maxQueue) {
      this.#dropped++;
      return;
    }
    this.#queue.push(span);
    // A full batch goes now, but never from inside the request's own callback.
    if (this.#queue.length >= this.#maxBatch && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#kick();
      });
    }
  }

  stats(): OtlpExporterStats {
    return { exported: this.#exported, dropped: this.#dropped, failed: this.#failed, queued: this.#queue.length };
  }

  /** Sends everything queued (in batches); resolves when done. */
  async flush(): Promise<void> {
    while (this.#sending || this.#queue.length > 0) {
      if (!this.#sending) this.#kick();
      await this.#sending;
    }
  }

  /**
   * Sends what is queued, then stops; later spans are dropped. Waits at most `waitMs` for the
   * collector (a node being stopped must not hang on it); what is still unsent is then dropped.
   */
  async close(waitMs = 2_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    let timer: NodeJS.Timeout | undefined;
    const sent = await Promise.race([
      this.flush().then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), waitMs))),
    ]);
    clearTimeout(timer);
    if (!sent) {
      this.#dropped += this.#queue.length;
      this.#queue.length = 0;
    }
    // Aborts a request still in flight (its batch counts as failed).
    this.#agent.destroy();
  }

  /** Starts sending batches unless a send is in flight (it continues itself). */
  #kick(): void {
    if (this.#sending || this.#queue.length === 0) return;
    this.#sending = (async () => {
      try {
        while (this.#queue.length > 0) {
          const batch = this.#queue.splice(0, this.#maxBatch);
          await this.#send(batch);
          // Between flush intervals, only full batches go out.
          if (!this.#closed && this.#queue.length < this.#maxBatch) break;
        }
      } finally {
        this.#sending = undefined;
      }
    })();
  }

  async #send(batch: FinishedSpan[]): Promise<void> {
    let body: Uint8Array | undefined;
    try {
      body = ProtobufTraceSerializer.serializeRequest(batch.map((s) => this.#toReadable(s)));
    } catch (e) {
      body = undefined;
      this.#log?.('error', 'otlp: cannot serialize spans', { error: String(e) });
    }
    if (!body) {
      this.#failed += batch.length;
      return;
    }
    const payload = body;
    const ok = await new Promise<boolean | string>((resolve) => {
      const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(
        this.#url,
        {
          method: 'POST',
          agent: this.#agent,
          headers: { 'content-type': 'application/x-protobuf', 'content-length': payload.byteLength },
          timeout: this.#timeoutMs,
        },
        (res) => {
          res.resume();
          res.once('end', () => {
            const status = res.statusCode ?? 0;
            resolve(status >= 200 && status < 300 ? true : `HTTP ${status}`);
          });
          res.once('error', (e) => resolve(String(e)));
        },
      );
      req.once('timeout', () => req.destroy(new Error('timeout')));
      req.once('error', (e) => resolve(String(e)));
      req.end(payload);
    });
    if (ok === true) {
      this.#exported += batch.length;
      this.#warned = false;
      return;
    }
    this.#failed += batch.length;
    // Once per outage, not once per batch.
    if (!this.#warned) {
      this.#warned = true;
      this.#log?.('warn', 'otlp: export failed; spans dropped', { endpoint: this.#url.href, error: ok });
    }
  }

  #toReadable(s: FinishedSpan): ReadableSpan {
    const context: SpanContext = {
      traceId: s.traceId,
      spanId: s.spanId,
      traceFlags: s.traceFlags,
      isRemote: false,
      ...(s.traceState ? { traceState: new OpaqueTraceState(s.traceState) } : {}),
    };
    const start = hrTime(s.startMs);
    const end = hrTime(Math.max(s.endMs, s.startMs));
    return {
      name: s.name,
      kind: SPAN_KIND_SERVER,
      spanContext: () => context,
      parentSpanContext:
        s.parentSpanId === undefined
          ? undefined
          : { traceId: s.traceId, spanId: s.parentSpanId, traceFlags: s.traceFlags, isRemote: true },
      startTime: start,
      endTime: end,
      duration: hrTime(Math.max(0, s.endMs - s.startMs)),
      status: { code: s.error ? STATUS_ERROR : STATUS_UNSET },
      attributes: s.attributes,
      links: [],
      events: [],
      ended: true,
      resource: this.#resource,
      instrumentationScope: this.#scope,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
  }
}
