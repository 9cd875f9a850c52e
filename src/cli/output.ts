// Rendering for `-o json|yaml`, and where human output goes.
import { stringify } from 'yaml';
import type { FlagSpec } from './args.js';

export type OutputFormat = 'human' | 'json' | 'yaml';
export const OUTPUT_FORMATS = ['human', 'json', 'yaml'] as const;

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
};

export function renderData(data: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? JSON.stringify(data, null, 2) : stringify(data);
}

export const OUTPUT_FLAG: FlagSpec = {
  name: 'output',
  short: 'o',
  type: 'string',
  valueName: 'FORMAT',
  choices: OUTPUT_FORMATS,
  description: 'human (default), json or yaml',
};

/** Columns padded to their widest cell, kubectl style. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((v, i) => v.padEnd(widths[i]!))
        .join('   ')
        .trimEnd(),
    )
    .join('\n');
}
