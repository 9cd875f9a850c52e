// Route matches of Gateway API and Istio as Envoy v3 RouteMatch objects.
import type { GRPCRouteRule } from '../../config/kinds/gateway/grpc-route.js';
import type { HTTPRouteMatch } from '../../config/kinds/gateway/http-route.js';
import type { HTTPMatchRequest } from '../../config/kinds/istio/virtual-service.js';

export type EnvoyObject = Record<string, unknown>;

type GrpcMatch = NonNullable<GRPCRouteRule['matches']>[number];

function regexMatcher(regex: string): EnvoyObject {
  return { regex };
}

/**
 * HTTPRoute match -> RouteMatch. PathPrefix matches whole segments: Envoy's path_separated_prefix
 * when `pathSeparatedPrefix`, else an equivalent safe_regex (what gRPC clients accept too).
 */
export function httpRouteMatch(m: HTTPRouteMatch, pathSeparatedPrefix = false): EnvoyObject {
  const out: EnvoyObject = {};
  const path = m.path;
  if (path.type === 'Exact') out.path = path.value;
  else if (path.type === 'RegularExpression') out.safe_regex = regexMatcher(path.value);
  // Gateway API prefixes match whole segments: "/v1" matches "/v1" and "/v1/x", not "/v1x".
  else if (/^\/*$/.test(path.value)) out.prefix = '/';
  else if (pathSeparatedPrefix) out.path_separated_prefix = path.value.replace(/\/+$/, '');
  else out.safe_regex = regexMatcher(`${escapeRegex(path.value.replace(/\/+$/, ''))}(/.*)?`);
  const headers = (m.headers ?? []).map((h) => ({
    name: h.name.toLowerCase(),
    string_match: h.type === 'RegularExpression' ? { safe_regex: regexMatcher(h.value) } : { exact: h.value },
  }));
  if (m.method !== undefined) headers.push({ name: ':method', string_match: { exact: m.method } });
  if (headers.length) out.headers = headers;
  const query = (m.queryParams ?? []).map((q) => ({
    name: q.name,
    string_match: q.type === 'RegularExpression' ? { safe_regex: regexMatcher(q.value) } : { exact: q.value },
  }));
  if (query.length) out.query_parameters = query;
  return out;
}

/** GRPCRoute match -> RouteMatch on the gRPC path "/service/method". */
export function grpcRouteMatch(m: GrpcMatch): EnvoyObject {
  const out: EnvoyObject = {};
  const method = m.method;
  if (method === undefined) out.prefix = '/';
  else if (method.type === 'RegularExpression') {
    out.safe_regex = regexMatcher(`/${method.service ?? '[^/]+'}/${method.method ?? '[^/]+'}`);
  } else if (method.service !== undefined && method.method !== undefined)
    out.path = `/${method.service}/${method.method}`;
  else if (method.service !== undefined) out.prefix = `/${method.service}/`;
  else out.safe_regex = regexMatcher(`/[^/]+/${escapeRegex(method.method!)}`);
  const headers = (m.headers ?? []).map((h) => ({
    name: h.name.toLowerCase(),
    string_match: h.type === 'RegularExpression' ? { safe_regex: regexMatcher(h.value) } : { exact: h.value },
  }));
  if (headers.length) out.headers = headers;
  return out;
}

type IstioStringMatch = { exact?: string; prefix?: string; regex?: string };

function istioString(m: IstioStringMatch): EnvoyObject {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return { safe_regex: regexMatcher(m.regex ?? '.*') };
}

/** VirtualService HTTPMatchRequest -> RouteMatch (uri, headers, method, authority). */
export function istioMatch(m: HTTPMatchRequest | undefined): EnvoyObject {
  const out: EnvoyObject = {};
  const uri = m?.uri as IstioStringMatch | undefined;
  if (!uri) out.prefix = '/';
  else if (uri.exact !== undefined) out.path = uri.exact;
  else if (uri.prefix !== undefined) out.prefix = uri.prefix;
  else out.safe_regex = regexMatcher(uri.regex ?? '.*');
  if (m?.ignoreUriCase) out.case_sensitive = { value: false };
  const headers: EnvoyObject[] = [];
  for (const [name, sm] of Object.entries((m?.headers ?? {}) as Record<string, IstioStringMatch>)) {
    headers.push({ name: name.toLowerCase(), string_match: istioString(sm) });
  }
  for (const [name, sm] of Object.entries((m?.withoutHeaders ?? {}) as Record<string, IstioStringMatch>)) {
    // regex "*": the header is present (so withoutHeaders: absent).
    const present = sm.regex === '*';
    headers.push({
      name: name.toLowerCase(),
      ...(present ? { present_match: true } : { string_match: istioString(sm) }),
      invert_match: true,
    });
  }
  if (m?.method) headers.push({ name: ':method', string_match: istioString(m.method as IstioStringMatch) });
  if (m?.authority) headers.push({ name: ':authority', string_match: istioString(m.authority as IstioStringMatch) });
  if (m?.scheme) headers.push({ name: ':scheme', string_match: istioString(m.scheme as IstioStringMatch) });
  if (headers.length) out.headers = headers;
  const query: EnvoyObject[] = [];
  for (const [name, sm] of Object.entries((m?.queryParams ?? {}) as Record<string, IstioStringMatch>)) {
    query.push({ name, string_match: istioString(sm) });
  }
  if (query.length) out.query_parameters = query;
  return out;
}

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
