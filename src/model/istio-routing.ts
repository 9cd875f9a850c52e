// VirtualServices and DestinationRules bound to the services they configure.
import type { MeshSpec } from '../config/kinds/trellis/mesh.js';
import { keyOf, type Resource } from '../config/resource.js';
import type { AnalysisSink } from './analysis.js';
import type { BackendModel, DestinationRuleModel, ServiceModel, VirtualServiceModel } from './mesh-model.js';
import type { ResourceIndex } from './resource-index.js';
import { matchesLabels } from './selectors.js';

/** Istio interprets a dotless host relative to the rule's namespace. */
export function qualifyHost(host: string, namespace: string, mesh: MeshSpec): string {
  if (host.includes('*') || host.includes('.')) return host;
  return `${host}.${namespace}.svc.${mesh.clusterDomain}`;
}

interface Destination {
  readonly host: string;
  readonly subset?: string;
  readonly port?: { readonly number?: number };
}

export function compileDestinationRules(
  index: ResourceIndex,
  mesh: MeshSpec,
  byHost: ReadonlyMap<string, ServiceModel>,
  analysis: AnalysisSink,
): DestinationRuleModel[] {
  // Istio merges the DestinationRules of one host (those without a workloadSelector): subsets
  // add up, and a subset name defined twice keeps the first definition (by namespace/name).
  const subsetOwner = new Map<string, Resource<'DestinationRule'>>();
  return index.all('DestinationRule').map((dr) => {
    const ns = dr.namespace!;
    const host = qualifyHost(dr.spec.host, ns, mesh);
    const svc = byHost.get(host);
    if (!dr.spec.workloadSelector) {
      (dr.spec.subsets ?? []).forEach((s, i) => {
        const owner = subsetOwner.get(`${host}\0${s.name}`);
        if (owner) {
          analysis.add(
            'ConflictingDestinationRules',
            keyOf(dr),
            `subset ${JSON.stringify(s.name)} of ${host} is already defined by DestinationRule ${owner.namespace}/${owner.name}, whose definition applies`,
            `spec.subsets[${i}].name`,
          );
        } else {
          subsetOwner.set(`${host}\0${s.name}`, dr);
        }
      });
    }
    const subsetEntries: [string, readonly string[]][] = [];
    (dr.spec.subsets ?? []).forEach((s, i) => {
      const eps = (svc?.endpoints ?? []).filter((e) => matchesLabels(s.labels, e.labels)).map((e) => e.workload);
      subsetEntries.push([s.name, eps]);
      if (svc && eps.length === 0) {
        analysis.add(
          'DestinationRuleSubsetNotSelectPods',
          keyOf(dr),
          `subset ${JSON.stringify(s.name)} selects no endpoint of ${host}`,
          `spec.subsets[${i}]`,
        );
      }
    });
    const m: { -readonly [K in keyof DestinationRuleModel]: DestinationRuleModel[K] } = {
      id: `DestinationRule/${ns}/${dr.name}`,
      source: keyOf(dr),
      namespace: ns,
      host,
      subsets: Object.fromEntries(subsetEntries),
      subsetPolicies: Object.fromEntries(
        (dr.spec.subsets ?? []).filter((x) => x.trafficPolicy !== undefined).map((x) => [x.name, x.trafficPolicy!]),
      ),
    };
    if (dr.spec.trafficPolicy !== undefined) m.trafficPolicy = dr.spec.trafficPolicy;
    if (svc) m.service = svc.id;
    return m;
  });
}

