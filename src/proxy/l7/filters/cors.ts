// envoy.filters.http.cors: the CORS policies of the route, compiled once per config version.
// As Envoy: the typed_per_filter_config 'envoy.filters.http.cors' policies
// (envoy.extensions.filters.http.cors.v3.CorsPolicy) of the route, virtual host and route
// configuration, most specific first; only when there are none, the legacy RouteAction.cors and
// VirtualHost.cors (envoy.config.route.v3.CorsPolicy). Each attribute comes from the first policy
// that sets it; filter_enabled (RuntimeFractionalPercent, default 100%) from the first policy.
//
// A request with a non-empty Origin is a CORS request. The origin is allowed when a matcher of
// allow_origin_string_match accepts it, or accepts "*" (then every origin is).
// - A preflight (OPTIONS with a non-empty access-control-request-method) is answered here with
//   200: access-control-allow-origin (the request's origin, only when allowed),
//   -allow-credentials "true" when allow_credentials, -allow-methods and -allow-headers ("*"
//   echoes the request's access-control-request-method / -headers), -max-age, and
//   -allow-private-network "true" when asked and allowed. A preflight from an origin not
//   allowed goes upstream instead unless forward_not_matching_preflights is false (default true).
// - Any other request goes upstream; when its origin is allowed, the response gets
//   access-control-allow-origin, -allow-credentials and -expose-headers.
// shadow_enabled only counts in Envoy (stats); here it changes nothing.
import { bool, list, obj, str, strList, type EnvoyObject } from '../config.js';
import type { RequestContext } from '../context.js';
import type { HttpFilterFactory } from '../filter.js';
import { first, type HeaderMap } from '../headers.js';
import { fractionalPercent, sampled, stringMatcher, type StringPredicate } from '../matchers.js';
import { allRoutes, perFilterConfig, type RouteLevels } from '../route-table.js';

export const CORS_FILTER_NAME = 'envoy.filters.http.cors';

interface CompiledCors {
  readonly origins: readonly StringPredicate[];
  /** Every origin allowed (a matcher accepts "*"). */
  readonly anyOrigin: boolean;
  readonly enabled: readonly [number, number];
  readonly allowCredentials: boolean;
  readonly allowPrivateNetwork: boolean;
  readonly forwardNotMatchingPreflights: boolean;
  /** Preflight response headers except the origin. */
  readonly preflight: HeaderMap;
  readonly exposeHeaders: string | undefined;
  /** allow_methods / allow_headers "*": echo what the preflight asks for. */
  readonly echoMethods: boolean;
  readonly echoHeaders: boolean;
}

const FULL: readonly [number, number] = [100, 100];

/** The policies of a route, most specific first. */
function policies(levels: RouteLevels): EnvoyObject[] {
  const typed: EnvoyObject[] = [];
  const none = {};
  for (const only of [
    { route: levels.route, virtualHost: none, routeConfiguration: none },
    { route: none, virtualHost: levels.virtualHost, routeConfiguration: none },
    { route: none, virtualHost: none, routeConfiguration: levels.routeConfiguration },
  ]) {
    const c = perFilterConfig(only, CORS_FILTER_NAME);
    if (c) typed.push(c);
  }
  if (typed.length > 0) return typed;
  const legacy: EnvoyObject[] = [];
  const routeCors = obj(obj(levels.route.route)?.cors);
  if (routeCors) legacy.push(routeCors);
  const vhostCors = obj(levels.virtualHost.cors);
  if (vhostCors) legacy.push(vhostCors);
  return legacy;
}

/** The first level's value that is set (non-empty for strings and lists). */
function firstSet<T>(ps: readonly EnvoyObject[], read: (p: EnvoyObject) => T | undefined): T | undefined {
  for (const p of ps) {
    const v = read(p);
    if (v !== undefined) return v;
  }
  return undefined;
}

const nonEmpty = (v: unknown): string | undefined => {
  const s = str(v);
  return s === undefined || s === '' ? undefined : s;
};

