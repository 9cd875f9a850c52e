// google.protobuf.Struct in the object form protobufjs' fromObject takes and proto-loader
// gives back (no JSON mapping for Struct there): {fields: {k: {string_value: ...}}}.
// Trellis puts its data-plane hints (which node runs an endpoint, a service's waypoint) in
// Envoy `metadata.filter_metadata`, which is a map of Structs. The field names are camelCase:
// protobufjs defines google/protobuf/struct.proto itself (its common types), keepCase or not.

export type StructValue =
  string | number | boolean | null | readonly StructValue[] | { readonly [k: string]: StructValue };

type ProtoValue = Record<string, unknown>;

function toValue(v: StructValue): ProtoValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: (v as readonly StructValue[]).map(toValue) } };
  return { structValue: toStruct(v as { readonly [k: string]: StructValue }) };
}

export function toStruct(obj: { readonly [k: string]: StructValue }): { fields: Record<string, ProtoValue> } {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v);
  return { fields };
}

function fromValue(v: unknown): StructValue {
  if (!v || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.stringValue === 'string') return o.stringValue;
  if (o.numberValue !== undefined) return Number(o.numberValue);
  if (o.boolValue !== undefined) return Boolean(o.boolValue);
  if (o.listValue && typeof o.listValue === 'object')
    return (((o.listValue as { values?: unknown[] }).values ?? []) as unknown[]).map(fromValue);
  if (o.structValue) return fromStruct(o.structValue);
  return null;
}

/** The plain object of a Struct; {} for anything that is not one. */
export function fromStruct(s: unknown): { [k: string]: StructValue } {
  const out: { [k: string]: StructValue } = {};
  const fields = s && typeof s === 'object' ? (s as { fields?: unknown }).fields : undefined;
  if (!fields || typeof fields !== 'object') return out;
  for (const [k, v] of Object.entries(fields as Record<string, unknown>)) out[k] = fromValue(v);
  return out;
}

/** The filter_metadata namespace Trellis' own proxies read. */
export const TRELLIS_METADATA = 'trellis';

/** `metadata` carrying one Struct under TRELLIS_METADATA. */
export function trellisMetadata(obj: { readonly [k: string]: StructValue }): {
  filter_metadata: Record<string, { fields: Record<string, ProtoValue> }>;
} {
  return { filter_metadata: { [TRELLIS_METADATA]: toStruct(obj) } };
}

/** The Trellis Struct of a resource's (or endpoint's) `metadata`, as a plain object. */
export function readTrellisMetadata(resource: unknown): { [k: string]: StructValue } {
  const md = resource && typeof resource === 'object' ? (resource as { metadata?: unknown }).metadata : undefined;
  const fm = md && typeof md === 'object' ? (md as { filter_metadata?: unknown }).filter_metadata : undefined;
  const s = fm && typeof fm === 'object' ? (fm as Record<string, unknown>)[TRELLIS_METADATA] : undefined;
  return fromStruct(s);
}
