// envoy.filters.http.fault (envoy.extensions.filters.http.fault.v3.HTTPFault): delays and aborts
// injected before the request goes upstream. The configuration is the HCM filter's (when the
// embedder gives one per route configuration) or, per route, typed_per_filter_config
// 'envoy.filters.http.fault' on the route, virtual host or route configuration (most specific
// wins, replacing the listener's as in Envoy). Compiled once per config version.
//
// Envoy semantics kept: delay first, then abort; each with its own FractionalPercent (unset
// percentage = 0%, denominator HUNDRED by default); header-controlled faults
// (x-envoy-fault-delay-request / -abort-request / -abort-grpc-request, with the
// *-percentage headers capped by the configured numerator) when header_delay / header_abort
// are set; `headers` must all match; `upstream_cluster` restricts to routes to that cluster;
// max_active_faults caps concurrent faulted requests (unset: no limit). Aborts are local replies
// "fault filter abort" with flag FI; delays add flag DI.
import { L7ConfigError, durationMs, list, num, obj, str, type EnvoyObject, type L7Config } from '../config.js';
import type { LocalReply, RequestContext } from '../context.js';
import type { Exchange } from '../exchange.js';
import type { FilterResult, HttpFilterFactory } from '../filter.js';
import { joined } from '../headers.js';
import { fractionalPercent, headerMatcher, sampled, type RequestPredicate } from '../matchers.js';
import { allRoutes, perFilterConfig } from '../route-table.js';

export const FAULT_FILTER_NAME = 'envoy.filters.http.fault';

const DELAY_HEADER = 'x-envoy-fault-delay-request';
const DELAY_PERCENT_HEADER = 'x-envoy-fault-delay-request-percentage';
const ABORT_HEADER = 'x-envoy-fault-abort-request';
const ABORT_GRPC_HEADER = 'x-envoy-fault-abort-grpc-request';
const ABORT_PERCENT_HEADER = 'x-envoy-fault-abort-request-percentage';

interface CompiledFault {
  readonly delayMs: number | undefined;
  readonly delayFromHeader: boolean;
  readonly delayPercent: readonly [number, number];
  readonly abortHttp: number | undefined;
  readonly abortGrpc: number | undefined;
  readonly abortFromHeader: boolean;
  readonly abortPercent: readonly [number, number];
  readonly abortReply: LocalReply | undefined;
  readonly headers: readonly RequestPredicate[];
  readonly upstreamCluster: string | undefined;
  readonly maxActive: number | undefined;
}

const ZERO: readonly [number, number] = [0, 100];

function abortReply(http: number | undefined, grpc: number | undefined): LocalReply {
  return {
    // A gRPC-only abort: the HTTP status of a trailers-only gRPC response.
    status: http ?? 200,
    body: 'fault filter abort',
    flag: 'FI',
    details: 'fault_filter_abort',
    ...(grpc !== undefined ? { grpcStatus: grpc } : {}),
  };
}

function httpStatus(v: unknown, what: string): number | undefined {
  const n = num(v);
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || n < 200 || n >= 600) throw new L7ConfigError(`${what}: http_status ${n} is not 200-599`);
  return n;
}

/** HTTPFault -> compiled form; throws L7ConfigError for what Envoy would reject. */
export function compileFault(f: EnvoyObject): CompiledFault {
  const delay = obj(f.delay);
  const abort = obj(f.abort);
  let delayMs: number | undefined;
  let delayFromHeader = false;
  if (delay) {
    delayFromHeader = obj(delay.header_delay) !== undefined;
    if (!delayFromHeader) {
      delayMs = durationMs(delay.fixed_delay);
      if (delayMs === undefined || delayMs < 0)
        throw new L7ConfigError('fault delay needs fixed_delay (a non-negative duration) or header_delay');
    }
  }
  let abortHttp: number | undefined;
  let abortGrpc: number | undefined;
  let abortFromHeader = false;
  if (abort) {
    abortFromHeader = obj(abort.header_abort) !== undefined;
    // proto-loader (oneofs: true) names the member set in error_type.
    const member = str(abort.error_type);
    abortHttp = member === 'grpc_status' ? undefined : httpStatus(abort.http_status, 'fault abort');
    const g = member === 'http_status' ? undefined : num(abort.grpc_status);
    if (g !== undefined) {
      if (!Number.isInteger(g) || g < 0 || g > 16) throw new L7ConfigError(`fault abort: grpc_status ${g} is not 0-16`);
      abortGrpc = g;
    }
    if (!abortFromHeader && abortHttp === undefined && abortGrpc === undefined)
      throw new L7ConfigError('fault abort needs http_status, grpc_status or header_abort');
  }
  const max = num(f.max_active_faults);
  return {
    delayMs,
    delayFromHeader,
    delayPercent: delay ? fractionalPercent(delay.percentage, ZERO) : ZERO,
    abortHttp,
    abortGrpc,
    abortFromHeader,
    abortPercent: abort ? fractionalPercent(abort.percentage, ZERO) : ZERO,
    abortReply: abortHttp !== undefined || abortGrpc !== undefined ? abortReply(abortHttp, abortGrpc) : undefined,
    headers: list(f.headers).map(headerMatcher),
    upstreamCluster: str(f.upstream_cluster) || undefined,
    maxActive: max === undefined ? undefined : Math.max(0, Math.floor(max)),
  };
}

