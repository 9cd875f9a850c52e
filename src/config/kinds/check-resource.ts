// Checks one document against its kind: apiVersion, kind, metadata and the kind's body.
import { object, req, type Fields } from '../schema/object.js';
import { string } from '../schema/primitives.js';
import { INVALID, IssueSink, type Issue, type Schema } from '../schema/schema.js';
import { objectMeta, type ObjectMeta } from './common/meta.js';
import type { KindDefinition } from './kind.js';

export interface CheckedResource<Body = unknown> {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: ObjectMeta;
  readonly body: Body;
}

export interface CheckResult<Body> {
  readonly value?: CheckedResource<Body>;
  readonly issues: readonly Issue[];
}

const documentSchemas = new WeakMap<KindDefinition, Schema<Record<string, unknown>>>();

function documentSchema(def: KindDefinition): Schema<Record<string, unknown>> {
  let s = documentSchemas.get(def);
  if (!s) {
    const fields: Fields = { apiVersion: req(string()), kind: req(string()), metadata: req(objectMeta), ...def.fields };
    s = object(fields, { check: def.check as never }) as unknown as Schema<Record<string, unknown>>;
    documentSchemas.set(def, s);
  }
  return s;
}

/**
 * Validates `doc` (already known to be of `def`'s kind) and applies defaults.
 * Every problem is returned; `value` is set only when there were none.
 */
export function checkResource<K extends string, Body>(def: KindDefinition<K, Body>, doc: unknown): CheckResult<Body> {
  const sink = new IssueSink();
  const parsed = documentSchema(def as KindDefinition).parse(doc, [], sink);
  // The kind's stricter name format, checked whenever the name is a string (even if other fields fail).
  const rawName = (doc as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  if (def.nameSchema && typeof rawName === 'string' && !sink.issues.some((i) => i.path.join('.') === 'metadata.name')) {
    def.nameSchema.parse(rawName, ['metadata', 'name'], sink);
  }
  if (parsed === INVALID || sink.issues.length > 0) return { issues: sink.issues };
  const { apiVersion, kind, metadata, ...body } = parsed;
  return {
    value: {
      apiVersion: apiVersion as string,
      kind: kind as string,
      metadata: metadata as ObjectMeta,
      body: body as Body,
    },
    issues: [],
  };
}
