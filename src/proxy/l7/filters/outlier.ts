// Feeds outlier detection (cluster.ts / outlier-detection.ts) with the outcome of every upstream
// attempt, through the filter hooks: onUpstreamAttempt notes the host, onUpstreamFailure reports
// an attempt that failed before the response reached the client (5xx, reset, connect failure,
// timeout; the retried ones included), onComplete reports the final attempt (its status, or the
// local-origin failure its response flags tell). Circuit-breaker overflow (UO) and client aborts
// are not the host's fault and are not reported. Must come before a retry filter in the chain:
// the first filter that asks for a retry ends the onUpstreamFailure loop. Without any cluster
// with outlier_detection in the config, the filter has no hooks (no cost).
import type { ClusterState, HostState } from '../cluster.js';
import type { RequestContext } from '../context.js';
import type { HttpFilterFactory } from '../filter.js';

/** What the engine's request objects carry beyond RequestContext: the config version they run with. */
interface WithClusters {
  readonly config?: { readonly clusters?: ReadonlyMap<string, ClusterState> };
}

const KEY = Symbol('outlier');
const LOCAL_FAILURE_FLAGS = ['UF', 'UC', 'UR', 'UPE', 'UT'];

function attempted(ctx: RequestContext): [ClusterState, HostState] | undefined {
  return ctx.filterState.get(KEY) as [ClusterState, HostState] | undefined;
}

export const outlierFilter: HttpFilterFactory = {
  name: 'outlier',
  create({ config }) {
    const odClusters = new Set<string>();
    for (const [name, c] of config.clusters) if (c.outlier_detection) odClusters.add(name);
    if (odClusters.size === 0) return {};
    return {
      onUpstreamAttempt(ctx, a) {
        if (!odClusters.has(a.cluster)) return;
        const cluster = (ctx as unknown as WithClusters).config?.clusters?.get(a.cluster);
        const host = cluster?.outlier ? cluster.host(a.host) : undefined;
        if (!host) return;
        const prev = attempted(ctx);
        if (prev) {
          prev[0] = cluster!;
          prev[1] = host;
        } else {
          ctx.filterState.set(KEY, [cluster!, host]);
        }
      },
      onUpstreamFailure(ctx, f) {
        const at = attempted(ctx);
        if (!at) return false;
        ctx.filterState.delete(KEY);
        // An endpoint removed meanwhile is no longer the detector's business.
        if (at[1].stats.draining) return false;
        const od = at[0].outlier!;
        if (f.reason === 'status') od.reportStatus(at[1].stats, f.status ?? 503);
        else od.reportLocalFailure(at[1].stats, f.reason === 'timeout');
        return false;
      },
      onComplete(ctx, record) {
        if (record.upstreamCluster === undefined || !odClusters.has(record.upstreamCluster)) return;
        const at = attempted(ctx);
        if (!at) return;
        ctx.filterState.delete(KEY);
        const flags = record.responseFlags;
        if (flags.includes('UO') || at[1].stats.draining) return;
        const od = at[0].outlier!;
        for (const f of LOCAL_FAILURE_FLAGS) {
          if (flags.includes(f)) {
            od.reportLocalFailure(at[1].stats, f === 'UT');
            return;
          }
        }
        if (record.status >= 100) od.reportStatus(at[1].stats, record.status);
      },
    };
  },
};
