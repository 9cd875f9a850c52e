// Which security settings apply where: the effective mTLS mode of a workload port (Mesh
// default, PeerAuthentication mesh/namespace/workload/port level, Istio's precedence), the
// AuthorizationPolicies that apply to a server, and the TLS contexts grpc-js-xds understands
// (certificate_provider_instance, xds-interop notes §4).
//
// The compiled model binds policies to workloads but does not carry their specs; the specs
// come in through PolicySpecs (built from the validated resources). Without a spec, a bound
// policy fails closed: an AuthorizationPolicy denies everything, a PeerAuthentication is STRICT.
import type { Resource } from '../../config/resource.js';
import type { MeshModel, PolicyBindingModel, WorkloadModel } from '../../model/mesh-model.js';
import type { EnvoyObject } from './route-match.js';

export type AuthorizationPolicySpec = Resource<'AuthorizationPolicy'>['spec'];
export type PeerAuthenticationSpec = Resource<'PeerAuthentication'>['spec'];
export type RequestAuthenticationSpec = Resource<'RequestAuthentication'>['spec'];
export type EffectiveMtls = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** Policy specs by binding id ("AuthorizationPolicy/ns/name", "PeerAuthentication/ns/name"). */
export interface PolicySpecs {
  readonly authorization: ReadonlyMap<string, AuthorizationPolicySpec>;
  readonly peerAuthentication: ReadonlyMap<string, PeerAuthenticationSpec>;
  /** "RequestAuthentication/ns/name" -> spec (optional: older callers build PolicySpecs without it). */
  readonly requestAuthentication?: ReadonlyMap<string, RequestAuthenticationSpec>;
}

/** The policies the model binds, with their specs (what the control plane translates from). */
export function policySpecsFromModel(model: MeshModel): PolicySpecs {
  const authorization = new Map<string, AuthorizationPolicySpec>();
  const peerAuthentication = new Map<string, PeerAuthenticationSpec>();
  const requestAuthentication = new Map<string, RequestAuthenticationSpec>();
  for (const p of model.policies) {
    if (p.authorization) authorization.set(p.id, p.authorization);
    if (p.peerAuthentication) peerAuthentication.set(p.id, p.peerAuthentication);
    if (p.requestAuthentication) requestAuthentication.set(p.id, p.requestAuthentication);
  }
  return { authorization, peerAuthentication, requestAuthentication };
}

export function policySpecsFromResources(resources: readonly Resource[]): PolicySpecs {
  const authorization = new Map<string, AuthorizationPolicySpec>();
  const peerAuthentication = new Map<string, PeerAuthenticationSpec>();
  const requestAuthentication = new Map<string, RequestAuthenticationSpec>();
  for (const r of resources) {
    if (r.kind === 'AuthorizationPolicy') authorization.set(`AuthorizationPolicy/${r.namespace}/${r.name}`, r.spec);
    else if (r.kind === 'PeerAuthentication')
      peerAuthentication.set(`PeerAuthentication/${r.namespace}/${r.name}`, r.spec);
    else if (r.kind === 'RequestAuthentication')
      requestAuthentication.set(`RequestAuthentication/${r.namespace}/${r.name}`, r.spec);
  }
  return { authorization, peerAuthentication, requestAuthentication };
}

export const TLS_SOCKET = 'envoy.transport_sockets.tls';
export const DOWNSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
export const UPSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
/** The certificate provider instance grpcBootstrap() declares (file_watcher over the SVID files). */
export const CERT_PROVIDER_INSTANCE = 'default';

const RANK: Readonly<Record<PolicyBindingModel['scope'], number>> = { workload: 3, namespace: 2, mesh: 1, target: 0 };

export class SecurityIndex {
  readonly #model: MeshModel;
  readonly #specs: PolicySpecs | undefined;
  /** Workload id -> PeerAuthentication bindings, most specific first. */
  readonly #peerAuthn = new Map<string, PolicyBindingModel[]>();
  readonly #authz = new Map<string, PolicyBindingModel[]>();
  readonly #authzByTarget = new Map<string, PolicyBindingModel[]>();

