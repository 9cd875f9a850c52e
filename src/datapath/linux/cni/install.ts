// Installing the plugins where a runtime finds them: one small executable per plugin type in a
// CNI bin directory (the runtime runs `<bin-dir>/<type>`), each starting Node on main.js.
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PLUGIN_TYPES = { interface: 'trellis-cni', ipam: 'trellis-ipam' } as const;

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Writes (atomically) the trellis-cni and trellis-ipam executables into `binDir`; returns their paths. */
export function installPlugins(binDir: string, node = process.execPath): string[] {
  mkdirSync(binDir, { recursive: true });
  return Object.entries(PLUGIN_TYPES).map(([role, type]) => {
    const path = join(binDir, type);
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, `#!/bin/sh\nexec ${shellQuote(node)} ${shellQuote(MAIN)} ${role} "$@"\n`);
    chmodSync(tmp, 0o755);
    renameSync(tmp, path);
    return path;
  });
}

export interface ConfListOptions {
  readonly network: string;
  readonly podCidr: string;
  readonly mtu: number;
  readonly dataDir?: string;
}

/**
 * The node's network configuration list, as kubelet-era runtimes read it from /etc/cni/net.d:
 * trellis-cni first, then the reference plugins most clusters chain (host ports, bandwidth).
 */
export function confList(o: ConfListOptions): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: o.network,
    plugins: [
      {
        type: PLUGIN_TYPES.interface,
        mtu: o.mtu,
        ipam: { type: PLUGIN_TYPES.ipam, podCIDR: o.podCidr, ...(o.dataDir ? { dataDir: o.dataDir } : {}) },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
    ],
  };
}

export function installConfList(path: string, o: ConfListOptions): string {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(confList(o), null, 2)}\n`);
  renameSync(tmp, path);
  return path;
}
