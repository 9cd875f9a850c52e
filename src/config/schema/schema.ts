// The structural schema every configuration kind is written in.
//
// Why not zod/ajv: Trellis must report every problem of a document in one pass
// with the field path, what was expected, a "did you mean" for unknown fields,
// and upstream defaults applied. A schema tree we own gives that directly and
// lets unknown-field hints look one level down (flattened YAML), which a generic
// validator's error model would need a translation layer as large as this file.

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

export type IssueCode =
  'unknown-field' | 'required' | 'type' | 'enum' | 'range' | 'format' | 'limit' | 'conflict' | 'invalid';

export interface Issue {
  readonly path: Path;
  readonly code: IssueCode;
  readonly message: string;
  readonly expected?: string;
  /** The issue is about the key at `path`, not its value (unknown fields). */
  readonly atKey?: boolean;
}

/** Collects issues while a document is checked. */
export class IssueSink {
  readonly issues: Issue[] = [];

  report(path: Path, code: IssueCode, message: string, expected?: string, atKey?: boolean): void {
    const issue: Issue = { path, code, message };
    if (expected !== undefined) (issue as { expected?: string }).expected = expected;
    if (atKey) (issue as { atKey?: boolean }).atKey = true;
    this.issues.push(issue);
  }
}

/** Marker returned by a schema when the input could not be turned into a value. */
export const INVALID: unique symbol = Symbol('trellis.invalid');
export type Invalid = typeof INVALID;

export interface Schema<T> {
  /** What a valid value looks like, in words, for "(expected ...)". */
  readonly expected: string;
  parse(input: unknown, path: Path, sink: IssueSink): T | Invalid;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'number':
      return `number ${v}`;
    case 'boolean':
      return `boolean ${v}`;
    case 'object':
      return 'a mapping';
    default:
      return typeof v;
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}
