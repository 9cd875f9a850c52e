// A small flag parser with kubectl habits: -f/--filename repeatable, --flag=value,
// and unknown flags answered with the closest known one.
import { UsageError } from '../errors.js';
import { didYouMean } from '../util/did-you-mean.js';

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly type: 'string' | 'boolean' | 'list';
  readonly description: string;
  readonly valueName?: string;
  /** Allowed values for a string flag. */
  readonly choices?: readonly string[];
}

export interface ParsedArgs {
  readonly flags: Readonly<Record<string, string | boolean | readonly string[] | undefined>>;
  readonly positionals: readonly string[];
}

export function parseArgs(command: string, argv: readonly string[], specs: readonly FlagSpec[]): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags: Record<string, string | boolean | string[] | undefined> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    let spec: FlagSpec | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      spec = byName.get(name);
    } else {
      name = arg.slice(1, 2);
      inline = arg.length > 2 ? arg.slice(2).replace(/^=/, '') : undefined;
      spec = byShort.get(name);
    }
    if (!spec) {
      const candidates = [
        ...specs.map((s) => `--${s.name}`),
        ...specs.filter((s) => s.short).map((s) => `-${s.short}`),
      ];
      const shown = arg.startsWith('--') ? `--${name}` : `-${name}`;
      throw new UsageError(`unknown flag ${shown} for "trellis ${command}"${didYouMean(shown, candidates)}`);
    }
    if (spec.type === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') {
        throw new UsageError(`flag --${spec.name} takes no value (or =true/=false), got ${JSON.stringify(inline)}`);
      }
      flags[spec.name] = inline !== 'false';
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) {
      throw new UsageError(`flag --${spec.name} needs a value${spec.valueName ? ` (${spec.valueName})` : ''}`);
    }
    if (spec.choices && !spec.choices.includes(value)) {
      throw new UsageError(
        `flag --${spec.name} does not accept ${JSON.stringify(value)}${didYouMean(value, spec.choices)}; expected one of ${spec.choices.join(', ')}`,
      );
    }
    if (spec.type === 'list') {
      const prev = flags[spec.name];
      flags[spec.name] = [...(Array.isArray(prev) ? prev : []), value];
    } else {
      flags[spec.name] = value;
    }
  }
  return { flags, positionals };
}

export function flagHelp(specs: readonly FlagSpec[]): string {
  return specs
    .map((s) => {
      const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'boolean' ? '' : ` ${s.valueName ?? 'VALUE'}`}`;
      return `  ${left.padEnd(30)} ${s.description}`;
    })
    .join('\n');
}
