/**
 * Object.freeze to `depth` levels. Already-frozen values are not descended into, so
 * results reused from a cache cost one check each.
 */
export function freezeDeep<T>(value: T, depth = 3): T {
  if (depth <= 0 || typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  Object.freeze(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) freezeDeep(value[i], depth - 1);
  } else {
    for (const k in value) freezeDeep((value as Record<string, unknown>)[k], depth - 1);
  }
  return value;
}
