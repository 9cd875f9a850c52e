// A node's recent flow records (Hubble's per-node ring buffer): bounded, the oldest dropped
// first, each record numbered by a monotonic sequence number so a reader asks for "everything
// after seq N" and notices what it missed. Served as JSON lines on GET /flows?since=N.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FlowRecord, Verdict } from './flows.js';

/** Hubble's default buffer is 4095 flows; L7 records (one per request) fill it faster here. */
export const DEFAULT_FLOW_BUFFER = 10_000;
/** Most records one GET /flows answers (a reader pages on with since=<last seq>). */
export const MAX_FLOWS_PER_READ = 10_000;

/** Response headers of GET /flows: the newest seq in the buffer, and how many were dropped since start. */
export const LAST_SEQ_HEADER = 'trellis-flows-last-seq';
export const DROPPED_HEADER = 'trellis-flows-dropped';

export interface SeqFlow {
  readonly seq: number;
  readonly record: FlowRecord;
}

/** What every L7 record of one filter shares (the node, the worker, the observation point). */
export interface L7FlowOrigin {
  readonly node: string;
  readonly worker?: number;
  readonly role: 'waypoint' | 'gateway';
}

const VERDICTS: readonly Verdict[] = ['FORWARDED', 'DENIED', 'ERROR'];
const L7_SLOT = 1;

/**
 * Records ever pushed are numbered; the buffer keeps the newest `capacity`. L4 records (one
 * per connection) are kept as objects. L7 records (one per request) are kept as columns in
 * preallocated arrays: the request's own strings are referenced, nothing is allocated, and the
 * record object is only built when someone reads the buffer — retained per-request objects
 * would be promoted by the GC and cost throughput.
 */
export class FlowBuffer {
  readonly capacity: number;
  readonly #slots: (FlowRecord | typeof L7_SLOT | undefined)[];
  /** Records ever pushed; the newest has seq #pushed (seqs start at 1). */
  #pushed = 0;
  // L7 columns, valid where the slot is L7_SLOT.
  readonly #origin: (L7FlowOrigin | undefined)[];
  readonly #start: Float64Array;
  readonly #duration: Float64Array;
  readonly #status: Uint16Array;
  readonly #verdict: Uint8Array;
  readonly #sent: Float64Array;
  readonly #received: Float64Array;
  readonly #strings: (string | undefined)[];
  readonly #flags: (readonly string[] | undefined)[];

