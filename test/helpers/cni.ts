// Running CNI plugins the way a container runtime (libcni) does: the plugin found by its type in
// a bin directory, CNI_* in the environment, the configuration on stdin; for a configuration
// list, name and cniVersion injected into every plugin, prevResult passed along on ADD and the
// cached result on CHECK and DEL (which runs in reverse order). Plus network namespaces.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installPlugins } from '../../src/datapath/linux/cni/install.js';

/** Debian's containernetworking-plugins. */
export const REFERENCE_PLUGINS = '/usr/lib/cni';

/** Why root-only datapath tests cannot run here, or undefined when they can. */
export function datapathSkipReason(needReferencePlugins = false): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, links, routes)';
  if (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip')) return 'needs iproute2 (ip)';
  if (needReferencePlugins && !existsSync(join(REFERENCE_PLUGINS, 'loopback')))
    return `needs Debian's containernetworking-plugins in ${REFERENCE_PLUGINS}`;
  return undefined;
}

/** A temporary CNI bin directory: trellis-cni, trellis-ipam and links to the reference plugins. */
export function cniBinDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-cni-bin-'));
  installPlugins(dir);
  if (existsSync(REFERENCE_PLUGINS))
    for (const p of readdirSync(REFERENCE_PLUGINS)) symlinkSync(join(REFERENCE_PLUGINS, p), join(dir, p));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Attachment {
  readonly containerId: string;
  /** Path of the pod's network namespace (e.g. /var/run/netns/<name>). */
  readonly netns?: string;
  readonly ifname: string;
  readonly args?: string;
}

export interface PluginRun {
  readonly code: number;
  /** Parsed stdout (Result, error JSON, VERSION answer), or undefined when empty. */
  readonly out: Record<string, unknown> | undefined;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly binDir: string;
  /** Run the plugin inside this named network namespace (the "node"), as `ip netns exec` does. */
  readonly inNetns?: string;
  /** Raw stdin instead of JSON.stringify(conf) (bad-input tests). */
  readonly rawStdin?: string;
  /** Environment to use instead of the CNI_* built from the attachment (bad-input tests). */
  readonly env?: NodeJS.ProcessEnv;
}

/** One plugin invocation. */
export function runPlugin(
  command: string,
  type: string,
  conf: unknown,
  a: Attachment | undefined,
  opts: RunOptions,
): PluginRun {
  const env: NodeJS.ProcessEnv = opts.env ?? {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_PATH: opts.binDir,
    ...(a ? { CNI_CONTAINERID: a.containerId, CNI_IFNAME: a.ifname } : {}),
    ...(a?.netns ? { CNI_NETNS: a.netns } : {}),
    ...(a?.args ? { CNI_ARGS: a.args } : {}),
  };
  const file = join(opts.binDir, type);
  const argv = opts.inNetns ? ['ip', ['netns', 'exec', opts.inNetns, file]] : [file, []];
  const r = spawnSync(argv[0] as string, argv[1] as string[], {
    env,
    input: opts.rawStdin ?? JSON.stringify(conf),
    encoding: 'utf8',
    timeout: 30_000,
  });
  let out: Record<string, unknown> | undefined;
  try {
    out = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    out = undefined;
  }
  return { code: r.status ?? -1, out, stdout: r.stdout, stderr: r.stderr };
}

export interface ConfList {
  readonly cniVersion: string;
  readonly name: string;
  readonly plugins: readonly Record<string, unknown>[];
}

/** libcni: the plugin's configuration as the runtime sends it. */
function pluginConf(
  list: ConfList,
  p: Record<string, unknown>,
  prevResult: unknown,
  runtimeConfig: Record<string, unknown>,
) {
  const caps = (p.capabilities ?? {}) as Record<string, boolean>;
  const rc = Object.fromEntries(Object.entries(runtimeConfig).filter(([k]) => caps[k]));
  const { capabilities: _c, ...rest } = p;
  return {
    ...rest,
    name: list.name,
    cniVersion: list.cniVersion,
    ...(prevResult ? { prevResult } : {}),
    ...(Object.keys(rc).length ? { runtimeConfig: rc } : {}),
  };
}

/** ADD through the chain; resolves with the final Result, or the failing plugin's run. */
export function addList(
  list: ConfList,
  a: Attachment,
  opts: RunOptions,
  runtimeConfig: Record<string, unknown> = {},
): { result?: Record<string, unknown>; failed?: PluginRun & { type: string } } {
  let prev: Record<string, unknown> | undefined;
  for (const p of list.plugins) {
    const r = runPlugin('ADD', p.type as string, pluginConf(list, p, prev, runtimeConfig), a, opts);
    if (r.code !== 0) return { failed: { ...r, type: p.type as string } };
    prev = r.out;
  }
  return { result: prev };
}

/** CHECK (in order) or DEL (in reverse) through the chain with the cached Result. */
export function listCommand(
  command: 'CHECK' | 'DEL',
  list: ConfList,
  a: Attachment,
  cached: Record<string, unknown> | undefined,
  opts: RunOptions,
  runtimeConfig: Record<string, unknown> = {},
): PluginRun[] {
  const plugins = command === 'DEL' ? [...list.plugins].reverse() : list.plugins;
  const runs: PluginRun[] = [];
  for (const p of plugins) {
    const r = runPlugin(command, p.type as string, pluginConf(list, p, cached, runtimeConfig), a, opts);
    runs.push(r);
    if (r.code !== 0) break;
  }
  return runs;
}

/** A named network namespace (/var/run/netns/<name>), removed by `remove`. */
export function netns(name: string): { name: string; path: string; remove: () => void } {
  execFileSync('ip', ['netns', 'add', name]);
  return {
    name,
    path: `/var/run/netns/${name}`,
    remove: () => spawnSync('ip', ['netns', 'delete', name]),
  };
}

/** Runs a command inside a named netns; returns stdout (throws on failure). */
export function inNetns(ns: string, cmd: string, args: readonly string[], timeoutMs = 10_000): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
}

/** A Node script run inside a namespace (a pod's server); it prints a line once it listens. */
export function nodeInNetns(ns: string, script: string): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Resolves at the child's first line of output (its "ready"), bounded. */
export async function readyLine(p: ChildProcess, timeoutMs = 10_000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start')), timeoutMs);
    p.stdout!.once('data', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** What a CNI test works in: the plugins, an IPAM data dir, a node namespace and pod namespaces. */
export interface CniLab {
  readonly bin: { readonly dir: string };
  readonly dataDir: string;
  readonly node: ReturnType<typeof netns>;
  readonly pods: ReturnType<typeof netns>[];
  /** Run plugins inside the node namespace, as a runtime on that node would. */
  readonly opts: RunOptions;
  /** Removes everything (pods first), whatever state the test left. */
  remove(): void;
}

export function cniLab(prefix: string, pods: readonly string[]): CniLab {
  const bin = cniBinDir();
  const dataDir = mkdtempSync(join(tmpdir(), 'trellis-cni-ipam-'));
  const node = netns(`${prefix}-node`);
  const made = pods.map((p) => netns(`${prefix}-${p}`));
  return {
    bin,
    dataDir,
    node,
    pods: made,
    opts: { binDir: bin.dir, inNetns: node.name },
    remove: () => {
      for (const p of made) p.remove();
      node.remove();
      bin.remove();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
