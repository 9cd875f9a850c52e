// Trellis dashboard: polls the control plane's graph, signals and flows APIs and draws them.
// Every poll that fails leaves the last good data on screen and says so in the header.
import type { ServiceGraph, SignalsAnswer } from '../observe/graph-types.js';
import { byId } from './dom.js';
import { DenialsPanel, FlowTable, parseFlowLines } from './flows-view.js';
import { clockSeconds } from './format.js';
import { renderGraph } from './graph-view.js';
import { checkOk, getJson, HttpError, Poller } from './poll.js';
import { renderSignals } from './signals-view.js';

const GRAPH_WINDOW_SECONDS = 60;
const SIGNALS_MINUTES = 10;
const GRAPH_POLL_MS = 2_000;
const SIGNALS_POLL_MS = 5_000;
const FLOWS_POLL_MS = 2_000;
/** Typing in the status filter waits this long before restarting the flow query. */
const FILTER_DEBOUNCE_MS = 600;

// Response headers of GET /flows (src/observe/flow-buffer.ts, src/controlplane/flow-relay.ts).
const LAST_SEQ_HEADER = 'trellis-flows-last-seq';
const UNREACHABLE_HEADER = 'trellis-flows-unreachable';

type Feed = 'graph' | 'signals' | 'flows';

/** The header's status line: when data last arrived, and what is wrong right now. */
class Status {
  readonly #failures = new Map<Feed, string>();
  readonly #unreachable = new Map<Feed, readonly string[]>();
  readonly #rendered = new Set<Feed>();
  #lastUpdate: Date | undefined;

  constructor(private readonly element: HTMLElement) {}

