// Rendering for `-o json|yaml`, and where human output goes.
import { stringify } from 'yaml';

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
