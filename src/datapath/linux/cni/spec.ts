// The CNI specification's protocol (https://github.com/containernetworking/cni/blob/main/SPEC.md,
// spec 1.1.0): the environment a runtime sets, the network configuration on stdin, the Result
// and error JSON on stdout, and the well-known error codes. Pure: no I/O here.

/** Spec versions our plugins speak (the Result format is the same from 1.0.0 on). */
export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST_VERSION = '1.1.0';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
export const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

/** The spec's well-known error codes (0-99); plugin-specific ones are 100+. */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  NotAvailable: 50,
  NotAvailableLimitedConnectivity: 51,
  /** Trellis: the pod CIDR has no free address. */
  AddressesExhausted: 100,
  /** Trellis: a kernel operation (link, address, route) failed. */
  KernelOperationFailed: 101,
  /** Trellis: a delegated plugin (IPAM) could not be run or failed without a CNI error. */
  DelegateFailed: 102,
  /** Trellis: CHECK found the attachment not as ADD left it. */
  CheckFailed: 103,
} as const;

/** An error the plugin reports as the spec's error JSON (never a stack trace). */
export class CniError extends Error {
  readonly code: number;
  readonly details: string | undefined;
  constructor(code: number, msg: string, details?: string) {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly mtu?: number;
  /** The netns path for interfaces inside the container; absent for host interfaces. */
  readonly sandbox?: string;
}

export interface CniIp {
  /** "10.244.1.5/24" */
  readonly address: string;
  readonly gateway?: string;
  /** Index into `interfaces`. */
  readonly interface?: number;
}

export interface CniRoute {
  readonly dst: string;
  readonly gw?: string;
}

export interface CniDns {
  readonly nameservers?: readonly string[];
  readonly domain?: string;
  readonly search?: readonly string[];
  readonly options?: readonly string[];
}

export interface CniResult {
  readonly cniVersion: string;
  readonly interfaces?: readonly CniInterface[];
  readonly ips?: readonly CniIp[];
  readonly routes?: readonly CniRoute[];
  readonly dns?: CniDns;
}

/** What a runtime passes in the environment (CNI_*). */
export interface CniEnvironment {
  readonly command: CniCommand;
  readonly containerId?: string;
  readonly netns?: string;
  readonly ifname?: string;
  /** CNI_ARGS "K=V;K2=V2" */
  readonly args: ReadonlyMap<string, string>;
  readonly path: readonly string[];
}

/** The fields of a network configuration every plugin reads (plugin-specific fields are read by each plugin). */
export interface NetConf {
  readonly cniVersion: string;
  readonly name: string;
  readonly type: string;
  readonly ipam?: Readonly<Record<string, unknown>> & { readonly type?: string };
  readonly dns?: CniDns;
  readonly prevResult?: CniResult;
  readonly runtimeConfig?: Readonly<Record<string, unknown>>;
  readonly args?: Readonly<Record<string, unknown>>;
  /** GC: the attachments the runtime still knows; everything else is released. */
  readonly 'cni.dev/valid-attachments'?: readonly { readonly containerID: string; readonly ifname: string }[];
  readonly [key: string]: unknown;
}

// Container IDs: alphanumerics, underscore, dot, hyphen, starting alphanumeric (as libcni validates).
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
// Linux interface names: 1-15 bytes, no "/", ":", or whitespace, not "." or "..".
const IFNAME = /^[^/:\s]{1,15}$/;
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The runtime's environment, checked for what `command` needs (error 4 names the variables). */
export function readEnvironment(env: NodeJS.ProcessEnv): CniEnvironment {
  const raw = env.CNI_COMMAND;
  if (!raw)
    throw new CniError(CniCode.InvalidEnvironment, 'CNI_COMMAND is not set', `expected one of ${COMMANDS.join(', ')}`);
  const command = raw.toUpperCase() as CniCommand;
  if (!COMMANDS.includes(command))
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_COMMAND=${raw} is not a CNI command`,
      `expected one of ${COMMANDS.join(', ')}`,
    );
  const containerId = env.CNI_CONTAINERID || undefined;
  const netns = env.CNI_NETNS || undefined;
  const ifname = env.CNI_IFNAME || undefined;
  const needs: Record<CniCommand, readonly string[]> = {
    ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
    CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
    DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
    VERSION: [],
    STATUS: [],
    GC: [],
  };
  const missing = needs[command].filter((v) => !env[v]);
  if (missing.length)
    throw new CniError(
      CniCode.InvalidEnvironment,
      `${missing.join(', ')} must be set for ${command}`,
      `missing: ${missing.join(', ')}`,
    );
  if (containerId !== undefined && !CONTAINER_ID.test(containerId))
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_CONTAINERID=${JSON.stringify(containerId)} is not a valid container ID`,
      'expected letters, digits, "_", "." or "-", starting with a letter or digit',
    );
  if (ifname !== undefined && (!IFNAME.test(ifname) || ifname === '.' || ifname === '..'))
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_IFNAME=${JSON.stringify(ifname)} is not a valid interface name`,
      'expected 1-15 characters without "/", ":" or whitespace',
    );
  const args = new Map<string, string>();
  for (const part of (env.CNI_ARGS ?? '').split(';')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new CniError(
        CniCode.InvalidEnvironment,
        `CNI_ARGS: ${JSON.stringify(part)} is not KEY=VALUE`,
        'expected "K1=V1;K2=V2"',
      );
    args.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return {
    command,
    ...(containerId ? { containerId } : {}),
    ...(netns ? { netns } : {}),
    ...(ifname ? { ifname } : {}),
    args,
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
}

function versionParts(v: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** a < b: negative; a > b: positive. */
export function compareVersions(a: string, b: string): number {
  const x = versionParts(a) ?? [0, 0, 0];
  const y = versionParts(b) ?? [0, 0, 0];
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
}

/** The network configuration on stdin: JSON (error 6), the well-known fields (error 7), a version we speak (error 1). */
export function parseNetConf(stdin: string, command: CniCommand): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(CniCode.DecodingFailure, 'the network configuration on stdin is not JSON', (e as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new CniError(CniCode.DecodingFailure, 'the network configuration on stdin is not a JSON object');
  const conf = raw as Record<string, unknown>;
  const version = conf.cniVersion;
  if (typeof version !== 'string' || !versionParts(version))
    throw new CniError(
      CniCode.InvalidConfig,
      'cniVersion: expected a version like "1.0.0"',
      `got ${JSON.stringify(version)}`,
    );
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version))
    throw new CniError(
      CniCode.IncompatibleVersion,
      `incompatible CNI version ${version}`,
      `this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  if (command === 'VERSION') return conf as NetConf;
  for (const field of ['name', 'type'] as const) {
    if (typeof conf[field] !== 'string' || conf[field] === '')
      throw new CniError(
        CniCode.InvalidConfig,
        `${field}: expected a non-empty string`,
        `got ${JSON.stringify(conf[field])}`,
      );
  }
  if (!NETWORK_NAME.test(conf.name as string))
    throw new CniError(
      CniCode.InvalidConfig,
      `name: ${JSON.stringify(conf.name)} is not a valid network name`,
      'expected letters, digits, "_", "." or "-", starting with a letter or digit',
    );
  if (conf.ipam !== undefined && (typeof conf.ipam !== 'object' || conf.ipam === null || Array.isArray(conf.ipam)))
    throw new CniError(CniCode.InvalidConfig, 'ipam: expected an object');
  if ((command === 'GC' || command === 'STATUS') && compareVersions(version, '1.1.0') < 0)
    throw new CniError(
      CniCode.IncompatibleVersion,
      `${command} needs CNI version 1.1.0 or later, the configuration says ${version}`,
    );
  if (command === 'CHECK' && compareVersions(version, '0.4.0') >= 0 && conf.prevResult === undefined)
    throw new CniError(CniCode.InvalidConfig, 'CHECK needs prevResult: the Result of the ADD being checked');
  const valid = conf['cni.dev/valid-attachments'];
  if (command === 'GC' && valid !== undefined) {
    if (
      !Array.isArray(valid) ||
      !valid.every(
        (a) => typeof a === 'object' && a && typeof a.containerID === 'string' && typeof a.ifname === 'string',
      )
    )
      throw new CniError(
        CniCode.InvalidConfig,
        'cni.dev/valid-attachments: expected a list of {"containerID", "ifname"}',
      );
  }
  return conf as NetConf;
}

/** The error JSON the spec prints on stdout. */
export function errorJson(version: string, e: CniError): string {
  return JSON.stringify({
    cniVersion: version,
    code: e.code,
    msg: e.message,
    ...(e.details ? { details: e.details } : {}),
  });
}

/** A Result in the version the configuration asked for: 0.4.0 puts "version" on each IP; MTUs are 1.1.0's. */
export function resultFor(version: string, r: CniResult): CniResult {
  const old = compareVersions(version, '1.0.0') < 0;
  const ips = r.ips?.map((ip) => (old ? { version: ip.address.includes(':') ? '6' : '4', ...ip } : ip));
  const interfaces =
    compareVersions(version, '1.1.0') < 0 ? r.interfaces?.map(({ mtu: _mtu, ...i }) => i) : r.interfaces;
  return { ...r, cniVersion: version, ...(interfaces ? { interfaces } : {}), ...(ips ? { ips } : {}) };
}
