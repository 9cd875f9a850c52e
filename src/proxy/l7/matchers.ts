// Envoy matchers compiled to closures once per config: StringMatcher, HeaderMatcher,
// QueryParameterMatcher and the RouteMatch path specifiers. Nothing here allocates per request
// except what a regex test does.
import { compileRegex as sharedCompileRegex, stringMatcher as sharedStringMatcher } from '../envoy/string-matcher.js';
import { L7ConfigError, bool, enumName, num, obj, oneof, str, type EnvoyObject } from './config.js';

export type StringPredicate = (value: string) => boolean;

/**
 * RE2 pattern -> JS RegExp matching the whole input (Envoy's safe_regex is a full match), via
 * the shared translation; a pattern it cannot take is a config error (update() NACKs it).
 * Envoy ignores ignore_case / case_sensitive for regexes, so there is no case flag here.
 */
export function compileRegex(pattern: string): RegExp {
  const re = sharedCompileRegex(pattern);
  if (typeof re === 'string') throw new L7ConfigError(re);
  return re;
}

/** envoy.type.matcher.v3.RegexMatcher -> RegExp ({regex} or a bare string). */
export function regexOf(v: unknown): RegExp {
  const o = obj(v);
  const pattern = o ? str(o.regex) : str(v);
  if (pattern === undefined) throw new L7ConfigError('safe_regex without regex');
  return compileRegex(pattern);
}

/** envoy.type.matcher.v3.StringMatcher (the one implementation RBAC uses too). */
export function stringMatcher(m: EnvoyObject): StringPredicate {
  const test = sharedStringMatcher(m);
  if (typeof test === 'string') throw new L7ConfigError(test);
  return test;
}

/** What a request offers matchers: header values by lowercase name, pseudo-headers included. */
export interface MatchInput {
  /** The value of a header (`:method`, `:authority`, `:path`, `:scheme` too); multiple values joined by ",". */
  header(name: string): string | undefined;
  /** The first value of a query parameter (not decoded, as Envoy), '' when present without a value. */
  queryParam(name: string): string | undefined;
  readonly isGrpc: boolean;
}

export type RequestPredicate = (input: MatchInput) => boolean;

/** envoy.config.route.v3.HeaderMatcher (current string_match and the legacy *_match fields). */
export function headerMatcher(h: EnvoyObject): RequestPredicate {
  const name = (str(h.name) ?? '').toLowerCase();
  if (!name) throw new L7ConfigError('header matcher without a name');
  const invert = bool(h.invert_match) === true;
  const missingAsEmpty = bool(h.treat_missing_header_as_empty) === true;
  const kind = oneof(h, [
    'string_match',
    'exact_match',
    'safe_regex_match',
    'prefix_match',
    'suffix_match',
    'contains_match',
    'present_match',
    'range_match',
  ] as const);
  let test: StringPredicate;
  switch (kind) {
    case 'present_match': {
      // present_match: false matches an absent header (Envoy v3 semantics).
      const want = bool(h.present_match) !== false;
      return (input) => ((input.header(name) !== undefined) === want) !== invert;
    }
    case undefined: {
      // No specifier: the header must be present.
      return (input) => (input.header(name) !== undefined) !== invert;
    }
    case 'string_match':
      test = stringMatcher(obj(h.string_match) ?? {});
      break;
    case 'safe_regex_match': {
      const re = regexOf(h.safe_regex_match);
      test = (v) => re.test(v);
      break;
    }
    case 'range_match': {
      const r = obj(h.range_match) ?? {};
      const start = num(r.start) ?? 0;
      const end = num(r.end) ?? 0;
      test = (v) => {
        if (!/^-?\d+$/.test(v)) return false;
        const n = Number(v);
        return n >= start && n < end;
      };
      break;
    }
    default: {
      const legacy = {
        exact_match: 'exact',
        prefix_match: 'prefix',
        suffix_match: 'suffix',
        contains_match: 'contains',
      };
      test = stringMatcher({ [legacy[kind]]: h[kind] });
    }
  }
  // A missing header never matches, inverted or not (Envoy), unless treated as empty.
  return (input) => {
    const v = input.header(name) ?? (missingAsEmpty ? '' : undefined);
    return v !== undefined && test(v) !== invert;
  };
}