export function compileVirtualServices(
  index: ResourceIndex,
  mesh: MeshSpec,
  byHost: ReadonlyMap<string, ServiceModel>,
  destinationRules: readonly DestinationRuleModel[],
  analysis: AnalysisSink,
): VirtualServiceModel[] {
  // Subsets per host, merged across the host's DestinationRules.
  const subsetsByHost = new Map<string, Set<string>>();
  for (const dr of destinationRules) {
    let names = subsetsByHost.get(dr.host);
    if (!names) subsetsByHost.set(dr.host, (names = new Set()));
    for (const n of Object.keys(dr.subsets)) names.add(n);
  }
  const meshHosts = new Map<string, { id: string; visible: ReadonlySet<string> }[]>();
  return index.all('VirtualService').map((vs) => {
    const ns = vs.namespace!;
    const key = keyOf(vs);
    const hosts = (vs.spec.hosts ?? []).map((h) => qualifyHost(h, ns, mesh));
    const gateways = vs.spec.gateways ?? ['mesh'];
    gateways.forEach((g, i) => {
      if (g === 'mesh') return;
      const [gwNs, gwName] = g.includes('/') ? (g.split('/') as [string, string]) : [ns, g];
      if (!index.get('Gateway', gwNs, gwName)) {
        analysis.add(
          'ReferencedResourceNotFound',
          key,
          `Referenced gateway not found: ${JSON.stringify(g)}`,
          `spec.gateways[${i}]`,
        );
      }
    });
    if (gateways.includes('mesh')) {
      // Visibility (exportTo): "." is the VirtualService's own namespace; default and "*" all.
      const visible = new Set((vs.spec.exportTo ?? ['*']).map((e) => (e === '.' ? ns : e)));
      hosts.forEach((h, i) => {
        const others = meshHosts.get(h) ?? [];
        const clash = others.find(
          (o) => o.visible.has('*') || visible.has('*') || [...visible].some((n) => o.visible.has(n)),
        );
        if (clash) {
          analysis.add(
            'ConflictingMeshGatewayVirtualServiceHosts',
            key,
            `host ${h} is also routed by VirtualService ${clash.id} for the mesh gateway, visible in the same namespaces`,
            `spec.hosts[${i}]`,
          );
        } else {
          meshHosts.set(h, [...others, { id: `${ns}/${vs.name}`, visible }]);
        }
      });
    }
    const backends: BackendModel[] = [];
    const visit = (dest: Destination | undefined, field: string, weight: number): void => {
      if (!dest) return;
      const host = qualifyHost(dest.host, ns, mesh);
      const svc = byHost.get(host);
      let resolved = true;
      if (!svc) {
        resolved = false;
        analysis.add(
          'ReferencedResourceNotFound',
          key,
          `Referenced host not found: ${JSON.stringify(dest.host)}`,
          `${field}.host`,
        );
      } else {
        if (dest.port?.number === undefined && svc.ports.length > 1) {
          analysis.add(
            'VirtualServiceDestinationPortSelectorRequired',
            key,
            `${host} has ${svc.ports.length} ports; the destination must name one`,
            `${field}.port`,
          );
        }
        if (dest.port?.number !== undefined && !svc.ports.some((p) => p.port === dest.port!.number)) {
          resolved = false;
          analysis.add(
            'ReferencedResourceNotFound',
            key,
            `Referenced port not found: ${host} has no port ${dest.port.number}`,
            `${field}.port.number`,
          );
        }
      }
      if (dest.subset !== undefined) {
        if (!subsetsByHost.get(host)?.has(dest.subset)) {
          resolved = false;
          analysis.add(
            'ReferencedResourceNotFound',
            key,
            `Referenced host+subset in destinationrule not found: "${dest.host}+${dest.subset}"`,
            `${field}.subset`,
          );
        }
      }
      const b: { -readonly [K in keyof BackendModel]: BackendModel[K] } = { weight, field, resolved };
      if (svc) b.service = svc.id;
      if (dest.port?.number !== undefined) b.port = dest.port.number;
      if (dest.subset !== undefined) b.subset = dest.subset;
      backends.push(b);
    };
    const routeLists: [
      string,
      (
        | readonly { readonly route?: readonly { readonly destination: Destination; readonly weight?: number }[] }[]
        | undefined
      ),
    ][] = [
      ['http', vs.spec.http],
      ['tcp', vs.spec.tcp],
      ['tls', vs.spec.tls],
    ];
    for (const [section, list] of routeLists) {
      (list ?? []).forEach((r, i) => {
        const routes = r.route ?? [];
        routes.forEach((d, j) =>
          visit(
            d.destination,
            `spec.${section}[${i}].route[${j}].destination`,
            d.weight ?? (routes.length === 1 ? 100 : 0),
          ),
        );
      });
    }
    (vs.spec.http ?? []).forEach((r, i) => {
      if (r.mirror) visit(r.mirror, `spec.http[${i}].mirror`, 0);
      (r.mirrors ?? []).forEach((m, j) => visit(m.destination, `spec.http[${i}].mirrors[${j}].destination`, 0));
      // Mesh-wide route configurations cannot select by client: such matches never apply.
      (r.match ?? []).forEach((m, j) => {
        for (const f of ['sourceLabels', 'sourceNamespace'] as const) {
          if (m[f] !== undefined)
            analysis.add(
              'UnsupportedRouteFeature',
              key,
              `${f} matches are not supported: this match never applies`,
              `spec.http[${i}].match[${j}].${f}`,
            );
        }
      });
    });
    const services = [
      ...new Set(hosts.map((h) => byHost.get(h)?.id).filter((x): x is string => x !== undefined)),
    ].sort();
    return {
      id: `VirtualService/${ns}/${vs.name}`,
      source: key,
      namespace: ns,
      hosts,
      services,
      gateways,
      backends,
      http: vs.spec.http ?? [],
    };
  });
}
