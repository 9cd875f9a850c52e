// Services and ServiceEntries -> ServiceModels with their endpoints (selectors over workloads).
import type { MeshSpec } from '../config/kinds/trellis/mesh.js';
import { keyOf, type Resource } from '../config/resource.js';
import type { AnalysisSink } from './analysis.js';
import { spiffeId } from './identity.js';
import type { EndpointModel, Protocol, ServiceModel, ServicePortModel, WorkloadModel } from './mesh-model.js';
import type { ResourceIndex } from './resource-index.js';
import { matchesLabels } from './selectors.js';
import { parseLocality } from './workloads.js';

const NAME_PROTOCOLS: Readonly<Record<string, Protocol>> = {
  http: 'HTTP',
  http2: 'HTTP2',
  grpc: 'GRPC',
  'grpc-web': 'HTTP',
  https: 'HTTPS',
  tls: 'TLS',
  tcp: 'TCP',
  udp: 'UDP',
  mongo: 'MONGO',
  redis: 'REDIS',
  mysql: 'MYSQL',
};
const APP_PROTOCOLS: Readonly<Record<string, Protocol>> = {
  ...NAME_PROTOCOLS,
  'kubernetes.io/h2c': 'HTTP2',
  'kubernetes.io/ws': 'HTTP',
  'kubernetes.io/wss': 'HTTPS',
};

/** Istio's protocol selection: appProtocol, else the port name's prefix ("http-web"), else TCP. */
export function inferProtocol(name: string | undefined, appProtocol: string | undefined): Protocol | undefined {
  if (appProtocol !== undefined) return APP_PROTOCOLS[appProtocol.toLowerCase()];
  if (name === undefined) return undefined;
  const prefix = name.toLowerCase().split('-')[0]!;
  return NAME_PROTOCOLS[name.toLowerCase()] ?? NAME_PROTOCOLS[prefix];
}

/** Workloads of a namespace indexed by label, so a selector does not scan every workload. */
export class WorkloadLookup {
  readonly #byNs = new Map<string, WorkloadModel[]>();
  readonly #byLabel = new Map<string, WorkloadModel[]>();

