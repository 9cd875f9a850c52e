// The trellis-ipam CNI plugin: pod addresses from the node's pod CIDR, persisted per network by
// AllocationStore (host-local's layout). An IPAM plugin knows no interfaces: its Result has
// only ips (without an interface index) and routes; the interface plugin that delegated to it
// puts them on the container's interface.
import { accessSync, constants } from 'node:fs';
import { isAbsolute } from 'node:path';
import { isIPv4 } from 'node:net';
import { closest } from '../../../util/did-you-mean.js';
import type { CniPlugin } from '../cni/run.js';
import { CniCode, CniError, type CniEnvironment, type CniResult, type CniRoute, type NetConf } from '../cni/spec.js';
import { AllocationStore, type Owner } from './allocation-store.js';
import { ipv4ToText, isAllocatable, parseIpv4Cidr, podRange, PodRangeError, type PodRange } from './pod-cidr.js';

export const DEFAULT_DATA_DIR = '/var/lib/trellis/ipam';
const DEFAULT_ROUTES: readonly CniRoute[] = [{ dst: '0.0.0.0/0' }];
const IPAM_FIELDS = ['type', 'podCIDR', 'dataDir', 'gateway', 'rangeStart', 'rangeEnd', 'routes'] as const;
const ROUTE_FIELDS = ['dst', 'gw'] as const;

export interface IpamConfig {
  readonly range: PodRange;
  readonly dataDir: string;
  readonly routes: readonly CniRoute[];
}

function invalid(path: string, expected: string, got: unknown): CniError {
  return new CniError(CniCode.InvalidConfig, `${path}: expected ${expected}, got ${JSON.stringify(got)}`);
}

