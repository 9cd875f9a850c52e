// Envoy config.rbac.v3 Permission and Principal trees compiled to three-valued matchers.
// Every input shape is read once here; evaluation only runs the resulting closures.
import { namespaceOf, namespaceOfRegex } from './spiffe-namespace.js';
import type { RbacAttributes, RequestAuth } from './attributes.js';
import { attributeIp, compileCidr, inCidr } from './ip.js';
import { array as list, get, isObj, num, oneOf } from '../envoy/values.js';
import { regexMatcher, stringMatcher, type StringTest } from '../envoy/string-matcher.js';
import { and, leaf, NO, not, or, UNKNOWN, UNKNOWN_NODE, YES, YES_NODE, type Node, type Tri } from './tri.js';

export interface CompileContext {
  readonly mode: 'l4' | 'l7';
  /** Whatever could not be evaluated as written (it became UNKNOWN, so fails closed). */
  readonly problems: string[];
}

type Http = NonNullable<RbacAttributes['http']>;

const PERMISSION = [
  'any',
  'and_rules',
  'or_rules',
  'not_rule',
  'header',
  'url_path',
  'destination_ip',
  'destination_port',
  'destination_port_range',
  'requested_server_name',
  'metadata',
  'matcher',
  'uri_template',
  'sourced_metadata',
] as const;

/** Envoy's Principal oneof members (the evaluator's index reads the same member). */
export const PRINCIPAL = [
  'any',
  'and_ids',
  'or_ids',
  'not_id',
  'authenticated',
  'source_ip',
  'direct_remote_ip',
  'remote_ip',
  'header',
  'url_path',
  'metadata',
  'filter_state',
  'sourced_metadata',
  'custom',
] as const;

function unknown(ctx: CompileContext, where: string, why: string): Node {
  ctx.problems.push(`${where}: ${why}; treated as unknown`);
  return UNKNOWN_NODE;
}

function children(v: unknown, field: string): readonly unknown[] {
  return isObj(v) ? list(get(v, field)) : [];
}

export function permission(v: unknown, ctx: CompileContext, where: string): Node {
  if (!isObj(v)) return unknown(ctx, where, 'not a Permission object');
  const r = oneOf(v, PERMISSION, 'rule');
  if ('problem' in r) return unknown(ctx, where, r.problem);
  const at = `${where}.${r.kind}`;
  switch (r.kind) {
    case 'any':
      return r.value === true ? YES_NODE : unknown(ctx, at, 'must be true');
    case 'and_rules':
      return and(children(r.value, 'rules').map((x, i) => permission(x, ctx, `${at}.rules[${i}]`)));
    case 'or_rules':
      return or(children(r.value, 'rules').map((x, i) => permission(x, ctx, `${at}.rules[${i}]`)));
    case 'not_rule':
      return not(permission(r.value, ctx, at));
    case 'header':
      return header(r.value, ctx, at);
    case 'url_path':
      return urlPath(r.value, ctx, at);
    case 'destination_ip':
      return cidrNode(r.value, (a) => a.destinationIp, ctx, at);
    case 'destination_port': {
      const port = num(r.value);
      if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535)
        return unknown(ctx, at, `bad port ${JSON.stringify(r.value)}`);
      return leaf((a) => {
        const p = a.destinationPort;
        return p === undefined ? UNKNOWN : p === port ? YES : NO;
      });
    }
    case 'destination_port_range': {
      // Int32Range: start inclusive, end exclusive.
      const start = isObj(r.value) ? num(get(r.value, 'start') ?? 0) : undefined;
      const end = isObj(r.value) ? num(get(r.value, 'end') ?? 0) : undefined;
      if (start === undefined || end === undefined) return unknown(ctx, at, 'bad Int32Range');
      return leaf((a) => {
        const p = a.destinationPort;
        return p === undefined ? UNKNOWN : p >= start && p < end ? YES : NO;
      });
    }
    case 'metadata':
      return metadata(r.value, ctx, at);
    case 'requested_server_name': {
      const test = stringMatcher(r.value);
      if (typeof test === 'string') return unknown(ctx, at, test);
      // No SNI is matched as "", as Envoy does (plaintext and SNI-less TLS alike).
      return leaf((a) => (test(a.sni ?? '') ? YES : NO));
    }
    default:
      return unknown(ctx, at, 'not evaluated by this proxy');
  }
}

