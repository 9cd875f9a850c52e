// resources -> compiled mesh model. Pure and deterministic: the same resources (in any
// order) give a deep-equal model. Reads top to bottom in the order data flows.
import { defaultMeshSpec, type MeshSpec } from '../config/kinds/trellis/mesh.js';
import { keyOf, type Resource } from '../config/resource.js';
import { AnalysisSink } from './analysis.js';
import { finishGateway, compileGateways } from './gateways.js';
import { compileDestinationRules, compileVirtualServices } from './istio-routing.js';
import type { IdentityModel, MeshModel, NodeModel, ResourceStatusModel, ServiceModel, WorkloadModel } from './mesh-model.js';
import { compilePolicies } from './policies.js';
import { ResourceIndex } from './resource-index.js';
import { compileRoutes, type ServiceLookup } from './routes.js';
import { compileServices, WorkloadLookup } from './services.js';
import { compileWorkloads, parseLocality } from './workloads.js';

export function compileModel(resources: readonly Resource[]): MeshModel {
  const index = new ResourceIndex(resources);
  const analysis = new AnalysisSink();

  const mesh = compileMesh(index, analysis);
  const namespaces = compileNamespaces(index, resources);

  const entryWorkloads = compileWorkloads(index, mesh, analysis);
  const lookup = new WorkloadLookup(entryWorkloads);
  const { services, extraWorkloads } = compileServices(index, mesh, lookup, analysis);
  const workloads = [...entryWorkloads, ...extraWorkloads].sort((a, b) => a.id.localeCompare(b.id));
  const serviceLookup = lookupServices(services);
  checkWaypoints(index, services, analysis);

  const gatewayDrafts = compileGateways(index, analysis);
  const routes = compileRoutes(index, gatewayDrafts, serviceLookup, analysis);
  const gateways = gatewayDrafts.map(finishGateway);

  const destinationRules = compileDestinationRules(index, mesh, serviceLookup.hostMap, analysis);
  const virtualServices = compileVirtualServices(index, mesh, serviceLookup.hostMap, destinationRules, analysis);

  const policies = compilePolicies({ index, mesh, workloads, lookup, services, analysis });
  const identities = compileIdentities(workloads);
  const nodes = compileNodes(mesh, workloads, services, policies);

  const statuses: ResourceStatusModel[] = [
    ...index.all('GatewayClass').map((c) => ({
      resource: keyOf(c),
      conditions: [
        {
          type: 'Accepted',
          status: c.spec.controllerName === 'trellis.dev/gateway-controller' || c.spec.controllerName === 'istio.io/gateway-controller' ? ('True' as const) : ('Unknown' as const),
          reason: 'Accepted',
          message: `controller ${c.spec.controllerName}`,
        },
      ],
    })),
    ...gateways.map((g) => ({ resource: g.source, conditions: g.conditions, listeners: g.listeners.map((l) => ({ name: l.name, conditions: l.conditions })) })),
    ...routes.map((r) => ({ resource: r.source, parents: r.parents })),
  ];

  return deepFreeze({
    mesh,
    namespaces,
    workloads,
    services,
    identities,
    gateways,
    routes,
    virtualServices,
    destinationRules,
    policies,
    nodes,
    statuses,
    analysis: analysis.messages.sort(
      (a, b) =>
        `${a.resource.kind}/${a.resource.namespace ?? ''}/${a.resource.name}`.localeCompare(`${b.resource.kind}/${b.resource.namespace ?? ''}/${b.resource.name}`) ||
        (a.field ?? '').localeCompare(b.field ?? '') ||
        a.message.localeCompare(b.message),
    ),
  });
}

function compileMesh(index: ResourceIndex, analysis: AnalysisSink): MeshSpec {
  const meshes = index.all('Mesh');
  for (const extra of meshes.slice(1)) {
    analysis.add('MultipleMeshes', keyOf(extra), `only one Mesh may exist; Mesh ${meshes[0]!.name} is used`);
  }
  return meshes[0]?.spec ?? defaultMeshSpec();
}

/** Declared Namespaces plus every namespace a resource lives in, with the kubernetes.io/metadata.name label. */
function compileNamespaces(index: ResourceIndex, resources: readonly Resource[]): MeshModel['namespaces'] {
  const names = new Set<string>();
  for (const r of resources) if (r.namespace !== undefined) names.add(r.namespace);
  for (const n of index.all('Namespace')) names.add(n.name);
  return [...names].sort().map((name) => ({
    name,
    labels: { 'kubernetes.io/metadata.name': name, ...(index.get('Namespace', undefined, name)?.metadata.labels ?? {}) },
  }));
}

interface ServiceIndex extends ServiceLookup {
  readonly hostMap: ReadonlyMap<string, ServiceModel>;
}

function lookupServices(services: readonly ServiceModel[]): ServiceIndex {
  const byKey = new Map<string, ServiceModel>();
  const bySe = new Map<string, ServiceModel>();
  const hostMap = new Map<string, ServiceModel>();
  for (const s of services) {
    if (s.origin === 'Service') byKey.set(`${s.namespace}/${s.name}`, s);
    else if (!bySe.has(`${s.namespace}/${s.name}`)) bySe.set(`${s.namespace}/${s.name}`, s);
    if (!hostMap.has(s.hostname)) hostMap.set(s.hostname, s);
  }
  return {
    hostMap,
    byKey: (ns, name) => byKey.get(`${ns}/${name}`),
    byHostname: (h) => hostMap.get(h),
    byServiceEntry: (ns, name) => bySe.get(`${ns}/${name}`),
  };
}

function checkWaypoints(index: ResourceIndex, services: readonly ServiceModel[], analysis: AnalysisSink): void {
  for (const s of services) {
    if (!s.waypoint) continue;
    const [, ns, name] = s.waypoint.split('/') as [string, string, string];
    if (!index.get('Gateway', ns, name)) {
      analysis.add('ReferencedResourceNotFound', s.source, `Referenced waypoint not found: Gateway ${ns}/${name} (label istio.io/use-waypoint)`, 'metadata.labels');
    }
  }
}

function compileIdentities(workloads: readonly WorkloadModel[]): IdentityModel[] {
  const by = new Map<string, { ns: string; sa: string; ids: string[] }>();
  for (const w of workloads) {
    let e = by.get(w.identity);
    if (!e) by.set(w.identity, (e = { ns: w.namespace, sa: w.serviceAccount, ids: [] }));
    e.ids.push(w.id);
  }
  return [...by.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([spiffeId, e]) => ({ spiffeId, namespace: e.ns, serviceAccount: e.sa, workloads: e.ids.sort() }));
}

function compileNodes(
  mesh: MeshSpec,
  workloads: readonly WorkloadModel[],
  services: readonly ServiceModel[],
  policies: MeshModel['policies'],
): NodeModel[] {
  return (mesh.nodes ?? []).map((n) => {
    const local = workloads.filter((w) => w.node === n.name);
    const ids = new Set(local.map((w) => w.id));
    return {
      name: n.name,
      address: n.address,
      locality: parseLocality(n.locality),
      ports: n.ports,
      workloads: [...ids].sort(),
      identities: [...new Set(local.map((w) => w.identity))].sort(),
      services: services.filter((s) => s.endpoints.some((e) => ids.has(e.workload))).map((s) => s.id),
      policies: policies.filter((p) => p.scope === 'mesh' || p.workloads.some((w) => ids.has(w)) || p.targets.includes(`Node/${n.name}`)).map((p) => p.id),
    };
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
