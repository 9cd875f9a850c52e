// ClientIP affinity timeouts, read from the Services themselves: the compiled model keeps only
// sessionAffinity, not sessionAffinityConfig.clientIP.timeoutSeconds (an unchecked field of
// the Service kind), so the caller that holds the resources passes these to planServices.
import type { Resource } from '../../../config/resource.js';

/** The API server's bounds for timeoutSeconds (0 < t <= 1 day). */
const MAX_TIMEOUT_SECONDS = 86_400;

function timeoutOf(config: unknown): number | undefined {
  if (typeof config !== 'object' || config === null) return undefined;
  const clientIP = (config as { clientIP?: unknown }).clientIP;
  if (typeof clientIP !== 'object' || clientIP === null) return undefined;
  const t = (clientIP as { timeoutSeconds?: unknown }).timeoutSeconds;
  return typeof t === 'number' && Number.isInteger(t) && t > 0 && t <= MAX_TIMEOUT_SECONDS ? t : undefined;
}

/** Service id ("Service/ns/name") -> timeoutSeconds, for the Services that set a valid one. */
export function affinityTimeouts(resources: readonly Resource[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of resources) {
    if (r.kind !== 'Service' || r.spec.sessionAffinity !== 'ClientIP') continue;
    const t = timeoutOf(r.spec.sessionAffinityConfig);
    if (t !== undefined) out.set(`Service/${r.namespace}/${r.name}`, t);
  }
  return out;
}
