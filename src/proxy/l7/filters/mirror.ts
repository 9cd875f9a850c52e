// RouteAction.request_mirror_policies (Envoy's shadowing): a copy of the request goes to each
// policy's cluster (`cluster`, or the cluster named by `cluster_header`), sampled by
// runtime_fraction.default_value (FractionalPercent; unset: every request). The copy's
// :authority/Host gets "-shadow" appended to the host part ("svc:8080" -> "svc-shadow:8080"),
// unless disable_shadow_host_suffix_append. The shadow's response is read and dropped; it never
// delays or fails the main request (fire and forget, bounded by the route timeout, else 15 s).
//
// Bodies: the primary streams its body upstream as always; the filter only taps the chunks as
// the router reads them (never reading ahead, so the primary is not delayed) into a copy of at
// most MAX_SHADOW_BODY bytes, and sends the shadows once the body has ended. A larger body (or a
// request that never finishes) is not mirrored: counted in `skippedWithBody`.
//
// Put this filter last in the chain: the copy carries the request as the router will send it
// (header mutations applied, prefix/regex rewrite and host_rewrite_literal of the route), and a
// request another filter answers locally is not mirrored (Envoy shadows from the router).
import { L7ConfigError, bool, list, obj, str, type EnvoyObject } from '../config.js';
import type { RequestContext } from '../context.js';
import type { Exchange } from '../exchange.js';
import type { HttpFilterFactory } from '../filter.js';
import type { HeaderMap } from '../headers.js';
import { fractionalPercent, sampled } from '../matchers.js';
import type { HostState } from '../cluster.js';
import type { UpstreamHandlers, UpstreamSource } from '../upstream-pool.js';
import type { ClusterAction } from '../route-table.js';
import { Readable } from 'node:stream';

export const MIRROR_FILTER_NAME = 'trellis.request_mirror';

/** Default shadow timeout: Envoy's default route timeout. */
const DEFAULT_TIMEOUT_MS = 15_000;
/** The most request body buffered for the shadows (Envoy buffers shadow bodies too, bounded). */
export const MAX_SHADOW_BODY = 64 * 1024;

interface MirrorPolicy {
  readonly cluster: string | undefined;
  readonly clusterHeader: string | undefined;
  readonly fraction: readonly [number, number];
  readonly suffix: boolean;
}

export interface MirrorStats {
  /** Shadow requests sent. */
  sent: number;
  /** Shadow requests that got a complete response (any status). */
  completed: number;
  /** Shadow requests that failed (connect, reset, timeout); the main request is unaffected. */
  failed: number;
  /** Requests with a body not mirrored: larger than MAX_SHADOW_BODY, or aborted before its end. */
  skippedWithBody: number;
}

/** "host" -> "host-shadow", "host:port" -> "host-shadow:port", "[v6]:port" -> "[v6]-shadow:port". */
export function shadowHost(authority: string): string {
  const colon = authority.lastIndexOf(':');
  const hasPort =
    colon > 0 && (authority.startsWith('[') ? authority.lastIndexOf(']') < colon : authority.indexOf(':') === colon);
  return hasPort ? `${authority.slice(0, colon)}-shadow${authority.slice(colon)}` : `${authority}-shadow`;
}

function compilePolicies(action: EnvoyObject): MirrorPolicy[] {
  const out: MirrorPolicy[] = [];
  for (const p of list(action.request_mirror_policies)) {
    const cluster = str(p.cluster) || undefined;
    const clusterHeader = str(p.cluster_header)?.toLowerCase() || undefined;
    if (!cluster && !clusterHeader) throw new L7ConfigError('request_mirror_policies: a policy without a cluster');
    out.push({
      cluster,
      clusterHeader,
      fraction: fractionalPercent(obj(p.runtime_fraction)?.default_value, [100, 100]),
      suffix: bool(p.disable_shadow_host_suffix_append) !== true,
    });
  }
  return out;
}

const ignore = (): void => {};