/** Error 2 for a key we do not know: the spec wants its key and value in the message. */
function rejectUnknown(obj: Record<string, unknown>, path: string, known: readonly string[]): void {
  for (const [key, value] of Object.entries(obj)) {
    if (known.includes(key)) continue;
    const shown = JSON.stringify(value) ?? String(value);
    const hint = closest(key, known);
    throw new CniError(
      CniCode.UnsupportedField,
      `${path}.${key}: unsupported field ${JSON.stringify(key)} with value ${shown.length > 200 ? `${shown.slice(0, 200)}...` : shown}`,
      `${hint ? `did you mean ${JSON.stringify(hint)}? ` : ''}supported fields of ${path}: ${known.join(', ')}`,
    );
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalString(ipam: Record<string, unknown>, key: string, expected: string): string | undefined {
  const v = ipam[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`ipam.${key}`, expected, v);
  return v;
}

function parseRoutes(raw: unknown): CniRoute[] {
  if (!Array.isArray(raw)) throw invalid('ipam.routes', 'a list of {"dst": CIDR, "gw"?: IPv4 address}', raw);
  return raw.map((r: unknown, i) => {
    const path = `ipam.routes[${i}]`;
    if (!isObject(r)) throw invalid(path, 'an object {"dst": CIDR, "gw"?: IPv4 address}', r);
    rejectUnknown(r, path, ROUTE_FIELDS);
    if (typeof r.dst !== 'string') throw invalid(`${path}.dst`, 'an IPv4 CIDR like 0.0.0.0/0', r.dst);
    const dst = parseIpv4Cidr(r.dst);
    if (typeof dst === 'string') throw new CniError(CniCode.InvalidConfig, `${path}.dst: ${dst}`);
    if (r.gw === undefined) return { dst: r.dst };
    if (typeof r.gw !== 'string' || !isIPv4(r.gw)) throw invalid(`${path}.gw`, 'an IPv4 address', r.gw);
    return { dst: r.dst, gw: r.gw };
  });
}

/** The network configuration's ipam object, checked (error 2 names an unknown key, 7 the field path of a bad value). */
export function parseIpamConfig(conf: NetConf): IpamConfig {
  const ipam: unknown = conf.ipam;
  if (!isObject(ipam))
    throw new CniError(CniCode.InvalidConfig, 'ipam: expected an object like {"type": "trellis-ipam", "podCIDR": ...}');
  rejectUnknown(ipam, 'ipam', IPAM_FIELDS);
  const cidrExample = 'an IPv4 CIDR like 10.244.1.0/24';
  if (ipam.podCIDR === undefined) throw new CniError(CniCode.InvalidConfig, `ipam.podCIDR: required, ${cidrExample}`);
  if (typeof ipam.podCIDR !== 'string') throw invalid('ipam.podCIDR', cidrExample, ipam.podCIDR);
  const dataDir = optionalString(ipam, 'dataDir', 'an absolute directory path') ?? DEFAULT_DATA_DIR;
  if (!isAbsolute(dataDir)) throw invalid('ipam.dataDir', 'an absolute directory path', dataDir);
  let range: PodRange;
  try {
    range = podRange(ipam.podCIDR, {
      gateway: optionalString(ipam, 'gateway', 'an IPv4 address'),
      rangeStart: optionalString(ipam, 'rangeStart', 'an IPv4 address'),
      rangeEnd: optionalString(ipam, 'rangeEnd', 'an IPv4 address'),
    });
  } catch (e) {
    if (e instanceof PodRangeError) throw new CniError(CniCode.InvalidConfig, `ipam.${e.field}: ${e.message}`);
    throw e;
  }
  const routes = ipam.routes === undefined ? DEFAULT_ROUTES : parseRoutes(ipam.routes);
  return { range, dataDir, routes };
}

function ownerOf(env: CniEnvironment): Owner {
  // readEnvironment already insists on both for ADD, CHECK and DEL.
  if (!env.containerId || !env.ifname)
    throw new CniError(CniCode.InvalidEnvironment, 'CNI_CONTAINERID and CNI_IFNAME must be set');
  return { containerId: env.containerId, ifname: env.ifname };
}

function cidrText(r: PodRange): string {
  return `${ipv4ToText(r.cidr.network)}/${r.cidr.prefix}`;
}

export function ipamPlugin(): CniPlugin {
  return {
    async add(env, conf): Promise<CniResult> {
      const cfg = parseIpamConfig(conf);
      const ip = new AllocationStore(cfg.dataDir, conf.name).allocate(ownerOf(env), cfg.range);
      return {
        cniVersion: conf.cniVersion,
        ips: [{ address: `${ip}/${cfg.range.cidr.prefix}`, gateway: ipv4ToText(cfg.range.gateway) }],
        routes: cfg.routes,
      };
    },

    async del(env, conf) {
      const cfg = parseIpamConfig(conf);
      new AllocationStore(cfg.dataDir, conf.name).release(ownerOf(env));
    },

    async check(env, conf) {
      const cfg = parseIpamConfig(conf);
      const owner = ownerOf(env);
      const who = `container ${owner.containerId} (${owner.ifname})`;
      const held = new AllocationStore(cfg.dataDir, conf.name).held(owner).sort();
      if (held.length === 0) throw new CniError(CniCode.CheckFailed, `${who} holds no address in network ${conf.name}`);
      // Only prevResult's addresses from our pod CIDR are ours to vouch for.
      const expected = (conf.prevResult?.ips ?? [])
        .map((i) => i.address.split('/')[0] ?? '')
        .filter((ip) => isIPv4(ip) && isAllocatable(cfg.range, ip))
        .sort();
      if (held.join(',') !== expected.join(','))
        throw new CniError(
          CniCode.CheckFailed,
          `${who} holds ${held.join(', ')} in network ${conf.name} but prevResult says ${expected.join(', ') || 'none'}`,
          `pod CIDR ${cidrText(cfg.range)}`,
        );
    },

    async status(_env, conf) {
      const cfg = parseIpamConfig(conf);
      const store = new AllocationStore(cfg.dataDir, conf.name);
      try {
        store.ensureDir();
        accessSync(store.dir, constants.R_OK | constants.W_OK | constants.X_OK);
      } catch (e) {
        throw new CniError(
          CniCode.NotAvailable,
          `the IPAM data directory ${store.dir} is not usable`,
          e instanceof CniError ? `${e.message}: ${e.details ?? ''}` : e instanceof Error ? e.message : String(e),
        );
      }
      const inUse = store.list().filter((a) => isAllocatable(cfg.range, a.ip)).length;
      if (inUse >= cfg.range.size)
        throw new CniError(
          CniCode.NotAvailable,
          `no free address in ${cidrText(cfg.range)}: ${inUse} of ${cfg.range.size} allocatable addresses are in use`,
        );
    },

    async gc(_env, conf) {
      const cfg = parseIpamConfig(conf);
      // Validated by parseNetConf; absent means the runtime knows no attachment of this network.
      const valid = (conf['cni.dev/valid-attachments'] ?? []).map((a) => ({
        containerId: a.containerID,
        ifname: a.ifname,
      }));
      new AllocationStore(cfg.dataDir, conf.name).gc(valid);
    },
  };
}
