// Endpoint weights as numgen slots: an endpoint of weight w gets w of the N slots of
// `numgen random mod N vmap { ... }`, so it is picked with probability w / N. Weights are
// reduced by their greatest common divisor (all equal: one slot each, kube-proxy's rule) and
// scaled down when their sum would make the vmap needlessly large.

/** Above this many slots the split is approximated (each endpoint keeps at least one). */
export const MAX_SLOTS = 256;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Istio treats an unset or zero weight as 1; anything else is rounded to a positive integer. */
function normalised(weight: number): number {
  return Number.isFinite(weight) && weight >= 1 ? Math.round(weight) : 1;
}

/** Slots per endpoint, in the order given. */
export function slotsFor(weights: readonly number[]): number[] {
  const ws = weights.map(normalised);
  const divisor = ws.reduce(gcd, 0) || 1;
  const reduced = ws.map((w) => w / divisor);
  const total = reduced.reduce((a, b) => a + b, 0);
  if (total <= MAX_SLOTS) return reduced;
  return reduced.map((w) => Math.max(1, Math.floor((w * MAX_SLOTS) / total)));
}
