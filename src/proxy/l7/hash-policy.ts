// RouteAction.hash_policy: what RING_HASH and MAGLEV clusters hash a request on. Policies are
// evaluated in order; each present value is folded into the hash (Envoy: rotate left 1, XOR),
// and a `terminal` policy that produced a value stops the evaluation.
import { bool, list, obj, str } from './config.js';

/** 32-bit FNV-1a with a murmur3 finaliser (FNV alone clusters similar keys on a ring). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export interface HashInput {
  header(name: string): string | undefined;
  cookie(name: string): string | undefined;
  queryParam(name: string): string | undefined;
  readonly sourceIp: string | undefined;
}

/** Returns the request's hash, or undefined when no policy produced a value (then: a random host). */
export type HashPolicy = (input: HashInput) => number | undefined;

type Part = { readonly value: (input: HashInput) => string | undefined; readonly terminal: boolean };

export function compileHashPolicy(v: unknown): HashPolicy | undefined {
  const parts: Part[] = [];
  for (const p of list(v)) {
    const terminal = bool(p.terminal) === true;
    const header = obj(p.header);
    const cookie = obj(p.cookie);
    const conn = obj(p.connection_properties);
    const query = obj(p.query_parameter);
    if (header && str(header.header_name)) {
      const name = str(header.header_name)!.toLowerCase();
      parts.push({ value: (i) => i.header(name), terminal });
    } else if (cookie && str(cookie.name)) {
      // Envoy would also generate the cookie when a ttl is set and it is absent; we only read it.
      const name = str(cookie.name)!;
      parts.push({ value: (i) => i.cookie(name), terminal });
    } else if (conn && bool(conn.source_ip)) {
      parts.push({ value: (i) => i.sourceIp, terminal });
    } else if (query && str(query.name)) {
      const name = str(query.name)!;
      parts.push({ value: (i) => i.queryParam(name), terminal });
    }
  }
  if (parts.length === 0) return undefined;
  return (input) => {
    let h: number | undefined;
    for (const part of parts) {
      const v = part.value(input);
      if (v === undefined) continue;
      const x = hash32(v);
      h = h === undefined ? x : (((h << 1) | (h >>> 31)) ^ x) >>> 0;
      if (part.terminal) break;
    }
    return h;
  };
}
