// A RouteConfiguration compiled once per config: virtual host lookup by authority (Envoy's
// order: exact, longest suffix wildcard, longest prefix wildcard, then "*"; with the port, then
// without) and per virtual host the ordered routes as predicate closures plus their actions.
import { readFileSync } from 'node:fs';
import {
  L7ConfigError,
  bool,
  durationMs,
  enumName,
  list,
  num,
  obj,
  oneof,
  str,
  strList,
  type EnvoyObject,
} from './config.js';
import { compileHashPolicy, type HashPolicy } from './hash-policy.js';
import { HeaderMutation, headerLevel } from './header-ops.js';
import {
  compileRegex,
  fractionalPercent,
  headerMatcher,
  pathMatcher,
  queryParameterMatcher,
  sampled,
  type MatchInput,
  type RequestPredicate,
} from './matchers.js';

/** What route selection reads from a request. */
export interface RouteMatchInput extends MatchInput {
  /** The path without query string. */
  readonly pathOnly: string;
}

export interface ClusterAction {
  readonly kind: 'cluster';
  /** The upstream cluster for one request (weighted pick, or a header's value); undefined if none. */
  pickCluster(input: MatchInput): string | undefined;
  /** Request timeout (min of `timeout` and max_stream_duration); 0 = none. */
  readonly timeoutMs: number;
  readonly hashPolicy: HashPolicy | undefined;
  /** New :path for the upstream request (prefix_rewrite / regex_rewrite); undefined = unchanged. */
  readonly rewritePath: ((path: string) => string) | undefined;
  readonly hostRewrite: string | undefined;
  readonly autoHostRewrite: boolean;
  /** Status when the named cluster is not in the config (cluster_not_found_response_code). */
  readonly clusterNotFoundStatus: number;
  /** The RouteAction as given, for later filters (retry_policy, ...). */
  readonly raw: EnvoyObject;
}

export interface DirectResponseAction {
  readonly kind: 'direct';
  readonly status: number;
  readonly body: Buffer | undefined;
}

export interface RedirectInput {
  readonly scheme: string;
  readonly authority: string;
  /** Full path with query. */
  readonly path: string;
}

export interface RedirectAction {
  readonly kind: 'redirect';
  readonly status: number;
  location(input: RedirectInput): string;
}

export type RouteAction = ClusterAction | DirectResponseAction | RedirectAction;

export interface VirtualHostEntry {
  readonly name: string;
  readonly routes: readonly RouteEntry[];
  /** The VirtualHost as given (typed_per_filter_config, retry_policy... for later filters). */
  readonly raw: EnvoyObject;
  /** The RouteConfiguration the virtual host belongs to (its typed_per_filter_config...). */
  readonly routeConfiguration: EnvoyObject;
}

export interface RouteEntry {
  readonly name: string | undefined;
  readonly matches: (input: RouteMatchInput) => boolean;
  readonly action: RouteAction;
  /** Route, virtual host and route configuration mutations merged in application order. */
  readonly requestHeaders: HeaderMutation | undefined;
  readonly responseHeaders: HeaderMutation | undefined;
  readonly virtualHost: VirtualHostEntry;
  /** The Route as given (typed_per_filter_config for later filters). */
  readonly raw: EnvoyObject;
}

const REDIRECT_CODES: Readonly<Record<string, number>> = {
  MOVED_PERMANENTLY: 301,
  FOUND: 302,
  SEE_OTHER: 303,
  TEMPORARY_REDIRECT: 307,
  PERMANENT_REDIRECT: 308,
};
const REDIRECT_NAMES = Object.keys(REDIRECT_CODES);

const NOT_FOUND_NAMES = ['SERVICE_UNAVAILABLE', 'NOT_FOUND', 'INTERNAL_SERVER_ERROR'];
const NOT_FOUND_CODES: Readonly<Record<string, number>> = {
  SERVICE_UNAVAILABLE: 503,
  NOT_FOUND: 404,
  INTERNAL_SERVER_ERROR: 500,
};

const VHOST_CACHE_LIMIT = 4096;

export class RouteTable {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHostEntry[];
  readonly #exact = new Map<string, VirtualHostEntry>();
  /** [suffix, vhost], longest first. */
  readonly #suffix: [string, VirtualHostEntry][] = [];
  /** [prefix, vhost], longest first. */
  readonly #prefix: [string, VirtualHostEntry][] = [];
  #default: VirtualHostEntry | undefined;
  readonly #indexes = new Map<VirtualHostEntry, RouteIndex>();
  /** Authorities repeat: remember their lookups (bounded; cleared when full). */
  readonly #cache = new Map<string, VirtualHostEntry | null>();

