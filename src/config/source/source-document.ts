// One document read from a file, before it is known to be a resource.
import type { Diagnostic, Position } from '../diagnostic.js';
import type { Path } from '../schema/schema.js';

export interface SourceDocument {
  readonly file: string;
  /** 0-based index of the document within its file. */
  readonly index: number;
  readonly value: unknown;
  /** Path prefix inside the document when it came from a `List` (items[i]). */
  readonly prefix: Path;
  /** Where a field (or, with atKey, its key) is written; falls back to the nearest ancestor. */
  locate(path: Path, atKey?: boolean): Position;
}

export interface ParsedFile {
  readonly documents: readonly SourceDocument[];
  readonly problems: readonly Diagnostic[];
}

/** 1-based line and column of a character offset. */
export function offsetToPosition(text: string, offset: number, lineStarts?: number[]): Position {
  const starts = lineStarts ?? computeLineStarts(text);
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: offset - starts[lo]! + 1 };
}

export function computeLineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}
