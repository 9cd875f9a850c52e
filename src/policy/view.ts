// What policy check and replay evaluate against: the compiled model and the Listeners the node
// proxies are (or would be) served — so a verdict comes from exactly the RBAC filters a proxy
// enforces, whatever kind they were written as (AuthorizationPolicy, NetworkPolicy, Cilium...).
import { formatDiagnostic } from '../config/diagnostic.js';
import { loadPaths } from '../config/load.js';
import { UsageError } from '../errors.js';
import { compileModel } from '../model/compile.js';
import type { MeshModel } from '../model/mesh-model.js';
import type { EnvoyObject } from '../xds/translate/route-match.js';
import { TYPE_URLS } from '../xds/snapshot.js';
import { proxylessSnapshot } from '../xds/translate/proxyless.js';
import { SecurityIndex, policySpecsFromModel } from '../xds/translate/security.js';

export interface PolicyView {
  readonly model: MeshModel;
  /** Listener name -> Listener. */
  readonly listeners: ReadonlyMap<string, EnvoyObject>;
  /** Where it came from, for messages ("-f examples/shop", "the control plane at ..."). */
  readonly origin: string;
  /** PeerAuthentication / Mesh mTLS modes of workload ports. */
  readonly security: SecurityIndex;
}

export function viewOf(model: MeshModel, listeners: ReadonlyMap<string, EnvoyObject>, origin: string): PolicyView {
  return { model, listeners, origin, security: new SecurityIndex(model, policySpecsFromModel(model)) };
}

/** The view of manifests on disk; invalid manifests are a usage error listing the problems. */
export function viewFromPaths(paths: readonly string[], flag: string): PolicyView {
  const loaded = loadPaths(paths);
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    throw new UsageError(
      `${flag} ${paths.join(', ')}: ${errors.length} error(s):\n${errors
        .slice(0, 10)
        .map((d) => `  ${formatDiagnostic(d)}`)
        .join('\n')}`,
    );
  }
  const model = compileModel(loaded.resources);
  const listeners = new Map<string, EnvoyObject>();
  for (const [name, r] of proxylessSnapshot(model).resources(TYPE_URLS.listener)) listeners.set(name, r.body);
  return viewOf(model, listeners, `${flag} ${paths.join(', ')}`);
}
