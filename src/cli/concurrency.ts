// --concurrency N (Envoy's flag): how many worker processes a node runs.
import { UsageError } from '../errors.js';

const MAX_CONCURRENCY = 256;

/** The flag's value, or undefined when absent (each command has its own default). */
export function concurrencyFlag(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isInteger(n) || n < 1 || n > MAX_CONCURRENCY)
    throw new UsageError(
      `--concurrency: expected a whole number of workers from 1 to ${MAX_CONCURRENCY}, got ${JSON.stringify(v)}`,
    );
  return n;
}
