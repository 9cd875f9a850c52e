// The `trellis` command line: dispatch, usage errors (exit 2) and failures (exit 1).
import { upCommand } from './commands/up.js';
import { nodeCommand } from './commands/node.js';
import { flagHelp, parseArgs } from './args.js';
import type { Command } from './command.js';
import { bootstrapCommand } from './commands/bootstrap.js';
import { caCommand } from './commands/ca.js';
import { cniCommand } from './commands/cni.js';
import { controlplaneCommand } from './commands/controlplane.js';
import { policyCommand } from './commands/policy.js';
import { observeCommand } from './commands/observe.js';
import { proxyStatusCommand } from './commands/proxy-status.js';
import { applyCommand, deleteCommand, getCommand } from './commands/resources.js';
import { validateCommand } from './commands/validate.js';
import { versionCommand } from './commands/version.js';
import { processIo, type Io } from './output.js';
import { TrellisError, UsageError } from '../errors.js';
import { didYouMean } from '../util/did-you-mean.js';

export const COMMANDS: readonly Command[] = [
  upCommand,
  validateCommand,
  controlplaneCommand,
  applyCommand,
  getCommand,
  deleteCommand,
  proxyStatusCommand,
  policyCommand,
  observeCommand,
  nodeCommand,
  caCommand,
  cniCommand,
  bootstrapCommand,
  versionCommand,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'trellis: zero-trust service networking configured with the standard kinds (Gateway API, Istio, Kubernetes, Cilium).',
    '',
    'Usage: trellis COMMAND [flags]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    `  ${'help'.padEnd(width)}  Show help for a command`,
    '',
    'Run "trellis help COMMAND" or "trellis COMMAND --help" for its flags.',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [c.summary, '', `Usage: ${c.usage}`, '', 'Flags:', flagHelp(c.flags)].join('\n');
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
      const topic = name === 'help' ? rest[0] : undefined;
      const c = topic === undefined ? undefined : COMMANDS.find((x) => x.name === topic);
      if (topic !== undefined && !c)
        throw new UsageError(
          `unknown command "${topic}"${didYouMean(
            topic,
            COMMANDS.map((x) => x.name),
          )}`,
        );
      io.out(c ? commandHelp(c) : usage());
      return name === undefined ? 2 : 0;
    }
    if (name === '--version') return await versionCommand.run({ flags: {}, positionals: [] }, io);
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) {
      throw new UsageError(`unknown command "${name}"${didYouMean(name, [...COMMANDS.map((c) => c.name), 'help'])}`);
    }
    const args = parseArgs(command.name, rest, command.flags);
    if (args.flags.help === true) {
      io.out(commandHelp(command));
      return 0;
    }
    return await command.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: ${e.message}`);
      io.err(
        `Run "trellis ${name !== undefined && COMMANDS.some((c) => c.name === name) ? `${name} --help` : 'help'}" for usage.`,
      );
      return 2;
    }
    if (e instanceof TrellisError) {
      io.err(`error: ${e.message}`);
      return 1;
    }
    io.err(`internal error (please report it): ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.TRELLIS_DEBUG && e instanceof Error && e.stack) io.err(e.stack);
    return 1;
  }
}
