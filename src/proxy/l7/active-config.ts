// One compiled config version: what update() builds and swaps in with a single assignment.
// Requests capture the version they started with, so an update never changes a request midway.
import type { ClusterState } from './cluster.js';
import type { L7Config, EnvoyObject } from './config.js';
import { FilterChain, type HttpFilterFactory } from './filter.js';
import { RouteTable } from './route-table.js';

export interface ActiveConfig {
  readonly source: L7Config;
  readonly routeTables: ReadonlyMap<string, RouteTable>;
  readonly clusters: ReadonlyMap<string, ClusterState>;
  readonly chain: FilterChain;
}

/** Route tables by resource object: an xDS client that keeps unchanged resources' objects skips recompiling them. */
const tableCache = new WeakMap<EnvoyObject, RouteTable>();

export function compileRouteTables(routes: ReadonlyMap<string, EnvoyObject>): Map<string, RouteTable> {
  const out = new Map<string, RouteTable>();
  for (const [name, rc] of routes) {
    let table = tableCache.get(rc);
    if (!table) {
      table = new RouteTable(rc);
      tableCache.set(rc, table);
    }
    out.set(name, table);
  }
  return out;
}

export function compileFilters(
  factories: readonly HttpFilterFactory[],
  config: L7Config,
  identity: string | undefined,
): FilterChain {
  return new FilterChain(factories.map((f) => f.create({ config, identity })));
}
