import { createRequire } from 'node:module';
import type { RE2 as RE2Type } from 're2-wasm';

// Loaded on first use: instantiating re2-wasm reserves its heap (~8 MiB of RSS), which a
// process that never checks a pattern (a node proxy without regex routes) should not pay.
let RE2: typeof RE2Type | undefined;
function re2(): typeof RE2Type {
  RE2 ??= (createRequire(import.meta.url)('re2-wasm') as { RE2: typeof RE2Type }).RE2;
  return RE2;
}

// re2-wasm lives in a fixed 16 MiB WebAssembly heap: every compiled pattern must be freed,
// or a few thousand checks exhaust it and every later pattern "fails". Results are cached
// by pattern (bounded), since the same expressions recur across resources and reloads.
const CACHE_LIMIT = 10_000;
const cache = new Map<string, string | undefined>();

/**
 * Checks a pattern with the RE2 engine (the syntax Envoy, Gateway API and Cilium use).
 * Returns the engine's message when the pattern is not valid RE2.
 */
export function re2Problem(pattern: string): string | undefined {
  if (cache.has(pattern)) return cache.get(pattern);
  let problem: string | undefined;
  let re: RE2Type | undefined;
  try {
    re = new (re2())(pattern, 'u');
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // "Invalid regular expression: /a(b/u: missing ): a(b" -> "missing ): a(b"
    const m = /^Invalid regular expression: \/.*\/u: (.*)$/s.exec(msg);
    problem = `invalid RE2 regular expression: ${(m ? m[1]! : msg.split('\n')[0]!).replace(/\\\//g, '/')}`;
  } finally {
    (re as unknown as { wrapper?: { delete(): void } } | undefined)?.wrapper?.delete();
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(pattern, problem);
  return problem;
}