  constructor(model: MeshModel, specs: PolicySpecs | undefined) {
    this.#model = model;
    this.#specs = specs;
    for (const p of model.policies) {
      if (p.kind === 'PeerAuthentication') {
        for (const w of p.workloads) push(this.#peerAuthn, w, p);
      } else if (p.kind === 'AuthorizationPolicy') {
        if (p.scope === 'target') for (const t of p.targets) push(this.#authzByTarget, t, p);
        else for (const w of p.workloads) push(this.#authz, w, p);
      }
    }
    // Istio: the most specific scope wins; among equals, the oldest (creationTimestamp), then by
    // name and namespace as Istio's sortConfigByCreationTime does.
    for (const list of this.#peerAuthn.values()) list.sort((a, b) => RANK[b.scope] - RANK[a.scope] || olderFirst(a, b));
  }

  get model(): MeshModel {
    return this.#model;
  }

  /** The spec of a bound RequestAuthentication (undefined when the specs do not carry it). */
  requestAuthenticationSpec(id: string): RequestAuthenticationSpec | undefined {
    return this.#specs?.requestAuthentication?.get(id);
  }

  /** The mTLS mode a workload's server port runs with (Istio's PeerAuthentication inheritance). */
  mtlsMode(workload: WorkloadModel | undefined, targetPort: number): EffectiveMtls {
    const mesh = this.#model.mesh.mtls.mode;
    if (!workload) return mesh;
    // The first binding per scope counts; UNSET falls through to the wider scope.
    const seen = new Set<string>();
    for (const b of this.#peerAuthn.get(workload.id) ?? []) {
      if (seen.has(b.scope)) continue;
      seen.add(b.scope);
      const spec = this.#specs?.peerAuthentication.get(b.id);
      if (!this.#specs || !spec) return 'STRICT'; // bound but unknown: fail closed
      const port = b.scope === 'workload' ? spec.portLevelMtls?.[String(targetPort)]?.mode : undefined;
      const mode = port && port !== 'UNSET' ? port : spec.mtls?.mode;
      if (mode && mode !== 'UNSET') return mode;
    }
    return mesh;
  }

  /** AuthorizationPolicies on a workload (selector, namespace, mesh) or on a Service it serves (targetRefs). */
  authorizationPolicies(
    workloadIds: readonly string[],
    serviceIds: readonly string[],
  ): { binding: PolicyBindingModel; spec: AuthorizationPolicySpec | undefined }[] {
    const found = new Map<string, PolicyBindingModel>();
    for (const w of workloadIds) for (const b of this.#authz.get(w) ?? []) found.set(b.id, b);
    for (const s of serviceIds) for (const b of this.#authzByTarget.get(s) ?? []) found.set(b.id, b);
    return [...found.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((binding) => ({ binding, spec: this.#specs?.authorization.get(binding.id) }));
  }
}

/**
 * Oldest creationTimestamp first; policies without one (written in files, never stored by an API
 * server) after those with; then name, namespace.
 */
function olderFirst(a: PolicyBindingModel, b: PolicyBindingModel): number {
  const ta = a.creationTimestamp !== undefined ? Date.parse(a.creationTimestamp) : NaN;
  const tb = b.creationTimestamp !== undefined ? Date.parse(b.creationTimestamp) : NaN;
  if (!Number.isNaN(ta) && !Number.isNaN(tb) && ta !== tb) return ta - tb;
  if (Number.isNaN(ta) !== Number.isNaN(tb)) return Number.isNaN(ta) ? 1 : -1;
  const byName = cmp(a.source.name, b.source.name);
  return byName || cmp(a.namespace ?? '', b.namespace ?? '') || cmp(a.id, b.id);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

const provider = { instance_name: CERT_PROVIDER_INSTANCE };

/** Server side of STRICT mTLS: our SVID, the peer's certificate required and checked against the bundle. */
export function downstreamTls(): EnvoyObject {
  return {
    name: TLS_SOCKET,
    typed_config: {
      '@type': DOWNSTREAM_TLS_TYPE,
      common_tls_context: {
        tls_certificate_provider_instance: provider,
        validation_context: { ca_certificate_provider_instance: provider },
      },
      require_client_certificate: { value: true },
    },
  };
}

/** Client side: our SVID for the server, and the server must present one of the service's SPIFFE IDs. */
export function upstreamTls(identities: readonly string[]): EnvoyObject {
  const ids = [...new Set(identities)].sort();
  return {
    name: TLS_SOCKET,
    typed_config: {
      '@type': UPSTREAM_TLS_TYPE,
      common_tls_context: {
        tls_certificate_provider_instance: provider,
        validation_context: {
          ca_certificate_provider_instance: provider,
          // grpc-js-xds reads match_subject_alt_names; Envoy prefers the typed form (URI SANs only).
          match_subject_alt_names: ids.map((exact) => ({ exact })),
          match_typed_subject_alt_names: ids.map((exact) => ({ san_type: 'URI', matcher: { exact } })),
        },
      },
    },
  };
}
