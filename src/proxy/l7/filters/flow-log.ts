// One L7 flow record per completed request of a gateway or waypoint (Hubble's L7 HTTP flows),
// handed to a sink that keeps it in the node's ring buffer. Never written to stdout: a write
// per request would cost throughput; the buffer is read on demand (GET /flows, trellis observe).
//
// Per request: a few columns written into the ring buffer (the request's own strings by
// reference, nothing allocated); the service name is interned per route config (waypoint) or
// cluster (gateway); the record object is built only when the buffer is read.
import type { RequestContext } from '../context.js';
import type { AccessLogRecord } from '../access-log.js';
import type { HttpFilter, HttpFilterFactory } from '../filter.js';
import { clusterHost } from '../../../observe/metrics-registry.js';
import type { Verdict } from '../../../observe/flows.js';
import type { FlowBuffer, L7FlowOrigin } from '../../../observe/flow-buffer.js';

export interface FlowLogFilterOptions {
  readonly node: string;
  readonly worker?: number;
  /** Which L7 role the engine plays: the record's observation point. */
  readonly role: 'waypoint' | 'gateway';
  /** The node's ring buffer (L7 records are stored there as columns). */
  readonly buffer: FlowBuffer;
}

/** Flags meaning the request never got an upstream answer: the proxy failed it (not the app). */
const ERROR_FLAGS = new Set(['UF', 'UH', 'NR', 'NC', 'UC', 'UR', 'UT', 'UPE', 'UO', 'DC']);

function verdictOf(r: AccessLogRecord): Verdict {
  if (r.status === 0) return 'ERROR';
  for (const f of r.responseFlags) {
    // The RBAC filter's local reply (and jwt_authn's, which also refuses by policy).
    if (f === 'RBAC' || f === 'UAEX') return 'DENIED';
    if (ERROR_FLAGS.has(f)) return 'ERROR';
  }
  return 'FORWARDED';
}

export function flowLogFilter(opts: FlowLogFilterOptions): HttpFilterFactory {
  const { node, worker, role, buffer } = opts;
  const origin: L7FlowOrigin = worker !== undefined ? { node, worker, role } : { node, role };
  // Interned across config versions (bounded by the route configs / clusters ever served).
  const services = new Map<string, string>();
  const serviceOf = (key: string): string => {
    let s = services.get(key);
    if (s === undefined) {
      // Waypoint route configs are "<host>:<port>"; a gateway's clusters "outbound|port|subset|host".
      s = role === 'waypoint' ? key : (clusterHost(key) ?? key);
      services.set(key, s);
    }
    return s;
  };
  return {
    name: 'trellis.flow_log',
    create(): HttpFilter {
      return {
        onComplete(ctx: RequestContext, r: AccessLogRecord): void {
          const key = role === 'waypoint' ? r.routeConfig : r.upstreamCluster;
          const verdict = verdictOf(r);
          const tp = ctx.headers.traceparent;
          buffer.pushL7(
            origin,
            verdict,
            r.startTime,
            r.durationMs,
            r.status,
            r.bytesSent,
            r.bytesReceived,
            r.responseFlags,
            r.method,
            r.path,
            r.peerIdentity,
            r.peerAddress,
            key !== undefined ? serviceOf(key) : undefined,
            r.upstreamHost,
            verdict !== 'FORWARDED' ? r.details : undefined,
            typeof tp === 'string' ? tp : undefined,
          );
        },
      };
    },
  };
}
