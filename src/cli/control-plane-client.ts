// The CLI's side of the control plane admin API.
import { TrellisError } from '../errors.js';
import type { FlagSpec } from './args.js';

export const SERVER_FLAG: FlagSpec = {
  name: 'server',
  short: 's',
  type: 'string',
  valueName: 'URL',
  description: 'the control plane admin API (default http://127.0.0.1:15014)',
};

export class ControlPlaneUnreachable extends TrellisError {
  override readonly code = 'TRELLIS_ERR_CONTROL_PLANE';
}

export function serverUrl(flag: unknown): string {
  return (typeof flag === 'string' ? flag : 'http://127.0.0.1:15014').replace(/\/$/, '');
}

export async function adminRequest(
  server: string,
  path: string,
  init: { method?: string; body?: string } = {},
): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(`${server}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw new ControlPlaneUnreachable(
      `cannot reach the control plane at ${server} (${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}); is "trellis controlplane" running? (--server URL)`,
    );
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body };
}