/** The mirror filter; `stats` (optional) is updated as shadows are sent and finish. */
export function mirrorFilter(stats?: MirrorStats): HttpFilterFactory {
  return {
    name: MIRROR_FILTER_NAME,
    create({ config }) {
      const perRoute = new Map<EnvoyObject, MirrorPolicy[]>();
      for (const rc of config.routes.values())
        for (const vh of list(rc.virtual_hosts))
          for (const r of list(vh.routes)) {
            const action = obj(r.route);
            if (!action) continue;
            const ps = compilePolicies(action);
            if (ps.length > 0) perRoute.set(r, ps);
          }
      if (perRoute.size === 0) return {};
      return {
        onRequest(ctx: RequestContext) {
          const route = ctx.route;
          if (!route) return undefined;
          const action = route.action;
          if (action.kind !== 'cluster') return undefined;
          const policies = perRoute.get(route.raw);
          if (!policies) return undefined;
          const ex = ctx as Exchange;
          const body = ex.body;
          if (body === undefined) {
            mirror(ex, action, policies, undefined, stats);
            return undefined;
          }
          tapBody(body, (copy) => {
            if (copy) mirror(ex, action, policies, copy, stats);
            else if (stats) stats.skippedWithBody++;
          });
          return undefined;
        },
      };
    },
  };
}

/**
 * Copies a request body as its consumer reads it: paused first, so that our 'data' listener does
 * not start the flow (the pools resume it once they have a connection); `done` gets the copy
 * when the body ends, or undefined when it exceeded MAX_SHADOW_BODY or never ended.
 */
function tapBody(body: Readable, done: (copy: Buffer | undefined) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_SHADOW_BODY) {
      over = true;
      chunks.length = 0;
      body.removeListener('data', onData);
    } else chunks.push(chunk);
  };
  const onEnd = () => {
    cleanup();
    done(over ? undefined : Buffer.concat(chunks, size));
  };
  const onClose = () => {
    cleanup();
    done(undefined);
  };
  const cleanup = () => {
    body.removeListener('data', onData);
    body.removeListener('end', onEnd);
    body.removeListener('close', onClose);
  };
  body.pause();
  body.on('data', onData);
  body.once('end', onEnd);
  body.once('close', onClose);
}

function mirror(
  ex: Exchange,
  action: ClusterAction,
  policies: readonly MirrorPolicy[],
  body: Buffer | undefined,
  stats: MirrorStats | undefined,
): void {
  for (const p of policies) {
    if (!sampled(p.fraction[0], p.fraction[1])) continue;
    const name = p.cluster ?? ex.header(p.clusterHeader!);
    const cluster = name === undefined ? undefined : ex.config.clusters.get(name);
    const host = cluster?.lb.pick(undefined);
    if (!cluster || !host) {
      if (stats) stats.failed++;
      continue;
    }
    const path = action.rewritePath ? action.rewritePath(ex.path) : ex.path;
    const authority = action.hostRewrite ?? ex.authority;
    const protocol =
      cluster.protocol === 'downstream' ? (ex.protocol === 'HTTP/2' ? 'http2' : 'http1') : cluster.protocol;
    const headers = { ...ex.headers } as HeaderMap;
    if (body) {
      // The copy is whole: sent with its length, not re-chunked.
      delete headers['transfer-encoding'];
      headers['content-length'] = String(body.length);
    }
    sendShadow(
      host,
      protocol,
      {
        method: ex.method,
        path,
        authority: p.suffix ? shadowHost(authority) : authority,
        headers,
        body: body && body.length > 0 ? Readable.from([body]) : undefined,
        bytesReceived: 0,
      },
      action.timeoutMs > 0 ? action.timeoutMs : DEFAULT_TIMEOUT_MS,
      stats,
    );
  }
}

function sendShadow(
  host: HostState,
  protocol: 'http1' | 'http2',
  src: UpstreamSource,
  timeoutMs: number,
  stats: MirrorStats | undefined,
): void {
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  const finish = (ok: boolean) => {
    if (done) return;
    done = true;
    if (timer) clearTimeout(timer);
    host.stats.active--;
    if (stats) {
      if (ok) stats.completed++;
      else stats.failed++;
    }
  };
  const handlers: UpstreamHandlers = {
    onUpstreamHeaders: (_status, _headers, endStream) => {
      if (endStream) finish(true);
    },
    onUpstreamData: ignore,
    onUpstreamEnd: () => finish(true),
    onUpstreamError: () => finish(false),
  };
  host.stats.active++;
  if (stats) stats.sent++;
  try {
    const req = host.stats.pool(protocol).request(src, handlers);
    timer = setTimeout(() => {
      if (done) return;
      req.abort();
      finish(false);
    }, timeoutMs);
    timer.unref();
  } catch {
    // The shadow must never affect the main request.
    finish(false);
  }
}
