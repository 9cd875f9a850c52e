import {
  describeValue,
  INVALID,
  isPlainObject,
  type Invalid,
  type IssueCode,
  type IssueSink,
  type Path,
  type PathSegment,
  type Schema,
} from './schema.js';
import { closest } from '../../util/did-you-mean.js';

export type FieldMode = 'required' | 'optional' | 'default';

export interface Field<T, M extends FieldMode = FieldMode> {
  readonly schema: Schema<T>;
  readonly mode: M;
  readonly fallback?: () => T;
}

/** A field that must be present. */
export function req<T>(schema: Schema<T>): Field<T, 'required'> {
  return { schema, mode: 'required' };
}

/** A field that may be absent (or null, which Kubernetes treats as absent). */
export function opt<T>(schema: Schema<T>): Field<T, 'optional'> {
  return { schema, mode: 'optional' };
}

/** A field with the upstream default applied when absent. */
export function def<T>(schema: Schema<T>, value: T | (() => T)): Field<T, 'default'> {
  const fallback = typeof value === 'function' ? (value as () => T) : () => value;
  return { schema, mode: 'default', fallback };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- type-level matching only
type AnyField = Field<any, FieldMode>;
export type Fields = Readonly<Record<string, AnyField>>;

type FieldType<F> = F extends Field<infer T, FieldMode> ? T : never;
type OptionalKeys<F extends Fields> = {
  [K in keyof F]: F[K] extends Field<unknown, 'optional'> ? K : never;
}[keyof F];
type RequiredKeys<F extends Fields> = Exclude<keyof F, OptionalKeys<F>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};

export type ObjectOf<F extends Fields> = Simplify<
  { readonly [K in RequiredKeys<F>]: FieldType<F[K]> } & { readonly [K in OptionalKeys<F>]?: FieldType<F[K]> }
>;

/** Reports a cross-field problem at a path relative to the object being checked. */
export type Reporter = (relPath: readonly PathSegment[], message: string, expected?: string, code?: IssueCode) => void;

export interface ObjectOptions<T> {
  /** Cross-field rules (oneOf, ranges that depend on other fields, ...). Runs only on a well-formed object. */
  readonly check?: (value: T, report: Reporter) => void;
  /** Defaults that depend on other fields (e.g. Service targetPort = port), applied after a clean parse. */
  readonly complete?: (value: T) => T;
  readonly expected?: string;
}

export interface ObjectSchema<F extends Fields> extends Schema<ObjectOf<F>> {
  readonly fields: F;
}

export function isObjectSchema(s: Schema<unknown>): s is ObjectSchema<Fields> {
  return typeof (s as { fields?: unknown }).fields === 'object';
}

export function object<const F extends Fields>(fields: F, opts: ObjectOptions<ObjectOf<F>> = {}): ObjectSchema<F> {
  const keys = Object.keys(fields);
  const expected = opts.expected ?? `a mapping with ${keys.length ? keys.join(', ') : 'no fields'}`;
  return {
    fields,
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): ObjectOf<F> | Invalid {
      if (!isPlainObject(input)) {
        sink.report(path, 'type', `must be a mapping, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      let ok = true;
      for (const k of Object.keys(input)) {
        if (!Object.hasOwn(fields, k)) {
          ok = false;
          sink.report(
            [...path, k],
            'unknown-field',
            `unknown field ${JSON.stringify(k)}${unknownFieldHint(k, fields)}`,
            undefined,
            true,
          );
        }
      }
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const field = fields[k]!;
        const raw = input[k];
        if (raw === undefined || raw === null) {
          if (field.mode === 'required') {
            ok = false;
            sink.report(
              [...path, k],
              'required',
              `required field ${JSON.stringify(k)} is missing`,
              field.schema.expected,
            );
          } else if (field.mode === 'default') {
            out[k] = field.fallback!();
          }
          continue;
        }
        const v = field.schema.parse(raw, [...path, k], sink);
        if (v === INVALID) ok = false;
        else out[k] = v;
      }
      if (!ok) return INVALID;
      const value = out as ObjectOf<F>;
      if (opts.check) {
        let checked = true;
        opts.check(value, (rel, message, exp, code = 'invalid') => {
          checked = false;
          sink.report([...path, ...rel], code, message, exp);
        });
        if (!checked) return INVALID;
      }
      return opts.complete ? opts.complete(value) : value;
    },
  };
}

/** "did you mean" for a misspelt key, or for a key that belongs one level down (lost indentation). */
function unknownFieldHint(key: string, fields: Fields): string {
  const near = closest(key, Object.keys(fields));
  if (near !== undefined) return ` (did you mean ${JSON.stringify(near)}?)`;
  for (const [name, f] of Object.entries(fields)) {
    if (isObjectSchema(f.schema) && Object.hasOwn(f.schema.fields, key)) {
      return ` (did you mean "${name}.${key}"? check the indentation under "${name}:")`;
    }
  }
  const known = Object.keys(fields);
  return known.length ? `; known fields: ${known.join(', ')}` : '';
}

/** Cross-field rule: at most (or exactly) one of the named fields is set. */
export function oneOfFields<T extends object>(
  names: readonly (keyof T & string)[],
  required: boolean,
): (value: T, report: Reporter) => void {
  return (value, report) => {
    const set = names.filter((n) => value[n] !== undefined);
    if (set.length > 1) {
      report([set[1]!], `cannot be set together with "${set[0]}"`, `exactly one of ${names.join(', ')}`, 'conflict');
    } else if (required && set.length === 0) {
      report([], `one of ${names.join(', ')} is required`, `exactly one of ${names.join(', ')}`, 'required');
    }
  };
}

/** Combine several cross-field rules. */
export function checks<T>(...rules: ((value: T, report: Reporter) => void)[]): (value: T, report: Reporter) => void {
  return (value, report) => {
    for (const r of rules) r(value, report);
  };
}