  constructor(capacity = DEFAULT_FLOW_BUFFER) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`flow buffer capacity ${capacity}`);
    this.capacity = capacity;
    this.#slots = new Array<FlowRecord | typeof L7_SLOT | undefined>(capacity).fill(undefined);
    this.#origin = new Array<L7FlowOrigin | undefined>(capacity).fill(undefined);
    this.#start = new Float64Array(capacity);
    this.#duration = new Float64Array(capacity);
    this.#status = new Uint16Array(capacity);
    this.#verdict = new Uint8Array(capacity);
    this.#sent = new Float64Array(capacity);
    this.#received = new Float64Array(capacity);
    this.#strings = new Array<string | undefined>(capacity * L7_STRINGS).fill(undefined);
    this.#flags = new Array<readonly string[] | undefined>(capacity).fill(undefined);
  }

  push(record: FlowRecord): void {
    const i = this.#pushed % this.capacity;
    this.#slots[i] = record;
    this.#origin[i] = undefined;
    this.#pushed++;
  }

  /**
   * One L7 request, as columns (positional on purpose: this runs per request). `traceparent`
   * is the header as received; the trace id is cut out of it when the record is read.
   */
  pushL7(
    origin: L7FlowOrigin,
    verdict: Verdict,
    startTime: number,
    durationMs: number,
    status: number,
    bytesSent: number,
    bytesReceived: number,
    flags: readonly string[],
    method: string,
    path: string,
    peerIdentity: string | undefined,
    peerAddress: string | undefined,
    service: string | undefined,
    upstreamHost: string | undefined,
    reason: string | undefined,
    traceparent: string | undefined,
  ): void {
    const i = this.#pushed % this.capacity;
    this.#slots[i] = L7_SLOT;
    this.#origin[i] = origin;
    this.#verdict[i] = verdict === 'FORWARDED' ? 0 : verdict === 'DENIED' ? 1 : 2;
    this.#start[i] = startTime;
    this.#duration[i] = durationMs;
    this.#status[i] = status;
    this.#sent[i] = bytesSent;
    this.#received[i] = bytesReceived;
    this.#flags[i] = flags;
    const o = i * L7_STRINGS;
    const t = this.#strings;
    t[o] = method;
    t[o + 1] = path;
    t[o + 2] = peerIdentity;
    t[o + 3] = peerAddress;
    t[o + 4] = service;
    t[o + 5] = upstreamHost;
    t[o + 6] = reason;
    t[o + 7] = traceparent;
    this.#pushed++;
  }

  /** Seq of the newest record (0 when none yet). */
  get lastSeq(): number {
    return this.#pushed;
  }

  /** Records overwritten before anyone could read them (since the start). */
  get dropped(): number {
    return Math.max(0, this.#pushed - this.capacity);
  }

  get size(): number {
    return Math.min(this.#pushed, this.capacity);
  }

  /** Records with seq > `since` still in the buffer, oldest first, at most `limit`. */
  since(since = 0, limit = MAX_FLOWS_PER_READ): SeqFlow[] {
    const first = Math.max(since + 1, this.#pushed - this.capacity + 1, 1);
    const last = Math.min(this.#pushed, first + Math.max(0, limit) - 1);
    const out: SeqFlow[] = [];
    for (let seq = first; seq <= last; seq++) {
      const i = (seq - 1) % this.capacity;
      const slot = this.#slots[i]!;
      out.push({ seq, record: slot === L7_SLOT ? this.#l7Record(i) : slot });
    }
    return out;
  }

  #l7Record(i: number): FlowRecord {
    const origin = this.#origin[i]!;
    const o = i * L7_STRINGS;
    const t = this.#strings;
    const verdict = VERDICTS[this.#verdict[i]!]!;
    const flags = this.#flags[i] ?? [];
    return {
      time: new Date(this.#start[i]!).toISOString(),
      node: origin.node,
      ...(origin.worker !== undefined ? { worker: origin.worker } : {}),
      // Both L7 roles receive the request (Hubble's INGRESS at the proxy).
      direction: 'inbound',
      verdict,
      ...(verdict !== 'FORWARDED' && t[o + 6] !== undefined ? { reason: t[o + 6] } : {}),
      ...(policyOf(t[o + 6]) ? { policy: policyOf(t[o + 6])! } : {}),
      source: { identity: t[o + 2], address: t[o + 3] },
      destination: { service: t[o + 4], address: t[o + 5] },
      via: origin.role,
      observationPoint: origin.role,
      bytesSent: this.#sent[i]!,
      bytesReceived: this.#received[i]!,
      durationMs: this.#duration[i]!,
      l7: {
        method: t[o]!,
        path: t[o + 1]!,
        status: this.#status[i]!,
        latencyMs: this.#duration[i]!,
        flags: [...flags],
      },
      ...(traceIdOf(t[o + 7]) ? { traceId: traceIdOf(t[o + 7])! } : {}),
    };
  }
}

// method, path, peer identity, peer address, service, upstream host, reason, traceparent
const L7_STRINGS = 8;

/** The RBAC policy an L7 denial names (Envoy's rbac_access_denied_matched_policy[<name>]). */
function policyOf(details: string | undefined): string | undefined {
  const m = details === undefined ? null : /^rbac_access_denied_matched_policy\[(.+)\]$/.exec(details);
  return m && m[1] !== 'none' ? m[1] : undefined;
}

/** traceparent "00-<32 hex trace id>-<16 hex span id>-<flags>" -> the trace id. */
function traceIdOf(tp: string | undefined): string | undefined {
  if (tp === undefined || tp.length < 55 || tp[2] !== '-' || tp[35] !== '-') return undefined;
  const id = tp.slice(3, 35);
  return id === '00000000000000000000000000000000' ? undefined : id;
}

/** One JSON line per record, in the stdout format (`type: "flow"`) plus its seq. */
export function flowLine(f: SeqFlow): string {
  return JSON.stringify({ type: 'flow', seq: f.seq, ...f.record });
}

/** `since` query value: a non-negative integer, else undefined (a bad value is a 400). */
export function parseSeq(v: string | null): number | undefined {
  if (v === null || v === '') return 0;
  return /^\d{1,15}$/.test(v) ? Number(v) : undefined;
}

/** GET /flows?since=N[&limit=M] on a node's metrics address, from `buffer`. */
export function serveFlows(buffer: FlowBuffer, req: IncomingMessage, res: ServerResponse): void {
  const q = new URL(req.url ?? '/', 'http://node').searchParams;
  const since = parseSeq(q.get('since'));
  const limit = q.has('limit') ? parseSeq(q.get('limit')) : MAX_FLOWS_PER_READ;
  if (since === undefined || limit === undefined) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end('since and limit must be non-negative integers\n');
    return;
  }
  const records = buffer.since(since, Math.min(limit, MAX_FLOWS_PER_READ));
  const body = records.length ? `${records.map(flowLine).join('\n')}\n` : '';
  res.writeHead(200, {
    'content-type': 'application/jsonl',
    'content-length': Buffer.byteLength(body),
    [LAST_SEQ_HEADER]: String(buffer.lastSeq),
    [DROPPED_HEADER]: String(buffer.dropped),
  });
  res.end(body);
}
