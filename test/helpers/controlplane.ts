// Shared plumbing for end-to-end tests: `trellis controlplane` in a child process, and the
// JSON echo gRPC service the test backends and clients speak.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './run-cli.js';

export interface ControlPlane {
  readonly proc: ChildProcess;
  /** host:port of the xDS listener. */
  readonly xds: string;
  /** http://host:port of the admin API. */
  readonly admin: string;
}

/** Starts `trellis controlplane --config DIR` on free ports and waits until it serves. */
export function startControlPlane(dir: string): Promise<ControlPlane> {
  return startControlPlaneWith(dir, []);
}

/** The same, with extra flags (e.g. --ca DIR). */
export async function startControlPlaneWith(dir: string, extra: readonly string[]): Promise<ControlPlane> {
  const proc = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'bin/trellis.js'),
      'controlplane',
      '--config',
      dir,
      '--xds-listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      ...extra,
    ],
    // stderr (JSON logs) left unread would keep the test process alive.
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let out = '';
  const m = await new Promise<RegExpExecArray>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`control plane did not start: ${out}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const mm = /xDS on (\S+), admin on (\S+),/.exec(out);
      if (mm) {
        clearTimeout(t);
        resolve(mm);
      }
    });
    proc.on('exit', (code) => reject(new Error(`control plane exited ${code}: ${out}`)));
  });
  return { proc, xds: m[1]!, admin: m[2]! };
}

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};

/** /demo.Echo/Who with JSON messages: no .proto needed. */
export const echoService = {
  who: {
    path: '/demo.Echo/Who',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};