  constructor(rc: EnvoyObject) {
    this.name = str(rc.name) ?? '';
    const mostSpecificWins = bool(rc.most_specific_header_mutations_wins) === true;
    const rcReq = headerLevel(rc, 'request');
    const rcRes = headerLevel(rc, 'response');
    const vhosts: VirtualHostEntry[] = [];
    const seen = new Set<string>();
    for (const vh of list(rc.virtual_hosts)) {
      const vhReq = headerLevel(vh, 'request');
      const vhRes = headerLevel(vh, 'response');
      const routes: RouteEntry[] = [];
      const entry: VirtualHostEntry = { name: str(vh.name) ?? '', routes, raw: vh, routeConfiguration: rc };
      for (const r of list(vh.routes)) {
        const levels = <T>(route: T, vhost: T, config: T): T[] =>
          mostSpecificWins ? [config, vhost, route] : [route, vhost, config];
        routes.push({
          name: str(r.name) || undefined,
          matches: compileMatch(obj(r.match) ?? {}),
          action: compileAction(r),
          requestHeaders: HeaderMutation.of(levels(headerLevel(r, 'request'), vhReq, rcReq)),
          responseHeaders: HeaderMutation.of(levels(headerLevel(r, 'response'), vhRes, rcRes)),
          virtualHost: entry,
          raw: r,
        });
      }
      vhosts.push(entry);
      this.#indexes.set(entry, new RouteIndex(routes));
      for (const d of strList(vh.domains)) {
        const domain = d.toLowerCase();
        // Envoy refuses a domain claimed by two virtual hosts of one route configuration.
        if (seen.has(domain))
          throw new L7ConfigError(`route configuration ${this.name}: domain ${JSON.stringify(d)} in two virtual hosts`);
        seen.add(domain);
        if (domain === '*') this.#default = entry;
        else if (domain.startsWith('*')) this.#suffix.push([domain.slice(1), entry]);
        else if (domain.endsWith('*')) this.#prefix.push([domain.slice(0, -1), entry]);
        else this.#exact.set(domain, entry);
      }
    }
    this.virtualHosts = vhosts;
    this.#suffix.sort((a, b) => b[0].length - a[0].length);
    this.#prefix.sort((a, b) => b[0].length - a[0].length);
  }

