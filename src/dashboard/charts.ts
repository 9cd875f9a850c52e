// Small SVG line charts for the golden signals. A missing value (null, or a scrape that did
// not happen) leaves a gap instead of a line drawn through it.
import { s } from './dom.js';

const GROUPED = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

const WIDTH = 300;
const HEIGHT = 72;
const PLOT = { left: 4, right: 4, top: 12, bottom: 14 };

export interface Series {
  readonly values: readonly (number | null)[];
  /** CSS class giving the line its colour. */
  readonly className: string;
}

export interface ChartSpec {
  readonly testId: string;
  /** Epoch ms of each point, the same length as every series. */
  readonly times: readonly number[];
  readonly series: readonly Series[];
  /** Suffix of the y-axis max label ("ms", "%"). */
  readonly unit: string;
  /** The smallest y-axis max, so a flat low line does not fill the chart. */
  readonly minMax: number;
  /** A longer step than this between points is a gap (missed scrapes). */
  readonly maxStepMs: number;
}

export function lineChart(spec: ChartSpec): SVGSVGElement {
  const svg = s('svg', {
    'data-testid': spec.testId,
    class: 'chart',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
  });
  const plotW = WIDTH - PLOT.left - PLOT.right;
  const plotH = HEIGHT - PLOT.top - PLOT.bottom;
  const bottom = PLOT.top + plotH;
  const yMax = niceCeiling(Math.max(spec.minMax, ...spec.series.flatMap((se) => se.values.filter(isValue))));
  svg.append(
    s('line', { x1: PLOT.left, x2: WIDTH - PLOT.right, y1: PLOT.top, y2: PLOT.top, class: 'grid' }),
    s('line', { x1: PLOT.left, x2: WIDTH - PLOT.right, y1: bottom, y2: bottom, class: 'axis' }),
  );

  const first = spec.times[0];
  const last = spec.times[spec.times.length - 1];
  if (first === undefined || last === undefined) {
    svg.append(
      s('text', { x: PLOT.left + plotW / 2, y: PLOT.top + plotH / 2 + 4, class: 'no-data' }, 'no data'),
      yMaxLabel(yMax, spec.unit),
    );
    return svg;
  }
  const span = last - first || 1;
  const x = (t: number): number => PLOT.left + (spec.times.length === 1 ? plotW : ((t - first) / span) * plotW);
  const y = (v: number): number => bottom - (Math.min(v, yMax) / yMax) * plotH;
  for (const series of spec.series) {
    const d = linePath(spec.times, series.values, spec.maxStepMs, x, y);
    if (d) svg.append(s('path', { d, class: `line ${series.className}` }));
  }
  svg.append(
    // After the lines, so the y-axis max label is drawn over them (with a halo), never under.
    yMaxLabel(yMax, spec.unit),
    s('text', { x: PLOT.left, y: HEIGHT - 3, class: 'x-label' }, minutesAgo(last - first)),
    s('text', { x: WIDTH - PLOT.right, y: HEIGHT - 3, class: 'x-label end' }, 'now'),
  );
  return svg;
}

function isValue(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** "M..L..L" runs between gaps; a lone point is a zero-length run, drawn as a dot by the round cap. */
function linePath(
  times: readonly number[],
  values: readonly (number | null)[],
  maxStepMs: number,
  x: (t: number) => number,
  y: (v: number) => number,
): string {
  let d = '';
  let previous: number | undefined;
  times.forEach((t, i) => {
    const v = values[i];
    if (!isValue(v)) {
      previous = undefined;
      return;
    }
    const px = x(t).toFixed(1);
    const py = y(v).toFixed(1);
    d += previous === undefined || t - previous > maxStepMs ? `M${px},${py} L${px},${py} ` : `L${px},${py} `;
    previous = t;
  });
  return d.trim();
}

/** 1, 2 or 5 times a power of ten, at or above `v`. */
export function niceCeiling(v: number): number {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (v <= step * power) return step * power;
  return 10 * power;
}

/** "max 50 ms", "max 5%": a nice ceiling is a round number, written without decimals. */
function yMaxLabel(v: number, unit: string): SVGTextElement {
  const n = v >= 1 ? GROUPED.format(v) : String(v);
  const text = `max ${unit === '%' ? `${n}%` : unit ? `${n} ${unit}` : n}`;
  return s('text', { x: PLOT.left, y: PLOT.top - 3, class: 'y-label', 'data-testid': 'y-max' }, text);
}

function minutesAgo(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  return minutes >= 1 ? `−${minutes} min` : `−${Math.round(ms / 1000)} s`;
}
