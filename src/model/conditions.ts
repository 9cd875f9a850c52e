// Gateway API status conditions.
import type { ConditionModel } from './mesh-model.js';

export const CONTROLLER_NAME = 'trellis.dev/gateway-controller';

export function condition(type: string, ok: boolean, reason: string, message: string): ConditionModel {
  return { type, status: ok ? 'True' : 'False', reason, message };
}

/** Hostname intersection as Gateway API defines it for listeners and routes ("*." wildcards). */
export function hostnamesIntersect(a: string, b: string): boolean {
  if (a === b) return true;
  const wa = a.startsWith('*.');
  const wb = b.startsWith('*.');
  if (wa && wb) return a.slice(1).endsWith(b.slice(1)) || b.slice(1).endsWith(a.slice(1));
  if (wa) return b.endsWith(a.slice(1)) && b.length > a.length - 1;
  if (wb) return a.endsWith(b.slice(1)) && a.length > b.length - 1;
  return false;
}
