// Reads every mesh node's /metrics on an interval (and when the dashboard asks for something
// fresher), reduces each page to the service graph's edge counters, and keeps a bounded
// history: the dashboard's graph and golden-signal charts are differences between scrapes.
// Only the graph's metric families are parsed; a node that does not answer is named, not fatal.
import type { MeshModel } from '../model/mesh-model.js';
import { parsePromText } from '../observe/prom-text.js';
import {
  GRAPH_FAMILIES,
  GraphResolver,
  graphBetween,
  nodeCounters,
  signals,
  type NodeCounters,
  type Scrape,
} from '../observe/service-graph.js';
import type { ServiceGraph, SignalsAnswer } from '../observe/graph-types.js';

const NODE_TIMEOUT_MS = 2_000;

export interface TelemetryScraperOptions {
  readonly model: () => MeshModel | undefined;
  /** Seconds between background scrapes (the charts' resolution). */
  readonly intervalSeconds?: number;
  /** How much history to keep, in minutes. */
  readonly historyMinutes?: number;
  /** Reads a node's metrics page (tests replace it). */
  readonly fetchPage?: (url: string) => Promise<string>;
}

async function fetchText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(NODE_TIMEOUT_MS) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  return res.text();
}

export class TelemetryScraper {
  readonly intervalSeconds: number;
  readonly #model: () => MeshModel | undefined;
  readonly #fetch: (url: string) => Promise<string>;
  readonly #history: Scrape[] = [];
  readonly #maxScrapes: number;
  /** The newest scrape, background or on demand (on-demand ones stay out of the history, which keeps an even interval). */
  #latest: Scrape | undefined;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<Scrape> | undefined;

  constructor(opts: TelemetryScraperOptions) {
    this.#model = opts.model;
    this.intervalSeconds = opts.intervalSeconds ?? 5;
    this.#fetch = opts.fetchPage ?? fetchText;
    this.#maxScrapes = Math.ceil(((opts.historyMinutes ?? 15) * 60) / this.intervalSeconds) + 1;
  }

  start(): void {
    if (this.#timer) return;
    const tick = () =>
      void this.scrape().then((s) => {
        this.#history.push(s);
        if (this.#history.length > this.#maxScrapes) this.#history.splice(0, this.#history.length - this.#maxScrapes);
      });
    tick();
    this.#timer = setInterval(tick, this.intervalSeconds * 1000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One scrape of every node (concurrent callers share it). */
  scrape(): Promise<Scrape> {
    this.#inFlight ??= this.#scrapeOnce().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  async #scrapeOnce(): Promise<Scrape> {
    const model = this.#model();
    const resolver = new GraphResolver(model);
    const unreachable: string[] = [];
    const nodes = new Map<string, NodeCounters>();
    await Promise.all(
      (model?.nodes ?? []).map(async (n) => {
        if (n.ports.metrics === undefined) return;
        const host = n.address.includes(':') ? `[${n.address}]` : n.address;
        try {
          const page = await this.#fetch(`http://${host}:${n.ports.metrics}/metrics`);
          nodes.set(
            n.name,
            nodeCounters(
              parsePromText(page, (name) => GRAPH_FAMILIES.has(name)),
              resolver,
            ),
          );
        } catch {
          unreachable.push(n.name);
        }
      }),
    );
    // A node that missed this scrape keeps its last counters, so its edges do not drop to zero and spike back.
    const last = this.#latest;
    for (const name of unreachable) {
      const prev = last?.nodes.get(name);
      if (prev) nodes.set(name, prev);
    }
    const scrape: Scrape = { time: Date.now(), nodes, graphNodes: resolver.nodes, unreachable: unreachable.sort() };
    this.#latest = scrape;
    return scrape;
  }

  /** The graph over the last `windowSeconds`, ending with a scrape at most a second old. */
  async graph(windowSeconds: number): Promise<ServiceGraph> {
    const latest = this.#latest;
    const now = latest && Date.now() - latest.time < 1_000 ? latest : await this.scrape();
    const from = now.time - windowSeconds * 1000;
    // The oldest scrape inside the window, else the newest before it (a short history still gives rates).
    const before = this.#history.filter((s) => s.time < now.time - 500);
    const older = before.find((s) => s.time >= from) ?? before.at(-1);
    return graphBetween(older, now);
  }

  /** Golden signals over the last `minutes`. */
  signals(minutes: number): SignalsAnswer {
    const from = Date.now() - minutes * 60_000;
    const i = this.#history.findIndex((s) => s.time >= from);
    // One scrape before the window, so its first interval has a point.
    const scrapes = i < 0 ? [] : this.#history.slice(Math.max(0, i - 1));
    return signals(scrapes, this.intervalSeconds);
  }
}
