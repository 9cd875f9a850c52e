// How numbers, times and flow endpoints are written on the page. Fixed to en-US so the
// dashboard reads the same on every machine (and in the browser test).

const GROUPED = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** Rates and durations to about two significant decimals: 0.50, 12.3, 1,204. */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs < 0.01) return n > 0 ? '<0.01' : '>-0.01';
  if (abs < 10) return n.toFixed(2);
  if (abs < 100) return n.toFixed(1);
  return GROUPED.format(n);
}

/** A fraction (0..1) as a percentage: 0.025 -> "2.50%". */
export function formatPercent(fraction: number): string {
  return `${formatNumber(fraction * 100)}%`;
}

/** Milliseconds, "–" when there was nothing to measure. */
export function formatMs(ms: number | null): string {
  return ms === null ? '–' : formatNumber(ms);
}

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB'] as const;

/** 1234 -> "1.2 kB" (decimal units, like the byte counters' own docs). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '0 B';
  let unit = 0;
  let value = n;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** Local wall-clock time with milliseconds: "14:03:07.123". */
export function clockTime(date: Date): string {
  if (Number.isNaN(date.getTime())) return '–';
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** "14:03:07", for the header. */
export function clockSeconds(date: Date): string {
  return clockTime(date).slice(0, 8);
}

/** spiffe://<td>/ns/<ns>/sa/<sa> -> "ns/sa"; anything else as is. */
export function identityName(identity: string): string {
  const m = /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(identity);
  return m ? `${m[1]}/${m[2]}` : identity;
}

/** "WorkloadEntry/<ns>/<name>" or "ServiceEntry/<ns>/<name>#i" -> "ns/name"; anything else as is. */
export function workloadName(workload: string): string {
  const m = /^[^/]+\/([^/]+)\/([^/#]+)/.exec(workload);
  return m ? `${m[1]}/${m[2]}` : workload;
}