/** A header-given numerator, capped at the configured one (Envoy). */
function percentOf(ctx: RequestContext, header: string, configured: readonly [number, number]): boolean {
  let n = configured[0];
  const h = joined(ctx.headers[header]);
  if (h !== undefined) {
    const v = Number(h);
    if (Number.isInteger(v) && v >= 0) n = Math.min(n, v);
  }
  return sampled(n, configured[1]);
}

/** The cluster a route sends to, when it names one statically. */
function routeCluster(ctx: RequestContext): string | undefined {
  const a = ctx.route?.action;
  return a?.kind === 'cluster' ? str(a.raw.cluster) : undefined;
}

/**
 * The fault filter. `httpFiltersFor(routeConfig)`, when given, returns the HCM http_filters of
 * the chain that routes with that route configuration (the listener-level HTTPFault).
 */
export function faultFilter(httpFiltersFor?: (routeConfig: string) => readonly EnvoyObject[]): HttpFilterFactory {
  // Across config versions, as Envoy's active_faults gauge.
  let active = 0;
  const faulted = new WeakSet<RequestContext>();
  return {
    name: FAULT_FILTER_NAME,
    create({ config }: { config: L7Config }) {
      const listenerLevel = new Map<string, CompiledFault | undefined>();
      if (httpFiltersFor)
        for (const name of config.routes.keys()) {
          const hf = httpFiltersFor(name).find((f) => str(f.name) === FAULT_FILTER_NAME);
          const typed = obj(hf?.typed_config);
          listenerLevel.set(name, typed ? compileFault(typed) : undefined);
        }
      // Route object -> its fault (null: disabled for the route; absent: the listener's).
      const perRoute = new Map<EnvoyObject, CompiledFault | null>();
      for (const levels of allRoutes(config.routes)) {
        const c = perFilterConfig(levels, FAULT_FILTER_NAME);
        if (c === null) perRoute.set(levels.route, null);
        else if (c !== undefined) perRoute.set(levels.route, compileFault(c));
      }
      if (perRoute.size === 0 && ![...listenerLevel.values()].some((v) => v !== undefined)) return {};

      const inject = (ctx: RequestContext, f: CompiledFault): FilterResult => {
        if (f.upstreamCluster !== undefined && routeCluster(ctx) !== f.upstreamCluster) return undefined;
        for (const h of f.headers) if (!h(ctx as Exchange)) return undefined;
        if (f.maxActive !== undefined && active >= f.maxActive) return undefined;

        let delayMs = f.delayMs;
        if (f.delayFromHeader) {
          const h = joined(ctx.headers[DELAY_HEADER]);
          const v = h === undefined ? NaN : Number(h);
          delayMs = Number.isFinite(v) && v >= 0 ? v : undefined;
        }
        const delay = delayMs !== undefined && percentOf(ctx, DELAY_PERCENT_HEADER, f.delayPercent);

        let reply = f.abortReply;
        if (f.abortFromHeader) {
          const http = Number(joined(ctx.headers[ABORT_HEADER]));
          const grpc = Number(joined(ctx.headers[ABORT_GRPC_HEADER]));
          const okHttp = Number.isInteger(http) && http >= 200 && http < 600;
          const okGrpc = Number.isInteger(grpc) && grpc >= 0 && grpc <= 16;
          reply = okHttp || okGrpc ? abortReply(okHttp ? http : undefined, okGrpc ? grpc : undefined) : undefined;
        }
        const abort = reply !== undefined && percentOf(ctx, ABORT_PERCENT_HEADER, f.abortPercent);
        if (!delay && !abort) return undefined;

        active++;
        faulted.add(ctx);
        if (!delay) return reply;
        ctx.addResponseFlag('DI');
        const after = abort ? reply : undefined;
        return new Promise<LocalReply | undefined>((resolve) => setTimeout(() => resolve(after), delayMs));
      };

      return {
        onRequest(ctx) {
          const route = ctx.route;
          if (!route) return undefined;
          const own = perRoute.get(route.raw);
          const f = own === undefined ? listenerLevel.get(ctx.routeConfig) : own;
          return f ? inject(ctx, f) : undefined;
        },
        onComplete(ctx) {
          if (faulted.has(ctx)) {
            faulted.delete(ctx);
            active--;
          }
        },
      };
    },
  };
}
