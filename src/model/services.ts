// Services and ServiceEntries -> ServiceModels with their endpoints (selectors over workloads).
import { own } from '../util/own.js';
import type { MeshSpec } from '../config/kinds/trellis/mesh.js';
import { keyOf, type Resource } from '../config/resource.js';
import { AnalysisSink } from './analysis.js';
import { workloadSpiffeId as spiffeId } from '../identity/spiffe-id.js';
import type {
  AnalysisMessage,
  EndpointModel,
  HealthProbeModel,
  Protocol,
  ServiceModel,
  ServicePortModel,
  WorkloadModel,
} from './mesh-model.js';
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
  if (appProtocol !== undefined) return own(APP_PROTOCOLS, appProtocol.toLowerCase());
  if (name === undefined) return undefined;
  const prefix = name.toLowerCase().split('-')[0]!;
  return own(NAME_PROTOCOLS, name.toLowerCase()) ?? own(NAME_PROTOCOLS, prefix);
}

/** The workloads of one namespace, indexed by label so a selector does not scan them all. */
export class NamespaceWorkloads {
  readonly #byLabel = new Map<string, WorkloadModel[]>();

  constructor(readonly list: readonly WorkloadModel[]) {
    for (const w of list) for (const k in w.labels) push(this.#byLabel, `${k}\0${w.labels[k]}`, w);
  }

  /** Workloads whose labels include all of `match` (an empty match selects none, as a Service selector). */
  select(match: Readonly<Record<string, string>>): WorkloadModel[] {
    let smallest: readonly WorkloadModel[] | undefined;
    for (const k in match) {
      const list = this.#byLabel.get(`${k}\0${match[k]}`) ?? [];
      if (!smallest || list.length < smallest.length) smallest = list;
    }
    return smallest ? smallest.filter((w) => matchesLabels(match, w.labels)) : [];
  }
}

const NO_WORKLOADS = new NamespaceWorkloads([]);

/**
 * Workloads by namespace. Built from the previous lookup, a namespace whose workloads are
 * the same objects keeps its NamespaceWorkloads object, so results cached against it stay valid.
 */
export class WorkloadLookup {
  readonly #byNs = new Map<string, NamespaceWorkloads>();

  constructor(workloads: readonly WorkloadModel[], previous?: WorkloadLookup) {
    const lists = new Map<string, WorkloadModel[]>();
    for (const w of workloads) push(lists, w.namespace, w);
    for (const [ns, list] of lists) {
      const prev = previous === undefined ? undefined : previous.#byNs.get(ns);
      const same = prev !== undefined && prev.list.length === list.length && prev.list.every((w, i) => w === list[i]);
      this.#byNs.set(ns, same ? prev : new NamespaceWorkloads(list));
    }
  }

  namespace(ns: string): NamespaceWorkloads {
    return this.#byNs.get(ns) ?? NO_WORKLOADS;
  }

  inNamespace(ns: string): readonly WorkloadModel[] {
    return this.namespace(ns).list;
  }

  select(ns: string, match: Readonly<Record<string, string>>): WorkloadModel[] {
    return this.namespace(ns).select(match);
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

/** What compiling a Service may look at (narrow, so the result can be cached by it). */
export interface ServiceEnv {
  readonly mesh: MeshSpec;
  workloads(namespace: string): NamespaceWorkloads;
  namespaceLabels(namespace: string): Readonly<Record<string, string>> | undefined;
}

export function serviceEnv(index: ResourceIndex, mesh: MeshSpec, lookup: WorkloadLookup): ServiceEnv {
  return {
    mesh,
    workloads: (ns) => lookup.namespace(ns),
    namespaceLabels: (ns) => index.get('Namespace', undefined, ns)?.metadata.labels,
  };
}

export interface CompiledService {
  readonly model: ServiceModel;
  readonly messages: readonly AnalysisMessage[];
}

/** ServiceEntries, with the workloads their inline endpoints stand for. */
export function compileServiceEntries(
  index: ResourceIndex,
  mesh: MeshSpec,
  lookup: WorkloadLookup,
): { services: ServiceModel[]; extraWorkloads: WorkloadModel[] } {
  const services: ServiceModel[] = [];
  const extraWorkloads: WorkloadModel[] = [];
  for (const se of index.all('ServiceEntry')) services.push(...fromServiceEntry(se, mesh, lookup, extraWorkloads));
  return { services, extraWorkloads };
}

export function compileService(svc: Resource<'Service'>, env: ServiceEnv): CompiledService {
  const analysis = new AnalysisSink();
  const mesh = env.mesh;
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
      protocol: p.protocol === 'UDP' ? 'UDP' : (protocol ?? 'TCP'),
      transport: p.protocol,
      targetPort: p.targetPort ?? p.port,
    };
  });
  const selected = svc.spec.selector ? env.workloads(ns).select(svc.spec.selector) : [];
  const endpoints = selected.map((w) => endpointOf(w, ports, 'Service'));
  const probedPorts = withProbes(ports, selected, endpoints);
  const waypoint = waypointOf(svc.metadata.labels, env.namespaceLabels(ns), ns);
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
    ports: probedPorts,
    endpoints,
    identities: [...new Set(endpoints.map((e) => e.identity))].sort(),
    sessionAffinity: svc.spec.sessionAffinity,
  };
  if (waypoint) m.waypoint = waypoint;
  return { model: m, messages: analysis.messages };
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
  const wpNs =
    (own !== undefined
      ? svcLabels?.['istio.io/use-waypoint-namespace']
      : nsLabels?.['istio.io/use-waypoint-namespace']) ?? ns;
  return `Gateway/${wpNs}/${name}`;
}