  succeeded(feed: Feed, unreachable: readonly string[] = []): void {
    this.#failures.delete(feed);
    this.#unreachable.set(feed, unreachable);
    this.#rendered.add(feed);
    this.#lastUpdate = new Date();
    // The browser test waits for the first answer of every feed to be on screen.
    if (this.#rendered.size === 3) document.body.dataset.ready = 'true';
    this.#render();
  }

  failed(feed: Feed, error: unknown): void {
    this.#failures.set(feed, error instanceof Error ? error.message : String(error));
    this.#render();
  }

  #render(): void {
    const parts = [this.#lastUpdate ? `Updated ${clockSeconds(this.#lastUpdate)}` : 'Connecting…'];
    const warnings: string[] = [];
    for (const [feed, message] of this.#failures) warnings.push(`${feed} poll failed (${message}), showing last data`);
    const nodes = new Set([...this.#unreachable.values()].flat());
    if (nodes.size) warnings.push(`unreachable: ${[...nodes].sort().join(', ')}`);
    this.element.textContent = [...parts, ...warnings.map((w) => `⚠ ${w}`)].join(' · ');
    this.element.classList.toggle('warn', warnings.length > 0);
  }
}

const status = new Status(byId('status'));

// ---- graph ----

const graphSvg = document.querySelector<SVGSVGElement>('svg[data-testid="graph"]')!;
const graphMeta = byId('graph-meta');
let drawnGraph = '';

async function pollGraph(signal: AbortSignal): Promise<void> {
  const graph = await getJson<ServiceGraph>(`/api/graph?window=${GRAPH_WINDOW_SECONDS}`, signal);
  if (signal.aborted) return;
  // Redraw only when something drawn changed (the scrape time alone does not move anything).
  const drawn = JSON.stringify([graph.nodes, graph.edges]);
  if (drawn !== drawnGraph) {
    renderGraph(graphSvg, graph);
    drawnGraph = drawn;
  }
  graphMeta.textContent = `rates over the last ${graph.windowSeconds} s · scraped ${clockSeconds(new Date(graph.time))}`;
  status.succeeded('graph', graph.unreachable);
}

// ---- signals ----

const signalsContainer = byId('signals');

async function pollSignals(signal: AbortSignal): Promise<void> {
  const answer = await getJson<SignalsAnswer>(`/api/signals?minutes=${SIGNALS_MINUTES}`, signal);
  if (signal.aborted) return;
  renderSignals(signalsContainer, answer);
  status.succeeded('signals');
}

// ---- flows ----

const filterText = byId<HTMLInputElement>('filter-text');
const filterVerdict = byId<HTMLSelectElement>('filter-verdict');
const filterStatus = byId<HTMLInputElement>('filter-status');
const pauseButton = byId<HTMLButtonElement>('pause');
const filterError = byId('filter-error');
const table = new FlowTable(byId<HTMLTableSectionElement>('flow-rows'), byId('flow-count'));
const denials = new DenialsPanel(byId('denial-list'), byId('denial-count'));

/** The relay seq to read after; reset to 0 when the server-side filters change. */
let cursor = 0;
/** The server-side filters of the current query, as a query string. */
let serverFilters = currentServerFilters();
/** The server refused the filters (400): wait for the user to change them rather than ask again. */
let filtersRejected = false;

function currentServerFilters(): string {
  const q = new URLSearchParams();
  if (filterVerdict.value) q.set('verdict', filterVerdict.value);
  const httpStatus = filterStatus.value.trim();
  if (httpStatus) q.set('http_status', httpStatus);
  return q.toString();
}

async function pollFlows(signal: AbortSignal): Promise<void> {
  if (filtersRejected) return;
  const query = serverFilters ? `&${serverFilters}` : '';
  const res = await fetch(`/flows?since=${cursor}${query}`, { signal, cache: 'no-store' });
  if (res.status === 400) {
    const error = await checkOk(res).catch((e: unknown) => e);
    if (signal.aborted) return;
    filtersRejected = true;
    filterError.textContent = error instanceof HttpError ? error.message : 'the server refused these filters';
    return;
  }
  const body = await (await checkOk(res)).text();
  if (signal.aborted) return;
  const flows = parseFlowLines(body);
  const lastSeq = Number(res.headers.get(LAST_SEQ_HEADER) ?? NaN);
  if (lastSeq < cursor) {
    // The relay restarted and numbers from 1 again: read its buffer from the start next tick.
    cursor = 0;
    table.clear();
    denials.forgetSeqs();
    return;
  }
  const newest = flows[flows.length - 1]?.seq ?? cursor;
  cursor = Number.isFinite(lastSeq) ? Math.max(lastSeq, newest) : newest;
  table.add(flows);
  denials.add(flows);
  const unreachable = res.headers.get(UNREACHABLE_HEADER);
  status.succeeded('flows', unreachable ? unreachable.split(',') : []);
}

const graphPoller = new Poller(GRAPH_POLL_MS, pollGraph, (e) => status.failed('graph', e));
const signalsPoller = new Poller(SIGNALS_POLL_MS, pollSignals, (e) => status.failed('signals', e));
const flowsPoller = new Poller(FLOWS_POLL_MS, pollFlows, (e) => status.failed('flows', e));

/** New server-side filters: the old rows answered another question, so start over from seq 0. */
function applyServerFilters(): void {
  const filters = currentServerFilters();
  if (filters === serverFilters) return;
  serverFilters = filters;
  filtersRejected = false;
  filterError.textContent = '';
  cursor = 0;
  table.clear();
  flowsPoller.restart();
}

let statusTyping: ReturnType<typeof setTimeout> | undefined;
filterStatus.addEventListener('input', () => {
  clearTimeout(statusTyping);
  statusTyping = setTimeout(applyServerFilters, FILTER_DEBOUNCE_MS);
});
filterStatus.addEventListener('change', applyServerFilters);
filterVerdict.addEventListener('change', applyServerFilters);
filterText.addEventListener('input', () => table.setFilter(filterText.value));
byId('filters').addEventListener('submit', (e) => {
  e.preventDefault();
  applyServerFilters();
});

pauseButton.addEventListener('click', () => {
  flowsPoller.paused = !flowsPoller.paused;
  pauseButton.textContent = flowsPoller.paused ? 'Resume' : 'Pause';
  pauseButton.setAttribute('aria-pressed', String(flowsPoller.paused));
  if (!flowsPoller.paused) void flowsPoller.tick();
});

byId('opened').textContent = clockSeconds(new Date());
graphPoller.start();
signalsPoller.start();
flowsPoller.start();