export function principal(v: unknown, ctx: CompileContext, where: string): Node {
  if (!isObj(v)) return unknown(ctx, where, 'not a Principal object');
  const r = oneOf(v, PRINCIPAL, 'identifier');
  if ('problem' in r) return unknown(ctx, where, r.problem);
  const at = `${where}.${r.kind}`;
  switch (r.kind) {
    case 'any':
      return r.value === true ? YES_NODE : unknown(ctx, at, 'must be true');
    case 'and_ids':
      return and(children(r.value, 'ids').map((x, i) => principal(x, ctx, `${at}.ids[${i}]`)));
    case 'or_ids':
      return or(children(r.value, 'ids').map((x, i) => principal(x, ctx, `${at}.ids[${i}]`)));
    case 'not_id':
      return not(principal(r.value, ctx, at));
    case 'authenticated':
      return authenticated(r.value, ctx, at);
    case 'source_ip':
    case 'direct_remote_ip':
    case 'remote_ip':
      // remote_ip is the XFF-derived client only when the proxy trusts XFF; ours do not: the peer.
      return cidrNode(r.value, (a) => a.sourceIp, ctx, at);
    case 'header':
      return header(r.value, ctx, at);
    case 'url_path':
      return urlPath(r.value, ctx, at);
    case 'metadata':
      return metadata(r.value, ctx, at);
    default:
      return unknown(ctx, at, 'not evaluated by this proxy');
  }
}

/** The peer's URI SAN (SPIFFE ID); a plaintext peer is not authenticated. */
function authenticated(v: unknown, ctx: CompileContext, at: string): Node {
  const m = isObj(v) ? get(v, 'principal_name') : undefined;
  if (m === undefined) return leaf((a) => (a.principal !== undefined ? YES : NO));
  const re = isObj(m) && get(m, 'ignore_case') !== true ? get(m, 'safe_regex') : undefined;
  const regex = isObj(re) ? get(re, 'regex') : undefined;
  const ns = typeof regex === 'string' ? namespaceOfRegex(regex) : undefined;
  if (ns !== undefined) {
    return leaf((a) => (a.principal !== undefined && namespaceOf(a.principal) === ns ? YES : NO));
  }
  const test = stringMatcher(m);
  if (typeof test === 'string') return unknown(ctx, at, test);
  return leaf((a) => {
    const p = a.principal;
    return p !== undefined && test(p) ? YES : NO;
  });
}

function cidrNode(v: unknown, pick: (a: RbacAttributes) => string | undefined, ctx: CompileContext, at: string): Node {
  const address = isObj(v) ? get(v, 'address_prefix') : undefined;
  const rawLen = isObj(v) ? get(v, 'prefix_len') : undefined;
  const len = rawLen === undefined ? 0 : num(rawLen); // CidrRange: unset prefix_len is 0
  if (typeof address !== 'string' || len === undefined) return unknown(ctx, at, 'bad CidrRange');
  const cidr = compileCidr(address, len);
  if (typeof cidr === 'string') return unknown(ctx, at, cidr);
  return leaf((a) => {
    const text = pick(a);
    const ip = text === undefined ? undefined : attributeIp(text);
    return ip === undefined ? UNKNOWN : inCidr(ip, cidr) ? YES : NO;
  });
}

/** A leaf on HTTP attributes: UNKNOWN at L4 and whenever the request is not available. */
function httpLeaf(ctx: CompileContext, f: (h: Http) => Tri): Node {
  if (ctx.mode === 'l4') return UNKNOWN_NODE;
  return leaf((a) => {
    const h = a.http;
    return h === undefined ? UNKNOWN : f(h);
  });
}

function headerGetter(name: string): (h: Http) => string | undefined {
  switch (name) {
    case ':method':
      return (h) => h.method;
    case ':path':
      return (h) => h.path;
    case ':authority':
    case 'host': // HTTP/1 Host and HTTP/2 :authority are one header
      return (h) => h.host;
    default:
      return (h) => h.header(name);
  }
}

const HEADER_SPECIFIERS = [
  'exact_match',
  'safe_regex_match',
  'range_match',
  'present_match',
  'prefix_match',
  'suffix_match',
  'contains_match',
  'string_match',
] as const;

