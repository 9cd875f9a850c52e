// What `trellis up --netns` builds, decided before anything is touched (pure): a bridge on
// the host standing for the network between machines, one network namespace per Mesh node
// linked to it, one per workload attached to its node by the CNI plugin, each node's pod
// CIDR (Kubernetes' split of the cluster CIDR), and a VIP for every Service without a
// clusterIP (as the API server allocates them, from the service CIDR).
import { createHash } from 'node:crypto';
import { NETWORK_DEFAULTS } from '../../../config/kinds/trellis/mesh.js';
import type { MeshModel } from '../../../model/mesh-model.js';
import { parseCidr, type Cidr } from '../../../util/cidr.js';
import { nodePodCidrs } from '../ipam/pod-cidr.js';

export interface NodePlan {
  readonly name: string;
  /** Network namespace name (under /var/run/netns). */
  readonly netns: string;
  /** The host end of the node's link to the bridge; the node end is eth0 in its namespace. */
  readonly hostVeth: string;
  readonly underlayIp: string;
  readonly podCidr: string;
}

export interface PodPlan {
  /** The model's workload id. */
  readonly workload: string;
  /** "ns/name" */
  readonly key: string;
  readonly node: string;
  readonly netns: string;
  /** CNI_CONTAINERID */
  readonly containerId: string;
}

export interface NetnsPlan {
  readonly runId: string;
  readonly bridge: { readonly name: string; readonly address: string; readonly prefix: number };
  readonly nodes: readonly NodePlan[];
  readonly pods: readonly PodPlan[];
  /** "ns/name" of a Service -> the VIP allocated for it. */
  readonly serviceVips: ReadonlyMap<string, string>;
  readonly clusterCidr: string;
  readonly serviceCidr: string;
}

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

function cidrOf(text: string): Cidr & { family: 4 } {
  const c = parseCidr(text);
  if (typeof c === 'string' || c.family !== 4) throw new Error(`${text}: expected an IPv4 CIDR`);
  return c as Cidr & { family: 4 };
}

/** A short id for names (15-byte interface names leave room for little): stable per state dir. */
export function runIdFor(stateDir: string): string {
  return createHash('sha256').update(stateDir).digest('hex').slice(0, 6);
}

export function planNetns(model: MeshModel, runId: string): NetnsPlan {
  const net = { ...NETWORK_DEFAULTS, ...model.mesh.network };
  const underlay = cidrOf(net.underlayCIDR);
  const base = Number(underlay.network);
  const hosts = 2 ** (32 - underlay.prefix) - 2;
  if (model.nodes.length + 1 > hosts)
    throw new Error(
      `underlayCIDR ${net.underlayCIDR} has room for ${hosts - 1} nodes, the Mesh has ${model.nodes.length}`,
    );
  const podCidrs = nodePodCidrs(
    net.clusterCIDR,
    net.nodeCIDRMaskSize,
    model.nodes.map((n) => n.name),
  );
  const nodes: NodePlan[] = model.nodes.map((n, i) => ({
    name: n.name,
    netns: `trl-${runId}-${n.name}`,
    hostVeth: `trl${runId}n${i}`,
    underlayIp: ipv4(base + 2 + i),
    podCidr: podCidrs.get(n.name)!,
  }));
  const pods: PodPlan[] = model.workloads
    .filter((w) => w.node && w.command && w.id.startsWith('WorkloadEntry/'))
    .map((w) => ({
      workload: w.id,
      key: `${w.namespace}/${w.name}`,
      node: w.node!,
      // "_" is in no Kubernetes name: pods never collide with each other or with nodes.
      netns: `trl-${runId}-${w.namespace}_${w.name}`,
      containerId: `trellis-${runId}-${w.namespace}_${w.name}`,
    }));
  // The API server's way: the first address is the cluster's own (kubernetes.default), then in order.
  const svc = cidrOf(net.serviceCIDR);
  const taken = new Set(model.services.flatMap((s) => s.addresses));
  const serviceVips = new Map<string, string>();
  let next = Number(svc.network) + 2;
  const last = Number(svc.network) + 2 ** (32 - svc.prefix) - 2;
  for (const s of [...model.services].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    if (s.origin !== 'Service' || s.addresses.length > 0) continue;
    while (taken.has(ipv4(next))) next++;
    if (next > last)
      throw new Error(`serviceCIDR ${net.serviceCIDR} has no address left for Service ${s.namespace}/${s.name}`);
    serviceVips.set(`${s.namespace}/${s.name}`, ipv4(next++));
  }
  return {
    runId,
    bridge: { name: `trl${runId}br`, address: ipv4(base + 1), prefix: underlay.prefix },
    nodes,
    pods,
    serviceVips,
    clusterCidr: net.clusterCIDR,
    serviceCidr: net.serviceCIDR,
  };
}
