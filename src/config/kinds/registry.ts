// Every kind Trellis reads. Adding a kind = one module + one line here.
import { ciliumClusterwideNetworkPolicyKind, ciliumNetworkPolicyKind } from './cilium/cilium-network-policy.js';
import { backendTlsPolicyKind } from './gateway/backend-tls-policy.js';
import { gatewayClassKind } from './gateway/gateway-class.js';
import { gatewayKind } from './gateway/gateway.js';
import { grpcRouteKind } from './gateway/grpc-route.js';
import { httpRouteKind } from './gateway/http-route.js';
import { referenceGrantKind } from './gateway/reference-grant.js';
import { tcpRouteKind } from './gateway/tcp-route.js';
import { tlsRouteKind } from './gateway/tls-route.js';
import { authorizationPolicyKind } from './istio/authorization-policy.js';
import { destinationRuleKind } from './istio/destination-rule.js';
import { peerAuthenticationKind } from './istio/peer-authentication.js';
import { requestAuthenticationKind } from './istio/request-authentication.js';
import { serviceEntryKind } from './istio/service-entry.js';
import { virtualServiceKind } from './istio/virtual-service.js';
import { workloadEntryKind } from './istio/workload-entry.js';
import { workloadGroupKind } from './istio/workload-group.js';
import type { BodyOf, KindDefinition } from './kind.js';
import { namespaceKind } from './kubernetes/namespace.js';
import { networkPolicyKind } from './kubernetes/network-policy.js';
import { secretKind } from './kubernetes/secret.js';
import { serviceKind } from './kubernetes/service.js';
import { meshKind } from './trellis/mesh.js';
import { workloadKind } from './trellis/workload.js';

export const KINDS = [
  // Kubernetes core and networking
  namespaceKind,
  serviceKind,
  secretKind,
  networkPolicyKind,
  // Istio networking and security
  workloadEntryKind,
  workloadGroupKind,
  serviceEntryKind,
  virtualServiceKind,
  destinationRuleKind,
  peerAuthenticationKind,
  authorizationPolicyKind,
  requestAuthenticationKind,
  // Gateway API
  gatewayClassKind,
  gatewayKind,
  httpRouteKind,
  grpcRouteKind,
  tcpRouteKind,
  tlsRouteKind,
  backendTlsPolicyKind,
  referenceGrantKind,
  // Cilium
  ciliumNetworkPolicyKind,
  ciliumClusterwideNetworkPolicyKind,
  // Trellis' own, where no standard kind exists
  meshKind,
  workloadKind,
] as const;

type AnyKind = (typeof KINDS)[number];
export type KindName = AnyKind['kind'];
export type KindMap = { [D in AnyKind as D['kind']]: BodyOf<D> };

const byName = new Map<string, KindDefinition>(KINDS.map((k) => [k.kind, k as KindDefinition]));

export function kindByName(kind: string): KindDefinition | undefined {
  return byName.get(kind);
}

export function kindNames(): string[] {
  return [...byName.keys()];
}
