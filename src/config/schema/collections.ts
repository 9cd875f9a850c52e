import {
  describeValue,
  INVALID,
  isPlainObject,
  type Invalid,
  type IssueSink,
  type Path,
  type Schema,
} from './schema.js';

export interface ArrayOptions {
  readonly min?: number;
  /** Upstream maxItems; exceeding it is a `limit` issue. */
  readonly max?: number;
}

export function array<T>(item: Schema<T>, opts: ArrayOptions = {}): Schema<readonly T[]> {
  const expected = `a list of ${item.expected}`;
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): readonly T[] | Invalid {
      if (!Array.isArray(input)) {
        sink.report(path, 'type', `must be a list, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      if (opts.min !== undefined && input.length < opts.min) {
        sink.report(
          path,
          'limit',
          input.length === 0 ? 'must not be empty' : `has ${input.length} items`,
          `at least ${opts.min} item${opts.min === 1 ? '' : 's'}`,
        );
      }
      if (opts.max !== undefined && input.length > opts.max) {
        sink.report(path, 'limit', `has ${input.length} items, more than the upstream limit`, `at most ${opts.max}`);
        return INVALID;
      }
      const out: T[] = [];
      let ok = true;
      for (let i = 0; i < input.length; i++) {
        const v = item.parse(input[i], [...path, i], sink);
        if (v === INVALID) ok = false;
        else out.push(v);
      }
      return ok ? out : INVALID;
    },
  };
}

export interface RecordOptions {
  readonly key?: Schema<string>;
  readonly max?: number;
}

/** A map with free-form keys (labels, WorkloadEntry ports, ...). */
export function record<T>(value: Schema<T>, opts: RecordOptions = {}): Schema<Readonly<Record<string, T>>> {
  const expected = `a mapping of ${opts.key ? opts.key.expected : 'names'} to ${value.expected}`;
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): Readonly<Record<string, T>> | Invalid {
      if (!isPlainObject(input)) {
        sink.report(path, 'type', `must be a mapping, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      const out: Record<string, T> = {};
      let ok = true;
      const keys = Object.keys(input);
      if (opts.max !== undefined && keys.length > opts.max) {
        sink.report(path, 'limit', `has ${keys.length} entries`, `at most ${opts.max}`);
        ok = false;
      }
      for (const k of keys) {
        if (opts.key && opts.key.parse(k, [...path, k], sink) === INVALID) {
          ok = false;
          continue;
        }
        const v = value.parse(input[k], [...path, k], sink);
        if (v === INVALID) ok = false;
        else out[k] = v;
      }
      return ok ? out : INVALID;
    },
  };
}