/** envoy.config.route.v3.QueryParameterMatcher. */
export function queryParameterMatcher(q: EnvoyObject): RequestPredicate {
  const name = str(q.name);
  if (!name) throw new L7ConfigError('query parameter matcher without a name');
  if (q.present_match !== undefined && q.present_match !== null) {
    const want = bool(q.present_match) !== false;
    return (input) => (input.queryParam(name) !== undefined) === want;
  }
  const sm = obj(q.string_match);
  // Neither: the parameter must be present.
  if (!sm) return (input) => input.queryParam(name) !== undefined;
  const test = stringMatcher(sm);
  return (input) => {
    const v = input.queryParam(name);
    return v !== undefined && test(v);
  };
}

/**
 * The RouteMatch path specifier -> a predicate on the path without its query string.
 * `case_sensitive: false` lower-cases both sides (Envoy ignores it for safe_regex).
 */
export function pathMatcher(m: EnvoyObject): StringPredicate {
  const caseSensitive = bool(m.case_sensitive) !== false;
  const kind = oneof(m, ['prefix', 'path', 'safe_regex', 'path_separated_prefix', 'connect_matcher'] as const);
  const fold = (s: string) => (caseSensitive ? s : s.toLowerCase());
  switch (kind) {
    case 'prefix': {
      const p = fold(str(m.prefix) ?? '');
      if (p === '' || p === '/') return p === '' ? () => true : (path) => path.charCodeAt(0) === 47;
      return caseSensitive ? (path) => path.startsWith(p) : (path) => path.toLowerCase().startsWith(p);
    }
    case 'path': {
      const p = fold(str(m.path) ?? '');
      return caseSensitive ? (path) => path === p : (path) => path.toLowerCase() === p;
    }
    case 'safe_regex': {
      const re = regexOf(m.safe_regex);
      return (path) => re.test(path);
    }
    case 'path_separated_prefix': {
      // Whole segments: "/v1" matches "/v1" and "/v1/x", not "/v1x"; Envoy refuses a trailing "/".
      const p = fold(str(m.path_separated_prefix) ?? '');
      if (p.endsWith('/')) throw new L7ConfigError(`path_separated_prefix ${JSON.stringify(p)} ends with "/"`);
      return (path) => {
        const v = fold(path);
        return v.startsWith(p) && (v.length === p.length || v.charCodeAt(p.length) === 47);
      };
    }
    case 'connect_matcher':
      return () => false;
    default:
      throw new L7ConfigError('route match without a path specifier');
  }
}

const DENOMINATORS: Readonly<Record<string, number>> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };
const DENOMINATOR_NAMES = Object.keys(DENOMINATORS);

/**
 * envoy.type.v3.FractionalPercent -> [numerator, denominator] (denominator HUNDRED by default;
 * a numerator above the denominator is capped, as Envoy does). `fallback` when absent.
 */
export function fractionalPercent(v: unknown, fallback: readonly [number, number]): [number, number] {
  const o = obj(v);
  if (!o) return [fallback[0], fallback[1]];
  const name = enumName(o.denominator, DENOMINATOR_NAMES) ?? 'HUNDRED';
  const denominator = DENOMINATORS[name];
  if (denominator === undefined) throw new L7ConfigError(`FractionalPercent: unknown denominator ${String(name)}`);
  const numerator = Math.max(0, Math.floor(num(o.numerator) ?? 0));
  return [Math.min(numerator, denominator), denominator];
}

/** True with probability numerator/denominator (0 never, numerator >= denominator always). */
export function sampled(numerator: number, denominator: number): boolean {
  if (numerator <= 0) return false;
  if (numerator >= denominator) return true;
  return Math.floor(Math.random() * denominator) < numerator;
}
