// Golden signals: one card per service (inbound traffic, all callers together), Kiali's
// "inbound metrics" tab in small: rate, error percentage and latency over the last minutes.
import type { ServiceSignals, SignalPoint, SignalsAnswer } from '../observe/graph-types.js';
import { lineChart, type Series } from './charts.js';
import { h } from './dom.js';
import { formatMs, formatNumber, formatPercent } from './format.js';

export function renderSignals(container: HTMLElement, answer: SignalsAnswer): void {
  const services = [...answer.services].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (services.length === 0) {
    container.replaceChildren(h('p', { class: 'empty' }, 'No service has received traffic yet.'));
    return;
  }
  // A missed scrape is a gap: allow some jitter around the scrape interval.
  const maxStepMs = Math.max(1, answer.intervalSeconds) * 1000 * 1.6;
  container.replaceChildren(...services.map((svc) => serviceCard(svc, maxStepMs)));
}

function serviceCard(svc: ServiceSignals, maxStepMs: number): HTMLElement {
  const times = svc.points.map((p) => p.t);
  const latest = svc.points[svc.points.length - 1];
  const card = h(
    'article',
    { class: 'card service-card', 'data-testid': 'service-card', 'data-service': svc.id },
    h(
      'header',
      { class: 'card-head' },
      h('span', { class: 'card-title', title: svc.id }, svc.name),
      svc.namespace ? h('span', { class: 'muted' }, svc.namespace) : undefined,
      h('span', { class: `proto proto-${svc.protocol}` }, svc.protocol.toUpperCase()),
    ),
    rateMetric(svc, times, latest, maxStepMs),
  );
  if (svc.protocol === 'http')
    card.append(errorMetric(svc, times, latest, maxStepMs), latencyMetric(svc, times, latest, maxStepMs));
  else card.append(h('p', { class: 'tcp-note' }, 'TCP: connections/s (no request-level errors or latency at L4)'));
  return card;
}

function metric(title: string, value: HTMLElement, chart: SVGSVGElement): HTMLElement {
  return h(
    'div',
    { class: 'metric' },
    h('div', { class: 'metric-head' }, h('span', { class: 'metric-title' }, title), value),
    chart,
  );
}

function column(points: readonly SignalPoint[], pick: (p: SignalPoint) => number | null): (number | null)[] {
  return points.map(pick);
}

function rateMetric(
  svc: ServiceSignals,
  times: number[],
  latest: SignalPoint | undefined,
  maxStepMs: number,
): HTMLElement {
  const unit = svc.protocol === 'http' ? 'rps' : 'conn/s';
  const series: Series[] = [{ values: column(svc.points, (p) => p.rate), className: 'series-rate' }];
  const denied = svc.points.some((p) => p.deniedRate > 0);
  if (denied) series.push({ values: column(svc.points, (p) => p.deniedRate), className: 'series-denied' });
  const value = h(
    'span',
    { class: 'metric-value' },
    h('span', { 'data-testid': 'value-rate', 'data-value': latest?.rate }, latest ? formatNumber(latest.rate) : '–'),
    ` ${unit}`,
  );
  if (denied && latest)
    value.append(h('span', { class: 'denied-text' }, ` · ${formatNumber(latest.deniedRate)} denied/s`));
  const title = svc.protocol === 'http' ? 'Requests/s' : 'Connections/s';
  return metric(title, value, lineChart({ testId: 'chart-rate', times, series, unit: '', minMax: 1, maxStepMs }));
}

function errorMetric(
  svc: ServiceSignals,
  times: number[],
  latest: SignalPoint | undefined,
  maxStepMs: number,
): HTMLElement {
  const values = column(svc.points, (p) => p.errorRate * 100);
  const value = h(
    'span',
    { class: 'metric-value', 'data-testid': 'value-errors' },
    latest ? formatPercent(latest.errorRate) : '–',
  );
  const chart = lineChart({
    testId: 'chart-errors',
    times,
    series: [{ values, className: 'series-errors' }],
    unit: '%',
    minMax: 5,
    maxStepMs,
  });
  return metric('Errors', value, chart);
}

function latencyMetric(
  svc: ServiceSignals,
  times: number[],
  latest: SignalPoint | undefined,
  maxStepMs: number,
): HTMLElement {
  const value = h(
    'span',
    { class: 'metric-value', 'data-testid': 'value-latency' },
    h('span', { class: 'p50-text' }, `p50 ${formatMs(latest?.p50Ms ?? null)}`),
    ' · ',
    h('span', { class: 'p99-text' }, `p99 ${formatMs(latest?.p99Ms ?? null)}`),
    ' ms',
  );
  const chart = lineChart({
    testId: 'chart-latency',
    times,
    series: [
      { values: column(svc.points, (p) => p.p99Ms), className: 'series-p99' },
      { values: column(svc.points, (p) => p.p50Ms), className: 'series-p50' },
    ],
    unit: 'ms',
    minMax: 10,
    maxStepMs,
  });
  return metric('Latency', value, chart);
}
