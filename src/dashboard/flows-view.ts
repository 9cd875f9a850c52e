// The live flow table (Hubble UI's flows list) and the recent-denials panel above it.
import type { FlowRecord } from '../observe/flow-types.js';
import { h } from './dom.js';
import { clockTime, formatBytes, formatNumber, identityName, workloadName } from './format.js';

/** One line of GET /flows: a flow record plus the relay's sequence number. */
export type FlowLine = FlowRecord & { readonly seq: number };

/** Rows kept in the table; older ones are dropped from the bottom. */
export const MAX_ROWS = 500;
/** Denials listed in the panel. */
export const MAX_DENIALS = 20;

/** JSON lines -> records; a line that does not parse (cut off, or from a newer format) is skipped. */
export function parseFlowLines(body: string): FlowLine[] {
  const lines: FlowLine[] = [];
  for (const line of body.split('\n')) {
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line) as Partial<FlowLine> & { type?: string };
      if (value.type === 'flow' && typeof value.seq === 'number') lines.push(value as FlowLine);
    } catch {
      // skipped
    }
  }
  return lines;
}

function sourceName(f: FlowRecord): string {
  const { workload, identity } = f.source;
  return workload ? workloadName(workload) : identity ? identityName(identity) : '–';
}

function destinationName(f: FlowRecord): string {
  const { service, workload, identity } = f.destination;
  return service ?? (workload ? workloadName(workload) : identity ? identityName(identity) : '–');
}

function observationPoint(f: FlowRecord): string {
  // Records written before the field existed: read it from the direction.
  return f.observationPoint ?? (f.direction === 'inbound' ? 'node-inbound' : 'node-outbound');
}

/** L7: "GET /orders" over "200 · 12.3 ms"; L4: the bytes each way over how long the connection lasted. */
function trafficCell(f: FlowRecord): HTMLTableCellElement {
  if (f.l7) {
    const status = f.l7.status === 0 ? 'reset' : String(f.l7.status);
    const flags = f.l7.flags.length ? ` · ${f.l7.flags.join(',')}` : '';
    return twoLineCell(`${f.l7.method} ${f.l7.path}`, `${status} · ${formatNumber(f.l7.latencyMs)} ms${flags}`, 'mono');
  }
  if (f.bytesSent === undefined && f.bytesReceived === undefined) return textCell('–', 'mono');
  const bytes = `↑ ${formatBytes(f.bytesSent ?? 0)} ↓ ${formatBytes(f.bytesReceived ?? 0)}`;
  return twoLineCell(bytes, f.durationMs === undefined ? undefined : `${formatNumber(f.durationMs)} ms`, 'mono');
}

/** "AuthorizationPolicy/shop/allow-api" -> "shop/allow-api" over "AuthorizationPolicy". */
function policyCell(policy: string | undefined): HTMLTableCellElement {
  if (!policy) return textCell(undefined, 'policy');
  const slash = policy.indexOf('/');
  const cell =
    slash > 0 ? twoLineCell(policy.slice(slash + 1), policy.slice(0, slash)) : twoLineCell(policy, undefined);
  cell.classList.add('policy');
  cell.title = policy;
  return cell;
}

function timeOf(f: FlowRecord): string {
  return clockTime(new Date(f.time));
}

/** A cell with one main line and, when there is one, a muted second line (an address). */
function twoLineCell(main: string, sub: string | undefined, className?: string): HTMLTableCellElement {
  return h(
    'td',
    { class: className, title: sub ? `${main}\n${sub}` : main },
    h('div', { class: 'cell-main' }, main),
    sub ? h('div', { class: 'cell-sub' }, sub) : undefined,
  );
}

function textCell(text: string | undefined, className?: string): HTMLTableCellElement {
  return h('td', { class: className, title: text }, text ?? '');
}

function flowRow(f: FlowLine): HTMLTableRowElement {
  const verdictClass = f.verdict === 'DENIED' ? 'denied' : f.verdict === 'ERROR' ? 'error' : undefined;
  return h(
    'tr',
    { 'data-verdict': f.verdict, 'data-seq': f.seq, class: verdictClass },
    textCell(timeOf(f), 'mono'),
    textCell(f.worker === undefined ? f.node : `${f.node} #${f.worker}`),
    textCell(observationPoint(f)),
    twoLineCell(sourceName(f), f.source.address),
    twoLineCell(destinationName(f), f.destination.address),
    h('td', {}, h('span', { class: `verdict verdict-${f.verdict.toLowerCase()}` }, f.verdict)),
    trafficCell(f),
    policyCell(decidedBy(f) || undefined),
    h('td', { title: f.reason }, h('div', { class: 'reason' }, f.reason ?? '')),
    h('td', { class: 'mono', title: f.traceId }, f.traceId?.slice(0, 8) ?? ''),
  );
}