  constructor(workloads: readonly WorkloadModel[]) {
    for (const w of workloads) {
      push(this.#byNs, w.namespace, w);
      for (const [k, v] of Object.entries(w.labels)) push(this.#byLabel, `${w.namespace}\0${k}\0${v}`, w);
    }
  }

  inNamespace(ns: string): readonly WorkloadModel[] {
    return this.#byNs.get(ns) ?? [];
  }

  /** Workloads in `ns` whose labels include all of `match` (empty match selects none, as a Service selector). */
  select(ns: string, match: Readonly<Record<string, string>>): WorkloadModel[] {
    const entries = Object.entries(match);
    if (entries.length === 0) return [];
    let smallest: readonly WorkloadModel[] | undefined;
    for (const [k, v] of entries) {
      const list = this.#byLabel.get(`${ns}\0${k}\0${v}`) ?? [];
      if (!smallest || list.length < smallest.length) smallest = list;
    }
    return smallest!.filter((w) => matchesLabels(match, w.labels));
  }
}

function push<T>(m: Map<string, T[]>, k: string, v: T): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

export function serviceHostname(name: string, namespace: string, mesh: MeshSpec): string {
  return `${name}.${namespace}.svc.${mesh.clusterDomain}`;
}

export function compileServices(
  index: ResourceIndex,
  mesh: MeshSpec,
  lookup: WorkloadLookup,
  analysis: AnalysisSink,
): { services: ServiceModel[]; extraWorkloads: WorkloadModel[] } {
  const services: ServiceModel[] = [];
  for (const svc of index.all('Service')) services.push(fromService(svc, index, mesh, lookup, analysis));
  const extraWorkloads: WorkloadModel[] = [];
  for (const se of index.all('ServiceEntry')) services.push(...fromServiceEntry(se, mesh, lookup, extraWorkloads));
  services.sort((a, b) => a.id.localeCompare(b.id));
  return { services, extraWorkloads };
}

function fromService(
  svc: Resource<'Service'>,
  index: ResourceIndex,
  mesh: MeshSpec,
  lookup: WorkloadLookup,
  analysis: AnalysisSink,
): ServiceModel {
  const ns = svc.namespace!;
  const ports: ServicePortModel[] = (svc.spec.ports ?? []).map((p, i) => {
    const protocol = inferProtocol(p.name, p.appProtocol);
    if (protocol === undefined && p.protocol === 'TCP') {
      analysis.add(
        'PortNameIsNotUnderNamingConvention',
        keyOf(svc),
        `port ${p.port}${p.name ? ` named ${JSON.stringify(p.name)}` : ''} does not say its protocol; it is treated as TCP (name it "http-...", "grpc-...", or set appProtocol)`,
        `spec.ports[${i}]`,
      );
    }
    return {
      name: p.name ?? String(p.port),
      port: p.port,
      protocol: protocol ?? (p.protocol === 'UDP' ? 'UDP' : 'TCP'),
      transport: p.protocol,
      targetPort: p.targetPort ?? p.port,
    };
  });
  const selected = svc.spec.selector ? lookup.select(ns, svc.spec.selector) : [];
  const endpoints = selected.map((w) => endpointOf(w, ports));
  const waypoint = waypointOf(svc.metadata.labels, index.get('Namespace', undefined, ns)?.metadata.labels, ns);
  const m: { -readonly [K in keyof ServiceModel]: ServiceModel[K] } = {
    id: `Service/${ns}/${svc.name}`,
    source: keyOf(svc),
    namespace: ns,
    name: svc.name,
    hostname: serviceHostname(svc.name, ns, mesh),
    origin: 'Service',
    location: 'MESH_INTERNAL',
    resolution: 'STATIC',
    addresses: svc.spec.clusterIP && svc.spec.clusterIP !== 'None' ? [svc.spec.clusterIP] : [],
    ports,
    endpoints,
    identities: [...new Set(endpoints.map((e) => e.identity))].sort(),
    sessionAffinity: svc.spec.sessionAffinity,
  };
  if (waypoint) m.waypoint = waypoint;
  return m;
}

/** Istio ambient: `istio.io/use-waypoint` on the Service, else on its Namespace; "none" opts out. */
function waypointOf(
  svcLabels: Readonly<Record<string, string>> | undefined,
  nsLabels: Readonly<Record<string, string>> | undefined,
  ns: string,
): string | undefined {
  const own = svcLabels?.['istio.io/use-waypoint'];
  const name = own ?? nsLabels?.['istio.io/use-waypoint'];
  if (name === undefined || name === 'none') return undefined;
  const wpNs = (own !== undefined ? svcLabels?.['istio.io/use-waypoint-namespace'] : nsLabels?.['istio.io/use-waypoint-namespace']) ?? ns;
  return `Gateway/${wpNs}/${name}`;
}

/** Istio: WorkloadEntry.ports maps a service port name to the endpoint's port; else targetPort. */
function endpointOf(w: WorkloadModel, ports: readonly ServicePortModel[]): EndpointModel {
  const epPorts: Record<string, number> = {};
  for (const p of ports) {
    const byName = w.ports[p.name];
    const target = typeof p.targetPort === 'number' ? p.targetPort : w.ports[p.targetPort];
    epPorts[p.name] = byName ?? target ?? p.port;
  }
  const e: { -readonly [K in keyof EndpointModel]: EndpointModel[K] } = {
    workload: w.id,
    address: w.address,
    ports: epPorts,
    labels: w.labels,
    identity: w.identity,
    locality: w.locality,
    weight: w.weight,
  };
  if (w.node !== undefined) e.node = w.node;
  return e;
}

function fromServiceEntry(
  se: Resource<'ServiceEntry'>,
  mesh: MeshSpec,
  lookup: WorkloadLookup,
  extraWorkloads: WorkloadModel[],
): ServiceModel[] {
  const ns = se.namespace!;
  const ports: ServicePortModel[] = (se.spec.ports ?? []).map((p) => ({
    name: p.name,
    port: p.number,
    protocol: (inferProtocol(undefined, p.protocol) ?? 'TCP') as Protocol,
    transport: p.protocol === 'UDP' ? 'UDP' : 'TCP',
    targetPort: p.targetPort ?? p.number,
  }));
  let members: WorkloadModel[];
  if (se.spec.workloadSelector) {
    members = lookup.select(ns, se.spec.workloadSelector.labels ?? {});
  } else {
    members = (se.spec.endpoints ?? []).map((ep, i) => {
      const sa = ep.serviceAccount ?? 'default';
      const w: WorkloadModel = {
        id: `ServiceEntry/${ns}/${se.name}#${i}`,
        source: keyOf(se),
        namespace: ns,
        name: `${se.name}-${i}`,
        address: ep.address ?? '',
        ports: ep.ports ?? {},
        labels: ep.labels ?? {},
        serviceAccount: sa,
        identity: spiffeId(mesh.trustDomain, ns, sa),
        locality: parseLocality(ep.locality),
        network: ep.network ?? '',
        weight: ep.weight ?? 1,
      };
      extraWorkloads.push(w);
      return w;
    });
  }
  const endpoints = members.map((w) => endpointOf(w, ports));
  const identities = [...new Set(endpoints.map((e) => e.identity))].sort();
  return se.spec.hosts.map((host) => ({
    id: `ServiceEntry/${ns}/${se.name}/${host}`,
    source: keyOf(se),
    namespace: ns,
    name: se.name,
    hostname: host,
    origin: 'ServiceEntry' as const,
    location: se.spec.location,
    resolution: se.spec.resolution,
    addresses: se.spec.addresses ?? [],
    ports,
    endpoints,
    identities: se.spec.location === 'MESH_INTERNAL' ? identities : [],
    sessionAffinity: 'None' as const,
  }));
}
