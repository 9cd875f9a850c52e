// Hubble Relay's role: GET /flows on the admin port pulls what every node of the current model
// buffered since the last pull (each node's GET /flows?since=<its seq>), merges the new records
// by time into one bounded buffer with the relay's own sequence, and answers with the records
// that match the filters, as JSON lines. Pulls happen only when someone reads (no background
// polling), one at a time, each node bounded by a timeout.
import type { MeshModel } from '../model/mesh-model.js';
import { FlowBuffer, flowLine, LAST_SEQ_HEADER, parseSeq, type SeqFlow } from '../observe/flow-buffer.js';
import type { FlowRecord } from '../observe/flows.js';

const NODE_TIMEOUT_MS = 3_000;
/** Records the relay keeps (all nodes together). */
const RELAY_BUFFER = 50_000;
/** Header naming the nodes that did not answer this pull. */
export const UNREACHABLE_HEADER = 'trellis-flows-unreachable';

export interface FlowFilter {
  /** Relay seq: only records after it. */
  readonly since: number;
  /** Epoch ms: only records at or after it. */
  readonly sinceTime?: number;
  readonly from?: string;
  readonly to?: string;
  readonly verdict?: string;
  /** "404" or a class "5xx": L7 records only. */
  readonly httpStatus?: string;
}

export const VERDICTS = ['FORWARDED', 'DENIED', 'ERROR'] as const;

/** Why a filter value is invalid, or undefined. Shared by the CLI (usage errors) and the relay (400). */
export function checkHttpStatus(v: string): string | undefined {
  return /^[1-5](\d\d|xx)$/i.test(v)
    ? undefined
    : `expected a status like 404 or a class like 5xx, got ${JSON.stringify(v)}`;
}

/** "shop/orders" matches a workload id "WorkloadEntry/shop/orders", spiffe://td/ns/shop/sa/orders and orders.shop.svc...; else substring. */
function endpointMatches(e: FlowRecord['source'] & { service?: string }, want: string): boolean {
  const slash = want.indexOf('/');
  if (slash > 0 && slash === want.lastIndexOf('/')) {
    const ns = want.slice(0, slash);
    const name = want.slice(slash + 1);
    if (e.workload?.endsWith(`/${ns}/${name}`) || e.workload?.includes(`/${ns}/${name}#`)) return true;
    if (e.identity?.endsWith(`/ns/${ns}/sa/${name}`)) return true;
    if (e.service?.startsWith(`${name}.${ns}.`) || e.service === `${name}.${ns}`) return true;
  }
  return (
    (e.workload?.includes(want) ?? false) ||
    (e.identity?.includes(want) ?? false) ||
    (e.service?.includes(want) ?? false) ||
    (e.address?.includes(want) ?? false)
  );
}

export function matchesFlow(r: FlowRecord, f: FlowFilter): boolean {
  if (f.verdict !== undefined && r.verdict !== f.verdict) return false;
  if (f.sinceTime !== undefined && Date.parse(r.time) < f.sinceTime) return false;
  if (f.from !== undefined && !endpointMatches(r.source, f.from)) return false;
  if (f.to !== undefined && !endpointMatches(r.destination, f.to)) return false;
  if (f.httpStatus !== undefined) {
    if (!r.l7) return false;
    const s = String(r.l7.status);
    const want = f.httpStatus.toLowerCase();
    if (want.endsWith('xx') ? s[0] !== want[0] || s.length !== 3 : s !== want) return false;
  }
  return true;
}

/** Query parameters -> filter, or the error for a 400. */
export function parseFlowFilter(q: URLSearchParams): FlowFilter | string {
  const since = parseSeq(q.get('since'));
  if (since === undefined) return 'since: expected a sequence number';
  let sinceTime: number | undefined;
  const st = q.get('since_time');
  if (st) {
    sinceTime = /^\d+$/.test(st) ? Number(st) : Date.parse(st);
    if (!Number.isFinite(sinceTime)) return 'since_time: expected epoch milliseconds or an RFC 3339 time';
  }
  const verdict = q.get('verdict')?.toUpperCase() || undefined;
  if (verdict !== undefined && !(VERDICTS as readonly string[]).includes(verdict))
    return `verdict: expected one of ${VERDICTS.join(', ')}`;
  const httpStatus = q.get('http_status') || undefined;
  if (httpStatus !== undefined) {
    const bad = checkHttpStatus(httpStatus);
    if (bad) return `http_status: ${bad}`;
  }
  return {
    since,
    ...(sinceTime !== undefined ? { sinceTime } : {}),
    ...(q.get('from') ? { from: q.get('from')! } : {}),
    ...(q.get('to') ? { to: q.get('to')! } : {}),
    ...(verdict ? { verdict } : {}),
    ...(httpStatus ? { httpStatus } : {}),
  };
}

