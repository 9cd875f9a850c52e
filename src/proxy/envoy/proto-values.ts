// Reading Envoy config objects as they arrive: built by the translation (snake_case), decoded by
// proto-loader/protobufjs (keepCase or camelCase, longs as strings, {value} wrappers, null for
// unset messages, a virtual field naming the set oneof member) or written as proto3 JSON.
export type Obj = Readonly<Record<string, unknown>>;

export function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

const camelCache = new Map<string, string>();
function camel(snake: string): string {
  let c = camelCache.get(snake);
  if (c === undefined) camelCache.set(snake, (c = snake.replace(/_([a-z0-9])/g, (_, x: string) => x.toUpperCase())));
  return c;
}

/** A field by its proto name, snake_case or camelCase; null (unset message) reads as undefined. */
export function get(o: Obj, snake: string): unknown {
  const v = o[snake] ?? o[camel(snake)];
  return v === null ? undefined : v;
}

/** A number written as a number, a decimal string (longs), or a {value} wrapper. */
export function num(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && /^[+-]?\d+$/.test(v.trim())) return Number(v);
  if (isObj(v) && 'value' in v) return num(v.value);
  return undefined;
}

export function list(v: unknown): readonly unknown[] {
  return Array.isArray(v) ? v : [];
}

export type OneOf<K extends string> = { readonly kind: K; readonly value: unknown } | { readonly problem: string };

/**
 * The member of a oneof that is set. `discriminator` is the oneof's own name, which protobufjs
 * sets (oneofs: true) to the name of the member; otherwise the one non-null member is taken.
 */
export function oneOf<K extends string>(o: Obj, members: readonly K[], discriminator: string): OneOf<K> {
  const d = get(o, discriminator);
  if (typeof d === 'string' && (members as readonly string[]).includes(d)) {
    const value = get(o, d);
    if (value !== undefined) return { kind: d as K, value };
  }
  const set = members.filter((m) => get(o, m) !== undefined);
  if (set.length === 1) return { kind: set[0]!, value: get(o, set[0]!) };
  if (set.length > 1) return { problem: `several of ${set.join(', ')} are set` };
  const others = Object.keys(o).filter((k) => k !== discriminator && o[k] !== null && o[k] !== undefined);
  return { problem: others.length ? `unsupported ${others.join(', ')}` : `none of ${members.join(', ')} is set` };
}
