// nftables through nft(8): whole rulesets applied as one transaction (`nft -f -`: every
// command in the script commits together or not at all, so the kernel never holds half a
// policy), and reads as JSON (`nft -j`), in this process's network namespace or another
// one by path.
import { runTool, ToolError } from './run-tool.js';

const NFT_TIMEOUT_MS = 30_000;

export class NftError extends Error {
  readonly stderr: string;
  constructor(what: string, stderr: string) {
    super(`${what}: ${stderr.trim() || 'failed'}`);
    this.name = 'NftError';
    this.stderr = stderr;
  }
}

async function run(args: readonly string[], input: string | undefined, netns: string | undefined): Promise<string> {
  try {
    return await runTool('nft', args, {
      ...(input ? { input } : {}),
      ...(netns ? { netns } : {}),
      timeoutMs: NFT_TIMEOUT_MS,
      maxBuffer: 256 * 1024 * 1024,
    });
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    throw new NftError(`nft ${args.join(' ')}${netns ? ` (in ${netns})` : ''}`, e.stderr || e.message);
  }
}

/** Applies a script atomically (one transaction). */
export async function applyNft(script: string, opts: { netns?: string } = {}): Promise<void> {
  await run(['-f', '-'], script, opts.netns);
}

/** `nft -j <args>` parsed (e.g. ['list', 'set', 'inet', 'trellis', 'drops']). */
export async function nftJson(args: readonly string[], opts: { netns?: string } = {}): Promise<unknown> {
  return JSON.parse(await run(['-j', ...args], undefined, opts.netns)) as unknown;
}

/** Removes a table if it exists (nothing to do otherwise). */
export async function deleteTable(family: string, name: string, opts: { netns?: string } = {}): Promise<void> {
  // "add" first makes the delete valid whether or not the table existed, in one transaction.
  await applyNft(`add table ${family} ${name}\ndelete table ${family} ${name}\n`, opts);
}