interface Row {
  readonly tr: HTMLTableRowElement;
  /** Everything the row says, lower-cased, for the client-side text filter. */
  readonly text: string;
}

export class FlowTable {
  /** Newest first, like the table. */
  #rows: Row[] = [];
  #filter = '';

  constructor(
    private readonly tbody: HTMLTableSectionElement,
    private readonly countLabel: HTMLElement,
  ) {}

  clear(): void {
    this.#rows = [];
    this.tbody.replaceChildren();
    this.#updateCount();
  }

  /** `flows` oldest first, as the API sends them. */
  add(flows: readonly FlowLine[]): void {
    const fresh: Row[] = flows
      .slice(-MAX_ROWS)
      .reverse()
      .map((f) => {
        const tr = flowRow(f);
        const text = `${tr.textContent ?? ''} ${f.traceId ?? ''} ${f.source.identity ?? ''} ${f.destination.identity ?? ''}`;
        return { tr, text: text.toLowerCase() };
      });
    if (fresh.length === 0) return;
    for (const row of fresh) row.tr.hidden = !this.#matches(row);
    this.tbody.prepend(...fresh.map((r) => r.tr));
    this.#rows = [...fresh, ...this.#rows];
    for (const dropped of this.#rows.splice(MAX_ROWS)) dropped.tr.remove();
    this.#updateCount();
  }

  setFilter(text: string): void {
    this.#filter = text.trim().toLowerCase();
    for (const row of this.#rows) row.tr.hidden = !this.#matches(row);
    this.#updateCount();
  }

  #matches(row: Row): boolean {
    return this.#filter === '' || row.text.includes(this.#filter);
  }

  #updateCount(): void {
    const shown = this.#rows.filter((r) => !r.tr.hidden).length;
    this.countLabel.textContent =
      shown === this.#rows.length ? `${this.#rows.length} flows` : `${shown} of ${this.#rows.length} flows`;
  }
}

/** The last DENIED records and how many the page has seen; a record re-read after a filter change counts once. */
export class DenialsPanel {
  /** Relay seqs already counted. */
  readonly #seen = new Set<number>();
  #count = 0;
  #recent: FlowLine[] = [];

  constructor(
    private readonly list: HTMLElement,
    private readonly countLabel: HTMLElement,
  ) {
    this.#render();
  }

  /** The relay restarted and numbers its records from 1 again: old seqs say nothing about new records. */
  forgetSeqs(): void {
    this.#seen.clear();
  }

  add(flows: readonly FlowLine[]): void {
    const fresh = flows.filter((f) => f.verdict === 'DENIED' && !this.#seen.has(f.seq));
    if (fresh.length === 0) return;
    for (const f of fresh) this.#seen.add(f.seq);
    this.#count += fresh.length;
    // Newest first by record time (RFC 3339 strings of one clock sort as text).
    this.#recent = [...fresh, ...this.#recent]
      .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : b.seq - a.seq))
      .slice(0, MAX_DENIALS);
    this.#render();
  }

  #render(): void {
    this.countLabel.textContent = String(this.#count);
    if (this.#recent.length === 0) {
      this.list.replaceChildren(h('li', { class: 'empty' }, 'No denials seen.'));
      return;
    }
    this.list.replaceChildren(
      ...this.#recent.map((f) =>
        h(
          'li',
          { 'data-testid': 'denial', class: 'denial' },
          h('span', { class: 'mono muted' }, timeOf(f)),
          h(
            'span',
            { class: 'denial-path', title: `${sourceName(f)} → ${destinationName(f)}` },
            `${sourceName(f)} → ${destinationName(f)}`,
          ),
          h('span', { class: 'policy', title: decidedBy(f) }, decidedBy(f)),
          h('span', { class: 'muted denial-reason', title: f.reason }, f.reason ?? ''),
        ),
      ),
    );
  }
}

/**
 * The policy that decided a denial: the record's own, else (a default deny: ALLOW policies in
 * force, none matched) the ALLOW policies its reason names.
 */
function decidedBy(f: FlowRecord): string {
  if (f.policy) return f.policy;
  const inForce = /ALLOW policies in force: ([^)]+)\)/.exec(f.reason ?? '')?.[1];
  if (inForce) return `${inForce} (no rule matched)`;
  return f.verdict === 'DENIED' ? 'default deny' : '';
}
