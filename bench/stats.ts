// What every bench shares: its knobs from the environment, and medians (the machines are
// noisy: a bench quotes the median of its runs).

/** A positive integer from the environment, or the default; anything else is an error naming the variable. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  const n = v === undefined || v === '' ? fallback : Number.parseInt(v, 10);
  if (!Number.isFinite(n) || n < 1) throw new Error(`${name}=${v}: expected a positive integer`);
  return n;
}

/** The median (mean of the middle two for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
