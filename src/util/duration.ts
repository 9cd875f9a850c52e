const GO_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const GO_DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const GO_PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;

/** Go/Istio duration ("1.5s", "100ms", "1h30m") in milliseconds, or undefined when malformed. */
export function parseGoDuration(text: string): number | undefined {
  if (!GO_DURATION.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(GO_PART)) ms += Number(m[1]) * GO_UNITS[m[2]!]!;
  return ms;
}

/** Gateway API Duration (GEP-2257): 1-4 parts of 1-5 digits with h, m, s or ms. */
const GATEWAY_DURATION = /^(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}$/;

export function parseGatewayDuration(text: string): number | undefined {
  if (!GATEWAY_DURATION.test(text)) return undefined;
  return parseGoDuration(text);
}
