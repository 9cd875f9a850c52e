// Running another CNI plugin the way a runtime does (an IPAM plugin named by ipam.type, or
// each plugin of a chain): found on CNI_PATH, CNI_* in its environment, the configuration on
// stdin, its Result or error JSON read from stdout.
import { runTool, ToolError } from '../run-tool.js';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CniCode, CniError, type CniCommand, type CniResult } from './spec.js';

const DELEGATE_TIMEOUT_MS = 30_000;

export function findPlugin(type: string, path: readonly string[]): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(type))
    throw new CniError(CniCode.InvalidConfig, `plugin type ${JSON.stringify(type)} is not a file name`);
  for (const dir of path) {
    const p = join(dir, type);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    CniCode.InvalidConfig,
    `plugin ${JSON.stringify(type)} not found on CNI_PATH`,
    `looked in: ${path.join(', ') || '(CNI_PATH is empty)'}`,
  );
}

export interface DelegateCall {
  readonly command: CniCommand;
  readonly type: string;
  readonly conf: unknown;
  readonly env: NodeJS.ProcessEnv;
}

/** Runs the plugin; its CNI error becomes ours (same code and message), anything else DelegateFailed. */
export async function execPlugin(call: DelegateCall, path: readonly string[]): Promise<CniResult | undefined> {
  const file = findPlugin(call.type, path);
  let out: string;
  try {
    out = (
      await runTool(file, [], {
        input: JSON.stringify(call.conf),
        env: { ...call.env, CNI_COMMAND: call.command },
        timeoutMs: DELEGATE_TIMEOUT_MS,
        maxBuffer: 4 * 1024 * 1024,
      })
    ).trim();
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    // The plugin's CNI error becomes ours (same code and message); anything else is DelegateFailed.
    let parsed: { code?: unknown; msg?: unknown; details?: unknown } | undefined;
    try {
      parsed = JSON.parse(e.stdout.trim()) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed.code === 'number' && typeof parsed.msg === 'string')
      throw new CniError(
        parsed.code,
        `${call.type}: ${parsed.msg}`,
        typeof parsed.details === 'string' ? parsed.details : undefined,
      );
    throw new CniError(
      CniCode.DelegateFailed,
      `${call.type} ${call.command} failed: ${e.message}`,
      `${e.stdout}\n${e.stderr}`.trim(),
    );
  }
  if (!out) return undefined;
  try {
    return JSON.parse(out) as CniResult;
  } catch {
    throw new CniError(
      CniCode.DecodingFailure,
      `${call.type} ${call.command} printed something that is not JSON`,
      out.slice(0, 500),
    );
  }
}