export function compileCors(ps: readonly EnvoyObject[]): CompiledCors | undefined {
  if (ps.length === 0) return undefined;
  const matchers = firstSet(ps, (p) => {
    const l = list(p.allow_origin_string_match);
    if (l.length > 0) return l.map(stringMatcher);
    // The deprecated allow_origin: exact origins, "*" for any.
    const legacy = strList(p.allow_origin);
    return legacy.length > 0 ? legacy.map((o) => (o === '*' ? () => true : (s: string) => s === o)) : undefined;
  });
  const origins = matchers ?? [];
  const allowCredentials = firstSet(ps, (p) => bool(p.allow_credentials)) === true;
  const preflight: HeaderMap = {};
  const methods = firstSet(ps, (p) => nonEmpty(p.allow_methods));
  const headers = firstSet(ps, (p) => nonEmpty(p.allow_headers));
  const maxAge = firstSet(ps, (p) => nonEmpty(p.max_age));
  if (allowCredentials) preflight['access-control-allow-credentials'] = 'true';
  if (methods && methods !== '*') preflight['access-control-allow-methods'] = methods;
  if (headers && headers !== '*') preflight['access-control-allow-headers'] = headers;
  if (maxAge) preflight['access-control-max-age'] = maxAge;
  const enabledRaw = obj(ps[0]!.filter_enabled);
  return {
    origins,
    anyOrigin: origins.some((m) => m('*')),
    enabled: enabledRaw ? fractionalPercent(enabledRaw.default_value, FULL) : FULL,
    allowCredentials,
    allowPrivateNetwork: firstSet(ps, (p) => bool(p.allow_private_network_access)) === true,
    forwardNotMatchingPreflights: firstSet(ps, (p) => bool(p.forward_not_matching_preflights)) !== false,
    preflight,
    exposeHeaders: firstSet(ps, (p) => nonEmpty(p.expose_headers)),
    echoMethods: methods === '*',
    echoHeaders: headers === '*',
  };
}

function originAllowed(c: CompiledCors, origin: string): boolean {
  if (c.anyOrigin) return true;
  for (const m of c.origins) if (m(origin)) return true;
  return false;
}

export const corsFilter: HttpFilterFactory = {
  name: CORS_FILTER_NAME,
  create({ config }) {
    const perRoute = new Map<EnvoyObject, CompiledCors>();
    for (const levels of allRoutes(config.routes)) {
      const c = compileCors(policies(levels));
      if (c) perRoute.set(levels.route, c);
    }
    if (perRoute.size === 0) return {};
    // CORS requests forwarded upstream: their origin, for the response headers.
    const origins = new WeakMap<RequestContext, { origin: string; policy: CompiledCors }>();
    return {
      onRequest(ctx) {
        const route = ctx.route;
        if (!route) return undefined;
        const policy = perRoute.get(route.raw);
        if (!policy) return undefined;
        const origin = first(ctx.headers.origin);
        if (origin === undefined || origin === '') return undefined;
        if (!sampled(policy.enabled[0], policy.enabled[1])) return undefined;
        const preflight =
          ctx.method === 'OPTIONS' && (first(ctx.headers['access-control-request-method']) ?? '') !== '';
        const allowed = originAllowed(policy, origin);
        if (!preflight) {
          if (allowed) origins.set(ctx, { origin, policy });
          return undefined;
        }
        if (!allowed && policy.forwardNotMatchingPreflights) return undefined;
        // Envoy's local preflight answer passes its own encodeHeaders too (expose-headers).
        if (allowed) origins.set(ctx, { origin, policy });
        const headers: HeaderMap = allowed
          ? { 'access-control-allow-origin': origin, ...policy.preflight }
          : { ...policy.preflight };
        if (policy.echoMethods)
          headers['access-control-allow-methods'] = first(ctx.headers['access-control-request-method']) ?? '';
        if (policy.echoHeaders) {
          const asked = first(ctx.headers['access-control-request-headers']);
          if (asked) headers['access-control-allow-headers'] = asked;
        }
        if (policy.allowPrivateNetwork && first(ctx.headers['access-control-request-private-network']) === 'true')
          headers['access-control-allow-private-network'] = 'true';
        return { status: 200, headers, details: 'cors_response' };
      },
      onResponseHeaders(ctx, _status, headers) {
        const cors = origins.get(ctx);
        if (!cors) return;
        headers['access-control-allow-origin'] = cors.origin;
        if (cors.policy.allowCredentials) headers['access-control-allow-credentials'] = 'true';
        if (cors.policy.exposeHeaders) headers['access-control-expose-headers'] = cors.policy.exposeHeaders;
      },
    };
  },
};