export interface RelayAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string>;
}

export class FlowRelay {
  readonly #model: () => MeshModel | undefined;
  readonly #buffer = new FlowBuffer(RELAY_BUFFER);
  /** Per node ("name@address:port"): the last node seq pulled. */
  readonly #cursors = new Map<string, number>();
  #pulling: Promise<string[]> | undefined;

  /** Records from elsewhere than the nodes' /flows (the kernel's policy drops), pulled with them. */
  readonly #sources: readonly (() => Promise<FlowRecord[]>)[];

  constructor(model: () => MeshModel | undefined, sources: readonly (() => Promise<FlowRecord[]>)[] = []) {
    this.#model = model;
    this.#sources = sources;
  }

  /** Pulls new records from every node; resolves with the nodes that did not answer. */
  pull(): Promise<string[]> {
    this.#pulling ??= this.#pullOnce().finally(() => (this.#pulling = undefined));
    return this.#pulling;
  }

  async #pullOnce(): Promise<string[]> {
    const nodes = this.#model()?.nodes ?? [];
    const unreachable: string[] = [];
    const batches = await Promise.all(
      nodes.map(async (n): Promise<FlowRecord[]> => {
        const port = n.ports.metrics;
        if (port === undefined) return [];
        const key = `${n.name}@${n.address}:${port}`;
        try {
          let got = await this.#fetchNode(n.address, port, this.#cursors.get(key) ?? 0);
          // The node restarted (its seq went back): read its buffer from the start.
          if (got.last < (this.#cursors.get(key) ?? 0)) got = await this.#fetchNode(n.address, port, 0);
          this.#cursors.set(key, got.records.length ? got.records[got.records.length - 1]!.seq : got.last);
          return got.records.map((r) => r.record);
        } catch {
          unreachable.push(n.name);
          return [];
        }
      }),
    );
    const extra = await Promise.all(this.#sources.map((source) => source().catch(() => [])));
    const merged = [...batches.flat(), ...extra.flat()];
    merged.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    for (const r of merged) this.#buffer.push(r);
    return unreachable;
  }

  async #fetchNode(address: string, port: number, since: number): Promise<{ records: SeqFlow[]; last: number }> {
    const host = address.includes(':') ? `[${address}]` : address;
    const res = await fetch(`http://${host}:${port}/flows?since=${since}`, {
      signal: AbortSignal.timeout(NODE_TIMEOUT_MS),
    });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const text = await res.text();
    const records: SeqFlow[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      const { type: _t, seq, ...record } = JSON.parse(line) as FlowRecord & { type?: string; seq: number };
      records.push({ seq, record });
    }
    return { records, last: Number(res.headers.get(LAST_SEQ_HEADER) ?? 0) };
  }

  /** GET /flows?since=&since_time=&from=&to=&verdict=&http_status= */
  async handle(q: URLSearchParams): Promise<RelayAnswer> {
    const filter = parseFlowFilter(q);
    if (typeof filter === 'string')
      return { status: 400, body: JSON.stringify({ error: filter }), headers: { 'content-type': 'application/json' } };
    const unreachable = await this.pull();
    const lines: string[] = [];
    for (const f of this.#buffer.since(filter.since, RELAY_BUFFER))
      if (matchesFlow(f.record, filter)) lines.push(flowLine(f));
    return {
      status: 200,
      body: lines.length ? `${lines.join('\n')}\n` : '',
      headers: {
        'content-type': 'application/jsonl',
        // The cursor for the next read, even when no record matched.
        [LAST_SEQ_HEADER]: String(this.#buffer.lastSeq),
        ...(unreachable.length ? { [UNREACHABLE_HEADER]: unreachable.join(',') } : {}),
      },
    };
  }
}
