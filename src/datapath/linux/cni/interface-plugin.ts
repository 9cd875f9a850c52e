// trellis-cni: the pod's interface. A veth pair per attachment, point-to-point the way the
// reference ptp plugin and Calico wire pods: the pod side holds the address IPAM gave and
// reaches everything through the gateway address, which every host-side veth holds as a /32;
// the host routes each pod address to its veth. No bridge: every pod-to-pod packet is routed
// by the node, where policy and capture hook in.
//
// IPAM is delegated to the plugin named by ipam.type (trellis-ipam, or any other, e.g.
// host-local), run from CNI_PATH the way a runtime runs plugins.
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { execPlugin } from './delegate.js';
import type { CniPlugin } from './run.js';
import {
  CniCode,
  CniError,
  type CniEnvironment,
  type CniInterface,
  type CniIp,
  type CniResult,
  type CniRoute,
  type NetConf,
} from './spec.js';
import { addresses, deleteLink, ip, ipBatch, IpCommandError, linkInfo, links, routes } from '../ip-command.js';

/** Keys the runtime or the spec may put in a plugin's configuration, and ours. */
const KNOWN_KEYS = new Set([
  'cniVersion',
  'cniVersions',
  'name',
  'type',
  'ipam',
  'dns',
  'prevResult',
  'runtimeConfig',
  'args',
  'capabilities',
  'disableCheck',
  'disableGC',
  'cni.dev/valid-attachments',
  'mtu',
]);
const ALIAS_PREFIX = 'trellis-cni:';

interface InterfaceConf {
  readonly mtu: number;
  readonly ipamType: string;
}

function readConf(conf: NetConf): InterfaceConf {
  for (const key of Object.keys(conf))
    if (!KNOWN_KEYS.has(key))
      throw new CniError(
        CniCode.UnsupportedField,
        `unsupported field ${JSON.stringify(key)} (value ${JSON.stringify(conf[key])}) in the trellis-cni configuration`,
        `known fields: ${[...KNOWN_KEYS].join(', ')}`,
      );
  const mtu = conf.mtu ?? 1500;
  if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 576 || mtu > 65535)
    throw new CniError(CniCode.InvalidConfig, `mtu: expected an integer from 576 to 65535, got ${JSON.stringify(mtu)}`);
  const ipamType = conf.ipam?.type;
  if (typeof ipamType !== 'string' || !ipamType)
    throw new CniError(CniCode.InvalidConfig, 'ipam.type: expected the IPAM plugin to use, e.g. "trellis-ipam"');
  return { mtu, ipamType };
}

/** The host side's name: stable per (container, interface), at most 15 bytes. */
export function hostVethName(containerId: string, ifname: string): string {
  return `trl${createHash('sha256').update(`${containerId}\0${ifname}`).digest('hex').slice(0, 11)}`;
}

function alias(network: string, containerId: string, ifname: string): string {
  return `${ALIAS_PREFIX}${network}:${containerId}:${ifname}`;
}

function kernelError(what: string, e: unknown): CniError {
  return new CniError(CniCode.KernelOperationFailed, `${what}: ${e instanceof Error ? e.message : String(e)}`);
}

function requireNetns(path: string | undefined): string {
  if (!path || !existsSync(path))
    throw new CniError(
      CniCode.UnknownContainer,
      `the container's network namespace ${path ?? '(none)'} does not exist`,
    );
  return path;
}

/** The environment a delegated plugin gets: ours (CNI_*), as the runtime set it. */
function delegateEnv(): NodeJS.ProcessEnv {
  return { ...process.env };
}

async function ipam(
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC',
  type: string,
  conf: NetConf,
  env: CniEnvironment,
) {
  return execPlugin({ command, type, conf, env: delegateEnv() }, env.path);
}

function ipv4Of(result: CniResult | undefined, type: string): CniIp & { gateway: string } {
  const ipv4 = result?.ips?.find((i) => !i.address.includes(':'));
  if (!ipv4 || !ipv4.gateway)
    throw new CniError(
      CniCode.DelegateFailed,
      `${type} returned no IPv4 address with a gateway`,
      JSON.stringify(result),
    );
  return ipv4 as CniIp & { gateway: string };
}