  /**
   * The virtual host for an authority (Host header / :authority), or undefined. Each class of
   * domain is tried with the authority as given, then without its port, before the next class.
   */
  virtualHost(authority: string): VirtualHostEntry | undefined {
    const cached = this.#cache.get(authority);
    if (cached !== undefined) return cached ?? undefined;
    const host = authority.toLowerCase();
    const stripped = stripPort(host);
    const hosts = stripped === host ? [host] : [host, stripped];
    let found: VirtualHostEntry | undefined;
    for (const h of hosts) if ((found = this.#exact.get(h))) break;
    // The wildcard must stand for at least one character.
    if (!found)
      search: for (const [suffix, vh] of this.#suffix)
        for (const h of hosts)
          if (h.length > suffix.length && h.endsWith(suffix)) {
            found = vh;
            break search;
          }
    if (!found)
      search: for (const [prefix, vh] of this.#prefix)
        for (const h of hosts)
          if (h.length > prefix.length && h.startsWith(prefix)) {
            found = vh;
            break search;
          }
    found ??= this.#default;
    if (this.#cache.size >= VHOST_CACHE_LIMIT) this.#cache.clear();
    this.#cache.set(authority, found ?? null);
    return found;
  }

  /** The first matching route of the authority's virtual host. */
  route(authority: string, input: RouteMatchInput): RouteEntry | undefined {
    const vh = this.virtualHost(authority);
    if (!vh) return undefined;
    return this.#indexes.get(vh)!.find(input);
  }
}

// --- route selection index -----------------------------------------------------------------------
//
// Envoy takes the first route, in order, whose match holds. A virtual host's routes are sorted
// into buckets by what their path specifier requires (exact path, literal prefix, or neither);
// within a bucket by the value of one exact header match, when the route has one. Each route is
// in exactly one place, kept in route order; a request looks only at the buckets its path (and
// that header's value) can select, checks each candidate with its full predicate, and keeps the
// lowest route index that matches: the same answer as the linear scan, without visiting routes
// that cannot match.

/** Up to this many routes a linear scan is as fast as the index. */
const LINEAR_LIMIT = 8;

interface HeaderBucket {
  readonly name: string;
  readonly byValue: Map<string, number[]>;
}

/** Route indices in order, plus those sub-indexed by one exact header value. */
class Bucket {
  readonly plain: number[] = [];
  readonly headers: HeaderBucket[] = [];

  add(index: number, header: [name: string, value: string] | undefined): void {
    if (!header) {
      this.plain.push(index);
      return;
    }
    let hb = this.headers.find((h) => h.name === header[0]);
    if (!hb) this.headers.push((hb = { name: header[0], byValue: new Map() }));
    const list = hb.byValue.get(header[1]);
    if (list) list.push(index);
    else hb.byValue.set(header[1], [index]);
  }
}

export class RouteIndex {
  readonly #routes: readonly RouteEntry[];
  readonly #linear: boolean;
  readonly #exact = new Map<string, Bucket>();
  readonly #exactFold = new Map<string, Bucket>();
  readonly #prefix = new Map<string, Bucket>();
  readonly #prefixFold = new Map<string, Bucket>();
  /** Distinct prefix lengths, ascending. */
  #prefixLengths: number[] = [];
  #prefixFoldLengths: number[] = [];
  readonly #other = new Bucket();

  constructor(routes: readonly RouteEntry[]) {
    this.#routes = routes;
    this.#linear = routes.length <= LINEAR_LIMIT;
    if (this.#linear) return;
    const lengths = new Set<number>();
    const foldLengths = new Set<number>();
    const bucket = (map: Map<string, Bucket>, key: string): Bucket => {
      let b = map.get(key);
      if (!b) map.set(key, (b = new Bucket()));
      return b;
    };
    routes.forEach((r, i) => {
      const m = obj(r.raw.match) ?? {};
      const key = pathKey(m);
      const header = headerKey(m);
      switch (key.kind) {
        case 'never':
          return;
        case 'exact':
          bucket(key.fold ? this.#exactFold : this.#exact, key.value).add(i, header);
          return;
        case 'prefix':
          (key.fold ? foldLengths : lengths).add(key.value.length);
          bucket(key.fold ? this.#prefixFold : this.#prefix, key.value).add(i, header);
          return;
        default:
          this.#other.add(i, header);
      }
    });
    this.#prefixLengths = [...lengths].sort((a, b) => a - b);
    this.#prefixFoldLengths = [...foldLengths].sort((a, b) => a - b);
  }

  /** The first route (in config order) that matches. */
  find(input: RouteMatchInput): RouteEntry | undefined {
    const routes = this.#routes;
    if (this.#linear) {
      for (const r of routes) if (r.matches(input)) return r;
      return undefined;
    }
    const path = input.pathOnly;
    let best = routes.length;
    let b = this.#exact.get(path);
    if (b) best = this.#scan(b, input, best);
    for (const len of this.#prefixLengths) {
      if (len > path.length) break;
      b = this.#prefix.get(len === path.length ? path : path.slice(0, len));
      if (b) best = this.#scan(b, input, best);
    }
    if (this.#exactFold.size > 0 || this.#prefixFold.size > 0) {
      const folded = path.toLowerCase();
      b = this.#exactFold.get(folded);
      if (b) best = this.#scan(b, input, best);
      for (const len of this.#prefixFoldLengths) {
        if (len > folded.length) break;
        b = this.#prefixFold.get(len === folded.length ? folded : folded.slice(0, len));
        if (b) best = this.#scan(b, input, best);
      }
    }
    best = this.#scan(this.#other, input, best);
    return best < routes.length ? routes[best] : undefined;
  }

  /** The lowest matching index below `best` in the bucket, else `best`. */
  #scan(b: Bucket, input: RouteMatchInput, best: number): number {
    const routes = this.#routes;
    for (const i of b.plain) {
      if (i >= best) break;
      if (routes[i]!.matches(input)) {
        best = i;
        break;
      }
    }
    for (const hb of b.headers) {
      const v = input.header(hb.name);
      if (v === undefined) continue;
      const list = hb.byValue.get(v);
      if (!list) continue;
      for (const i of list) {
        if (i >= best) break;
        if (routes[i]!.matches(input)) {
          best = i;
          break;
        }
      }
    }
    return best;
  }
}

type PathKey =
  | { readonly kind: 'exact' | 'prefix'; readonly value: string; readonly fold: boolean }
  | { readonly kind: 'never' | 'other' };

/**
 * What a path specifier requires literally: the exact path, a prefix every matching path starts
 * with (prefix, path_separated_prefix, a safe_regex's literal head), or nothing usable.
 */
function pathKey(m: EnvoyObject): PathKey {
  const fold = bool(m.case_sensitive) === false;
  const norm = (s: string) => (fold ? s.toLowerCase() : s);
  // The same specifier pathMatcher() picks.
  switch (oneof(m, ['prefix', 'path', 'safe_regex', 'path_separated_prefix', 'connect_matcher'] as const)) {
    case 'prefix':
      return { kind: 'prefix', value: norm(str(m.prefix) ?? ''), fold };
    case 'path':
      return { kind: 'exact', value: norm(str(m.path) ?? ''), fold };
    case 'path_separated_prefix':
      return { kind: 'prefix', value: norm(str(m.path_separated_prefix) ?? ''), fold };
    case 'connect_matcher':
      return { kind: 'never' };
    case 'safe_regex': {
      // Envoy ignores case_sensitive for regexes; the index is case-sensitive for them too.
      const regex = str(obj(m.safe_regex)?.regex) ?? str(m.safe_regex);
      return regex === undefined ? { kind: 'other' } : { kind: 'prefix', value: regexLiteralHead(regex), fold: false };
    }
    default:
      return { kind: 'other' };
  }
}

/**
 * The literal text every full match of an RE2 pattern starts with ("" when unsure): characters
 * up to the first metacharacter, minus the last one if a quantifier follows it. A pattern with
 * an alternation anywhere, or leading flags, has no head.
 */
export function regexLiteralHead(pattern: string): string {
  if (pattern.includes('|')) return '';
  let i = 0;
  while (i < pattern.length && !'\\.[](){}*+?^$'.includes(pattern[i]!)) i++;
  const next = pattern[i];
  if (next === '*' || next === '?' || next === '{') i--;
  return pattern.slice(0, Math.max(0, i));
}

/** The first header matcher that requires one exact, case-sensitive value: [name, value]. */
function headerKey(m: EnvoyObject): [string, string] | undefined {
  for (const h of list(m.headers)) {
    if (bool(h.invert_match) === true || bool(h.treat_missing_header_as_empty) === true) continue;
    const name = str(h.name)?.toLowerCase();
    if (!name) continue;
    const sm = obj(h.string_match);
    if (sm) {
      if (typeof sm.exact === 'string' && bool(sm.ignore_case) !== true) return [name, sm.exact];
      continue;
    }
    if (typeof h.exact_match === 'string') return [name, h.exact_match];
  }
  return undefined;
}

/** "host:port" -> "host"; "[v6]:port" -> "[v6]"; a bare IPv6 address is left alone. */
export function stripPort(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon < 0) return host;
  if (host.startsWith('[')) return host.lastIndexOf(']') < colon ? host.slice(0, colon) : host;
  return host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

function compileMatch(m: EnvoyObject): (input: RouteMatchInput) => boolean {
  const path = pathMatcher(m);
  const checks: RequestPredicate[] = [
    ...list(m.headers).map(headerMatcher),
    ...list(m.query_parameters).map(queryParameterMatcher),
  ];
  if (m.grpc !== undefined && m.grpc !== null) checks.push((input) => input.isGrpc);
  // runtime_fraction: the route matches only this share of the requests (no runtime here: the
  // default_value); the others go on to the next route. Last, so only matching requests sample.
  const rf = obj(m.runtime_fraction);
  if (rf) {
    const [n, d] = fractionalPercent(rf.default_value, [0, 100]);
    checks.push(() => sampled(n, d));
  }
  if (checks.length === 0) return (input) => path(input.pathOnly);
  if (checks.length === 1) {
    const only = checks[0]!;
    return (input) => path(input.pathOnly) && only(input);
  }
  return (input) => {
    if (!path(input.pathOnly)) return false;
    for (const c of checks) if (!c(input)) return false;
    return true;
  };
}

function compileAction(r: EnvoyObject): RouteAction {
  const kind = oneof(r, ['route', 'redirect', 'direct_response', 'non_forwarding_action', 'filter_action'] as const);
  switch (kind) {
    case 'route':
      return clusterAction(obj(r.route) ?? {}, obj(r.match) ?? {});
    case 'direct_response': {
      const d = obj(r.direct_response) ?? {};
      return { kind: 'direct', status: num(d.status) ?? 200, body: dataSource(d.body) };
    }
    case 'redirect':
      return redirectAction(obj(r.redirect) ?? {}, obj(r.match) ?? {});
    default:
      throw new L7ConfigError(`route ${str(r.name) ?? ''} has no supported action`);
  }
}

/** envoy.config.core.v3.DataSource, read once per config. */
function dataSource(v: unknown): Buffer | undefined {
  const d = obj(v);
  if (!d) return undefined;
  if (typeof d.inline_string === 'string') return Buffer.from(d.inline_string);
  const bytes = d.inline_bytes;
  if (typeof bytes === 'string') return Buffer.from(bytes, 'base64');
  if (bytes instanceof Uint8Array) return Buffer.from(bytes);
  if (typeof d.filename === 'string') {
    try {
      return readFileSync(d.filename);
    } catch (e) {
      throw new L7ConfigError(`direct response body ${d.filename}: ${(e as Error).message}`);
    }
  }
  return undefined;
}

function clusterAction(a: EnvoyObject, match: EnvoyObject): ClusterAction {
  const spec = oneof(a, ['cluster', 'weighted_clusters', 'cluster_header', 'cluster_specifier_plugin'] as const);
  let pickCluster: (input: MatchInput) => string | undefined;
  if (spec === 'cluster') {
    const name = str(a.cluster) ?? '';
    pickCluster = () => name;
  } else if (spec === 'weighted_clusters') {
    pickCluster = weightedPick(obj(a.weighted_clusters) ?? {});
  } else if (spec === 'cluster_header') {
    const header = (str(a.cluster_header) ?? '').toLowerCase();
    pickCluster = (input) => input.header(header);
  } else throw new L7ConfigError('route action without a cluster');
  const timeout = durationMs(a.timeout) ?? 0;
  const maxStream = durationMs(obj(a.max_stream_duration)?.max_stream_duration) ?? 0;
  const timeoutMs = timeout > 0 && maxStream > 0 ? Math.min(timeout, maxStream) : Math.max(timeout, maxStream);
  return {
    kind: 'cluster',
    pickCluster,
    timeoutMs,
    hashPolicy: compileHashPolicy(a.hash_policy),
    rewritePath: pathRewrite(a, match),
    hostRewrite: str(a.host_rewrite_literal) || undefined,
    autoHostRewrite: bool(a.auto_host_rewrite) === true,
    clusterNotFoundStatus: NOT_FOUND_CODES[enumName(a.cluster_not_found_response_code, NOT_FOUND_NAMES) ?? ''] ?? 503,
    raw: a,
  };
}

function weightedPick(wc: EnvoyObject): (input: MatchInput) => string | undefined {
  const names: string[] = [];
  const cumulative: number[] = [];
  let total = 0;
  for (const c of list(wc.clusters)) {
    const weight = num(c.weight) ?? 0;
    const name = str(c.name);
    if (!name || weight <= 0) continue;
    total += weight;
    names.push(name);
    cumulative.push(total);
  }
  if (names.length === 0) throw new L7ConfigError('weighted_clusters without a positive weight');
  if (names.length === 1) {
    const only = names[0]!;
    return () => only;
  }
  return () => {
    const r = Math.random() * total;
    for (let i = 0; i < cumulative.length; i++) if (r < cumulative[i]!) return names[i];
    return names[names.length - 1];
  };
}

/** The length of the path the route matched literally (what prefix_rewrite replaces). */
function matchedPrefixLength(match: EnvoyObject): number | undefined {
  const p = str(match.prefix) ?? str(match.path) ?? str(match.path_separated_prefix);
  return p?.length;
}

/** prefix_rewrite or regex_rewrite (the query string is kept). */
function pathRewrite(a: EnvoyObject, match: EnvoyObject): ((path: string) => string) | undefined {
  const prefix = str(a.prefix_rewrite);
  if (prefix !== undefined && prefix !== '') {
    const len = matchedPrefixLength(match);
    if (len === undefined) throw new L7ConfigError('prefix_rewrite needs a prefix or path match');
    return (path) => prefix + path.slice(len);
  }
  return regexRewrite(a.regex_rewrite);
}

/** RegexMatchAndSubstitute: every match in the path (not the query) replaced; RE2's \1 is JS's $1. */
function regexRewrite(v: unknown): ((path: string) => string) | undefined {
  const rr = obj(v);
  if (!rr) return undefined;
  const anchored = compileRegex(str(obj(rr.pattern)?.regex) ?? '');
  const re = new RegExp(anchored.source.slice(4, -2), `${anchored.flags}g`);
  const substitution = (str(rr.substitution) ?? '').replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1');
  return (path) => {
    const q = path.indexOf('?');
    const p = q < 0 ? path : path.slice(0, q);
    return p.replace(re, substitution) + (q < 0 ? '' : path.slice(q));
  };
}

function redirectAction(rd: EnvoyObject, match: EnvoyObject): RedirectAction {
  const code = enumName(rd.response_code, REDIRECT_NAMES) ?? 'MOVED_PERMANENTLY';
  const status = REDIRECT_CODES[code];
  if (status === undefined) throw new L7ConfigError(`unknown redirect response_code ${code}`);
  const scheme = str(rd.scheme_redirect) || (bool(rd.https_redirect) ? 'https' : undefined);
  const host = str(rd.host_redirect) || undefined;
  const port = num(rd.port_redirect) || undefined;
  const stripQuery = bool(rd.strip_query) === true;
  const pathRedirect = str(rd.path_redirect) || undefined;
  // An empty prefix_rewrite is unset (as in RouteAction); it needs a prefix or path match.
  const prefix = str(rd.prefix_rewrite) || undefined;
  const prefixLen = prefix !== undefined ? matchedPrefixLength(match) : undefined;
  if (prefix !== undefined && prefixLen === undefined)
    throw new L7ConfigError('redirect prefix_rewrite needs a prefix or path match');
  const regex = regexRewrite(rd.regex_rewrite);
  return {
    kind: 'redirect',
    status,
    location(input) {
      const finalScheme = scheme ?? input.scheme;
      let authority = host ?? input.authority;
      if (port !== undefined) authority = `${stripPort(authority)}:${port}`;
      // A scheme change without port_redirect drops the old scheme's default port (Envoy).
      else if (
        scheme !== undefined &&
        scheme !== input.scheme &&
        authority.endsWith(input.scheme === 'https' ? ':443' : ':80')
      )
        authority = stripPort(authority);
      // A default port for the final scheme is dropped (Envoy).
      if (
        (finalScheme === 'https' && authority.endsWith(':443')) ||
        (finalScheme === 'http' && authority.endsWith(':80'))
      )
        authority = stripPort(authority);
      let path = input.path;
      if (pathRedirect !== undefined) {
        // A path_redirect with its own query replaces the query; otherwise the request's is kept.
        const q = path.indexOf('?');
        path = pathRedirect.includes('?') || q < 0 ? pathRedirect : pathRedirect + path.slice(q);
      } else if (prefix !== undefined && prefixLen !== undefined) path = prefix + path.slice(prefixLen);
      else if (regex) path = regex(path);
      if (stripQuery) {
        const q = path.indexOf('?');
        if (q >= 0) path = path.slice(0, q);
      }
      return `${finalScheme}://${authority}${path}`;
    },
  };
}

const FILTER_CONFIG_TYPE = 'type.googleapis.com/envoy.config.route.v3.FilterConfig';

/** A Route with the VirtualHost and RouteConfiguration it is in, as given. */
export interface RouteLevels {
  readonly route: EnvoyObject;
  readonly virtualHost: EnvoyObject;
  readonly routeConfiguration: EnvoyObject;
}

/** Every route of every route configuration (filters precompile their per-route part with it). */
export function* allRoutes(routes: ReadonlyMap<string, EnvoyObject>): Generator<RouteLevels> {
  for (const rc of routes.values())
    for (const vh of list(rc.virtual_hosts))
      for (const r of list(vh.routes)) yield { route: r, virtualHost: vh, routeConfiguration: rc };
}

/**
 * A filter's per-route configuration (typed_per_filter_config[filterName]), the most specific
 * level winning as in Envoy: route, then virtual host, then route configuration. A FilterConfig
 * wrapper is unwrapped; `disabled: true` there gives null (the filter is off for the route).
 */
export function perFilterConfig(levels: RouteLevels, filterName: string): EnvoyObject | null | undefined {
  for (const owner of [levels.route, levels.virtualHost, levels.routeConfiguration]) {
    const c = obj(obj(owner.typed_per_filter_config)?.[filterName]);
    if (!c) continue;
    if (str(c['@type']) === FILTER_CONFIG_TYPE) {
      if (bool(c.disabled) === true) return null;
      return obj(c.config) ?? {};
    }
    return c;
  }
  return undefined;
}
