// Memoization by what a computation looked at. A computation gets an environment of
// narrow lookups; the memo records every lookup and its result, and reuses the cached
// result while the same key (a resource object, unchanged) sees the same answers.
// This is how a one-resource change recompiles only what depends on it.

type Same = (a: unknown, b: unknown) => boolean;

interface Lookup {
  readonly prop: PropertyKey;
  readonly args: readonly unknown[] | undefined;
  readonly result: unknown;
}

const identical: Same = (a, b) => a === b;

/** Arrays with identical elements (a selector's result, rebuilt each time). */
export const sameElements: Same = (a, b) => {
  if (a === b) return true;
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

export class Memo<K extends object, E extends object, R> {
  readonly #cache = new WeakMap<K, { lookups: readonly Lookup[]; result: R }>();
  readonly #same: Partial<Record<keyof E, Same>>;
  hits = 0;
  misses = 0;

  constructor(same: Partial<Record<keyof E, Same>> = {}) {
    this.#same = same;
  }

  get(key: K, env: E, compute: (env: E) => R): R {
    const hit = this.#cache.get(key);
    if (hit && this.#stillValid(hit.lookups, env)) {
      this.hits++;
      return hit.result;
    }
    this.misses++;
    const lookups: Lookup[] = [];
    const recording = new Proxy(env, {
      get: (target, prop) => {
        const value: unknown = Reflect.get(target, prop);
        if (typeof value !== 'function') {
          lookups.push({ prop, args: undefined, result: value });
          return value;
        }
        return (...args: unknown[]) => {
          const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          lookups.push({ prop, args, result });
          return result;
        };
      },
    });
    const result = compute(recording);
    this.#cache.set(key, { lookups, result });
    return result;
  }

  #stillValid(lookups: readonly Lookup[], env: E): boolean {
    for (const l of lookups) {
      const value: unknown = Reflect.get(env, l.prop);
      const now =
        l.args === undefined ? value : (value as (...a: unknown[]) => unknown).apply(env, l.args as unknown[]);
      const same = this.#same[l.prop as keyof E] ?? identical;
      if (!same(now, l.result)) return false;
    }
    return true;
  }
}

/** Structural equality of plain data (JSON-like values). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
      return false;
  }
  return true;
}

/**
 * Keeps one object per id across compiles while its content is unchanged, so a resource that
 * was re-read but not changed does not invalidate what was cached against it.
 */
export class Interner<T extends { readonly id: string }> {
  #byId = new Map<string, T>();

  /** Call once per compile with every current value; returns them, reusing equal previous objects. */
  internAll(values: readonly T[]): T[] {
    const next = new Map<string, T>();
    const out = values.map((v) => {
      const prev = this.#byId.get(v.id);
      const kept = prev !== undefined && (prev === v || deepEqual(prev, v)) ? prev : v;
      next.set(v.id, kept);
      return kept;
    });
    this.#byId = next;
    return out;
  }
}
