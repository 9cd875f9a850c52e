// The engine's input: Envoy v3 resources as JS objects, either in the form the translation
// builds (numbers, `{value: n}` wrappers) or decoded by proto-loader (int64s and durations as
// strings, enums as names). Every reader below accepts both, so callers never normalise.
import { TrellisError } from '../../errors.js';

export type EnvoyObject = Record<string, unknown>;

export interface L7Config {
  /** RouteConfiguration by name. */
  readonly routes: ReadonlyMap<string, EnvoyObject>;
  /** Cluster by name. */
  readonly clusters: ReadonlyMap<string, EnvoyObject>;
  /** ClusterLoadAssignment by EDS service name (eds_cluster_config.service_name, else the cluster name). */
  readonly endpoints: ReadonlyMap<string, EnvoyObject>;
}

/** A resource the engine cannot use; `update()` throws it and keeps the previous config (an xDS NACK). */
export class L7ConfigError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_INVALID_VALUE';
}

export function obj(v: unknown): EnvoyObject | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as EnvoyObject) : undefined;
}

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
