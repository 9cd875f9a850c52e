// Kinds users may paste from the same ecosystem that Trellis deliberately does not read,
// with what to use instead. Keyed by "group/Kind" ("" group for core).
export const UNSUPPORTED_KINDS: Readonly<Record<string, string>> = {
  'networking.istio.io/Gateway':
    "Istio's Gateway is not read; use the Gateway API kind (apiVersion gateway.networking.k8s.io/v1, kind Gateway) with HTTPRoutes",
  'networking.istio.io/Sidecar': 'Trellis runs no sidecars (ambient model); Sidecar has no effect and is not read',
  'networking.istio.io/EnvoyFilter':
    'EnvoyFilter patches Envoy internals and is not read; express the behaviour with routes and policies',
  'networking.istio.io/ProxyConfig': 'ProxyConfig is not read',
  'telemetry.istio.io/Telemetry': 'Telemetry is not read yet',
  'networking.k8s.io/Ingress': 'Ingress is not read; use a Gateway API Gateway and HTTPRoute',
  'apps/Deployment':
    'Trellis does not run Kubernetes workloads; describe a workload with networking.istio.io/v1 WorkloadEntry (and trellis.dev/v1alpha1 Workload for its node and command)',
  '/Pod': 'Trellis does not run pods; describe a workload with networking.istio.io/v1 WorkloadEntry',
  '/Endpoints': 'Endpoints are computed by Trellis from Service selectors over WorkloadEntries',
  'discovery.k8s.io/EndpointSlice':
    'EndpointSlices are computed by Trellis from Service selectors over WorkloadEntries',
  'kind.x-k8s.io/Cluster': 'this is a kind (Kubernetes in Docker) cluster configuration, not a mesh resource',
};

const CALICO =
  'Calico resources are not read; use networking.k8s.io/v1 NetworkPolicy or cilium.io/v2 CiliumNetworkPolicy';

export function unsupportedAdvice(group: string, kind: string): string | undefined {
  if (group === 'projectcalico.org' || group === 'crd.projectcalico.org') return CALICO;
  return UNSUPPORTED_KINDS[`${group}/${kind}`];
}
