// resources -> compiled mesh model. Pure and deterministic: the same resources (in any
// order) give a deep-equal model. Reads top to bottom in the order data flows.
import { compareStrings } from '../util/compare.js';
import { freezeDeep } from '../util/freeze.js';
import { defaultMeshSpec, type MeshSpec } from '../config/kinds/trellis/mesh.js';
import { keyOf, type Resource } from '../config/resource.js';
import { AnalysisSink } from './analysis.js';
import { finishGateway, compileGateways } from './gateways.js';
import { compileDestinationRules, compileVirtualServices } from './istio-routing.js';
import type {
  GatewayModel,
  IdentityModel,
  MeshModel,
  NodeModel,
  ResourceStatusModel,
  ServiceModel,
  WorkloadModel,
} from './mesh-model.js';
import { compilePolicies } from './policies.js';
import { ResourceIndex } from './resource-index.js';
import { Interner, Memo } from './memo.js';
import type { GatewayDraft } from './gateways.js';
import {
  compileRoute,
  routeEnv,
  routeResources,
  type CompiledRoute,
  type RouteEnv,
  type RouteLike,
  type ServiceLookup,
} from './routes.js';
import {
  compileService,
  compileServiceEntries,
  serviceEnv,
  WorkloadLookup,
  type CompiledService,
  type ServiceEnv,
} from './services.js';
import { compileWorkloads, parseLocality, type WorkloadCache } from './workloads.js';
import { checkUpstreams } from './upstreams.js';
import { checkWorkloadGroups } from './workload-groups.js';

/**
 * Compiles resources into the mesh model, reusing per-resource results whose inputs did not
 * change since the previous call (see memo.ts). One compiler per stream of configurations
 * (the control plane keeps one); the result is the same as a fresh compile.
 */
export class ModelCompiler {
  readonly #workloads: WorkloadCache = new WeakMap();
  readonly #services = new Memo<Resource<'Service'>, ServiceEnv, CompiledService>();
  readonly #routes = new Memo<RouteLike, RouteEnv, CompiledRoute>({
    gateway: (a, b) => (a as GatewayDraft | undefined)?.resource === (b as GatewayDraft | undefined)?.resource,
  });

  /** Cache statistics of the last compile, for benchmarks and debugging. */
  stats(): { hits: number; misses: number } {
    return { hits: this.#services.hits + this.#routes.hits, misses: this.#services.misses + this.#routes.misses };
  }

  readonly #workloadInterner = new Interner<WorkloadModel>();
  readonly #serviceInterner = new Interner<ServiceModel>();
  #lookup: WorkloadLookup | undefined;
  #identities: ReadonlyMap<string, IdentityModel> = new Map();

  compile(resources: readonly Resource[]): MeshModel {
    const { model, lookup, identities } = compileWith(
      resources,
      this.#workloads,
      this.#lookup,
      this.#identities,
      this.#services,
      this.#routes,
      this.#workloadInterner,
      this.#serviceInterner,
    );
    this.#lookup = lookup;
    this.#identities = identities;
    return model;
  }
}

/** A fresh compile, with nothing cached. */
export function compileModel(resources: readonly Resource[]): MeshModel {
  return new ModelCompiler().compile(resources);
}

