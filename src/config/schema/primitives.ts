import { describeValue, INVALID, type Invalid, type IssueSink, type Path, type Schema } from './schema.js';
import { didYouMean } from '../../util/did-you-mean.js';

export interface StringOptions {
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: RegExp;
  /** Words for what the pattern means, e.g. "a DNS-1123 label". */
  readonly expected?: string;
  /** Extra semantic check; returns a message when the value is wrong. */
  readonly check?: (value: string) => string | undefined;
}

export function string(opts: StringOptions = {}): Schema<string> {
  const expected = opts.expected ?? 'a string';
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): string | Invalid {
      if (typeof input !== 'string') {
        sink.report(path, 'type', `must be a string, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      if (opts.minLength !== undefined && input.length < opts.minLength) {
        sink.report(
          path,
          'range',
          opts.minLength === 1 ? 'must not be empty' : `is ${input.length} characters long`,
          opts.minLength === 1 ? expected : `at least ${opts.minLength} characters`,
        );
        return INVALID;
      }
      if (opts.maxLength !== undefined && input.length > opts.maxLength) {
        sink.report(path, 'range', `is ${input.length} characters long`, `at most ${opts.maxLength} characters`);
        return INVALID;
      }
      if (opts.pattern && !opts.pattern.test(input)) {
        sink.report(path, 'format', `${JSON.stringify(input)} is not valid`, expected);
        return INVALID;
      }
      if (opts.check) {
        const problem = opts.check(input);
        if (problem !== undefined) {
          sink.report(path, 'format', problem, expected);
          return INVALID;
        }
      }
      return input;
    },
  };
}

export interface IntegerOptions {
  readonly min?: number;
  readonly max?: number;
  readonly expected?: string;
}

export function integer(opts: IntegerOptions = {}): Schema<number> {
  const range =
    opts.min !== undefined && opts.max !== undefined
      ? ` ${opts.min}-${opts.max}`
      : opts.min !== undefined
        ? ` >= ${opts.min}`
        : opts.max !== undefined
          ? ` <= ${opts.max}`
          : '';
  const expected = opts.expected ?? `an integer${range}`;
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): number | Invalid {
      if (typeof input !== 'number' || !Number.isInteger(input)) {
        sink.report(path, 'type', `must be an integer, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      if ((opts.min !== undefined && input < opts.min) || (opts.max !== undefined && input > opts.max)) {
        sink.report(path, 'range', `${input} is out of range`, expected);
        return INVALID;
      }
      return input;
    },
  };
}

export function number(opts: { min?: number; max?: number; expected?: string } = {}): Schema<number> {
  const expected = opts.expected ?? 'a number';
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): number | Invalid {
      if (typeof input !== 'number' || !Number.isFinite(input)) {
        sink.report(path, 'type', `must be a number, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      if ((opts.min !== undefined && input < opts.min) || (opts.max !== undefined && input > opts.max)) {
        sink.report(path, 'range', `${input} is out of range`, expected);
        return INVALID;
      }
      return input;
    },
  };
}

export function boolean(): Schema<boolean> {
  return {
    expected: 'true or false',
    parse(input: unknown, path: Path, sink: IssueSink): boolean | Invalid {
      if (typeof input !== 'boolean') {
        sink.report(path, 'type', `must be true or false, got ${describeValue(input)}`, 'true or false');
        return INVALID;
      }
      return input;
    },
  };
}

/** One of a fixed set of strings. Matching is exact, as upstream enums are. */
export function oneOf<const T extends readonly string[]>(values: T): Schema<T[number]> {
  const set = new Set<string>(values);
  const expected = `one of ${values.join(', ')}`;
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): T[number] | Invalid {
      if (typeof input !== 'string') {
        sink.report(path, 'type', `must be a string, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      if (!set.has(input)) {
        sink.report(path, 'enum', `${JSON.stringify(input)} is not allowed${didYouMean(input, values)}`, expected);
        return INVALID;
      }
      return input as T[number];
    },
  };
}

/** Kubernetes IntOrString (e.g. Service targetPort). */
export function intOrString(
  ints: Schema<number> = integer(),
  strings: Schema<string> = string({ minLength: 1 }),
): Schema<number | string> {
  const expected = `${ints.expected} or ${strings.expected}`;
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): number | string | Invalid {
      if (typeof input === 'number') return ints.parse(input, path, sink);
      if (typeof input === 'string') return strings.parse(input, path, sink);
      sink.report(path, 'type', `must be an integer or a string, got ${describeValue(input)}`, expected);
      return INVALID;
    },
  };
}

/** Accepts anything, unchecked (e.g. `status`, which Trellis computes itself). */
export function unchecked(): Schema<unknown> {
  return {
    expected: 'any value',
    parse(input: unknown): unknown {
      return input;
    },
  };
}
