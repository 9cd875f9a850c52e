// The compiled mesh model: what the resources mean once cross-referenced.
// Immutable and deterministic (every list sorted by a stable key), so the
// translation to xDS can be a pure function of it.
import type { ResourceKey } from '../config/diagnostic.js';
import type { MeshNode, MeshSpec } from '../config/kinds/trellis/mesh.js';
import type { GRPCRouteRule } from '../config/kinds/gateway/grpc-route.js';
import type { HTTPRouteRule } from '../config/kinds/gateway/http-route.js';
import type { TrafficPolicy } from '../config/kinds/istio/destination-rule.js';
import type { AuthorizationPolicySpec } from '../config/kinds/istio/authorization-policy.js';
import type { PeerAuthenticationSpec } from '../config/kinds/istio/peer-authentication.js';
import type { RequestAuthenticationSpec } from '../config/kinds/istio/request-authentication.js';
import type { NetworkPolicySpec } from '../config/kinds/kubernetes/network-policy.js';
import type { CiliumRule } from '../config/kinds/cilium/cilium-network-policy.js';
import type { HTTPRoute as IstioHttpRoute } from '../config/kinds/istio/virtual-service.js';

export type Protocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'HTTPS' | 'TLS' | 'TCP' | 'UDP' | 'MONGO' | 'REDIS' | 'MYSQL';

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

/** Something that runs and has an identity: a WorkloadEntry, or an inline ServiceEntry endpoint. */
export interface WorkloadModel {
  /** "WorkloadEntry/ns/name", or "ServiceEntry/ns/name#i" for inline endpoints. */
  readonly id: string;
  readonly source: ResourceKey;
  readonly namespace: string;
  readonly name: string;
  readonly address: string;
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
  /** spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> */
  readonly identity: string;
  readonly locality: Locality;
  readonly network: string;
  readonly weight: number;
  /** The Trellis node that runs it (trellis.dev Workload), if any. */
  readonly node?: string;
  /** argv `trellis up` starts it with. */
  readonly command?: readonly string[];
  readonly env?: readonly { readonly name: string; readonly value: string }[];
  readonly workingDir?: string;
  /** Local TCP ports its node listens on for it, one per mesh service it calls (trellis.dev Workload). */
  readonly upstreams?: readonly UpstreamModel[];
  /** The outbound proxy port its Workload pins (spec.outboundPort); otherwise one is derived from its id. */
  readonly outboundPort?: number;
  /** The readiness probe of its WorkloadGroup (see workload-groups.ts), if the group has one. */
  readonly probe?: HealthProbeModel;
}

/** A WorkloadGroup's readiness probe (Istio ReadinessProbe), with Istio's defaults applied. */
export interface HealthProbeModel {
  /** "WorkloadGroup/ns/name" */
  readonly group: string;
  readonly initialDelaySeconds: number;
  readonly timeoutSeconds: number;
  readonly periodSeconds: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
  readonly http?: {
    readonly path: string;
    readonly port: number;
    readonly host?: string;
    readonly scheme: 'HTTP' | 'HTTPS';
    readonly headers: readonly { readonly name: string; readonly value: string }[];
  };
  readonly tcp?: { readonly port: number };
  /** An exec probe: a proxy cannot run it (reported; not health-checked). */
  readonly exec?: true;
}

/** A local plain-TCP port for one destination (Consul Connect's upstreams / local_bind_port). */
export interface UpstreamModel {
  /** The destination service host name. */
  readonly host: string;
  /** The destination service port. */
  readonly port: number;
  readonly localAddress: string;
  readonly localPort: number;
}

export interface ServicePortModel {
  readonly name: string;
  readonly port: number;
  /** L7 protocol as Istio infers it: appProtocol, else the port-name prefix, else TCP. */
  readonly protocol: Protocol;
  readonly transport: 'TCP' | 'UDP' | 'SCTP';
  readonly targetPort: number | string;
  /** The readiness probe of the WorkloadGroup of this port's endpoints (health-checked by L7 engines). */
  readonly healthCheck?: HealthProbeModel;
}

export interface EndpointModel {
  readonly workload: string;
  readonly address: string;
  /** Endpoint port per service port name. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  /** SPIFFE ID; "" for endpoints of a MESH_EXTERNAL ServiceEntry (not mesh workloads). */
  readonly identity: string;
  readonly locality: Locality;
  readonly weight: number;
  readonly node?: string;
}