function compileWith(
  resources: readonly Resource[],
  workloadCache: WorkloadCache,
  previousLookup: WorkloadLookup | undefined,
  previousIdentities: ReadonlyMap<string, IdentityModel>,
  serviceMemo: Memo<Resource<'Service'>, ServiceEnv, CompiledService>,
  routeMemo: Memo<RouteLike, RouteEnv, CompiledRoute>,
  workloadInterner: Interner<WorkloadModel>,
  serviceInterner: Interner<ServiceModel>,
): { model: MeshModel; lookup: WorkloadLookup; identities: ReadonlyMap<string, IdentityModel> } {
  const index = new ResourceIndex(resources);
  const analysis = new AnalysisSink();

  const mesh = compileMesh(index, analysis);
  const namespaces = compileNamespaces(index, resources);

  const entryWorkloads = workloadInterner.internAll(compileWorkloads(index, mesh, analysis, workloadCache));
  const lookup = new WorkloadLookup(entryWorkloads, previousLookup);
  const svcEnv = serviceEnv(index, mesh, lookup);
  const compiledServices = index
    .all('Service')
    .map((svc) => serviceMemo.get(svc, svcEnv, (env) => compileService(svc, env)));
  const entries = compileServiceEntries(index, mesh, lookup);
  const services = serviceInterner.internAll(
    [...compiledServices.map((c) => c.model), ...entries.services].sort((a, b) => compareStrings(a.id, b.id)),
  );
  for (const c of compiledServices) analysis.messages.push(...c.messages);
  const workloads = [...entryWorkloads, ...entries.extraWorkloads].sort((a, b) => compareStrings(a.id, b.id));
  const serviceLookup = lookupServices(services);
  checkWaypoints(index, services, analysis);
  checkWorkloadGroups(index, analysis);

  const gatewayDrafts = compileGateways(index, analysis);
  const env = routeEnv(index, gatewayDrafts, serviceLookup);
  const compiledRoutes = routeResources(index).map((r) => routeMemo.get(r, env, (e) => compileRoute(r, e)));
  const routes = compiledRoutes.map((c) => c.model);
  for (const c of compiledRoutes) analysis.messages.push(...c.messages);
  const attachedCounts = new Map<string, number>();
  for (const r of routes) for (const p of r.attachedTo) attachedCounts.set(p, (attachedCounts.get(p) ?? 0) + 1);
  const gateways = gatewayDrafts.map((d) => finishGateway(d, attachedCounts, mesh));

  const destinationRules = compileDestinationRules(index, mesh, serviceLookup.hostMap, analysis);
  const virtualServices = compileVirtualServices(index, mesh, serviceLookup.hostMap, destinationRules, analysis);

  const policies = compilePolicies({ index, mesh, workloads, lookup, services, analysis });
  const identityMap = compileIdentities(workloads, previousIdentities);
  const identities = [...identityMap.values()];
  const nodes = compileNodes(mesh, workloads, services, policies, gateways);
  checkGatewayPlacement(index, gateways, analysis);
  checkUpstreams(index, workloads, services, nodes, gateways, analysis);

  const statuses: ResourceStatusModel[] = [
    ...index.all('GatewayClass').map((c) => ({
      resource: keyOf(c),
      conditions: [
        {
          type: 'Accepted',
          status:
            c.spec.controllerName === 'trellis.dev/gateway-controller' ||
            c.spec.controllerName === 'istio.io/gateway-controller'
              ? ('True' as const)
              : ('Unknown' as const),
          reason: 'Accepted',
          message: `controller ${c.spec.controllerName}`,
        },
      ],
    })),
    ...gateways.map((g) => ({
      resource: g.source,
      conditions: g.conditions,
      listeners: g.listeners.map((l) => ({ name: l.name, conditions: l.conditions })),
    })),
    ...compiledRoutes.map((c) => c.status),
  ];

  const model = freezeDeep(
    {
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
          compareStrings(
            `${a.resource.kind}/${a.resource.namespace ?? ''}/${a.resource.name}`,
            `${b.resource.kind}/${b.resource.namespace ?? ''}/${b.resource.name}`,
          ) ||
          compareStrings(a.field ?? '', b.field ?? '') ||
          compareStrings(a.message, b.message),
      ),
    },
    10,
  );
  return { model, lookup, identities: identityMap };
}

/** One shared default, so results cached against it stay valid across compiles. */
const DEFAULT_MESH: MeshSpec = defaultMeshSpec();

function compileMesh(index: ResourceIndex, analysis: AnalysisSink): MeshSpec {
  const meshes = index.all('Mesh');
  for (const extra of meshes.slice(1)) {
    analysis.add('MultipleMeshes', keyOf(extra), `only one Mesh may exist; Mesh ${meshes[0]!.name} is used`);
  }
  return meshes[0]?.spec ?? DEFAULT_MESH;
}

/** Declared Namespaces plus every namespace a resource lives in, with the kubernetes.io/metadata.name label. */
function compileNamespaces(index: ResourceIndex, resources: readonly Resource[]): MeshModel['namespaces'] {
  const names = new Set<string>();
  for (const r of resources) if (r.namespace !== undefined) names.add(r.namespace);
  for (const n of index.all('Namespace')) names.add(n.name);
  return [...names].sort().map((name) => ({
    name,
    labels: {
      'kubernetes.io/metadata.name': name,
      ...(index.get('Namespace', undefined, name)?.metadata.labels ?? {}),
    },
  }));
}

interface ServiceIndex extends ServiceLookup {
  readonly hostMap: ReadonlyMap<string, ServiceModel>;
}

