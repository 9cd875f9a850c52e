// Finds configuration files under the paths a user names and reads them safely.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Diagnostic } from '../diagnostic.js';
import { parseJsonFile } from './json-documents.js';
import type { ParsedFile } from './source-document.js';
import { parseYamlFile } from './yaml-documents.js';

/** Larger files are refused: Kubernetes objects are capped at ~1.5 MB, and a config file this big is a mistake. */
export const MAX_FILE_BYTES = 8 * 1024 * 1024;

const YAML_EXT = new Set(['.yaml', '.yml']);
const JSON_EXT = new Set(['.json', '.hujson', '.jsonc']);

export interface FileList {
  readonly files: readonly string[];
  readonly problems: readonly Diagnostic[];
}

/** Files named directly are read whatever their extension; directories are walked for YAML/JSON files. */
export function collectFiles(paths: readonly string[]): FileList {
  const files: string[] = [];
  const problems: Diagnostic[] = [];
  for (const p of paths) {
    if (p === '-') {
      files.push(p); // standard input, as kubectl -f -
      continue;
    }
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      problems.push(
        fileProblem(p, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : errText(e)),
      );
      continue;
    }
    if (st.isDirectory()) walk(p, files, problems);
    else if (st.isFile()) files.push(p);
    else problems.push(fileProblem(p, 'not a regular file or directory'));
  }
  return { files, problems };
}

function walk(dir: string, files: string[], problems: Diagnostic[]): void {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    problems.push(fileProblem(dir, errText(e)));
    return;
  }
  for (const name of names) {
    if (name.startsWith('.') || name === 'node_modules') continue;
    const p = join(dir, name);
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      problems.push(fileProblem(p, errText(e)));
      continue;
    }
    if (st.isDirectory()) walk(p, files, problems);
    else if (st.isFile() && (YAML_EXT.has(extname(name)) || JSON_EXT.has(extname(name)))) files.push(p);
  }
}

/** Reads and parses one file; never throws for bad content. */
export function readConfigFile(file: string): ParsedFile {
  if (file === '-') {
    try {
      return parseConfigText('<stdin>', readFileSync(0));
    } catch (e) {
      return { documents: [], problems: [fileProblem('<stdin>', errText(e))] };
    }
  }
  let size: number;
  try {
    size = statSync(file).size;
  } catch (e) {
    return { documents: [], problems: [fileProblem(file, errText(e))] };
  }
  if (size > MAX_FILE_BYTES) {
    return {
      documents: [],
      problems: [
        {
          severity: 'error',
          code: 'TRELLIS_ERR_FILE_TOO_LARGE',
          file,
          message: `file is ${(size / 1048576).toFixed(1)} MiB, over the ${MAX_FILE_BYTES / 1048576} MiB limit for one configuration file`,
          expected: 'smaller files: split the resources across several files in a directory',
        },
      ],
    };
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    return { documents: [], problems: [fileProblem(file, errText(e))] };
  }
  return parseConfigText(file, bytes);
}

export function parseConfigText(file: string, bytes: Buffer): ParsedFile {
  const bad = firstInvalidUtf8(bytes);
  if (bad !== undefined) {
    const before = bytes.subarray(0, bad).toString('utf8');
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    return {
      documents: [],
      problems: [
        {
          severity: 'error',
          code: 'TRELLIS_ERR_ENCODING',
          file,
          line,
          column,
          message: `byte 0x${bytes[bad]!.toString(16).padStart(2, '0')} at offset ${bad} is not valid UTF-8`,
          expected: 'a UTF-8 text file',
        },
      ],
    };
  }
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const parsed = JSON_EXT.has(extname(file)) ? parseJsonFile(file, text) : parseYamlFile(file, text);
  if (parsed.documents.length === 0 && parsed.problems.length === 0) {
    return {
      documents: [],
      problems: [
        {
          severity: 'warning',
          code: 'TRELLIS_ERR_EMPTY',
          file,
          message: 'file holds no resources (it is empty or only comments)',
        },
      ],
    };
  }
  return parsed;
}

/** Offset of the first byte that breaks UTF-8, or undefined when the buffer is valid. */
export function firstInvalidUtf8(bytes: Buffer): number | undefined {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return undefined;
  } catch {
    // Invalid somewhere: walk the sequences to say where.
  }
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const n = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    if (n === 0 || i + n > bytes.length) return i;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(i, i + n));
    } catch {
      return i;
    }
    i += n;
  }
  return undefined;
}

function fileProblem(file: string, message: string): Diagnostic {
  return { severity: 'error', code: 'TRELLIS_ERR_FILE_READ', file, message: `cannot read: ${message}` };
}

function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'EACCES') return 'permission denied';
  if (err.code === 'ENOENT') return 'no such file or directory';
  return err.message ?? String(e);
}
