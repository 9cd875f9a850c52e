// Access logs: one JSON line per request from a gateway or waypoint, with the keys of Envoy's
// default JSON access log format (Istio's MeshConfig accessLogEncoding: JSON), built from the
// AccessLogRecord the engine makes when a stream is done. Which keys appear is chosen once
// (`trellis node --access-log-fields`); each key is a precompiled getter, so a request costs one
// small object and one JSON.stringify. Nothing is registered when access logging is off.
import type { RequestContext } from '../context.js';
import type { AccessLogRecord } from '../access-log.js';
import type { HttpFilter, HttpFilterFactory } from '../filter.js';
import { first, type HeaderMap } from '../headers.js';

type Getter = (ctx: RequestContext, r: AccessLogRecord, proxy: string) => unknown;

/** Envoy's %UPSTREAM_SERVICE_TIME%: last upstream attempt start to response headers, per request. */
const ATTEMPT_START = Symbol('access-log.attempt-start');
const SERVICE_TIME = Symbol('access-log.service-time');

/** Flags of a response that did not come from upstream (the local reply after a failed attempt). */
const UPSTREAM_FAILED = new Set(['UF', 'UC', 'UR', 'UT', 'UPE', 'UO', 'UH']);

const TRACEPARENT_RE = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/;

function header(h: HeaderMap, name: string): string | null {
  return first(h[name]) ?? null;
}

/** Envoy prints "-" for an absent value in text logs and null in JSON; JSON it is. */
const GETTERS = {
  start_time: (_c, r) => new Date(r.startTime).toISOString(),
  method: (_c, r) => r.method,
  path: (_c, r) => r.path,
  protocol: (_c, r) => r.protocol,
  response_code: (_c, r) => r.status,
  response_flags: (_c, r) => (r.responseFlags.length > 0 ? r.responseFlags.join(',') : '-'),
  response_code_details: (_c, r) => r.details ?? null,
  grpc_status: (_c, r) => r.grpcStatus ?? null,
  bytes_received: (_c, r) => r.bytesReceived,
  bytes_sent: (_c, r) => r.bytesSent,
  duration: (_c, r) => Math.round(r.durationMs),
  upstream_service_time: (c, r) =>
    r.responseFlags.some((f) => UPSTREAM_FAILED.has(f))
      ? null
      : ((c.filterState.get(SERVICE_TIME) as number | undefined) ?? null),
  x_forwarded_for: (c) => header(c.headers, 'x-forwarded-for'),
  user_agent: (c) => header(c.headers, 'user-agent'),
  request_id: (_c, r) => r.requestId,
  authority: (_c, r) => r.authority,
  upstream_host: (_c, r) => r.upstreamHost ?? null,
  upstream_cluster: (_c, r) => r.upstreamCluster ?? null,
  downstream_remote_address: (_c, r) => r.peerAddress ?? null,
  // Envoy's %DOWNSTREAM_PEER_URI_SAN%: the caller's SPIFFE ID (mTLS / HBONE), Istio's source.principal.
  downstream_peer_uri_san: (_c, r) => r.peerIdentity ?? null,
  route_name: (_c, r) => r.routeName ?? null,
  // Envoy's %TRACE_ID%: from the traceparent the tracing filter forwarded, when there is one.
  trace_id: (c) => {
    const tp = first(c.headers.traceparent);
    return (tp && TRACEPARENT_RE.exec(tp)?.[1]) ?? null;
  },
  // Not an Envoy key: which gateway or waypoint wrote the line, since every proxy of a node (and
  // every node of `trellis up`) may share one file, where Envoy would have one per pod.
  proxy: (_c, _r, p) => p,
} satisfies Record<string, Getter>;

export type AccessLogField = keyof typeof GETTERS;
export const ACCESS_LOG_FIELDS = Object.keys(GETTERS) as readonly AccessLogField[];

export function isAccessLogField(s: string): s is AccessLogField {
  return Object.hasOwn(GETTERS, s);
}

export interface AccessLogFilterOptions {
  /** Receives each line (JSON, no newline); e.g. AccessLogWriter.write. */
  readonly sink: (line: string) => unknown;
  /** Keys to log, in this order; default all of ACCESS_LOG_FIELDS. */
  readonly fields?: readonly AccessLogField[];
  /** "gateway/<name>" or "waypoint/<name>", for the `proxy` key. */
  readonly proxy: string;
}

export function accessLogFilter(opts: AccessLogFilterOptions): HttpFilterFactory {
  const fields = opts.fields ?? ACCESS_LOG_FIELDS;
  const getters = fields.map((f) => [f, GETTERS[f] as Getter] as const);
  const { sink, proxy } = opts;
  // The upstream service time needs two more hooks per request: only when it is asked for.
  const serviceTime = fields.includes('upstream_service_time');
  const filter: HttpFilter = {
    onComplete(ctx, record) {
      const line: Record<string, unknown> = {};
      for (const [k, get] of getters) line[k] = get(ctx, record, proxy);
      sink(JSON.stringify(line));
    },
  };
  if (serviceTime) {
    filter.onUpstreamAttempt = (ctx) => {
      ctx.filterState.set(ATTEMPT_START, performance.now());
      ctx.filterState.delete(SERVICE_TIME);
    };
    filter.onResponseHeaders = (ctx) => {
      const t = ctx.filterState.get(ATTEMPT_START) as number | undefined;
      // A local reply has no attempt start; one after a failed attempt is excluded by its flag.
      if (t !== undefined && !ctx.filterState.has(SERVICE_TIME))
        ctx.filterState.set(SERVICE_TIME, Math.round(performance.now() - t));
    };
  }
  return { name: 'trellis.access_log', create: () => filter };
}
