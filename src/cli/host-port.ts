import { UsageError } from '../errors.js';

/** "HOST:PORT" (IPv6 in brackets) from a flag value, or a UsageError naming the flag. */
export function hostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--${flag} ${JSON.stringify(value)} is not HOST:PORT`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}
