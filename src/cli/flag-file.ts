// The contents of a file named by a flag; a missing or unreadable one is a usage error naming the flag.
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

export function readFlagFile(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(
      `--${flag} ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
}
