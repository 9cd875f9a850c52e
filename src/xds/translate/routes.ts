// Route translation: Gateway API HTTPRoute / GRPCRoute rules and Istio VirtualService HTTP
// routes -> Envoy v3 Route objects (envoy.config.route.v3.Route), with Envoy's standard fields
// only. Pure and deterministic.
//
// Gateway API precedence (HTTPRoute spec): across all rules of the routes of one host, Exact
// path, then the longest PathPrefix, then a method match, then the most header matches, then
// the most query matches; ties go to the oldest route (creationTimestamp), then the first by
// "namespace/name", then the first rule of the route. RegularExpression paths (precedence left to
// implementations) rank after every PathPrefix. GRPCRoute: the most characters of the matched
// service, then of the method, then the most header matches, with the same tie-breaks.
import type { TrafficPolicy } from '../../config/kinds/istio/destination-rule.js';
import type { HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule } from '../../config/kinds/gateway/http-route.js';
import type { GRPCRouteRule } from '../../config/kinds/gateway/grpc-route.js';
import type {
  HTTPMatchRequest,
  HTTPRoute as IstioHttpRoute,
  HTTPRouteDestination,
} from '../../config/kinds/istio/virtual-service.js';
import type { BackendModel, MeshModel, RouteModel, ServiceModel, ServicePortModel } from '../../model/mesh-model.js';
import { UNSUPPORTED_FILTERS } from '../../model/routes.js';
import { compareStrings } from '../../util/compare.js';
import { parseGatewayDuration, parseGoDuration } from '../../util/duration.js';
import { escapeRegex, grpcRouteMatch, httpRouteMatch, istioMatch, type EnvoyObject } from './route-match.js';

export const FAULT_FILTER = 'envoy.filters.http.fault';
export const CORS_FILTER = 'envoy.filters.http.cors';
export const FAULT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
export const CORS_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';
export const CORS_POLICY_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';
const FILTER_CONFIG_TYPE = 'type.googleapis.com/envoy.config.route.v3.FilterConfig';
const PREVIOUS_HOSTS_TYPE = 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate';

export type AddCluster = (svc: ServiceModel, port: ServicePortModel, subset: string) => string;

/** What route translation may look at (the proxyless translation's indexes). */
export interface RouteCtx {
  readonly model: MeshModel;
  readonly servicesById: ReadonlyMap<string, ServiceModel>;
  readonly servicesByHost: ReadonlyMap<string, ServiceModel>;
  /** The DestinationRule policy for a service port / subset (subset over host, then port level). */
  readonly policy: (svc: ServiceModel, subset: string, port: number) => TrafficPolicy | undefined;
}

export interface RouteOptions {
  /**
   * Gateway API PathPrefix as `path_separated_prefix` (route configurations only Envoy-like
   * proxies read). Off for the "<host>:<port>" configurations gRPC clients read too: grpc-js-xds
   * NACKs that path specifier, so a segment-aware safe_regex stands in.
   */
  readonly pathSeparatedPrefix: boolean;
  /** The port the routes serve (the Gateway listener's, or the mesh service's): redirects keep it. */
  readonly listenerPort: number;
}

export function duration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

// ---------------------------------------------------------------------------------------------
// Hostnames

/**
 * The hostnames a route serves on a listener (Gateway API): the intersection of the route's
 * hostnames with the listener's, each as the more specific of the two; the listener's hostname
 * (or "*") when the route has none; the route's when the listener has none.
 */
export function effectiveHostnames(routeHosts: readonly string[], listenerHost: string | undefined): string[] {
  if (routeHosts.length === 0) return [listenerHost ?? '*'];
  if (listenerHost === undefined || listenerHost === '*') return [...new Set(routeHosts)];
  const out = new Set<string>();
  for (const h of routeHosts) {
    const i = intersect(h.toLowerCase(), listenerHost.toLowerCase());
    if (i !== undefined) out.add(i);
  }
  return [...out];
}