/**
 * Endpoint ports as istiod derives them. For a Service selecting WorkloadEntries: a named
 * targetPort is looked up in the entry's ports (no such name: the entry does not serve that
 * port); a numeric targetPort is overridden by the entry's port of the same name as the
 * service port; UDP ports are not served by WorkloadEntries. For ServiceEntries: the
 * endpoint's port named like the service port, else targetPort, else the port number.
 */
function endpointOf(
  w: WorkloadModel,
  ports: readonly ServicePortModel[],
  origin: 'Service' | 'ServiceEntry',
): EndpointModel {
  const epPorts: Record<string, number> = {};
  for (const p of ports) {
    const byName = own(w.ports, p.name);
    let port: number | undefined;
    if (origin === 'ServiceEntry') {
      port = byName ?? (typeof p.targetPort === 'number' ? p.targetPort : own(w.ports, p.targetPort)) ?? p.port;
    } else if (p.transport === 'UDP') {
      port = undefined;
    } else if (typeof p.targetPort === 'string') {
      port = own(w.ports, p.targetPort);
    } else {
      port = byName ?? p.targetPort;
    }
    if (port !== undefined)
      Object.defineProperty(epPorts, p.name, { value: port, enumerable: true, writable: true, configurable: true });
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
  // Endpoints of an external service are not mesh workloads: no identity, no policy.
  const external = se.spec.location === 'MESH_EXTERNAL';
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
        serviceAccount: external ? '' : sa,
        identity: external ? '' : spiffeId(mesh.trustDomain, ns, sa),
        locality: parseLocality(ep.locality),
        network: ep.network ?? '',
        weight: ep.weight ?? 1,
      };
      if (!external) extraWorkloads.push(w);
      return w;
    });
  }
  const endpoints = members.map((w) => endpointOf(w, ports, 'ServiceEntry'));
  const probedPorts = withProbes(ports, members, endpoints);
  const identities = [...new Set(endpoints.map((e) => e.identity).filter((id) => id !== ''))].sort();
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
    ports: probedPorts,
    endpoints,
    identities: se.spec.location === 'MESH_INTERNAL' ? identities : [],
    sessionAffinity: 'None' as const,
  }));
}

/**
 * Each port gets the readiness probe of the WorkloadGroup of the endpoints serving it (one
 * health check per Envoy cluster: with several groups, the first by id). Ports without one,
 * and services without probed endpoints, are returned as they are.
 */
function withProbes(
  ports: ServicePortModel[],
  members: readonly WorkloadModel[],
  endpoints: readonly EndpointModel[],
): ServicePortModel[] {
  if (!members.some((w) => w.probe !== undefined)) return ports;
  return ports.map((p) => {
    let probe: HealthProbeModel | undefined;
    for (let i = 0; i < members.length; i++) {
      const candidate = members[i]!.probe;
      if (!candidate || endpoints[i]!.ports[p.name] === undefined) continue;
      if (!probe || candidate.group < probe.group) probe = candidate;
    }
    return probe ? { ...p, healthCheck: probe } : p;
  });
}
