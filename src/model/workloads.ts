// WorkloadEntries (+ their trellis.dev Workload placement) -> WorkloadModels with SPIFFE identities.
import type { MeshSpec } from '../config/kinds/trellis/mesh.js';
import { keyOf, type Resource } from '../config/resource.js';
import type { AnalysisSink } from './analysis.js';
import { workloadSpiffeId as spiffeId } from '../identity/spiffe-id.js';
import type { Locality, WorkloadModel } from './mesh-model.js';
import type { ResourceIndex } from './resource-index.js';
import { groupOf, probeModel } from './workload-groups.js';

export function parseLocality(text: string | undefined): Locality {
  const [region = '', zone = '', subzone = ''] = (text ?? '').split('/');
  return { region, zone, subzone };
}

/** Per WorkloadEntry: the model and what it was built from, so unchanged entries keep their object. */
export type WorkloadCache = WeakMap<object, { readonly deps: readonly unknown[]; readonly model: WorkloadModel }>;

export function compileWorkloads(
  index: ResourceIndex,
  mesh: MeshSpec,
  analysis: AnalysisSink,
  cache: WorkloadCache = new WeakMap(),
): WorkloadModel[] {
  const nodeNames = new Set((mesh.nodes ?? []).map((n) => n.name));
  const nodeLocality = new Map((mesh.nodes ?? []).map((n) => [n.name, n.locality]));
  const placements = new Map<string, Resource<'Workload'>>();
  for (const w of index.all('Workload')) {
    const entry = w.spec.workloadEntry ?? w.name;
    const key = `${w.namespace}/${entry}`;
    const prev = placements.get(key);
    if (prev) {
      analysis.add(
        'WorkloadPlacedTwice',
        keyOf(w),
        `WorkloadEntry ${key} is already placed by Workload ${prev.namespace}/${prev.name}`,
        'spec.workloadEntry',
      );
      continue;
    }
    placements.set(key, w);
    if (!index.get('WorkloadEntry', w.namespace, entry)) {
      analysis.add(
        'ReferencedResourceNotFound',
        keyOf(w),
        `Referenced WorkloadEntry not found: "${w.namespace}/${entry}"`,
        w.spec.workloadEntry ? 'spec.workloadEntry' : 'metadata.name',
      );
    }
    if (!nodeNames.has(w.spec.node)) {
      const known = [...nodeNames];
      analysis.add(
        'UnknownNode',
        keyOf(w),
        `node ${JSON.stringify(w.spec.node)} is not declared in the Mesh's spec.nodes${known.length ? ` (declared: ${known.join(', ')})` : ' (the Mesh declares no nodes)'}`,
        'spec.node',
      );
    }
  }

  const out: WorkloadModel[] = [];
  for (const we of index.all('WorkloadEntry')) {
    const ns = we.namespace!;
    const sa = we.spec.serviceAccount ?? 'default';
    const placement = placements.get(`${ns}/${we.name}`);
    const nodeKnown = placement ? nodeNames.has(placement.spec.node) : false;
    const group = groupOf(index, we);
    const cached = cache.get(we);
    if (
      cached &&
      cached.deps[0] === mesh.trustDomain &&
      cached.deps[1] === placement &&
      cached.deps[2] === nodeKnown &&
      cached.deps[3] === group
    ) {
      out.push(cached.model);
      continue;
    }
    const w: { -readonly [K in keyof WorkloadModel]: WorkloadModel[K] } = {
      id: `WorkloadEntry/${ns}/${we.name}`,
      source: keyOf(we),
      namespace: ns,
      name: we.name,
      address: we.spec.address ?? '',
      ports: we.spec.ports ?? {},
      // istiod: metadata labels take precedence over spec.labels.
      labels: { ...(we.spec.labels ?? {}), ...(we.metadata.labels ?? {}) },
      serviceAccount: sa,
      identity: spiffeId(mesh.trustDomain, ns, sa),
      // A workload without its own locality is where its node is.
      locality: parseLocality(we.spec.locality ?? (placement ? nodeLocality.get(placement.spec.node) : undefined)),
      network: we.spec.network ?? '',
      weight: we.spec.weight ?? 1,
    };
    if (placement && nodeNames.has(placement.spec.node)) w.node = placement.spec.node;
    if (placement?.spec.command) w.command = placement.spec.command;
    if (placement?.spec.env) w.env = placement.spec.env;
    if (placement?.spec.workingDir) w.workingDir = placement.spec.workingDir;
    if (placement?.spec.outboundPort !== undefined) w.outboundPort = placement.spec.outboundPort;
    if (placement?.spec.upstreams?.length)
      w.upstreams = placement.spec.upstreams.map((u) => ({
        host: u.host,
        port: u.port,
        localAddress: u.localAddress,
        localPort: u.localPort,
      }));
    const probe = group ? probeModel(group) : undefined;
    if (probe) w.probe = probe;
    cache.set(we, { deps: [mesh.trustDomain, placement, nodeKnown, group], model: w });
    out.push(w);
  }
  return out;
}