function intersect(a: string, b: string): string | undefined {
  if (a === b) return a;
  const wa = a.startsWith('*.');
  const wb = b.startsWith('*.');
  // "*.example.com" stands for one or more labels before ".example.com".
  if (wa && !wb) return b.endsWith(a.slice(1)) && b.length > a.length - 1 ? b : undefined;
  if (wb && !wa) return a.endsWith(b.slice(1)) && a.length > b.length - 1 ? a : undefined;
  if (wa && wb) {
    if (a.slice(1).endsWith(b.slice(1))) return a;
    if (b.slice(1).endsWith(a.slice(1))) return b;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Gateway API

interface Candidate {
  readonly route: EnvoyObject;
  /** Precedence keys, larger first. */
  readonly key: readonly number[];
  /** Route rank (creationTimestamp, namespace/name), rule index, match index: smaller first. */
  readonly routeRank: number;
  readonly rule: number;
  readonly match: number;
}

/** Oldest creationTimestamp first (routes without one after those with), then "namespace/name". */
export function compareRoutes(a: RouteModel, b: RouteModel): number {
  const ta = a.creationTimestamp !== undefined ? Date.parse(a.creationTimestamp) : NaN;
  const tb = b.creationTimestamp !== undefined ? Date.parse(b.creationTimestamp) : NaN;
  const ha = !Number.isNaN(ta);
  const hb = !Number.isNaN(tb);
  if (ha && hb && ta !== tb) return ta - tb;
  if (ha !== hb) return ha ? -1 : 1;
  return compareStrings(`${a.namespace}/${nameOf(a)}`, `${b.namespace}/${nameOf(b)}`);
}

/** "<namespace>/<name>/<rule>/<match>": which rule and match an Envoy route comes from. */
function routeName(r: RouteModel, rule: number, match: number): string {
  return `${r.namespace}/${nameOf(r)}/${rule}/${match}`;
}

function nameOf(r: RouteModel): string {
  return r.id.slice(r.id.lastIndexOf('/') + 1);
}

/** Gateway API routes (of one host, or attached to one service port) -> ordered Envoy routes. */
export function gatewayRoutes(
  ctx: RouteCtx,
  routes: readonly RouteModel[],
  port: ServicePortModel,
  addCluster: AddCluster,
  opts: RouteOptions,
): EnvoyObject[] {
  const ranked = [...routes].sort(compareRoutes);
  const out: Candidate[] = [];
  ranked.forEach((r, routeRank) => {
    for (const rule of r.rules) {
      if (rule.http) {
        rule.http.matches.forEach((m, mi) => {
          const match = httpRouteMatch(m, opts.pathSeparatedPrefix);
          const route = {
            name: routeName(r, rule.index, mi),
            ...httpRuleRoute(ctx, rule, m, match, port, addCluster, opts.listenerPort),
          };
          const key = [0, ...precedence(m)];
          const share = (route as EnvoyObject).route ? invalidShare(ctx, rule.backends, port) : 0;
          // Ahead of its rule's route (the sort is stable): takes the invalid refs' share first.
          if (share > 0)
            out.push({ route: invalidShareRoute(route, share), key, routeRank, rule: rule.index, match: mi });
          out.push({ route, key, routeRank, rule: rule.index, match: mi });
        });
      } else if (rule.grpc) {
        const matches = rule.grpc.matches?.length ? rule.grpc.matches : [{}];
        const route = grpcRuleRoute(ctx, rule, port, addCluster);
        const share = route.route ? invalidShare(ctx, rule.backends, port) : 0;
        matches.forEach((m, mi) => {
          const full = { name: routeName(r, rule.index, mi), match: grpcRouteMatch(m), ...route };
          const key = [1, ...grpcPrecedence(m)];
          if (share > 0)
            out.push({ route: invalidShareRoute(full, share), key, routeRank, rule: rule.index, match: mi });
          out.push({ route: full, key, routeRank, rule: rule.index, match: mi });
        });
      }
    }
  });
  out.sort((a, b) => {
    for (let i = 0; i < a.key.length; i++) if (a.key[i] !== b.key[i]) return b.key[i]! - a.key[i]!;
    return a.routeRank - b.routeRank || a.rule - b.rule || a.match - b.match;
  });
  return out.map((c) => c.route);
}

/** HTTPRoute precedence keys: exact path, prefix length, method, header count, query count. */
export function precedence(m: HTTPRouteMatch): number[] {
  return [
    m.path.type === 'Exact' ? 1 : 0,
    m.path.type === 'PathPrefix' ? m.path.value.length : m.path.type === 'Exact' ? m.path.value.length : -1,
    m.method !== undefined ? 1 : 0,
    (m.headers ?? []).length,
    (m.queryParams ?? []).length,
  ];
}

type GrpcMatch = NonNullable<GRPCRouteRule['matches']>[number];

/** GRPCRoute precedence keys: service characters, method characters, header count (padded). */
function grpcPrecedence(m: GrpcMatch): number[] {
  return [m.method?.service?.length ?? 0, m.method?.method?.length ?? 0, (m.headers ?? []).length, 0, 0];
}

type HeaderModifier = {
  set?: readonly { name: string; value: string }[];
  add?: readonly { name: string; value: string }[];
  remove?: readonly string[];
};
type HeaderFilter = {
  type: string;
  requestHeaderModifier?: HeaderModifier;
  responseHeaderModifier?: HeaderModifier;
};

/** Request/ResponseHeaderModifier filters -> the route's header mutations (set overwrites, add appends). */
export function headerModifiers(filters: readonly HeaderFilter[] | undefined): EnvoyObject {
  const out: EnvoyObject = {};
  for (const f of filters ?? []) {
    if (f.type === 'RequestHeaderModifier') headerOps(out, 'request', f.requestHeaderModifier);
    if (f.type === 'ResponseHeaderModifier') headerOps(out, 'response', f.responseHeaderModifier);
  }
  return out;
}

function headerOps(out: EnvoyObject, dir: 'request' | 'response', m: HeaderModifier | undefined): void {
  if (!m) return;
  const add = [
    ...(m.set ?? []).map((h) => headerValueOption(h.name, h.value, 'OVERWRITE_IF_EXISTS_OR_ADD')),
    ...(m.add ?? []).map((h) => headerValueOption(h.name, h.value, 'APPEND_IF_EXISTS_OR_ADD')),
  ];
  if (add.length) out[`${dir}_headers_to_add`] = add;
  if (m.remove?.length) out[`${dir}_headers_to_remove`] = m.remove.map((h) => h.toLowerCase());
}

function headerValueOption(name: string, value: string, action: string): EnvoyObject {
  return { header: { key: name.toLowerCase(), value }, append_action: action };
}

/** The Route fields (action and everything but match) of one HTTPRoute rule for one of its matches. */
function httpRuleRoute(
  ctx: RouteCtx,
  rule: RouteModel['rules'][number],
  m: HTTPRouteMatch,
  match: EnvoyObject,
  port: ServicePortModel,
  addCluster: AddCluster,
  listenerPort: number,
): EnvoyObject {
  const http = rule.http!;
  const filters = http.filters ?? [];
  const route: EnvoyObject = { match, ...headerModifiers(filters) };
  const redirect = filters.find((f) => f.type === 'RequestRedirect')?.requestRedirect;
  const cors = filters.find((f) => f.type === 'CORS')?.cors;
  if (cors) route.typed_per_filter_config = { [CORS_FILTER]: optionalFilter(gatewayCors(cors)) };
  if (unsupported(http)) {
    route.direct_response = { status: 500 };
    return route;
  }
  if (redirect) {
    route.redirect = gatewayRedirect(redirect, m, match, listenerPort);
    return route;
  }
  const action = backendAction(ctx, rule.backends, port, addCluster, http.backendRefs);
  if (!action) {
    // No backend to send to (none, all weights 0, or none resolved): 500, as Gateway API says.
    route.direct_response = { status: 500 };
    return route;
  }
  const rewrite = filters.find((f) => f.type === 'URLRewrite')?.urlRewrite;
  if (rewrite?.hostname) action.host_rewrite_literal = rewrite.hostname;
  if (rewrite?.path) Object.assign(action, pathRewrite(rewrite.path, m, match));
  Object.assign(action, gatewayTimeouts(http));
  const mirrors = mirrorPolicies(ctx, rule, filters, addCluster);
  if (mirrors.length) action.request_mirror_policies = mirrors;
  route.route = action;
  return route;
}

/** A filter Trellis cannot apply (ExtensionRef, ExternalAuth) must not be skipped: the rule answers 500. */
function unsupported(rule: {
  readonly filters?: readonly { readonly type: string }[] | undefined;
  readonly backendRefs?: readonly { readonly filters?: readonly { readonly type: string }[] | undefined }[] | undefined;
}): boolean {
  const bad = (fs: readonly { readonly type: string }[] | undefined) =>
    (fs ?? []).some((f) => UNSUPPORTED_FILTERS.has(f.type));
  return bad(rule.filters) || (rule.backendRefs ?? []).some((b) => bad(b.filters));
}

function grpcRuleRoute(
  ctx: RouteCtx,
  rule: RouteModel['rules'][number],
  port: ServicePortModel,
  addCluster: AddCluster,
): EnvoyObject {
  const filters = rule.grpc!.filters ?? [];
  const route: EnvoyObject = headerModifiers(filters);
  const action = unsupported(rule.grpc!)
    ? undefined
    : backendAction(ctx, rule.backends, port, addCluster, rule.grpc!.backendRefs);
  if (!action) {
    route.direct_response = { status: 500 };
    return route;
  }
  const mirrors = mirrorPolicies(ctx, rule, filters, addCluster);
  if (mirrors.length) action.request_mirror_policies = mirrors;
  route.route = action;
  return route;
}

/**
 * timeouts.request -> the route timeout (also as max_stream_duration, what gRPC clients read;
 * "0s" disables both); timeouts.backendRequest (GEP-1742) -> the per-try timeout; rules[].retry
 * (GEP-1731) -> retry_policy.
 */
function gatewayTimeouts(http: HTTPRouteRule): EnvoyObject {
  const out: EnvoyObject = {};
  const request = http.timeouts?.request !== undefined ? parseGatewayDuration(http.timeouts.request) : undefined;
  if (request !== undefined) {
    out.timeout = duration(request);
    out.max_stream_duration = { max_stream_duration: duration(request) };
  }
  const policy: EnvoyObject = {};
  const retry = http.retry;
  if (retry && retry.attempts !== 0) {
    // Connection errors (refused, reset, disconnect, per-try timeout) always; listed codes on top.
    const on = ['connect-failure', 'refused-stream', 'reset'];
    if (retry.codes?.length) {
      on.push('retriable-status-codes');
      policy.retriable_status_codes = [...retry.codes];
    }
    policy.retry_on = on.join(',');
    if (retry.attempts !== undefined) policy.num_retries = { value: retry.attempts };
    const backoff = retry.backoff !== undefined ? parseGatewayDuration(retry.backoff) : undefined;
    if (backoff) policy.retry_back_off = { base_interval: duration(backoff) };
  }
  const perTry =
    http.timeouts?.backendRequest !== undefined ? parseGatewayDuration(http.timeouts.backendRequest) : undefined;
  if (perTry) policy.per_try_timeout = duration(perTry);
  if (Object.keys(policy).length) out.retry_policy = policy;
  return out;
}

const REDIRECT_CODES: Readonly<Record<number, string>> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

type PathModifier = NonNullable<NonNullable<HTTPRouteFilter['urlRewrite']>['path']>;

/**
 * RequestRedirect -> RedirectAction. Without a port, a scheme implies its well-known port, and
 * without a scheme the listener's port is used (a Location omits 80 for http and 443 for https).
 */
function gatewayRedirect(
  r: NonNullable<HTTPRouteFilter['requestRedirect']>,
  m: HTTPRouteMatch,
  match: EnvoyObject,
  listenerPort: number,
): EnvoyObject {
  const out: EnvoyObject = {};
  if (r.scheme) out.scheme_redirect = r.scheme;
  if (r.hostname) out.host_redirect = r.hostname;
  if (r.port !== undefined) out.port_redirect = r.port;
  else if (r.scheme === 'https') out.port_redirect = 443;
  else if (r.scheme === 'http') out.port_redirect = 80;
  else if (listenerPort > 0) out.port_redirect = listenerPort;
  if (r.path?.type === 'ReplaceFullPath') out.path_redirect = r.path.replaceFullPath ?? '/';
  else if (r.path) Object.assign(out, pathRewrite(r.path, m, match));
  out.response_code = REDIRECT_CODES[r.statusCode ?? 302] ?? 'FOUND';
  return out;
}

/**
 * HTTPPathModifier -> prefix_rewrite / regex_rewrite (RouteAction and RedirectAction share the
 * field names). ReplaceFullPath replaces the whole path (query kept). ReplacePrefixMatch
 * replaces the matched segments: "/foo" -> "/xyz" turns "/foo/bar" into "/xyz/bar" and "/foo"
 * into "/xyz"; an empty or "/" replacement leaves one "/" ("/foo/bar" -> "/bar", "/foo" -> "/").
 */
export function pathRewrite(p: PathModifier, m: HTTPRouteMatch | undefined, match: EnvoyObject): EnvoyObject {
  if (p.type === 'ReplaceFullPath') {
    return { regex_rewrite: { pattern: { regex: '^/.*$' }, substitution: p.replaceFullPath ?? '/' } };
  }
  const matched = m?.path.type === 'PathPrefix' ? trimSlash(m.path.value) : '';
  const replacement = trimSlash(p.replacePrefixMatch ?? '');
  // A literal prefix match (path_separated_prefix / prefix) is what prefix_rewrite replaces.
  const literal = typeof match.path_separated_prefix === 'string' || match.prefix === matched;
  if (replacement !== '' && matched !== '' && literal) return { prefix_rewrite: replacement };
  if (matched === '') {
    // Match "/": insert the replacement before the path.
    return { regex_rewrite: { pattern: { regex: '^/' }, substitution: replacement === '' ? '/' : `${replacement}/` } };
  }
  return {
    regex_rewrite: {
      pattern: { regex: `^${escapeRegex(matched)}${replacement === '' ? '/*' : ''}` },
      substitution: replacement === '' ? '/' : replacement,
    },
  };
}

function trimSlash(p: string): string {
  return p.endsWith('/') ? p.replace(/\/+$/, '') : p;
}

/**
 * A per-route config wrapped as an optional envoy.config.route.v3.FilterConfig: proxies without
 * the filter (gRPC clients reading the same route configuration) ignore it instead of NACKing.
 */
function optionalFilter(config: EnvoyObject): EnvoyObject {
  return { '@type': FILTER_CONFIG_TYPE, config, is_optional: true };
}

/** Gateway API CORS filter -> envoy.extensions.filters.http.cors.v3.CorsPolicy. */
function gatewayCors(c: NonNullable<HTTPRouteFilter['cors']>): EnvoyObject {
  const out: EnvoyObject = { '@type': CORS_POLICY_TYPE };
  if (c.allowOrigins?.length) out.allow_origin_string_match = c.allowOrigins.map(originMatcher);
  if (c.allowMethods?.length) out.allow_methods = c.allowMethods.join(',');
  if (c.allowHeaders?.length) out.allow_headers = c.allowHeaders.join(',');
  if (c.exposeHeaders?.length) out.expose_headers = c.exposeHeaders.join(',');
  out.max_age = String(c.maxAge ?? 5);
  if (c.allowCredentials !== undefined) out.allow_credentials = { value: c.allowCredentials };
  return out;
}

/** "*" -> any origin; a "*" in the host -> a regex; else exact. */
function originMatcher(origin: string): EnvoyObject {
  if (origin === '*') return { safe_regex: { regex: '.*' } };
  if (!origin.includes('*')) return { exact: origin };
  return { safe_regex: { regex: escapeRegex(origin).replace(/\\\*/g, '[^/:]*') } };
}

/** RequestMirror filters -> request_mirror_policies (percent / fraction as runtime_fraction). */
function mirrorPolicies(
  ctx: RouteCtx,
  rule: RouteModel['rules'][number],
  filters: readonly { type: string; requestMirror?: MirrorFilter }[],
  addCluster: AddCluster,
): EnvoyObject[] {
  const out: EnvoyObject[] = [];
  const specs = filters.filter((f) => f.type === 'RequestMirror');
  (rule.mirrors ?? []).forEach((b, i) => {
    const target = resolveTarget(ctx, b);
    if (!target) return;
    const policy: EnvoyObject = { cluster: addCluster(target.svc, target.port, '') };
    const spec = specs[i]?.requestMirror;
    const fraction =
      spec?.percent !== undefined
        ? { numerator: spec.percent, denominator: 'HUNDRED' }
        : spec?.fraction !== undefined
          ? fractionOf(spec.fraction.numerator, spec.fraction.denominator ?? 100)
          : undefined;
    if (fraction) policy.runtime_fraction = { default_value: fraction };
    out.push(policy);
  });
  return out;
}

type MirrorFilter = { percent?: number; fraction?: { numerator: number; denominator?: number } };

function fractionOf(numerator: number, denominator: number): EnvoyObject {
  if (denominator === 100) return { numerator, denominator: 'HUNDRED' };
  if (denominator === 10_000) return { numerator, denominator: 'TEN_THOUSAND' };
  return { numerator: Math.round((numerator * 1_000_000) / denominator), denominator: 'MILLION' };
}

function resolveTarget(ctx: RouteCtx, b: BackendModel): { svc: ServiceModel; port: ServicePortModel } | undefined {
  if (!b.resolved || !b.service) return undefined;
  const svc = ctx.servicesById.get(b.service);
  const p = svc?.ports.find((x) => x.port === b.port) ?? svc?.ports[0];
  return svc && p ? { svc, port: p } : undefined;
}

type BackendRefFilters = readonly { readonly filters?: readonly HeaderFilter[] | undefined }[] | undefined;

/**
 * Weighted clusters from resolved backends with a positive weight (Service backends use the
 * service port named by the backendRef). Backend-level header filters become the cluster's own
 * header mutations (weighted_clusters, even for one cluster). Undefined when nothing is left.
 */
export function backendAction(
  ctx: RouteCtx,
  backends: RouteModel['rules'][number]['backends'],
  port: ServicePortModel,
  addCluster: AddCluster,
  refs?: BackendRefFilters,
): EnvoyObject | undefined {
  const targets: Target[] = [];
  backends.forEach((b, i) => {
    if (!b.resolved || !b.service || b.weight <= 0) return;
    const svc = ctx.servicesById.get(b.service);
    const p = svc?.ports.find((x) => x.port === (b.port ?? port.port)) ?? svc?.ports[0];
    if (!svc || !p) return;
    const mods = headerModifiers(refs?.[i]?.filters);
    targets.push({ svc, port: p, subset: b.subset ?? '', weight: b.weight, ...(hasKeys(mods) ? { mods } : {}) });
  });
  return clusterAction(ctx, targets, addCluster);
}

/**
 * The traffic share (parts per million) of a rule's backendRefs that are invalid (unresolvable,
 * not permitted by a ReferenceGrant, unsupported kind) but weighted: Gateway API wants "requests
 * that would have been sent to it" answered 500, so the share is kept, not spread over the valid
 * refs. 0 when there is none, or when no ref is valid (the whole rule answers 500 then).
 */
export function invalidShare(
  ctx: RouteCtx,
  backends: RouteModel['rules'][number]['backends'],
  port: ServicePortModel,
): number {
  let valid = 0;
  let invalid = 0;
  for (const b of backends) {
    if (b.weight <= 0) continue;
    const svc = b.resolved && b.service ? ctx.servicesById.get(b.service) : undefined;
    const p = svc?.ports.find((x) => x.port === (b.port ?? port.port)) ?? svc?.ports[0];
    if (svc && p) valid += b.weight;
    else invalid += b.weight;
  }
  if (valid === 0 || invalid === 0) return 0;
  return Math.max(1, Math.round((invalid / (valid + invalid)) * 1_000_000));
}

/**
 * The route that answers 500 for the invalid refs' share: the rule's match sampled by
 * runtime_fraction (Envoy evaluates the next route for the requests not sampled, which go to the
 * valid refs by their weights). A weighted cluster entry cannot answer 500 on its own.
 */
function invalidShareRoute(route: EnvoyObject, share: number): EnvoyObject {
  return {
    name: `${String(route.name)}/invalid-backends`,
    match: {
      ...(route.match as EnvoyObject),
      runtime_fraction: {
        default_value: { numerator: share, denominator: 'MILLION' },
        runtime_key: 'trellis.invalid_backend_share',
      },
    },
    direct_response: { status: 500 },
  };
}

function hasKeys(o: EnvoyObject): boolean {
  return Object.keys(o).length > 0;
}

export interface Target {
  readonly svc: ServiceModel;
  readonly port: ServicePortModel;
  readonly subset: string;
  readonly weight: number;
  /** Header mutations of this destination only. */
  readonly mods?: EnvoyObject;
}

/** One cluster or weighted clusters, with the hash policy of the first target's DestinationRule. */
export function clusterAction(
  ctx: RouteCtx,
  targets: readonly Target[],
  addCluster: AddCluster,
): EnvoyObject | undefined {
  if (targets.length === 0) return undefined;
  const clusters = targets.map((t) => ({
    name: addCluster(t.svc, t.port, t.subset),
    weight: { value: t.weight },
    ...(t.mods ?? {}),
  }));
  const action: EnvoyObject =
    clusters.length === 1 && !targets[0]!.mods ? { cluster: clusters[0]!.name } : { weighted_clusters: { clusters } };
  const hash = hashPolicy(ctx, targets[0]!);
  if (hash) action.hash_policy = hash;
  return action;
}

/** DestinationRule consistentHash -> the route's hash policy (what RING_HASH clusters hash on). */
function hashPolicy(ctx: RouteCtx, t: Target): EnvoyObject[] | undefined {
  const ch = ctx.policy(t.svc, t.subset, t.port.port)?.loadBalancer?.consistentHash;
  if (!ch) return undefined;
  if (ch.httpHeaderName) return [{ header: { header_name: ch.httpHeaderName.toLowerCase() } }];
  if (ch.httpCookie) {
    const cookie: EnvoyObject = { name: ch.httpCookie.name };
    const ttl = ch.httpCookie.ttl ? parseGoDuration(ch.httpCookie.ttl) : undefined;
    if (ttl !== undefined) cookie.ttl = duration(ttl);
    if (ch.httpCookie.path) cookie.path = ch.httpCookie.path;
    return [{ cookie }];
  }
  if (ch.useSourceIp) return [{ connection_properties: { source_ip: true } }];
  if (ch.httpQueryParameterName) return [{ query_parameter: { name: ch.httpQueryParameterName } }];
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Istio VirtualService

/** Istio's retry_on when a VirtualService does not say (and for its default policy). */
export const ISTIO_DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';

/** VirtualService HTTP routes, in their order (Istio: first match wins). */
export function istioRoutes(
  ctx: RouteCtx,
  addCluster: AddCluster,
  namespace: string,
  http: readonly IstioHttpRoute[],
  self: ServiceModel,
  port: ServicePortModel,
): EnvoyObject[] {
  const out: EnvoyObject[] = [];
  for (const h of http) {
    if (h.delegate) continue;
    // Matches for another port, for gateways only, or selecting clients (sourceLabels,
    // sourceNamespace: not expressible mesh-wide) do not apply here.
    const matches = h.match?.length ? h.match.filter((m) => matchApplies(m, port)) : [undefined];
    if (matches.length === 0) continue;
    const common: EnvoyObject = {};
    headerOpsIstio(common, h.headers);
    const perFilter: EnvoyObject = {};
    const fault = faultConfig(h.fault);
    if (fault) perFilter[FAULT_FILTER] = fault;
    if (h.corsPolicy) perFilter[CORS_FILTER] = optionalFilter(istioCors(h.corsPolicy));
    if (hasKeys(perFilter)) common.typed_per_filter_config = perFilter;

    let base: EnvoyObject | undefined;
    let terminal: EnvoyObject | undefined;
    if (h.redirect) terminal = { redirect: istioRedirect(h.redirect) };
    else if (h.directResponse) terminal = { direct_response: istioDirect(h.directResponse) };
    else {
      base = istioAction(ctx, addCluster, namespace, h, self, port);
      if (!base) continue;
    }
    for (const m of matches) {
      const match = istioMatch(m);
      const route: EnvoyObject = { match, ...common };
      if (terminal) Object.assign(route, terminal);
      else route.route = { ...base, ...istioRewrite(h.rewrite, m) };
      if (h.name) route.name = h.name;
      out.push(route);
    }
  }
  return out;
}

function matchApplies(m: HTTPMatchRequest, port: ServicePortModel): boolean {
  if (m.port !== undefined && m.port !== 0 && port.port !== 0 && m.port !== port.port) return false;
  if (m.gateways !== undefined && m.gateways.length > 0 && !m.gateways.includes('mesh')) return false;
  return m.sourceLabels === undefined && m.sourceNamespace === undefined;
}

function istioAction(
  ctx: RouteCtx,
  addCluster: AddCluster,
  namespace: string,
  h: IstioHttpRoute,
  self: ServiceModel,
  port: ServicePortModel,
): EnvoyObject | undefined {
  const dests = (h.route ?? []) as readonly HTTPRouteDestination[];
  const targets: Target[] = [];
  for (const d of dests) {
    const t = istioDestination(ctx, namespace, d.destination, self, port);
    if (!t) continue;
    const weight = d.weight ?? (dests.length === 1 ? 100 : 0);
    if (weight <= 0) continue;
    const mods: EnvoyObject = {};
    headerOpsIstio(mods, d.headers);
    targets.push({ ...t, weight, ...(hasKeys(mods) ? { mods } : {}) });
  }
  const action = clusterAction(ctx, targets, addCluster);
  if (!action) return undefined;
  const timeoutMs = h.timeout ? parseGoDuration(h.timeout) : undefined;
  if (timeoutMs !== undefined) {
    action.timeout = duration(timeoutMs);
    action.max_stream_duration = { max_stream_duration: duration(timeoutMs) };
  }
  const retry = retryPolicy(h.retries);
  if (retry) action.retry_policy = retry;
  const mirrors = istioMirrors(ctx, addCluster, namespace, h, self, port);
  if (mirrors.length) action.request_mirror_policies = mirrors;
  return action;
}

type IstioDestination = { host: string; subset?: string; port?: { number?: number } };

function istioDestination(
  ctx: RouteCtx,
  namespace: string,
  d: IstioDestination,
  self: ServiceModel,
  port: ServicePortModel,
): Omit<Target, 'weight'> | undefined {
  const host = d.host.includes('.') ? d.host : `${d.host}.${namespace}.svc.${ctx.model.mesh.clusterDomain}`;
  const svc = ctx.servicesByHost.get(host);
  if (!svc) return undefined;
  const p = svc.ports.find((x) => x.port === (d.port?.number ?? port.port)) ?? (svc === self ? port : svc.ports[0]);
  if (!p) return undefined;
  return { svc, port: p, subset: d.subset ?? '' };
}

/** mirror + mirrorPercentage (or the deprecated integer mirrorPercent), and mirrors[]: default 100%. */
function istioMirrors(
  ctx: RouteCtx,
  addCluster: AddCluster,
  namespace: string,
  h: IstioHttpRoute,
  self: ServiceModel,
  port: ServicePortModel,
): EnvoyObject[] {
  const list: { d: IstioDestination; pct: number | undefined }[] = [];
  if (h.mirror) list.push({ d: h.mirror, pct: h.mirrorPercentage?.value ?? h.mirrorPercent ?? h.mirror_percent });
  for (const m of h.mirrors ?? []) list.push({ d: m.destination, pct: m.percentage?.value });
  const out: EnvoyObject[] = [];
  for (const { d, pct } of list) {
    const t = istioDestination(ctx, namespace, d, self, port);
    if (!t) continue;
    const policy: EnvoyObject = { cluster: addCluster(t.svc, t.port, t.subset) };
    if (pct !== undefined && pct < 100) policy.runtime_fraction = { default_value: fraction({ value: pct }) };
    out.push(policy);
  }
  return out;
}

type IstioHeaders = NonNullable<IstioHttpRoute['headers']>;

/** Istio header operations: set overwrites, add appends, remove removes. */
function headerOpsIstio(out: EnvoyObject, h: IstioHeaders | undefined): void {
  for (const dir of ['request', 'response'] as const) {
    const ops = h?.[dir];
    if (!ops) continue;
    headerOps(out, dir, {
      set: Object.entries(ops.set ?? {}).map(([name, value]) => ({ name, value })),
      add: Object.entries(ops.add ?? {}).map(([name, value]) => ({ name, value })),
      remove: ops.remove ?? [],
    });
  }
}

type IstioRewrite = NonNullable<IstioHttpRoute['rewrite']>;

/**
 * rewrite.uri replaces the matched prefix or path (prefix_rewrite); after a regex match, or with
 * ignoreUriCase, the whole path; uriRegexRewrite -> regex_rewrite; authority -> host_rewrite_literal.
 */
function istioRewrite(r: IstioRewrite | undefined, m: HTTPMatchRequest | undefined): EnvoyObject {
  const out: EnvoyObject = {};
  if (!r) return out;
  if (r.authority) out.host_rewrite_literal = r.authority;
  if (r.uriRegexRewrite?.match !== undefined) {
    out.regex_rewrite = { pattern: { regex: r.uriRegexRewrite.match }, substitution: r.uriRegexRewrite.rewrite ?? '' };
  } else if (r.uri) {
    const uri = m?.uri as { exact?: string; prefix?: string; regex?: string } | undefined;
    if (uri?.regex !== undefined) out.regex_rewrite = { pattern: { regex: '^/.*$' }, substitution: r.uri };
    else out.prefix_rewrite = r.uri;
  }
  return out;
}

const ISTIO_REDIRECT_CODES: Readonly<Record<number, string>> = REDIRECT_CODES;

function istioRedirect(r: NonNullable<IstioHttpRoute['redirect']>): EnvoyObject {
  const out: EnvoyObject = {};
  if (r.scheme) out.scheme_redirect = r.scheme;
  if (r.authority) out.host_redirect = r.authority;
  if (r.port !== undefined) out.port_redirect = r.port;
  else if (r.derivePort === 'FROM_PROTOCOL_DEFAULT') out.port_redirect = r.scheme === 'https' ? 443 : 80;
  if (r.uri) out.path_redirect = r.uri;
  out.response_code = ISTIO_REDIRECT_CODES[r.redirectCode || 301] ?? 'MOVED_PERMANENTLY';
  return out;
}

function istioDirect(d: NonNullable<IstioHttpRoute['directResponse']>): EnvoyObject {
  const out: EnvoyObject = { status: d.status };
  if (d.body?.string !== undefined) out.body = { inline_string: d.body.string };
  else if (d.body?.bytes !== undefined) out.body = { inline_bytes: d.body.bytes };
  return out;
}

type IstioCors = NonNullable<IstioHttpRoute['corsPolicy']>;

/** corsPolicy -> CorsPolicy (per route); unmatchedPreflights IGNORE stops forwarding them. */
function istioCors(c: IstioCors): EnvoyObject {
  const out: EnvoyObject = { '@type': CORS_POLICY_TYPE };
  const origins: EnvoyObject[] = [
    ...(c.allowOrigin ?? []).map((o) => (o === '*' ? { safe_regex: { regex: '.*' } } : { exact: o })),
    ...(c.allowOrigins ?? []).map((o) => istioStringMatcher(o as { exact?: string; prefix?: string; regex?: string })),
  ];
  if (origins.length) out.allow_origin_string_match = origins;
  if (c.allowMethods?.length) out.allow_methods = c.allowMethods.join(',');
  if (c.allowHeaders?.length) out.allow_headers = c.allowHeaders.join(',');
  if (c.exposeHeaders?.length) out.expose_headers = c.exposeHeaders.join(',');
  const maxAge = c.maxAge ? parseGoDuration(c.maxAge) : undefined;
  if (maxAge !== undefined) out.max_age = String(Math.floor(maxAge / 1000));
  if (c.allowCredentials !== undefined) out.allow_credentials = { value: c.allowCredentials };
  if (c.unmatchedPreflights === 'IGNORE') out.forward_not_matching_preflights = { value: false };
  return out;
}

function istioStringMatcher(m: { exact?: string; prefix?: string; regex?: string }): EnvoyObject {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return { safe_regex: { regex: m.regex ?? '.*' } };
}

/**
 * Istio retries -> Envoy retry policy. No `retries`: Istio's default policy (2 attempts on
 * connect-failure, refused-stream, unavailable, cancelled and 503, another host each time);
 * attempts 0: none. Status codes in retryOn become retriable_status_codes.
 */
export function retryPolicy(
  r:
    | {
        attempts?: number;
        perTryTimeout?: string;
        retryOn?: string;
        backoff?: string;
        retryIgnorePreviousHosts?: boolean;
      }
    | undefined,
): EnvoyObject | undefined {
  if (r && !r.attempts) return undefined;
  const on: string[] = [];
  const codes: number[] = [];
  for (const p of (r?.retryOn || ISTIO_DEFAULT_RETRY_ON).split(',')) {
    const v = p.trim();
    if (v === '') continue;
    if (/^\d+$/.test(v)) codes.push(Number(v));
    else if (!on.includes(v)) on.push(v);
  }
  if (codes.length === 0 && on.includes('retriable-status-codes')) codes.push(503);
  if (codes.length && !on.includes('retriable-status-codes')) on.push('retriable-status-codes');
  const policy: EnvoyObject = { retry_on: on.join(','), num_retries: { value: r?.attempts ?? 2 } };
  if (codes.length) policy.retriable_status_codes = codes;
  const perTry = r?.perTryTimeout ? parseGoDuration(r.perTryTimeout) : undefined;
  if (perTry) policy.per_try_timeout = duration(perTry);
  const backoff = r?.backoff ? parseGoDuration(r.backoff) : undefined;
  if (backoff) policy.retry_back_off = { base_interval: duration(backoff) };
  if (r?.retryIgnorePreviousHosts !== false) {
    policy.retry_host_predicate = [
      { name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': PREVIOUS_HOSTS_TYPE } },
    ];
    policy.host_selection_retry_max_attempts = 5;
  }
  return policy;
}

type IstioFault = {
  delay?: { fixedDelay?: string; percent?: number; percentage?: { value?: number } };
  abort?: { httpStatus?: number; grpcStatus?: string; percentage?: { value?: number } };
};

const GRPC_CODES: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Percentages as Envoy FractionalPercent per million (keeps Istio's decimals); unset = 100%. */
function fraction(p: { value?: number } | undefined): EnvoyObject {
  return { numerator: Math.round((p?.value ?? 100) * 10_000), denominator: 'MILLION' };
}

/** Istio fault -> per-route HTTPFault (fixed delay, HTTP or gRPC abort, each with its percentage). */
export function faultConfig(f: unknown): EnvoyObject | undefined {
  const fault = f as IstioFault | undefined;
  if (!fault) return undefined;
  const cfg: EnvoyObject = { '@type': FAULT_TYPE };
  const delayMs = fault.delay?.fixedDelay ? parseGoDuration(fault.delay.fixedDelay) : undefined;
  if (delayMs !== undefined) {
    const pct =
      fault.delay?.percentage ?? (fault.delay?.percent !== undefined ? { value: fault.delay.percent } : undefined);
    cfg.delay = { fixed_delay: duration(delayMs), percentage: fraction(pct) };
  }
  if (fault.abort) {
    const abort: EnvoyObject = { percentage: fraction(fault.abort.percentage) };
    if (fault.abort.grpcStatus !== undefined) abort.grpc_status = GRPC_CODES[fault.abort.grpcStatus] ?? 2;
    else if (fault.abort.httpStatus !== undefined) abort.http_status = fault.abort.httpStatus;
    cfg.abort = abort;
  }
  return cfg;
}
