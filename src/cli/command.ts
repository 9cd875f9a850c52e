import type { FlagSpec, ParsedArgs } from './args.js';
import type { Io } from './output.js';

export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly flags: readonly FlagSpec[];
  /** Returns the exit code: 0 ok, 1 failure (2, usage, is thrown as UsageError). */
  run(args: ParsedArgs, io: Io): number | Promise<number>;
}

export const HELP_FLAG: FlagSpec = {
  name: 'help',
  short: 'h',
  type: 'boolean',
  description: 'show help for this command',
};
