// A cluster's endpoints as every data-plane component reads them: the load assignment that
// applies (EDS by service name, else inline), and the lowest priority level that has a usable
// endpoint (UNHEALTHY, DRAINING and TIMEOUT are not). One reading for the L7 engine's cluster
// manager and the node proxy's resolver.
import { enumName, list, num, obj, str, type EnvoyObject } from './values.js';

const HEALTH = ['UNKNOWN', 'HEALTHY', 'UNHEALTHY', 'DRAINING', 'TIMEOUT', 'DEGRADED'];
const UNUSABLE = new Set(['UNHEALTHY', 'DRAINING', 'TIMEOUT']);

export interface UsableEndpoint {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** The LbEndpoint (metadata, health). */
  readonly endpoint: EnvoyObject;
  /** Index of its LocalityLbEndpoints in the assignment (which locality it is in). */
  readonly locality: number;
  /** That locality's load_balancing_weight (0 when unset: the locality takes no weighted share). */
  readonly localityWeight: number;
}

/** EDS: the assignment named by eds_cluster_config.service_name (else the cluster name); others: load_assignment. */
export function loadAssignmentOf(
  name: string,
  cluster: EnvoyObject,
  endpoints: ReadonlyMap<string, EnvoyObject>,
): EnvoyObject | undefined {
  const type =
    str(cluster.type) ??
    (typeof cluster.type === 'number' ? ['STATIC', 'STRICT_DNS', 'LOGICAL_DNS', 'EDS'][cluster.type] : undefined);
  if (type === 'EDS' || (cluster.eds_cluster_config !== undefined && cluster.eds_cluster_config !== null)) {
    return endpoints.get(str(obj(cluster.eds_cluster_config)?.service_name) || name);
  }
  return obj(cluster.load_assignment);
}

/** Every usable endpoint by priority level, levels in ascending priority (empty levels left out). */
export function usableEndpointsByPriority(
  cla: EnvoyObject | undefined,
): { readonly priority: number; readonly endpoints: UsableEndpoint[] }[] {
  const byPriority = new Map<number, UsableEndpoint[]>();
  for (const [locality, group] of list(cla?.endpoints).entries()) {
    const priority = num(group.priority) ?? 0;
    const localityWeight = num(group.load_balancing_weight) ?? 0;
    for (const lbe of list(group.lb_endpoints)) {
      if (UNUSABLE.has(enumName(lbe.health_status, HEALTH) ?? '')) continue;
      const sa = obj(obj(obj(lbe.endpoint)?.address)?.socket_address);
      const address = str(sa?.address);
      const port = num(sa?.port_value);
      if (!address || port === undefined) continue;
      let level = byPriority.get(priority);
      if (!level) byPriority.set(priority, (level = []));
      level.push({
        address,
        port,
        weight: Math.max(1, num(lbe.load_balancing_weight) ?? 1),
        endpoint: lbe,
        locality,
        localityWeight,
      });
    }
  }
  return [...byPriority].sort((a, b) => a[0] - b[0]).map(([priority, endpoints]) => ({ priority, endpoints }));
}

/** The usable endpoints of the lowest priority that has one (no overprovisioning spill). */
export function usableEndpoints(cla: EnvoyObject | undefined): UsableEndpoint[] {
  return usableEndpointsByPriority(cla)[0]?.endpoints ?? [];
}
