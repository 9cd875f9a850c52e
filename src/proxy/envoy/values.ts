// Reading Envoy config objects as they arrive (the L7 engine, RBAC, the node proxy): built by
// the translation (snake_case), decoded by proto-loader/protobufjs (keepCase or camelCase, longs as strings, {value} wrappers, null for
// unset messages, a virtual field naming the set oneof member) or written as proto3 JSON.
export type Obj = Readonly<Record<string, unknown>>;
export type EnvoyObject = Record<string, unknown>;

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

/** Every element, objects or not (callers report what is not what they expect). */
export function array(v: unknown): readonly unknown[] {
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

export function obj(v: unknown): EnvoyObject | undefined {
  return isObj(v) ? (v as EnvoyObject) : undefined;
}

/** The object elements of a repeated message field. */
export function list(v: unknown): readonly EnvoyObject[] {
  return Array.isArray(v) ? (v.filter((x) => obj(x) !== undefined) as EnvoyObject[]) : [];
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function strList(v: unknown): readonly string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** A number, a numeric string (proto-loader int64) or a `{value}` wrapper (UInt32Value...). */
export function num(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }
  if (typeof v === 'bigint') return Number(v);
  const o = obj(v);
  if (o && 'value' in o) return num(o.value);
  // protobufjs Long without the long package's class: {low, high, unsigned}
  if (o && typeof o.low === 'number' && typeof o.high === 'number') return o.high * 2 ** 32 + (o.low >>> 0);
  return undefined;
}

/** A boolean or a `{value}` BoolValue wrapper. */
export function bool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  const o = obj(v);
  return o && 'value' in o ? bool(o.value) : undefined;
}

/** google.protobuf.Duration as `{seconds, nanos}` (numbers or strings) or its JSON form "1.5s"; milliseconds. */
export function durationMs(v: unknown): number | undefined {
  if (typeof v === 'string') {
    const m = /^(-?\d+(?:\.\d+)?)s$/.exec(v.trim());
    return m ? Number(m[1]) * 1000 : undefined;
  }
  const o = obj(v);
  if (!o) return undefined;
  const seconds = num(o.seconds) ?? 0;
  const nanos = num(o.nanos) ?? 0;
  return seconds * 1000 + nanos / 1e6;
}

/** An enum given by name or number, as its name (`names[n]`). */
export function enumName(v: unknown, names: readonly string[]): string | undefined {
  if (typeof v === 'string') return /^\d+$/.test(v) ? names[Number(v)] : v;
  if (typeof v === 'number') return names[v];
  return undefined;
}

/** The first `{name: value}` key present, for proto oneofs. */
export function oneof<K extends string>(o: EnvoyObject, keys: readonly K[]): K | undefined {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return k;
  return undefined;
}