export interface ServiceModel {
  /** "Service/ns/name" or "ServiceEntry/ns/name/<host>". */
  readonly id: string;
  readonly source: ResourceKey;
  readonly namespace: string;
  readonly name: string;
  /** NAME.NAMESPACE.svc.<cluster domain>, or the ServiceEntry host. */
  readonly hostname: string;
  readonly origin: 'Service' | 'ServiceEntry';
  readonly location: 'MESH_INTERNAL' | 'MESH_EXTERNAL';
  readonly resolution: 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'DYNAMIC_DNS' | 'NONE';
  readonly addresses: readonly string[];
  readonly ports: readonly ServicePortModel[];
  readonly endpoints: readonly EndpointModel[];
  /** SPIFFE IDs of the endpoints (what a caller must see in the peer certificate). */
  readonly identities: readonly string[];
  /** Waypoint this service's traffic goes through (istio.io/use-waypoint), "Gateway/ns/name". */
  readonly waypoint?: string;
  readonly sessionAffinity: 'None' | 'ClientIP';
}

export interface ConditionModel {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
}

export interface ParentRefModel {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly sectionName?: string;
  readonly port?: number;
}

export interface RouteParentStatus {
  readonly parentRef: ParentRefModel;
  readonly controllerName: string;
  readonly conditions: readonly ConditionModel[];
}

export interface BackendModel {
  /** Service id in the model, when resolved. */
  readonly service?: string;
  readonly port?: number;
  readonly weight: number;
  /** DestinationRule subset (Istio routes). */
  readonly subset?: string;
  /** Where the reference is written, e.g. spec.rules[0].backendRefs[1]. */
  readonly field: string;
  readonly resolved: boolean;
}

export interface RouteRuleModel {
  readonly index: number;
  readonly name?: string;
  readonly backends: readonly BackendModel[];
  /** The validated rule as written (matches, filters, timeouts, retry), for translation to xDS. */
  readonly http?: HTTPRouteRule;
  readonly grpc?: GRPCRouteRule;
  /** The backends of the rule's RequestMirror filters, resolved like backendRefs (in filter order). */
  readonly mirrors?: readonly BackendModel[];
}

/** An HTTPRoute, GRPCRoute, TCPRoute or TLSRoute, attached to its parents. */
export interface RouteModel {
  readonly id: string;
  readonly source: ResourceKey;
  readonly kind: 'HTTPRoute' | 'GRPCRoute' | 'TCPRoute' | 'TLSRoute';
  readonly namespace: string;
  readonly hostnames: readonly string[];
  /** metadata.creationTimestamp (RFC 3339), when given: the first cross-route precedence tie-break. */
  readonly creationTimestamp?: string;
  readonly rules: readonly RouteRuleModel[];
  /** Parents it is accepted by: "Gateway/ns/name/<listener>" or "Service/ns/name" (mesh, GAMMA). */
  readonly attachedTo: readonly string[];
  readonly parents: readonly RouteParentStatus[];
}

export interface ListenerModel {
  readonly name: string;
  readonly port: number;
  readonly protocol: string;
  readonly hostname?: string;
  readonly tlsMode?: 'Terminate' | 'Passthrough';
  readonly certificates: readonly string[];
  readonly attachedRoutes: number;
  readonly conditions: readonly ConditionModel[];
}

export interface GatewayModel {
  readonly id: string;
  readonly source: ResourceKey;
  readonly namespace: string;
  readonly name: string;
  readonly className: string;
  /** "waypoint" for the istio-waypoint / trellis-waypoint classes, else "gateway". */
  readonly role: 'gateway' | 'waypoint';
  /** The Mesh node whose node process runs this gateway's L7 engine (annotation trellis.dev/node, else the first node). */
  readonly node?: string;
  /** Where it listens: spec.addresses[0] (an IPAddress), else its node's address. */
  readonly address?: string;
  /** Its SPIFFE ID: service account "<name>" for waypoints, "<name>-<class>" for gateways (Istio's deployment names). */
  readonly identity: string;
  readonly listeners: readonly ListenerModel[];
  readonly conditions: readonly ConditionModel[];
}

/** A VirtualService bound to the hosts it routes. */
export interface VirtualServiceModel {
  readonly id: string;
  readonly source: ResourceKey;
  readonly namespace: string;
  /** Fully qualified hosts it applies to. */
  readonly hosts: readonly string[];
  /** Services among those hosts. */
  readonly services: readonly string[];
  readonly gateways: readonly string[];
  readonly backends: readonly BackendModel[];
  /** The validated HTTP routes as written, for translation to xDS. */
  readonly http: readonly IstioHttpRoute[];
}

