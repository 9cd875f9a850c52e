// The engine's input: Envoy v3 resources as JS objects, either in the form the translation
// builds (numbers, `{value: n}` wrappers) or decoded by proto-loader (int64s and durations as
// strings, enums as names). The readers (envoy/values.ts) accept both, so callers never normalise.
import { TrellisError } from '../../errors.js';
import type { EnvoyObject } from '../envoy/values.js';

export type { EnvoyObject } from '../envoy/values.js';
export { bool, durationMs, enumName, list, num, obj, oneof, str, strList } from '../envoy/values.js';

export interface L7Config {
  /** RouteConfiguration by name. */
  readonly routes: ReadonlyMap<string, EnvoyObject>;
  /** Cluster by name. */
  readonly clusters: ReadonlyMap<string, EnvoyObject>;
  /** ClusterLoadAssignment by EDS service name (eds_cluster_config.service_name, else the cluster name). */
  readonly endpoints: ReadonlyMap<string, EnvoyObject>;
}

/** A resource the engine cannot use; `update()` throws it and keeps the previous config (an xDS NACK). */
export class L7ConfigError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_INVALID_VALUE';
}
