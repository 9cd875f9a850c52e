// Addresses a runtime assigns, laid over the resources before they are compiled — as in
// Kubernetes, where a pod's IP and a Service's clusterIP are filled in by the cluster, not
// written by the user. `trellis up --netns` allocates them (pod IPs from the CNI plugin, node
// link addresses, Service VIPs) and the control plane reads them with --runtime-addresses.
// Pure: resources in, resources out; a user's explicit clusterIP is kept.
import { readFileSync } from 'node:fs';
import type { Resource } from './resource.js';

export interface RuntimeAddresses {
  /** Mesh node name -> the address other nodes reach it at. */
  readonly nodes: Readonly<Record<string, string>>;
  /** "ns/name" of a WorkloadEntry -> its pod IP. */
  readonly workloads: Readonly<Record<string, string>>;
  /** "ns/name" of a Service -> the VIP allocated to it (when it has no clusterIP). */
  readonly services: Readonly<Record<string, string>>;
  /** Mesh node name -> path of its network namespace, when the nodes run in namespaces of this machine. */
  readonly nodeNamespaces?: Readonly<Record<string, string>>;
}

export function withRuntimeAddresses(resources: readonly Resource[], ra: RuntimeAddresses): Resource[] {
  return resources.map((r): Resource => {
    const key = `${r.namespace}/${r.name}`;
    switch (r.kind) {
      case 'Mesh': {
        const nodes = r.spec.nodes?.map((n) => (ra.nodes[n.name] ? { ...n, address: ra.nodes[n.name]! } : n));
        return nodes ? { ...r, spec: { ...r.spec, nodes } } : r;
      }
      case 'WorkloadEntry': {
        const ip = ra.workloads[key];
        return ip ? { ...r, spec: { ...r.spec, address: ip } } : r;
      }
      case 'Service': {
        const vip = ra.services[key];
        // Headless (clusterIP: None) and ExternalName Services get no VIP, as in Kubernetes.
        return vip && !r.spec.clusterIP && r.spec.type !== 'ExternalName'
          ? { ...r, spec: { ...r.spec, clusterIP: vip } }
          : r;
      }
      default:
        return r;
    }
  });
}

function isRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string');
}

/** Reads the file `trellis up --netns` writes; throws an Error naming the file and the problem. */
export function readRuntimeAddresses(file: string): RuntimeAddresses {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const o = (raw ?? {}) as Partial<Record<keyof RuntimeAddresses, unknown>>;
  const part = (k: keyof RuntimeAddresses): Record<string, string> => {
    const v = o[k] ?? {};
    if (!isRecord(v)) throw new Error(`${file}: ${k}: expected an object of names to addresses`);
    return v;
  };
  return {
    nodes: part('nodes'),
    workloads: part('workloads'),
    services: part('services'),
    ...(o.nodeNamespaces !== undefined ? { nodeNamespaces: part('nodeNamespaces') } : {}),
  };
}