function lookupServices(services: readonly ServiceModel[]): ServiceIndex {
  // namespace -> name -> service: lookups build no key strings (they run for every route, every compile).
  const byKey = new Map<string, Map<string, ServiceModel>>();
  const bySe = new Map<string, Map<string, ServiceModel>>();
  const hostMap = new Map<string, ServiceModel>();
  for (const s of services) {
    const table = s.origin === 'Service' ? byKey : bySe;
    let byName = table.get(s.namespace);
    if (!byName) table.set(s.namespace, (byName = new Map()));
    if (!byName.has(s.name)) byName.set(s.name, s);
    if (!hostMap.has(s.hostname)) hostMap.set(s.hostname, s);
  }
  return {
    hostMap,
    byKey: (ns, name) => byKey.get(ns)?.get(name),
    byHostname: (h) => hostMap.get(h),
    byServiceEntry: (ns, name) => bySe.get(ns)?.get(name),
  };
}

function checkWaypoints(index: ResourceIndex, services: readonly ServiceModel[], analysis: AnalysisSink): void {
  for (const s of services) {
    if (!s.waypoint) continue;
    const [, ns, name] = s.waypoint.split('/') as [string, string, string];
    if (!index.get('Gateway', ns, name)) {
      analysis.add(
        'ReferencedResourceNotFound',
        s.source,
        `Referenced waypoint not found: Gateway ${ns}/${name} (label istio.io/use-waypoint)`,
        'metadata.labels',
      );
    }
  }
}

/** A trellis.dev/node annotation naming no Mesh node leaves the gateway unplaced: say so. */
function checkGatewayPlacement(index: ResourceIndex, gateways: readonly GatewayModel[], analysis: AnalysisSink): void {
  for (const g of gateways) {
    const wanted = index.get('Gateway', g.namespace, g.name)?.metadata.annotations?.['trellis.dev/node'];
    if (wanted && !g.node) {
      analysis.add(
        'ReferencedResourceNotFound',
        g.source,
        `Referenced node not found: ${JSON.stringify(wanted)} (annotation trellis.dev/node; declare it in the Mesh's spec.nodes)`,
        'metadata.annotations',
      );
    }
  }
}

/** Identities with their workloads; an identity whose workloads are unchanged keeps its object. */
function compileIdentities(
  workloads: readonly WorkloadModel[],
  previous: ReadonlyMap<string, IdentityModel>,
): Map<string, IdentityModel> {
  const by = new Map<string, WorkloadModel[]>();
  for (const w of workloads) {
    const list = by.get(w.identity);
    if (list) list.push(w);
    else by.set(w.identity, [w]);
  }
  const out = new Map<string, IdentityModel>();
  for (const spiffeId of [...by.keys()].sort(compareStrings)) {
    const members = by.get(spiffeId)!;
    const ids = members.map((w) => w.id).sort(compareStrings);
    const prev = previous.get(spiffeId);
    if (prev && prev.workloads.length === ids.length && prev.workloads.every((id, i) => id === ids[i])) {
      out.set(spiffeId, prev);
    } else {
      const first = members[0]!;
      out.set(
        spiffeId,
        freezeDeep({ spiffeId, namespace: first.namespace, serviceAccount: first.serviceAccount, workloads: ids }, 2),
      );
    }
  }
  return out;
}

function compileNodes(
  mesh: MeshSpec,
  workloads: readonly WorkloadModel[],
  services: readonly ServiceModel[],
  policies: MeshModel['policies'],
  gateways: readonly GatewayModel[],
): NodeModel[] {
  return (mesh.nodes ?? []).map((n) => {
    const local = workloads.filter((w) => w.node === n.name);
    const ids = new Set(local.map((w) => w.id));
    const gws = gateways.filter((g) => g.node === n.name);
    return {
      name: n.name,
      address: n.address,
      locality: parseLocality(n.locality),
      ports: n.ports,
      workloads: [...ids].sort(),
      identities: [...new Set([...local.map((w) => w.identity), ...gws.map((g) => g.identity)])].sort(),
      gateways: gws.map((g) => g.id),
      services: services.filter((s) => s.endpoints.some((e) => ids.has(e.workload))).map((s) => s.id),
      policies: policies
        .filter(
          (p) => p.scope === 'mesh' || p.workloads.some((w) => ids.has(w)) || p.targets.includes(`Node/${n.name}`),
        )
        .map((p) => p.id),
    };
  });
}
