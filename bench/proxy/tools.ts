// The external programs the proxy bench runs, and the Debian package of each. A missing one is
// installed with apt-get when running as root; otherwise the bench stops and names the packages.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Binary → Debian package. Add h2load (nghttp2-client) or tcpdump here when a measure uses them. */
export const TOOL_PACKAGES = {
  nginx: 'nginx',
  haproxy: 'haproxy',
  caddy: 'caddy',
  wrk: 'wrk',
  iperf3: 'iperf3',
} as const;

export type Tool = keyof typeof TOOL_PACKAGES;
export type Tools = Record<Tool, string>;

export class MissingToolsError extends Error {}

/** Absolute path of `name` on PATH or in the sbin directories (not on a non-root PATH on Debian). */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

function aptInstall(packages: readonly string[]): boolean {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env,
      timeout: 600_000,
    }).status === 0;
  if (install()) return true;
  // Usually stale package lists: refresh once and retry.
  spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], env, timeout: 300_000 });
  return install();
}

/** Resolves every tool, installing the missing ones when root. Throws MissingToolsError otherwise. */
export function ensureTools(log: (msg: string) => void): Tools {
  const names = Object.keys(TOOL_PACKAGES) as Tool[];
  let missing = names.filter((n) => !findBinary(n));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((n) => TOOL_PACKAGES[n]))];
    const root = process.getuid?.() === 0;
    if (root && findBinary('apt-get')) {
      log(`bench:proxy: installing ${packages.join(' ')} (missing: ${missing.join(', ')})`);
      aptInstall(packages);
      missing = names.filter((n) => !findBinary(n));
    }
    if (missing.length > 0) {
      const still = [...new Set(missing.map((n) => TOOL_PACKAGES[n]))];
      throw new MissingToolsError(
        `bench:proxy needs ${missing.join(', ')} — install the Debian package(s): ` +
          `sudo apt-get install -y ${still.join(' ')}` +
          (root ? ' (apt-get install failed; see its output above)' : ''),
      );
    }
  }
  return Object.fromEntries(names.map((n) => [n, findBinary(n)!])) as Tools;
}