export interface DestinationRuleModel {
  readonly id: string;
  readonly source: ResourceKey;
  readonly namespace: string;
  readonly host: string;
  readonly service?: string;
  /** Subset name -> endpoint workload ids it selects. */
  readonly subsets: Readonly<Record<string, readonly string[]>>;
  readonly trafficPolicy?: TrafficPolicy;
  /** Subset name -> its own traffic policy, when it has one. */
  readonly subsetPolicies: Readonly<Record<string, TrafficPolicy>>;
}

export type PolicyKind =
  | 'AuthorizationPolicy'
  | 'PeerAuthentication'
  | 'RequestAuthentication'
  | 'NetworkPolicy'
  | 'CiliumNetworkPolicy'
  | 'CiliumClusterwideNetworkPolicy';

/** A policy and the workloads (or gateways/services) it applies to. */
export interface PolicyBindingModel {
  readonly id: string;
  readonly source: ResourceKey;
  readonly kind: PolicyKind;
  readonly namespace?: string;
  /** Mesh-wide (root namespace), namespace-wide, or selecting workloads. */
  readonly scope: 'mesh' | 'namespace' | 'workload' | 'target';
  readonly workloads: readonly string[];
  /** targetRef(s): "Gateway/ns/name" or "Service/ns/name". */
  readonly targets: readonly string[];
  /** Needs an L7 engine to enforce (HTTP attributes). */
  readonly needsL7: boolean;
  /** metadata.creationTimestamp (RFC 3339), when given: Istio's "oldest wins" among equal scopes. */
  readonly creationTimestamp?: string;
  /** The policy as written, for translation (RBAC, TLS modes). */
  readonly authorization?: AuthorizationPolicySpec;
  readonly peerAuthentication?: PeerAuthenticationSpec;
  readonly requestAuthentication?: RequestAuthenticationSpec;
  readonly networkPolicy?: NetworkPolicySpec;
  /** A Cilium policy's rules (spec then specs[]), each with its field path for naming. */
  readonly cilium?: readonly { readonly path: string; readonly rule: CiliumRule }[];
}

export interface IdentityModel {
  readonly spiffeId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly workloads: readonly string[];
}

export interface NodeModel {
  readonly name: string;
  readonly address: string;
  readonly locality: Locality;
  readonly ports: MeshNode['ports'];
  readonly workloads: readonly string[];
  /** SPIFFE IDs the node proxy holds certificates for (its workloads' and its gateways'). */
  readonly identities: readonly string[];
  /** Gateways and waypoints this node runs ("Gateway/ns/name"). */
  readonly gateways: readonly string[];
  /** Services with an endpoint on this node. */
  readonly services: readonly string[];
  /** Policies that bind a workload on this node. */
  readonly policies: readonly string[];
}

export interface ResourceStatusModel {
  readonly resource: ResourceKey;
  readonly conditions?: readonly ConditionModel[];
  readonly parents?: readonly RouteParentStatus[];
  readonly listeners?: readonly { readonly name: string; readonly conditions: readonly ConditionModel[] }[];
}

export type AnalysisLevel = 'Error' | 'Warning' | 'Info';

/** An istioctl-analyze-style message (IST0101 ReferencedResourceNotFound, ...). */
export interface AnalysisMessage {
  readonly code: string;
  readonly name: string;
  /** For Gateway API conditions: the condition's status (Accepted=False, Conflicted=True). */
  readonly status?: 'True' | 'False' | 'Unknown';
  readonly level: AnalysisLevel;
  readonly resource: ResourceKey;
  readonly field?: string;
  readonly message: string;
}

export interface MeshModel {
  readonly mesh: MeshSpec;
  readonly namespaces: readonly { readonly name: string; readonly labels: Readonly<Record<string, string>> }[];
  readonly workloads: readonly WorkloadModel[];
  readonly services: readonly ServiceModel[];
  readonly identities: readonly IdentityModel[];
  readonly gateways: readonly GatewayModel[];
  readonly routes: readonly RouteModel[];
  readonly virtualServices: readonly VirtualServiceModel[];
  readonly destinationRules: readonly DestinationRuleModel[];
  readonly policies: readonly PolicyBindingModel[];
  readonly nodes: readonly NodeModel[];
  readonly statuses: readonly ResourceStatusModel[];
  readonly analysis: readonly AnalysisMessage[];
}
