// The kernel's network configuration through iproute2 (`ip`), in this process's network
// namespace or, by path, in another one (`nsenter --net=PATH`: `ip -n` only takes names under
// /var/run/netns, while runtimes hand plugins any path, e.g. /proc/<pid>/ns/net).
import { runTool, ToolError } from './run-tool.js';

const IP_TIMEOUT_MS = 10_000;

export class IpCommandError extends Error {
  readonly stderr: string;
  constructor(command: string, stderr: string) {
    super(`${command}: ${stderr.trim() || 'failed'}`);
    this.name = 'IpCommandError';
    this.stderr = stderr;
  }
}

export interface IpOptions {
  /** Path of the network namespace to run in; this process's own when absent. */
  readonly netns?: string;
  /** Commands for `ip -batch -` (one per line). */
  readonly input?: string;
}

/** Runs `ip ARGS`; resolves with stdout, rejects with IpCommandError carrying ip's own message. */
export async function ip(args: readonly string[], opts: IpOptions = {}): Promise<string> {
  try {
    return await runTool('ip', args, { ...opts, timeoutMs: IP_TIMEOUT_MS });
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    throw new IpCommandError(`ip ${args.join(' ')}${opts.netns ? ` (in ${opts.netns})` : ''}`, e.stderr || e.message);
  }
}

/** Several `ip` commands in one process (`ip -batch -`): stops at the first failure. */
export function ipBatch(lines: readonly string[], opts: { netns?: string } = {}): Promise<string> {
  return ip(['-batch', '-'], { ...opts, input: `${lines.join('\n')}\n` });
}

export interface LinkInfo {
  readonly ifname: string;
  readonly address?: string;
  readonly mtu?: number;
  readonly operstate?: string;
  readonly flags?: readonly string[];
  readonly ifalias?: string;
}

export interface AddrInfo {
  readonly ifname: string;
  readonly addr_info?: readonly { readonly family: string; readonly local: string; readonly prefixlen: number }[];
}

export interface RouteInfo {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
}

/** The link, or undefined when it does not exist. */
export async function linkInfo(name: string, opts: { netns?: string } = {}): Promise<LinkInfo | undefined> {
  try {
    const out = JSON.parse(await ip(['-json', 'link', 'show', 'dev', name], opts)) as LinkInfo[];
    return out[0];
  } catch (e) {
    if (e instanceof IpCommandError && /does not exist|Cannot find device/i.test(e.stderr)) return undefined;
    throw e;
  }
}

export async function links(opts: { netns?: string } = {}): Promise<LinkInfo[]> {
  return JSON.parse(await ip(['-json', 'link', 'show'], opts)) as LinkInfo[];
}

export async function addresses(name: string, opts: { netns?: string } = {}): Promise<string[]> {
  const out = JSON.parse(await ip(['-json', 'addr', 'show', 'dev', name], opts)) as AddrInfo[];
  return (out[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}

export async function routes(opts: { netns?: string } = {}): Promise<RouteInfo[]> {
  return JSON.parse(await ip(['-json', 'route', 'show'], opts)) as RouteInfo[];
}

/** Deletes a link; a link that is already gone is not an error (DEL is idempotent). */
export async function deleteLink(name: string, opts: { netns?: string } = {}): Promise<void> {
  try {
    await ip(['link', 'del', 'dev', name], opts);
  } catch (e) {
    if (e instanceof IpCommandError && /does not exist|Cannot find device/i.test(e.stderr)) return;
    throw e;
  }
}
