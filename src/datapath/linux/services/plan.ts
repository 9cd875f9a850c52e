// The model's services -> what the kernel must do for each service port: which VIP.proto.port
// frontends lead to it, and the endpoints (address, target port, weight) it balances over.
// Pure and deterministic: the same services in any order give the same plan.
import { isIPv4 } from 'node:net';
import { compareStrings } from '../../../util/compare.js';
import type { EndpointModel, ServiceModel, ServicePortModel } from '../../../model/mesh-model.js';
import { affinitySetName, endpointChainName, serviceChainName, servicePortKey } from './names.js';
import { slotsFor } from './weights.js';

/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10_800;

export type L4Protocol = 'tcp' | 'udp' | 'sctp';

export interface EndpointPlan {
  readonly address: string;
  readonly port: number;
  /** Share of the numgen slots (see weights.ts). */
  readonly slots: number;
  readonly chain: string;
  /** Present when the service has ClientIP affinity. */
  readonly affinitySet?: string;
}

export interface ServicePortPlan {
  /** "ns/name/tcp/http": shown as the chain's comment. */
  readonly key: string;
  readonly protocol: L4Protocol;
  readonly chain: string;
  /** The VIPs of the service, each with the service port. */
  readonly frontends: readonly { readonly address: string; readonly port: number }[];
  /** Empty: traffic to the frontends is rejected. */
  readonly endpoints: readonly EndpointPlan[];
  readonly affinityTimeoutSeconds?: number;
}

export interface ServicesPlan {
  readonly ports: readonly ServicePortPlan[];
  /** What could not be programmed, and why (for logs; not errors). */
  readonly ignored: readonly string[];
}

export interface PlanOptions {
  /** ClientIP affinity timeout per service id (affinityTimeouts() reads them from Services). */
  readonly affinityTimeoutSeconds?: ReadonlyMap<string, number>;
}

/**
 * A service is load balanced in the kernel when it has an IPv4 VIP and its endpoints are
 * addresses: Services, and STATIC ServiceEntries. DNS ServiceEntries name hosts the kernel
 * cannot resolve, and resolution NONE means "to the original destination" (no balancing).
 */
function balanced(svc: ServiceModel): boolean {
  return svc.resolution === 'STATIC' && svc.addresses.some((a) => isIPv4(a));
}

/**
 * The endpoint's port for a service port, as the model resolves it (EndpointModel.ports by
 * service port name), else a numeric targetPort: Istio leaves UDP ports of WorkloadEntries
 * unserved (its sidecars do not proxy UDP), but the kernel can forward them.
 */
function targetPort(ep: EndpointModel, sp: ServicePortModel): number | undefined {
  const own = Object.hasOwn(ep.ports, sp.name) ? ep.ports[sp.name] : undefined;
  return own ?? (typeof sp.targetPort === 'number' ? sp.targetPort : undefined);
}

function endpointsOf(svc: ServiceModel, sp: ServicePortModel, key: string, affinity: boolean): EndpointPlan[] {
  // One entry per address:port (two entries at one address add their weights), in address order.
  const byTarget = new Map<string, { address: string; port: number; weight: number }>();
  for (const ep of svc.endpoints) {
    const port = targetPort(ep, sp);
    if (!isIPv4(ep.address) || port === undefined) continue;
    const id = `${ep.address}:${port}`;
    const seen = byTarget.get(id);
    byTarget.set(id, { address: ep.address, port, weight: (seen?.weight ?? 0) + ep.weight });
  }
  const targets = [...byTarget.entries()].sort(([a], [b]) => compareStrings(a, b)).map(([, t]) => t);
  const slots = slotsFor(targets.map((t) => t.weight));
  return targets.map((t, i) => ({
    address: t.address,
    port: t.port,
    slots: slots[i]!,
    chain: endpointChainName(key, t.address, t.port),
    ...(affinity ? { affinitySet: affinitySetName(key, t.address, t.port) } : {}),
  }));
}

function portPlan(svc: ServiceModel, sp: ServicePortModel, opts: PlanOptions): ServicePortPlan {
  const protocol = sp.transport.toLowerCase() as L4Protocol;
  const key = servicePortKey(svc.id, protocol, sp.name);
  const affinity = svc.sessionAffinity === 'ClientIP';
  const plan: ServicePortPlan = {
    key,
    protocol,
    chain: serviceChainName(key),
    frontends: [...new Set(svc.addresses.filter((a) => isIPv4(a)))].sort(compareStrings).map((address) => ({
      address,
      port: sp.port,
    })),
    endpoints: endpointsOf(svc, sp, key, affinity),
  };
  if (!affinity) return plan;
  const timeout = opts.affinityTimeoutSeconds?.get(svc.id) ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  return { ...plan, affinityTimeoutSeconds: timeout };
}

/**
 * Every balanced service port. A VIP.proto.port claimed by two services goes to the first by
 * service id (the map can hold one verdict per key); the other is reported in `ignored`.
 */
export function planServices(services: readonly ServiceModel[], opts: PlanOptions = {}): ServicesPlan {
  const ignored: string[] = [];
  const claimed = new Map<string, string>();
  const ports: ServicePortPlan[] = [];
  const sorted = [...services].sort((a, b) => compareStrings(a.id, b.id));
  for (const svc of sorted) {
    if (!balanced(svc)) continue;
    for (const sp of svc.ports) {
      const p = portPlan(svc, sp, opts);
      const frontends = p.frontends.filter((f) => {
        const id = `${f.address} . ${p.protocol} . ${f.port}`;
        const owner = claimed.get(id);
        if (owner === undefined) {
          claimed.set(id, p.key);
          return true;
        }
        ignored.push(`${p.key}: ${id} is already ${owner}'s`);
        return false;
      });
      if (frontends.length > 0) ports.push({ ...p, frontends });
    }
  }
  return { ports, ignored };
}
