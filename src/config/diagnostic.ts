// A problem found in the user's configuration, and how it is printed.
import { compareStrings } from '../util/compare.js';
import { formatPath, type Path } from './schema/schema.js';

export type Severity = 'error' | 'warning' | 'info';

/** kind/namespace/name; cluster-scoped resources have no namespace. */
export interface ResourceKey {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

export function resourceId(key: ResourceKey): string {
  return key.namespace === undefined ? `${key.kind}/${key.name}` : `${key.kind}/${key.namespace}/${key.name}`;
}

export interface Position {
  readonly line: number;
  readonly column: number;
}

export interface Diagnostic {
  readonly severity: Severity;
  /** TRELLIS_ERR_* for load problems; upstream reason (BackendNotFound) or Istio code (IST0101) for analysis. */
  readonly code: string;
  readonly message: string;
  readonly expected?: string;
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  readonly resource?: ResourceKey;
  /** Field path inside the resource, e.g. spec.rules[0].backendRefs[1].name */
  readonly field?: string;
}

export function fieldOf(path: Path): string | undefined {
  return path.length === 0 ? undefined : formatPath(path);
}

/** `file:line:col kind/namespace/name: field.path: message (expected ...)` */
export function formatDiagnostic(d: Diagnostic): string {
  let where = '';
  if (d.file !== undefined) {
    where = d.file;
    if (d.line !== undefined) where += `:${d.line}`;
    if (d.line !== undefined && d.column !== undefined) where += `:${d.column}`;
    where += ': ';
  }
  const prefix = d.severity === 'error' ? '' : `${d.severity}: `;
  const res = d.resource ? `${resourceId(d.resource)}: ` : '';
  const field = d.field ? `${d.field}: ` : '';
  const expected = d.expected ? ` (expected ${d.expected})` : '';
  return `${where}${prefix}${res}${field}${d.message}${expected}`;
}

export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  return (
    compareStrings(a.file ?? '', b.file ?? '') ||
    (a.line ?? 0) - (b.line ?? 0) ||
    (a.column ?? 0) - (b.column ?? 0) ||
    compareStrings(a.message, b.message)
  );
}
