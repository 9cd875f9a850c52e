// The process side of a CNI plugin: read CNI_* and stdin, dispatch the command, print the
// Result or the spec's error JSON on stdout, exit 0 or 1. Logs go to stderr only.
import {
  CniCode,
  CniError,
  errorJson,
  LATEST_VERSION,
  parseNetConf,
  readEnvironment,
  resultFor,
  SUPPORTED_VERSIONS,
  type CniEnvironment,
  type CniResult,
  type NetConf,
} from './spec.js';

/** What a plugin does per command; VERSION is answered here. */
export interface CniPlugin {
  add(env: CniEnvironment, conf: NetConf): Promise<CniResult>;
  del(env: CniEnvironment, conf: NetConf): Promise<void>;
  check(env: CniEnvironment, conf: NetConf): Promise<void>;
  status(env: CniEnvironment, conf: NetConf): Promise<void>;
  gc(env: CniEnvironment, conf: NetConf): Promise<void>;
}

export interface PluginIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: () => Promise<string>;
  readonly stdout: (s: string) => void;
}

/** Runs one invocation; resolves with the exit code. */
export async function runPlugin(plugin: CniPlugin, io: PluginIo): Promise<number> {
  let version = LATEST_VERSION;
  try {
    const env = readEnvironment(io.env);
    let stdin: string;
    try {
      stdin = await io.stdin();
    } catch (e) {
      throw new CniError(CniCode.IoFailure, 'cannot read the network configuration from stdin', (e as Error).message);
    }
    if (env.command === 'VERSION') {
      // Old runtimes send nothing; the answer is then in the newest version.
      if (stdin.trim()) version = parseNetConf(stdin, 'VERSION').cniVersion;
      io.stdout(JSON.stringify({ cniVersion: version, supportedVersions: SUPPORTED_VERSIONS }));
      return 0;
    }
    // The error JSON should speak the configuration's version when it is readable.
    const maybe = /"cniVersion"\s*:\s*"([0-9.]+)"/.exec(stdin)?.[1];
    if (maybe && (SUPPORTED_VERSIONS as readonly string[]).includes(maybe)) version = maybe;
    const conf = parseNetConf(stdin, env.command);
    version = conf.cniVersion;
    switch (env.command) {
      case 'ADD':
        io.stdout(JSON.stringify(resultFor(version, await plugin.add(env, conf))));
        return 0;
      case 'DEL':
        await plugin.del(env, conf);
        return 0;
      case 'CHECK':
        await plugin.check(env, conf);
        return 0;
      case 'STATUS':
        await plugin.status(env, conf);
        return 0;
      case 'GC':
        await plugin.gc(env, conf);
        return 0;
    }
  } catch (e) {
    const err =
      e instanceof CniError
        ? e
        : new CniError(CniCode.IoFailure, 'internal error', e instanceof Error ? e.message : String(e));
    io.stdout(errorJson(version, err));
    return 1;
  }
}

/** stdin of this process, whole. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