/** config.route.v3.HeaderMatcher with Envoy's rules for absent headers and invert_match. */
function header(v: unknown, ctx: CompileContext, at: string): Node {
  if (!isObj(v)) return unknown(ctx, at, 'not a HeaderMatcher object');
  const rawName = get(v, 'name');
  if (typeof rawName !== 'string' || rawName === '') return unknown(ctx, at, 'header matcher without name');
  const name = rawName.toLowerCase();
  const invert = get(v, 'invert_match') === true;
  const missingAsEmpty = get(v, 'treat_missing_header_as_empty') === true;
  // No specifier: a presence check (Envoy's HEADER_MATCH_SPECIFIER_NOT_SET).
  let presence: boolean | undefined = true;
  let test: StringTest = () => true;
  if (HEADER_SPECIFIERS.some((k) => get(v, k) !== undefined)) {
    const r = oneOf(v, HEADER_SPECIFIERS, 'header_match_specifier');
    if ('problem' in r) return unknown(ctx, at, r.problem);
    presence = undefined;
    const s = r.value;
    switch (r.kind) {
      case 'present_match':
        presence = s === true;
        break;
      case 'string_match':
      case 'safe_regex_match': {
        const t = r.kind === 'string_match' ? stringMatcher(s) : regexMatcher(s);
        if (typeof t === 'string') return unknown(ctx, at, t);
        test = t;
        break;
      }
      case 'range_match': {
        // Int64Range over the value read as a decimal integer; start inclusive, end exclusive.
        const start = isObj(s) ? num(get(s, 'start') ?? 0) : undefined;
        const end = isObj(s) ? num(get(s, 'end') ?? 0) : undefined;
        if (start === undefined || end === undefined) return unknown(ctx, at, 'bad Int64Range');
        test = (x) => {
          const t = x.trim();
          if (!/^[+-]?\d+$/.test(t)) return false;
          const n = Number(t);
          return n >= start && n < end;
        };
        break;
      }
      default: {
        if (typeof s !== 'string') return unknown(ctx, at, `${r.kind} is not a string`);
        test =
          r.kind === 'exact_match'
            ? (x) => s === '' || x === s // the deprecated exact_match "" matches any value
            : r.kind === 'prefix_match'
              ? (x) => x.startsWith(s)
              : r.kind === 'suffix_match'
                ? (x) => x.endsWith(s)
                : (x) => x.includes(s);
      }
    }
  }
  const pick = headerGetter(name);
  // An absent header fails every value matcher whatever invert_match says; only a presence check answers.
  const absent: Tri = presence !== undefined && (invert ? presence : !presence) ? YES : NO;
  const present = presence;
  return httpLeaf(ctx, (h) => {
    let value = pick(h);
    if (value === undefined) {
      if (!missingAsEmpty) return absent;
      value = '';
    }
    const m = present !== undefined ? present : test(value);
    return m !== invert ? YES : NO;
  });
}

// Requests to one path are evaluated against many url_path leaves: strip the query once.
let lastPath = '';
let lastStripped = '';
function pathOnly(p: string): string {
  if (p === lastPath) return lastStripped;
  let end = p.indexOf('?');
  if (end < 0) end = p.length;
  const hash = p.indexOf('#');
  if (hash >= 0 && hash < end) end = hash;
  lastPath = p;
  lastStripped = end === p.length ? p : p.slice(0, end);
  return lastStripped;
}

/** type.matcher.v3.PathMatcher: the path without query and fragment. */
function urlPath(v: unknown, ctx: CompileContext, at: string): Node {
  if (!isObj(v)) return unknown(ctx, at, 'not a PathMatcher object');
  const r = oneOf(v, ['path'] as const, 'rule');
  if ('problem' in r) return unknown(ctx, at, r.problem);
  const test = stringMatcher(r.value);
  if (typeof test === 'string') return unknown(ctx, at, test);
  return httpLeaf(ctx, (h) => (test(pathOnly(h.path)) ? YES : NO));
}

// ---------------------------------------------------------------------------------------------
// Request authentication (JWT): Istio's istio_authn dynamic metadata, answered from attrs.requestAuth.

/** The filter metadata namespace of the request's JWT attributes (what rbac.ts translates to). */
const ISTIO_AUTHN = 'istio_authn';

/** Istio's authn filter keeps these claims split on spaces (its space_delimited_claims). */
const SPACE_DELIMITED_CLAIMS: ReadonlySet<string> = new Set(['scope', 'permission']);

