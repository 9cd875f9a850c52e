// Gateways and GatewayClasses -> GatewayModels with Gateway API listener conditions.
import { own } from '../util/own.js';
import { keyOf, type Resource } from '../config/resource.js';
import type { AnalysisSink } from './analysis.js';
import { condition, CONTROLLER_NAME } from './conditions.js';
import type { ConditionModel, GatewayModel, ListenerModel } from './mesh-model.js';
import type { MeshSpec } from '../config/kinds/trellis/mesh.js';
import { referenceAllowed } from './reference-grants.js';
import type { ResourceIndex } from './resource-index.js';

/** Classes every Trellis installation has, so users need no GatewayClass (Istio's names included). */
export const BUILTIN_CLASSES: Readonly<Record<string, 'gateway' | 'waypoint'>> = {
  trellis: 'gateway',
  'trellis-waypoint': 'waypoint',
  istio: 'gateway',
  'istio-waypoint': 'waypoint',
};
const OUR_CONTROLLERS = new Set([CONTROLLER_NAME, 'istio.io/gateway-controller']);

const PROTOCOL_ROUTE_KINDS: Readonly<Record<string, readonly string[]>> = {
  HTTP: ['HTTPRoute', 'GRPCRoute'],
  HTTPS: ['HTTPRoute', 'GRPCRoute'],
  TLS: ['TLSRoute', 'TCPRoute'],
  TCP: ['TCPRoute'],
  HBONE: [],
};

const CORE_PROTOCOLS = new Set(['HTTP', 'HTTPS', 'TLS', 'TCP', 'UDP']);

/** Core listener protocols are accepted in any case (docs/kinds.md); others are compared as written. */
function coreProtocol(p: string): string {
  const upper = p.toUpperCase();
  return CORE_PROTOCOLS.has(upper) ? upper : p;
}

/** A gateway before routes attach: listeners with the route kinds they allow. */
export interface GatewayDraft {
  readonly resource: Resource<'Gateway'>;
  readonly model: GatewayModel;
  readonly allowedKinds: ReadonlyMap<string, readonly string[]>;
}

export function compileGateways(index: ResourceIndex, analysis: AnalysisSink): GatewayDraft[] {
  const drafts: GatewayDraft[] = [];
  for (const gw of index.all('Gateway')) {
    const ns = gw.namespace!;
    const className = gw.spec.gatewayClassName;
    const cls = index.get('GatewayClass', undefined, className);
    let role: 'gateway' | 'waypoint' = own(BUILTIN_CLASSES, className) ?? 'gateway';
    const gwConditions: ConditionModel[] = [];
    if (cls) {
      if (!OUR_CONTROLLERS.has(cls.spec.controllerName)) {
        gwConditions.push(
          condition(
            'Accepted',
            false,
            'Pending',
            `GatewayClass ${className} belongs to controller ${cls.spec.controllerName}, not Trellis`,
          ),
        );
      }
      if (className.endsWith('waypoint')) role = 'waypoint';
    } else if (own(BUILTIN_CLASSES, className) === undefined) {
      analysis.add(
        'ReferencedResourceNotFound',
        keyOf(gw),
        `Referenced GatewayClass not found: ${JSON.stringify(className)} (built in: ${Object.keys(BUILTIN_CLASSES).join(', ')})`,
        'spec.gatewayClassName',
      );
      gwConditions.push(condition('Accepted', false, 'Pending', `GatewayClass ${className} not found`));
    }

    const allowedKinds = new Map<string, readonly string[]>();
    const listeners: ListenerModel[] = gw.spec.listeners.map((l, i) => {
      const conds: ConditionModel[] = [];
      const supported = own(PROTOCOL_ROUTE_KINDS, coreProtocol(l.protocol));
      if (supported === undefined) {
        conds.push(condition('Accepted', false, 'UnsupportedProtocol', `protocol ${l.protocol} is not supported`));
      }
      const requested = l.allowedRoutes?.kinds;
      let kinds: readonly string[] = supported ?? [];
      if (requested && requested.length > 0) {
        const ok = requested.filter(
          (k) => (k.group ?? 'gateway.networking.k8s.io') === 'gateway.networking.k8s.io' && kinds.includes(k.kind),
        );
        if (ok.length < requested.length) {
          conds.push(
            condition(
              'ResolvedRefs',
              false,
              'InvalidRouteKinds',
              `listener ${l.name} cannot serve ${requested
                .filter((k) => !ok.includes(k))
                .map((k) => k.kind)
                .join(', ')} over ${l.protocol}`,
            ),
          );
        }
        kinds = ok.map((k) => k.kind);
      }
      allowedKinds.set(l.name, kinds);
      const certificates: string[] = [];
      for (const [j, ref] of (l.tls?.certificateRefs ?? []).entries()) {
        const refNs = ref.namespace ?? ns;
        const kind = ref.kind ?? 'Secret';
        const field = `spec.listeners[${i}].tls.certificateRefs[${j}]`;
        if ((ref.group ?? '') !== '' || kind !== 'Secret') {
          conds.push(
            condition(
              'ResolvedRefs',
              false,
              'InvalidCertificateRef',
              `${field}: only core Secrets are supported, got ${kind}`,
            ),
          );
        } else if (
          !referenceAllowed(
            index,
            { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: ns },
            { group: '', kind: 'Secret', namespace: refNs, name: ref.name },
          )
        ) {
          conds.push(
            condition(
              'ResolvedRefs',
              false,
              'RefNotPermitted',
              `${field}: Secret ${refNs}/${ref.name} is in another namespace and no ReferenceGrant allows it`,
            ),
          );
        } else if (!index.get('Secret', refNs, ref.name)) {
          conds.push(
            condition(
              'ResolvedRefs',
              false,
              'InvalidCertificateRef',
              `${field}: Secret ${refNs}/${ref.name} not found`,
            ),
          );
        } else {
          certificates.push(`Secret/${refNs}/${ref.name}`);
        }
      }
      const m: { -readonly [K in keyof ListenerModel]: ListenerModel[K] } = {
        name: l.name,
        port: l.port,
        protocol: coreProtocol(l.protocol),
        certificates,
        attachedRoutes: 0,
        conditions: conds,
      };
      if (l.hostname !== undefined) m.hostname = l.hostname;
      if (l.tls?.mode !== undefined) m.tlsMode = l.tls.mode;
      return m;
    });
    detectConflicts(listeners);
    for (const [i, l] of listeners.entries()) {
      for (const c of l.conditions) {
        analysis.condition(c, keyOf(gw), `listener ${l.name}: ${c.message}`, `spec.listeners[${i}]`);
      }
    }
    drafts.push({
      resource: gw,
      allowedKinds,
      model: {
        id: `Gateway/${ns}/${gw.name}`,
        source: keyOf(gw),
        namespace: ns,
        name: gw.name,
        className,
        role,
        identity: '',
        listeners,
        conditions: gwConditions,
      },
    });
  }
  return drafts;
}

