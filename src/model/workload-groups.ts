// WorkloadGroups -> the readiness probe each WorkloadEntry gets. Pure.
//
// Membership: Istio's auto-registered entries carry the annotation istio.io/autoRegistrationGroup
// (the group's name); for a statically declared entry, Trellis' rule: a WorkloadGroup in the same
// namespace whose spec.metadata.labels are all present on the entry's labels (a group without
// labels claims no static entry). Several groups: the annotation wins, else the first by name.
import { keyOf, type Resource } from '../config/resource.js';
import { AUTO_REGISTRATION_GROUP, PROBE_DEFAULTS } from '../config/kinds/istio/workload-group.js';
import type { AnalysisSink } from './analysis.js';
import type { HealthProbeModel } from './mesh-model.js';
import type { ResourceIndex } from './resource-index.js';
import { matchesLabels } from './selectors.js';

/** The group's probe with Istio's defaults applied (0 means the default), or undefined without one. */
export function probeModel(group: Resource<'WorkloadGroup'>): HealthProbeModel | undefined {
  const p = group.spec.probe;
  if (!p) return undefined;
  const or = (v: number | undefined, d: number) => (v === undefined || v === 0 ? d : v);
  const base = {
    group: `WorkloadGroup/${group.namespace!}/${group.name}`,
    initialDelaySeconds: p.initialDelaySeconds ?? 0,
    timeoutSeconds: or(p.timeoutSeconds, PROBE_DEFAULTS.timeoutSeconds),
    periodSeconds: or(p.periodSeconds, PROBE_DEFAULTS.periodSeconds),
    successThreshold: or(p.successThreshold, PROBE_DEFAULTS.successThreshold),
    failureThreshold: or(p.failureThreshold, PROBE_DEFAULTS.failureThreshold),
  };
  if (p.httpGet) {
    const h = p.httpGet;
    const http: {
      -readonly [K in keyof NonNullable<HealthProbeModel['http']>]: NonNullable<HealthProbeModel['http']>[K];
    } = {
      path: h.path || '/',
      port: h.port,
      scheme: h.scheme === 'HTTPS' ? 'HTTPS' : 'HTTP',
      headers: (h.httpHeaders ?? []).map((x) => ({ name: x.name, value: x.value ?? '' })),
    };
    if (h.host) http.host = h.host;
    return { ...base, http };
  }
  if (p.tcpSocket) return { ...base, tcp: { port: p.tcpSocket.port } };
  return { ...base, exec: true };
}

/** Warnings for probes a proxy cannot run (exec; HTTPS). */
export function checkWorkloadGroups(index: ResourceIndex, analysis: AnalysisSink): void {
  for (const g of index.all('WorkloadGroup')) {
    const p = g.spec.probe;
    if (p?.exec) {
      analysis.add(
        'UnsupportedProbe',
        keyOf(g),
        'an exec probe runs on the workload itself and cannot be performed by a proxy; its endpoints are not health-checked',
        'spec.probe.exec',
      );
    } else if (p?.httpGet?.scheme === 'HTTPS') {
      analysis.add(
        'UnsupportedProbe',
        keyOf(g),
        'an HTTPS probe is not supported by the L7 engine (it checks over the mesh connection in plain HTTP); its endpoints are not health-checked',
        'spec.probe.httpGet.scheme',
      );
    }
  }
}

/** The group a WorkloadEntry belongs to, if any. */
export function groupOf(index: ResourceIndex, we: Resource<'WorkloadEntry'>): Resource<'WorkloadGroup'> | undefined {
  const ns = we.namespace!;
  const named = we.metadata.annotations?.[AUTO_REGISTRATION_GROUP];
  if (named !== undefined) {
    const g = index.get('WorkloadGroup', ns, named);
    if (g) return g;
  }
  const labels = { ...(we.spec.labels ?? {}), ...(we.metadata.labels ?? {}) };
  for (const g of index.all('WorkloadGroup')) {
    if (g.namespace !== ns) continue;
    const want = g.spec.metadata?.labels;
    if (!want || Object.keys(want).length === 0) continue;
    if (matchesLabels(want, labels)) return g;
  }
  return undefined;
}
