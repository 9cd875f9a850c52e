// Running a system tool (ip, nft, sysctl, a CNI plugin) with its input on stdin, bounded in
// time, in this process's network namespace or another one by path (`nsenter --net=PATH`).
import { execFile } from 'node:child_process';

export class ToolError extends Error {
  readonly stdout: string;
  readonly stderr: string;
  constructor(command: string, stdout: string, stderr: string, cause: string) {
    super(`${command}: ${(stderr || stdout || cause).trim()}`);
    this.name = 'ToolError';
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

export interface ToolOptions {
  readonly input?: string;
  /** Path of the network namespace to run in. */
  readonly netns?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
  readonly maxBuffer?: number;
}

/** Resolves with stdout; rejects with a ToolError carrying the tool's own output. */
export function runTool(file: string, args: readonly string[], o: ToolOptions = {}): Promise<string> {
  const [bin, argv] = o.netns ? ['nsenter', [`--net=${o.netns}`, file, ...args]] : [file, [...args]];
  return new Promise((resolve, reject) => {
    const child = execFile(
      bin,
      argv,
      {
        timeout: o.timeoutMs ?? 30_000,
        encoding: 'utf8',
        maxBuffer: o.maxBuffer ?? 16 * 1024 * 1024,
        ...(o.env ? { env: o.env } : {}),
      },
      (err, stdout, stderr) =>
        err
          ? reject(
              new ToolError(
                `${file} ${args.join(' ')}${o.netns ? ` (in ${o.netns})` : ''}`,
                stdout,
                stderr,
                err.message,
              ),
            )
          : resolve(stdout),
    );
    // A tool may exit without reading its stdin: its exit status tells, not EPIPE.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(o.input ?? '');
  });
}