type Lookup = (auth: RequestAuth) => unknown;

/** The istio_authn value a metadata path names; undefined: not one Istio writes. */
function authnLookup(keys: readonly string[]): Lookup | undefined {
  const [first, ...rest] = keys;
  switch (first) {
    case 'request.auth.principal':
      return rest.length === 0 ? (a) => a.principal : undefined;
    case 'request.auth.audiences':
      return rest.length === 0 ? (a) => a.claims.aud : undefined;
    case 'request.auth.presenter':
      return rest.length === 0 ? (a) => a.claims.azp : undefined;
    case 'request.auth.claims': {
      if (rest.length === 0) return (a) => a.claims;
      const split = rest.length === 1 && SPACE_DELIMITED_CLAIMS.has(rest[0]!);
      return (a) => {
        let v: unknown = a.claims;
        for (const k of rest) {
          if (!isObj(v) || !Object.prototype.hasOwnProperty.call(v, k)) return undefined;
          v = v[k];
        }
        return split && typeof v === 'string' ? v.split(' ').filter((x) => x !== '') : v;
      };
    }
    default:
      return undefined;
  }
}

type ValueTest = (v: unknown) => boolean;

/** type.matcher.v3.ValueMatcher over a JSON value; a problem string when it cannot be evaluated. */
function valueMatcher(m: unknown): ValueTest | string {
  if (!isObj(m)) return 'value matcher is not an object';
  const r = oneOf(
    m,
    ['string_match', 'list_match', 'present_match', 'bool_match', 'double_match', 'null_match'] as const,
    'match_pattern',
  );
  if ('problem' in r) return r.problem;
  switch (r.kind) {
    case 'string_match': {
      const t = stringMatcher(r.value);
      if (typeof t === 'string') return t;
      // A list-valued attribute (aud may be one) matches when one of its strings does.
      return (v) => (typeof v === 'string' ? t(v) : Array.isArray(v) && v.some((x) => typeof x === 'string' && t(x)));
    }
    case 'list_match': {
      const inner = isObj(r.value) ? valueMatcher(get(r.value, 'one_of')) : 'list_match without one_of';
      if (typeof inner === 'string') return inner;
      // Istio's authn filter stores a string claim as a one-element list.
      return (v) => (Array.isArray(v) ? v.some(inner) : typeof v === 'string' && inner(v));
    }
    case 'present_match':
      return r.value === true ? (v) => v !== undefined : () => false;
    case 'bool_match':
      return typeof r.value === 'boolean' ? (v) => v === r.value : 'bool_match is not a boolean';
    case 'null_match':
      return (v) => v === null;
    case 'double_match': {
      const exact = isObj(r.value) ? num(get(r.value, 'exact')) : undefined;
      if (exact === undefined) return 'only double_match.exact is supported';
      return (v) => v === exact;
    }
  }
}

/**
 * config.route.v3.MetadataMatcher. Only the istio_authn attributes of the request's verified JWT
 * exist here; a path that is absent matches nothing (then invert applies), as in Envoy. At L4, or
 * without a request, there is no JWT to look at: UNKNOWN.
 */
function metadata(v: unknown, ctx: CompileContext, at: string): Node {
  if (!isObj(v)) return unknown(ctx, at, 'not a MetadataMatcher object');
  const filter = get(v, 'filter');
  const keys = list(get(v, 'path')).map((seg) => (isObj(seg) ? get(seg, 'key') : undefined));
  if (filter !== ISTIO_AUTHN || keys.length === 0 || !keys.every((k): k is string => typeof k === 'string'))
    return unknown(ctx, at, `metadata ${JSON.stringify(filter)} ${JSON.stringify(keys)} is not available here`);
  const lookup = authnLookup(keys);
  if (!lookup) return unknown(ctx, at, `istio_authn key ${JSON.stringify(keys)} is not one Istio writes`);
  const test = valueMatcher(get(v, 'value'));
  if (typeof test === 'string') return unknown(ctx, at, test);
  const invert = get(v, 'invert') === true;
  if (ctx.mode === 'l4') return UNKNOWN_NODE;
  return leaf((a) => {
    if (a.http === undefined) return UNKNOWN;
    const auth = a.requestAuth;
    const value = auth === undefined ? undefined : lookup(auth);
    const m = value !== undefined && test(value);
    return m !== invert ? YES : NO;
  });
}
