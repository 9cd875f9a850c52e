// Multi-document YAML -> SourceDocuments.
//
// Two parsers, measured: js-yaml parses 15,000 small documents in ~0.4 s, the
// `yaml` package in ~2.0 s (docs/benchmarks.md). So clean files take the fast
// path (js-yaml, core schema) and positions are computed only when a problem is
// reported. Files that fail to parse, or that use anchors/aliases (bounded alias
// expansion, merge keys), take the `yaml` package, which reports every error
// with its position and keeps the other documents of the file.
import * as jsyaml from 'js-yaml';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document } from 'yaml';
import type { Diagnostic, Position } from '../diagnostic.js';
import type { Path } from '../schema/schema.js';
import type { ParsedFile, SourceDocument } from './source-document.js';

/** The most alias references one document may resolve (yaml's default; stops "billion laughs"). */
export const MAX_ALIAS_COUNT = 100;

// An anchor (&a), an alias (*a) or a merge key (<<): these files go to the parser that
// bounds alias expansion and knows merge keys (js-yaml's core schema has no merge type).
const ANCHOR_OR_ALIAS = /(?:^|[\s,[{])[&*][^\s,[\]{}]|<<\s*:/m;

export function parseYamlFile(file: string, text: string): ParsedFile {
  if (!ANCHOR_OR_ALIAS.test(text)) {
    const fast = tryFastPath(file, text);
    if (fast) return fast;
  }
  return slowPath(file, text);
}

function tryFastPath(file: string, text: string): ParsedFile | undefined {
  let values: unknown[];
  try {
    values = jsyaml.loadAll(text, undefined, { schema: jsyaml.CORE_SCHEMA, filename: file });
  } catch {
    return undefined; // the slow path reports the problem precisely
  }
  let index: YamlIndex | undefined;
  const lazyIndex = (): YamlIndex => (index ??= buildIndex(text));
  const documents: SourceDocument[] = [];
  let n = 0;
  for (const value of values) {
    if (value === null || value === undefined) continue;
    const i = n++;
    documents.push({
      file,
      index: i,
      value,
      prefix: [],
      locate: (path, atKey) => lazyIndex().locate(i, path, atKey),
    });
  }
  return { documents, problems: [] };
}

interface YamlIndex {
  locate(docIndex: number, path: Path, atKey?: boolean): Position;
}

function parseDocs(text: string): { docs: Document.Parsed[]; lines: LineCounter } {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, uniqueKeys: true, merge: true, prettyErrors: false });
  return { docs: Array.isArray(docs) ? docs : [], lines };
}

function buildIndex(text: string): YamlIndex {
  const { docs, lines } = parseDocs(text);
  const nonEmpty = docs.filter((d) => !isEmptyDoc(d));
  return {
    locate(docIndex, path, atKey) {
      const doc = nonEmpty[docIndex];
      if (!doc) return { line: 1, column: 1 };
      const pos = lines.linePos(locateOffset(doc, path, atKey ?? false));
      return { line: pos.line, column: pos.col };
    },
  };
}

function isEmptyDoc(doc: Document.Parsed): boolean {
  const c = doc.contents;
  return c === null || (isScalar(c) && (c.value === null || c.value === undefined) && doc.errors.length === 0);
}

/** Offset of the node at `path` (or of its key), or of the nearest ancestor that exists. */
function locateOffset(doc: Document.Parsed, path: Path, atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? doc.range[0];
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => keyText(p.key) === String(seg));
      if (!pair) return offset;
      const keyStart = rangeStart(pair.key) ?? offset;
      if ((i === path.length - 1 && atKey) || pair.value === null || pair.value === undefined) return keyStart;
      node = pair.value;
      offset = rangeStart(node) ?? keyStart;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return offset;
      node = item;
      offset = rangeStart(item) ?? offset;
    } else {
      return offset;
    }
  }
  return offset;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return typeof key === 'string' ? key : undefined;
}

function rangeStart(node: unknown): number | undefined {
  const r = (node as { range?: [number, number, number] } | null)?.range;
  return r ? r[0] : undefined;
}

function slowPath(file: string, text: string): ParsedFile {
  const problems: Diagnostic[] = [];
  let parsed: ReturnType<typeof parseDocs>;
  try {
    parsed = parseDocs(text);
  } catch (e) {
    // The parser itself gave up (e.g. nesting too deep for the stack).
    problems.push({
      severity: 'error',
      code: 'TRELLIS_ERR_SYNTAX',
      file,
      line: 1,
      column: 1,
      message: `cannot parse YAML: ${firstLine(e)}`,
    });
    return { documents: [], problems };
  }
  const { docs, lines } = parsed;
  const documents: SourceDocument[] = [];
  let n = 0;
  for (const doc of docs) {
    if (isEmptyDoc(doc)) continue;
    const i = n++;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const pos = lines.linePos(err.pos[0]);
        problems.push({
          severity: 'error',
          code: err.code === 'DUPLICATE_KEY' ? 'TRELLIS_ERR_DUPLICATE_KEY' : 'TRELLIS_ERR_SYNTAX',
          file,
          line: pos.line,
          column: pos.col,
          message: yamlErrorMessage(err.code, err.message, keyAt(text, err.pos[0])),
        });
      }
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      const pos = lines.linePos(doc.range[0]);
      const bomb = e instanceof ReferenceError && /alias/i.test(e.message);
      problems.push({
        severity: 'error',
        code: bomb ? 'TRELLIS_ERR_ALIAS_LIMIT' : 'TRELLIS_ERR_SYNTAX',
        file,
        line: pos.line,
        column: pos.col,
        message: bomb
          ? `YAML aliases in this document expand too far (more than ${MAX_ALIAS_COUNT} alias uses); refusing to expand it`
          : `cannot read YAML document: ${firstLine(e)}`,
      });
      continue;
    }
    documents.push({
      file,
      index: i,
      value,
      prefix: [],
      locate: (path, atKey) => {
        const p = lines.linePos(locateOffset(doc, path, atKey ?? false));
        return { line: p.line, column: p.col };
      },
    });
  }
  return { documents, problems };
}

/** The mapping key written at `offset` ("name" in "  name: z"). */
function keyAt(text: string, offset: number): string | undefined {
  const m = /^\s*("[^"]*"|'[^']*'|[^:#\n]+?)\s*:/.exec(text.slice(offset, offset + 300));
  return m ? m[1]!.replace(/^["']|["']$/g, '') : undefined;
}

function yamlErrorMessage(code: string, message: string, key: string | undefined): string {
  const first = message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  switch (code) {
    case 'TAB_AS_INDENT':
      return 'a tab is used for indentation; YAML allows only spaces there';
    case 'DUPLICATE_KEY':
      return `duplicate key${key ? ` ${JSON.stringify(key)}` : ''}: each key may appear once per mapping`;
    default:
      return first.replace(/^\w+Error: /, '');
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}
