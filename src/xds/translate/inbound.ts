// Server-side Listeners for xDS-enabled gRPC servers (gRFC A36, grpc-js-xds XdsServer).
//
// One Listener per workload address:port serving a mesh service port, named as the
// bootstrap's server_listener_resource_name_template expands it with the bindAsync string
// (Istio's "xds.istio.io/grpc/lds/inbound/%s"). As grpc-js-xds requires (xds-interop notes §4):
//   - address.socket_address equal to the bind host/port string-for-string;
//   - one filter chain WITHOUT filter_chain_match (an empty match has transport_protocol ""
//     and never matches), no listener_filters, no use_original_dst;
//   - exactly one filter, an HCM with an inline route_config whose routes use
//     non_forwarding_action, and http_filters [RBAC deny, RBAC allow, router];
//   - STRICT mTLS as a DownstreamTlsContext over the "default" certificate provider.
import { isIP } from 'node:net';
import type { ServiceModel, WorkloadModel } from '../../model/mesh-model.js';
import { TYPE_URLS, xdsResource, type XdsResource } from '../snapshot.js';
import { rbacFilters } from './rbac.js';
import type { EnvoyObject } from './route-match.js';
import { downstreamTls, type SecurityIndex } from './security.js';

export const SERVER_LISTENER_PREFIX = 'xds.istio.io/grpc/lds/inbound/';

const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

/** The string an XdsServer binds (IPv6 in brackets), as the name template receives it. */
export function bindAddress(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export function serverListenerName(ip: string, port: number): string {
  return SERVER_LISTENER_PREFIX + bindAddress(ip, port);
}

interface Inbound {
  readonly address: string;
  readonly port: number;
  readonly workloads: Set<string>;
  readonly services: Set<string>;
}

/** Every address:port a mesh workload serves a service port on (deduplicated, IP literals only). */
function inbounds(services: readonly ServiceModel[]): Inbound[] {
  const byKey = new Map<string, Inbound>();
  for (const svc of services) {
    if (svc.location === 'MESH_EXTERNAL') continue;
    for (const port of svc.ports) {
      if (port.transport !== 'TCP') continue;
      for (const e of svc.endpoints) {
        const p = e.ports[port.name];
        if (p === undefined || e.identity === '' || !isIP(e.address)) continue;
        const key = bindAddress(e.address, p);
        let entry = byKey.get(key);
        if (!entry)
          byKey.set(key, (entry = { address: e.address, port: p, workloads: new Set(), services: new Set() }));
        entry.workloads.add(e.workload);
        entry.services.add(svc.id);
      }
    }
  }
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
}

export function serverListeners(security: SecurityIndex): XdsResource[] {
  const model = security.model;
  const workloads = new Map<string, WorkloadModel>(model.workloads.map((w) => [w.id, w]));
  return inbounds(model.services).map((ib) => {
    const name = serverListenerName(ib.address, ib.port);
    const ws = [...ib.workloads].sort();
    const applied = security.authorizationPolicies(ws, [...ib.services].sort()).map((a) => ({
      namespace: a.binding.namespace ?? '',
      name: a.binding.source.name,
      spec: a.spec,
    }));
    // Several workloads on one address:port (unusual): the strictest mode wins.
    const modes = ws.map((id) => security.mtlsMode(workloads.get(id), ib.port));
    const strict = modes.includes('STRICT');
    const routeName = `inbound|${ib.port}`;
    const chain: EnvoyObject = {
      name: `inbound|${bindAddress(ib.address, ib.port)}`,
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': HCM_TYPE,
            stat_prefix: routeName,
            route_config: {
              name: routeName,
              virtual_hosts: [
                { name: routeName, domains: ['*'], routes: [{ match: { prefix: '' }, non_forwarding_action: {} }] },
              ],
            },
            http_filters: [
              ...rbacFilters(applied, model.mesh.trustDomain),
              { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
            ],
          },
        },
      ],
    };
    if (strict) chain.transport_socket = downstreamTls();
    return xdsResource(TYPE_URLS.listener, name, {
      name,
      address: { socket_address: { address: ib.address, port_value: ib.port } },
      filter_chains: [chain],
    });
  });
}
