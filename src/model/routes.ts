// Gateway API routes -> attached to Gateway listeners or (GAMMA) Services, backends resolved,
// with the upstream Accepted / ResolvedRefs conditions and reasons.
import { keyOf } from '../config/resource.js';
import type { AnalysisSink } from './analysis.js';
import { condition, CONTROLLER_NAME, hostnamesIntersect } from './conditions.js';
import type { GatewayDraft } from './gateways.js';
import type { BackendModel, ConditionModel, ParentRefModel, RouteModel, RouteParentStatus, RouteRuleModel, ServiceModel } from './mesh-model.js';
import { referenceAllowed } from './reference-grants.js';
import type { ResourceIndex } from './resource-index.js';
import { matchesSelector } from './selectors.js';

const GW_GROUP = 'gateway.networking.k8s.io';

interface ParentRefLike {
  readonly group?: string;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name: string;
  readonly sectionName?: string;
  readonly port?: number;
}
interface BackendRefLike {
  readonly group?: string;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name: string;
  readonly port?: number;
  readonly weight?: number;
}
interface RouteLike {
  readonly kind: RouteModel['kind'];
  readonly namespace: string | undefined;
  readonly name: string;
  readonly spec: {
    readonly parentRefs?: readonly ParentRefLike[];
    readonly hostnames?: readonly string[];
    readonly rules?: readonly { readonly name?: string; readonly backendRefs?: readonly BackendRefLike[] }[];
  };
}

export interface ServiceLookup {
  byKey(namespace: string, name: string): ServiceModel | undefined;
  byHostname(hostname: string): ServiceModel | undefined;
  /** The first host of a ServiceEntry. */
  byServiceEntry(namespace: string, name: string): ServiceModel | undefined;
}

export function compileRoutes(
  index: ResourceIndex,
  gateways: readonly GatewayDraft[],
  services: ServiceLookup,
  analysis: AnalysisSink,
): RouteModel[] {
  const gwByKey = new Map(gateways.map((g) => [`${g.model.namespace}/${g.model.name}`, g]));
  const routes: RouteLike[] = [
    ...(index.all('HTTPRoute') as readonly RouteLike[]),
    ...(index.all('GRPCRoute') as readonly RouteLike[]),
    ...(index.all('TCPRoute') as readonly RouteLike[]),
    ...(index.all('TLSRoute') as readonly RouteLike[]),
  ];
  return routes.map((r) => compileRoute(r, index, gwByKey, services, analysis));
}

function compileRoute(
  route: RouteLike,
  index: ResourceIndex,
  gwByKey: ReadonlyMap<string, GatewayDraft>,
  services: ServiceLookup,
  analysis: AnalysisSink,
): RouteModel {
  const ns = route.namespace!;
  const key = keyOf(route);
  const hostnames = route.spec.hostnames ?? [];

  // Backends first: ResolvedRefs is the same for every parent.
  const refProblems: { reason: string; message: string; field: string }[] = [];
  const rules: RouteRuleModel[] = (route.spec.rules ?? []).map((rule, ri) => {
    const backends = (rule.backendRefs ?? []).map((b, bi) => {
      const field = `spec.rules[${ri}].backendRefs[${bi}]`;
      const res = resolveBackend(route, b, index, services);
      if (res.problem) refProblems.push({ ...res.problem, field });
      const m: { -readonly [K in keyof BackendModel]: BackendModel[K] } = { weight: b.weight ?? 1, field, resolved: !res.problem };
      if (res.service) m.service = res.service.id;
      if (b.port !== undefined) m.port = b.port;
      return m;
    });
    return rule.name === undefined ? { index: ri, backends } : { index: ri, name: rule.name, backends };
  });
  for (const p of refProblems) analysis.condition('ResolvedRefs', p.reason, key, p.message, p.field);
  const resolvedRefs: ConditionModel = refProblems.length
    ? condition('ResolvedRefs', false, refProblems[0]!.reason, refProblems.map((p) => p.message).join('; '))
    : condition('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved');

  const attachedTo: string[] = [];
  const parents: RouteParentStatus[] = (route.spec.parentRefs ?? []).map((p, pi) => {
    const parentRef: ParentRefModel = {
      group: p.group ?? GW_GROUP,
      kind: p.kind ?? 'Gateway',
      namespace: p.namespace ?? ns,
      name: p.name,
      ...(p.sectionName !== undefined ? { sectionName: p.sectionName } : {}),
      ...(p.port !== undefined ? { port: p.port } : {}),
    };
    const accepted = attach(route, parentRef, hostnames, index, gwByKey, services, attachedTo);
    if (accepted.status === 'False') analysis.condition('Accepted', accepted.reason, key, accepted.message, `spec.parentRefs[${pi}]`);
    return { parentRef, controllerName: CONTROLLER_NAME, conditions: [accepted, resolvedRefs] };
  });

  return {
    id: `${route.kind}/${ns}/${route.name}`,
    source: key,
    kind: route.kind,
    namespace: ns,
    hostnames,
    rules,
    attachedTo: attachedTo.sort(),
    parents,
  };
}

