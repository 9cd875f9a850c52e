// JSON and HuJSON (JSON with comments and trailing commas) -> SourceDocuments.
// A file holds one resource, or a top-level array of resources.
import {
  findNodeAtLocation,
  getNodeValue,
  parseTree,
  printParseErrorCode,
  type Node,
  type ParseError,
} from 'jsonc-parser';
import type { Diagnostic, Position } from '../diagnostic.js';
import type { Path } from '../schema/schema.js';
import { computeLineStarts, offsetToPosition, type ParsedFile, type SourceDocument } from './source-document.js';

export function parseJsonFile(file: string, text: string): ParsedFile {
  const errors: ParseError[] = [];
  let root: Node | undefined;
  try {
    root = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: true });
  } catch (e) {
    // The parser recursed too deep (pathological nesting).
    const message = `cannot parse JSON: ${e instanceof RangeError ? 'nesting is too deep' : (e as Error).message}`;
    return {
      documents: [],
      problems: [{ severity: 'error', code: 'TRELLIS_ERR_SYNTAX', file, line: 1, column: 1, message }],
    };
  }
  let starts: number[] | undefined;
  const pos = (offset: number): Position => offsetToPosition(text, offset, (starts ??= computeLineStarts(text)));
  const problems: Diagnostic[] = errors.map((e) => ({
    severity: 'error' as const,
    code: 'TRELLIS_ERR_SYNTAX',
    file,
    ...lineCol(pos(e.offset)),
    message: `JSON syntax error: ${describeJsonError(printParseErrorCode(e.error))}`,
  }));
  if (root)
    findDuplicateKeys(root, (keyNode: Node) => {
      problems.push({
        severity: 'error',
        code: 'TRELLIS_ERR_DUPLICATE_KEY',
        file,
        ...lineCol(pos(keyNode.offset)),
        message: `duplicate key ${JSON.stringify(keyNode.value)}; each key may appear once per object`,
      });
    });
  if (problems.length > 0 || !root) return { documents: [], problems };

  const locate =
    (base: Path) =>
    (path: Path, atKey?: boolean): Position => {
      const full = [...base, ...path];
      for (let n = full.length; n >= 0; n--) {
        const node = findNodeAtLocation(root, full.slice(0, n) as (string | number)[]);
        if (!node) continue;
        if (n === full.length && atKey && node.parent?.type === 'property') return pos(node.parent.offset);
        return pos(node.offset);
      }
      return { line: 1, column: 1 };
    };
  const value: unknown = getNodeValue(root);
  const documents: SourceDocument[] = Array.isArray(value)
    ? value.map((v, i) => ({ file, index: i, value: v, prefix: [], locate: locate([i]) }))
    : [{ file, index: 0, value, prefix: [], locate: locate([]) }];
  return { documents, problems };
}

function lineCol(p: Position): { line: number; column: number } {
  return { line: p.line, column: p.column };
}

function findDuplicateKeys(node: Node, report: (key: Node) => void): void {
  if (node.type === 'object') {
    const seen = new Set<string>();
    for (const prop of node.children ?? []) {
      const key = prop.children?.[0];
      if (key && typeof key.value === 'string') {
        if (seen.has(key.value)) report(key);
        seen.add(key.value);
      }
    }
  }
  for (const child of node.children ?? []) findDuplicateKeys(child, report);
}

function describeJsonError(code: string): string {
  const words: Record<string, string> = {
    InvalidSymbol: 'unexpected character',
    InvalidNumberFormat: 'invalid number',
    PropertyNameExpected: 'a property name (a quoted string) is expected',
    ValueExpected: 'a value is expected',
    ColonExpected: 'a colon is expected',
    CommaExpected: 'a comma is expected',
    CloseBraceExpected: 'a closing brace "}" is expected',
    CloseBracketExpected: 'a closing bracket "]" is expected',
    EndOfFileExpected: 'end of file expected (only one top-level value is allowed)',
    InvalidCommentToken: 'invalid comment',
    UnexpectedEndOfComment: 'unterminated comment',
    UnexpectedEndOfString: 'unterminated string',
    UnexpectedEndOfNumber: 'unterminated number',
    InvalidUnicode: 'invalid unicode escape',
    InvalidEscapeCharacter: 'invalid escape character',
    InvalidCharacter: 'invalid character in string',
  };
  return words[code] ?? code;
}