/** "10.244.1.0/24" for "10.244.1.5/24". */
function subnetOf(address: string): string {
  const [addr, len] = address.split('/') as [string, string];
  const n = addr.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const bits = Number(len);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const net = (n & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.')}/${bits}`;
}

async function add(env: CniEnvironment, conf: NetConf): Promise<CniResult> {
  const c = readConf(conf);
  const netns = requireNetns(env.netns);
  const ifname = env.ifname!;
  const containerId = env.containerId!;
  if (await linkInfo(ifname, { netns }).catch(() => undefined))
    throw new CniError(CniCode.KernelOperationFailed, `interface ${ifname} already exists in ${netns}`);
  const allocated = await ipam('ADD', c.ipamType, conf, env);
  const host = hostVethName(containerId, ifname);
  try {
    const addr = ipv4Of(allocated, c.ipamType);
    const podIp = addr.address.split('/')[0]!;
    const gw = addr.gateway;
    const ipamRoutes: readonly CniRoute[] = allocated?.routes ?? [];
    // Created inside the pod, the peer moved to this process's namespace (the node's).
    await ip(
      [
        'link',
        'add',
        ifname,
        'mtu',
        String(c.mtu),
        'type',
        'veth',
        'peer',
        'name',
        host,
        'mtu',
        String(c.mtu),
        'netns',
        String(process.pid),
      ],
      { netns },
    );
    await ipBatch(
      [
        `link set dev ${ifname} up`,
        `addr add ${addr.address} dev ${ifname}`,
        // Not on-link: other pods of the subnet are behind the node, like everything else.
        `route del ${subnetOf(addr.address)} dev ${ifname}`,
        `route add ${gw}/32 dev ${ifname} scope link src ${podIp}`,
        `route add ${subnetOf(addr.address)} via ${gw} dev ${ifname} src ${podIp}`,
        ...ipamRoutes.map((r) => `route add ${r.dst} via ${r.gw ?? gw} dev ${ifname}`),
      ],
      { netns },
    );
    await ipBatch([
      `link set dev ${host} alias ${alias(conf.name, containerId, ifname)}`,
      `link set dev ${host} up`,
      `addr add ${gw}/32 dev ${host}`,
      `route add ${podIp}/32 dev ${host} scope link src ${gw}`,
    ]);
    // Pods reach each other and other nodes through this namespace: it routes.
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
    const [hostLink, podLink] = await Promise.all([linkInfo(host), linkInfo(ifname, { netns })]);
    const prev = conf.prevResult;
    const offset = prev?.interfaces?.length ?? 0;
    const interfaces: CniInterface[] = [
      ...(prev?.interfaces ?? []),
      { name: host, ...(hostLink?.address ? { mac: hostLink.address } : {}), mtu: c.mtu },
      { name: ifname, ...(podLink?.address ? { mac: podLink.address } : {}), mtu: c.mtu, sandbox: netns },
    ];
    return {
      cniVersion: conf.cniVersion,
      interfaces,
      ips: [...(prev?.ips ?? []), ...(allocated?.ips ?? []).map((i) => ({ ...i, interface: offset + 1 }))],
      routes: [...(prev?.routes ?? []), ...ipamRoutes],
      ...(conf.dns ? { dns: conf.dns } : allocated?.dns ? { dns: allocated.dns } : {}),
    };
  } catch (e) {
    // Nothing half-configured stays behind: the veth (both ends) and the address go.
    await deleteLink(host).catch(() => undefined);
    await ipam('DEL', c.ipamType, conf, env).catch(() => undefined);
    if (e instanceof CniError) throw e;
    throw kernelError(`setting up ${ifname} in ${netns}`, e);
  }
}

async function del(env: CniEnvironment, conf: NetConf): Promise<void> {
  const c = readConf(conf);
  const host = hostVethName(env.containerId!, env.ifname!);
  try {
    // Deleting one end deletes the pair, and the host routes through it.
    await deleteLink(host);
    if (env.netns && existsSync(env.netns)) await deleteLink(env.ifname!, { netns: env.netns });
  } catch (e) {
    throw kernelError(`removing ${host}`, e);
  }
  await ipam('DEL', c.ipamType, conf, env);
}

async function check(env: CniEnvironment, conf: NetConf): Promise<void> {
  const c = readConf(conf);
  const netns = requireNetns(env.netns);
  const ifname = env.ifname!;
  const host = hostVethName(env.containerId!, ifname);
  const prev = conf.prevResult!;
  const index = (prev.interfaces ?? []).findIndex((i) => i.name === ifname && i.sandbox === netns);
  const fail = (msg: string) => new CniError(CniCode.CheckFailed, msg);
  if (index < 0) throw fail(`prevResult has no interface ${ifname} in ${netns}`);
  const expected = (prev.ips ?? []).filter((i) => i.interface === index).map((i) => i.address);
  const podLink = await linkInfo(ifname, { netns });
  if (!podLink) throw fail(`interface ${ifname} is missing from ${netns}`);
  const have = await addresses(ifname, { netns });
  for (const a of expected)
    if (!have.includes(a)) throw fail(`${ifname} in ${netns} lacks ${a} (has ${have.join(', ') || 'none'})`);
  const hostLink = await linkInfo(host);
  if (!hostLink) throw fail(`the host side ${host} of ${ifname} is missing`);
  if (!(hostLink.flags ?? []).includes('UP')) throw fail(`the host side ${host} is down`);
  const hostRoutes = await routes();
  for (const a of expected) {
    const podIp = a.split('/')[0]!;
    if (!hostRoutes.some((r) => r.dst === podIp && r.dev === host)) throw fail(`no host route to ${podIp} via ${host}`);
  }
  await ipam('CHECK', c.ipamType, conf, env);
}

async function status(env: CniEnvironment, conf: NetConf): Promise<void> {
  const c = readConf(conf);
  try {
    await ip(['-json', 'link', 'show', 'dev', 'lo']);
  } catch (e) {
    throw new CniError(CniCode.NotAvailable, `iproute2 does not work here: ${(e as Error).message}`);
  }
  await ipam('STATUS', c.ipamType, conf, env);
}

async function gc(env: CniEnvironment, conf: NetConf): Promise<void> {
  const c = readConf(conf);
  const valid = new Set((conf['cni.dev/valid-attachments'] ?? []).map((a) => `${a.containerID}:${a.ifname}`));
  const prefix = `${ALIAS_PREFIX}${conf.name}:`;
  try {
    for (const l of await links())
      if (l.ifalias?.startsWith(prefix) && !valid.has(l.ifalias.slice(prefix.length))) await deleteLink(l.ifname);
  } catch (e) {
    if (e instanceof IpCommandError) throw kernelError('removing stale interfaces', e);
    throw e;
  }
  await ipam('GC', c.ipamType, conf, env);
}

export function interfacePlugin(): CniPlugin {
  return { add, del, check, status, gc };
}