function attach(
  route: RouteLike,
  ref: ParentRefModel,
  hostnames: readonly string[],
  index: ResourceIndex,
  gwByKey: ReadonlyMap<string, GatewayDraft>,
  services: ServiceLookup,
  attachedTo: string[],
): ConditionModel {
  const ns = route.namespace!;
  const group = ref.group === 'core' ? '' : ref.group;
  if (group === '' && ref.kind === 'Service') {
    // GAMMA: a route whose parent is a Service configures mesh traffic to it.
    const svc = services.byKey(ref.namespace, ref.name);
    if (!svc) return condition('Accepted', false, 'NoMatchingParent', `parent Service ${ref.namespace}/${ref.name} not found`);
    if (ref.port !== undefined && !svc.ports.some((p) => p.port === ref.port)) {
      return condition('Accepted', false, 'NoMatchingParent', `Service ${ref.namespace}/${ref.name} has no port ${ref.port}`);
    }
    attachedTo.push(svc.id);
    return condition('Accepted', true, 'Accepted', `attached to Service ${ref.namespace}/${ref.name}`);
  }
  if (group !== GW_GROUP || ref.kind !== 'Gateway') {
    return condition('Accepted', false, 'UnsupportedValue', `parentRef kind ${ref.group}/${ref.kind} is not supported (use a Gateway, or a Service for mesh routes)`);
  }
  const gw = gwByKey.get(`${ref.namespace}/${ref.name}`);
  if (!gw) return condition('Accepted', false, 'NoMatchingParent', `parent Gateway ${ref.namespace}/${ref.name} not found`);

  let candidates = gw.model.listeners;
  if (ref.sectionName !== undefined) candidates = candidates.filter((l) => l.name === ref.sectionName);
  if (ref.port !== undefined) candidates = candidates.filter((l) => l.port === ref.port);
  if (candidates.length === 0) {
    const what = [ref.sectionName !== undefined ? `sectionName ${ref.sectionName}` : '', ref.port !== undefined ? `port ${ref.port}` : ''].filter(Boolean).join(' and ');
    return condition('Accepted', false, 'NoMatchingParent', `Gateway ${ref.namespace}/${ref.name} has no listener with ${what}`);
  }
  const gwSpec = gw.resource.spec;
  let allowedSomewhere = false;
  let accepted = false;
  for (const l of candidates) {
    const spec = gwSpec.listeners.find((x) => x.name === l.name)!;
    const kinds = gw.allowedKinds.get(l.name) ?? [];
    if (!kinds.includes(route.kind)) continue;
    const from = spec.allowedRoutes?.namespaces?.from ?? 'Same';
    let nsOk = from === 'All' || (from === 'Same' && ns === gw.model.namespace);
    if (from === 'Selector') {
      const nsLabels = index.get('Namespace', undefined, ns)?.metadata.labels ?? {};
      const labels = { 'kubernetes.io/metadata.name': ns, ...nsLabels };
      const sel = spec.allowedRoutes?.namespaces?.selector;
      nsOk = matchesSelector(sel, labels);
    }
    if (!nsOk) continue;
    allowedSomewhere = true;
    if (l.hostname !== undefined && hostnames.length > 0 && !hostnames.some((h) => hostnamesIntersect(h, l.hostname!))) continue;
    accepted = true;
    gw.attached.set(l.name, (gw.attached.get(l.name) ?? 0) + 1);
    attachedTo.push(`${gw.model.id}/${l.name}`);
  }
  if (accepted) return condition('Accepted', true, 'Accepted', `attached to Gateway ${ref.namespace}/${ref.name}`);
  if (!allowedSomewhere) {
    return condition('Accepted', false, 'NotAllowedByListeners', `no listener of Gateway ${ref.namespace}/${ref.name} allows ${route.kind} from namespace ${ns}`);
  }
  return condition('Accepted', false, 'NoMatchingListenerHostname', `hostnames ${hostnames.join(', ')} match no listener hostname of Gateway ${ref.namespace}/${ref.name}`);
}

function resolveBackend(
  route: RouteLike,
  b: BackendRefLike,
  index: ResourceIndex,
  services: ServiceLookup,
): { service?: ServiceModel; problem?: { reason: string; message: string } } {
  const ns = route.namespace!;
  const group = b.group === undefined || b.group === 'core' ? '' : b.group;
  const kind = b.kind ?? 'Service';
  const refNs = b.namespace ?? ns;
  let svc: ServiceModel | undefined;
  if (group === '' && kind === 'Service') {
    svc = services.byKey(refNs, b.name);
  } else if (group === 'networking.istio.io' && kind === 'Hostname') {
    svc = services.byHostname(b.name);
  } else if (group === 'networking.istio.io' && kind === 'ServiceEntry') {
    svc = services.byServiceEntry(refNs, b.name);
  } else {
    return { problem: { reason: 'InvalidKind', message: `backend kind ${group || 'core'}/${kind} is not supported (Service, or networking.istio.io Hostname/ServiceEntry)` } };
  }
  if (!referenceAllowed(index, { group: GW_GROUP, kind: route.kind, namespace: ns }, { group, kind, namespace: refNs, name: b.name })) {
    return { problem: { reason: 'RefNotPermitted', message: `${kind} ${refNs}/${b.name} is in another namespace and no ReferenceGrant in ${refNs} allows ${route.kind}s from ${ns}` } };
  }
  if (!svc) return { problem: { reason: 'BackendNotFound', message: `${kind} ${refNs}/${b.name} not found` } };
  if (b.port !== undefined && !svc.ports.some((p) => p.port === b.port)) {
    return { service: svc, problem: { reason: 'BackendNotFound', message: `${kind} ${refNs}/${b.name} has no port ${b.port} (ports: ${svc.ports.map((p) => p.port).join(', ') || 'none'})` } };
  }
  return { service: svc };
}