/** Same port with different protocols (ProtocolConflict), or same port+hostname (HostnameConflict). */
function detectConflicts(listeners: ListenerModel[]): void {
  for (let i = 0; i < listeners.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = listeners[i]!;
      const b = listeners[j]!;
      if (a.port !== b.port) continue;
      const compatible =
        (a.protocol === 'HTTPS' && b.protocol === 'TLS') || (a.protocol === 'TLS' && b.protocol === 'HTTPS');
      if (a.protocol !== b.protocol && !compatible) {
        (a.conditions as ConditionModel[]).push(
          condition(
            'Conflicted',
            true,
            'ProtocolConflict',
            `port ${a.port} is also used by listener ${b.name} with protocol ${b.protocol}`,
          ),
        );
      } else if ((a.hostname ?? '') === (b.hostname ?? '')) {
        (a.conditions as ConditionModel[]).push(
          condition(
            'Conflicted',
            true,
            'HostnameConflict',
            `port ${a.port} and hostname ${a.hostname ?? '(any)'} are also used by listener ${b.name}`,
          ),
        );
      }
    }
  }
}

/** Final GatewayModel with attached route counts and the Accepted/Programmed conditions. */
export function finishGateway(
  d: GatewayDraft,
  attachedCounts: ReadonlyMap<string, number>,
  mesh: Pick<MeshSpec, 'trustDomain' | 'nodes'>,
): GatewayModel {
  const listeners = d.model.listeners.map((l) => {
    // One condition of each upstream type, with the upstream reasons.
    const find = (type: string) => l.conditions.find((c) => c.type === type);
    const accepted = find('Accepted') ?? condition('Accepted', true, 'Accepted', 'listener accepted');
    const resolved = find('ResolvedRefs') ?? condition('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved');
    const conflicted = find('Conflicted') ?? condition('Conflicted', false, 'NoConflicts', 'no conflicts');
    const ok = accepted.status === 'True' && resolved.status === 'True' && conflicted.status === 'False';
    return {
      ...l,
      attachedRoutes: attachedCounts.get(`${d.model.id}/${l.name}`) ?? 0,
      conditions: [
        accepted,
        resolved,
        conflicted,
        condition('Programmed', ok, ok ? 'Programmed' : 'Invalid', ok ? 'listener ready' : 'listener not programmed'),
      ],
    };
  });
  const conditions = d.model.conditions.length
    ? d.model.conditions
    : [
        condition('Accepted', true, 'Accepted', 'accepted by Trellis'),
        condition('Programmed', true, 'Programmed', 'configuration compiled'),
      ];
  return { ...d.model, ...placement(d.resource, d.model, mesh), listeners, conditions };
}

/**
 * Where a gateway runs and who it is. Istio names a gateway's deployment (and service account)
 * "<name>-<class>", a waypoint's "<name>"; Trellis keeps those names so policies written for
 * Istio ("from waypoint") carry over.
 */
function placement(
  gw: Resource<'Gateway'>,
  m: GatewayModel,
  mesh: Pick<MeshSpec, 'trustDomain' | 'nodes'>,
): Pick<GatewayModel, 'node' | 'address' | 'identity'> {
  const sa =
    gw.metadata.annotations?.['trellis.dev/service-account'] ??
    (m.role === 'waypoint' ? m.name : `${m.name}-${m.className}`);
  const wanted = gw.metadata.annotations?.['trellis.dev/node'];
  const node =
    (wanted ? mesh.nodes?.find((n) => n.name === wanted) : undefined) ?? (wanted ? undefined : mesh.nodes?.[0]);
  const ip = gw.spec.addresses?.find((a) => (a.type ?? 'IPAddress') === 'IPAddress')?.value;
  const out: { node?: string; address?: string; identity: string } = {
    identity: `spiffe://${mesh.trustDomain}/ns/${m.namespace}/sa/${sa}`,
  };
  if (node) out.node = node.name;
  const address = ip ?? node?.address;
  if (address) out.address = address;
  return out;
}
