// Shared pieces of the Istio networking kinds (networking.istio.io): hostnames, durations, StringMatch,
// Percent, Destination, header operations, exportTo and the label rules istiod applies.
//
// The rules follow istio/istio pkg/config/validation (validation.go, virtualservice.go, agent/validation.go,
// header_value_validator.go), pkg/config/labels, pkg/config/protocol and pkg/config/host, and the CRD schema
// limits generated from istio/api.
import { isIP } from 'node:net';
import { array, record } from '../../schema/collections.js';
import { goDuration, re2Regex } from '../../schema/formats.js';
import { object, oneOfFields, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { integer, number, string } from '../../schema/primitives.js';
import { INVALID, type Invalid, type IssueSink, type Path, type Schema } from '../../schema/schema.js';
import { parseCidr } from '../../../util/cidr.js';
import { parseGoDuration } from '../../../util/duration.js';

/** Every Istio networking kind is served at these versions with one schema; v1 is the storage version. */
export const ISTIO_NETWORKING_GROUP = 'networking.istio.io';
export const ISTIO_NETWORKING_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'] as const;

/** A schema whose parsed value gets one more semantic check (reported as `format` at the same path). */
export function refine<T>(base: Schema<T>, check: (value: T) => string | undefined, expected?: string): Schema<T> {
  const exp = expected ?? base.expected;
  return {
    expected: exp,
    parse(input: unknown, path: Path, sink: IssueSink): T | Invalid {
      const v = base.parse(input, path, sink);
      if (v === INVALID) return INVALID;
      const problem = check(v);
      if (problem !== undefined) {
        sink.report(path, 'format', problem, exp);
        return INVALID;
      }
      return v;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Names and hosts (pkg/config/labels, agent.ValidateWildcardDomain / ValidateFQDN)

/** Istio's DNS-1123 label: note that istiod accepts upper-case letters here, unlike Kubernetes. */
const ISTIO_DNS_LABEL = /^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$/;
/** `*`, a label with a leading `*` or `*-`, or a plain label. */
const ISTIO_WILDCARD_LABEL = /^(\*|(\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$/;

export function isIstioDnsLabel(v: string): boolean {
  return v.length <= 63 && ISTIO_DNS_LABEL.test(v);
}

function dnsLabelsProblem(domain: string): string | undefined {
  const parts = domain.split('.');
  const tld = parts[parts.length - 1]!;
  if (/^[+-]?\d+$/.test(tld)) return `domain name ${JSON.stringify(domain)} has an all-numeric top-level domain`;
  for (let i = 0; i < parts.length; i++) {
    const label = parts[i]!;
    // A trailing dot (fully qualified "istio.io.") is allowed.
    if (i === parts.length - 1 && label === '') return undefined;
    if (!isIstioDnsLabel(label)) {
      const hint = label.includes('*') ? ' (only the first label may be a wildcard)' : '';
      return `label ${JSON.stringify(label)} of ${JSON.stringify(domain)} is not valid${hint}`;
    }
  }
  return undefined;
}

function dnsPreconditions(name: string): string | undefined {
  if (name.length > 255) return `domain name is ${name.length} characters long (at most 255)`;
  if (name.length === 0) return 'an empty domain name is not allowed';
  return undefined;
}

/** agent.ValidateFQDN: a DNS name without wildcards. */
export function fqdnProblem(fqdn: string): string | undefined {
  return dnsPreconditions(fqdn) ?? dnsLabelsProblem(fqdn);
}

/** agent.ValidateWildcardDomain: a DNS name whose first label may be a wildcard (`*`, `*.example.com`). */
export function wildcardDomainProblem(domain: string): string | undefined {
  const pre = dnsPreconditions(domain);
  if (pre) return pre;
  const dot = domain.indexOf('.');
  const first = dot < 0 ? domain : domain.slice(0, dot);
  if (first.length > 63 || !ISTIO_WILDCARD_LABEL.test(first)) {
    return `label ${JSON.stringify(first)} of ${JSON.stringify(domain)} is not valid`;
  }
  return dot < 0 ? undefined : dnsLabelsProblem(domain.slice(dot + 1));
}

/** Like wildcardDomainProblem, for VirtualServices bound to gateways (auto-generated `outbound_.` SNI names pass). */
export function gatewayBoundDomainProblem(sni: boolean, domain: string): string | undefined {
  const dot = domain.indexOf('.');
  const first = dot < 0 ? domain : domain.slice(0, dot);
  if (sni && first === 'outbound_') {
    const pre = dnsPreconditions(domain);
    if (pre) return pre;
    return /outbound_.([0-8].*).*/.test(domain)
      ? undefined
      : `label "outbound_" of ${JSON.stringify(domain)} is not valid`;
  }
  return wildcardDomainProblem(domain);
}

export const HOST_EXPECTED =
  'a DNS name (letters, digits and "-" in dot-separated labels), optionally starting with a "*" wildcard label';

export function istioDnsLabel(what: string): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 63,
    pattern: ISTIO_DNS_LABEL,
    expected: `a ${what}: letters, digits and "-", starting and ending with a letter or digit (DNS label)`,
  });
}

// pkg/config/host: Name.IsWildCarded / SubsetOf / Matches.
const isWildcarded = (h: string): boolean => h.startsWith('*');

/** host.Name(a).SubsetOf(b): every host matched by `a` is matched by `b`. */
export function hostSubsetOf(a: string, b: string): boolean {
  if (isWildcarded(a)) return isWildcarded(b) && a.slice(1).endsWith(b.slice(1));
  if (isWildcarded(b)) return a.endsWith(b.slice(1));
  return a === b;
}

/** host.Name(a).Matches(b): the two host patterns overlap. */
export function hostsOverlap(a: string, b: string): boolean {
  const aw = isWildcarded(a);
  const bw = isWildcarded(b);
  if (aw && bw) return a.length < b.length ? b.slice(1).endsWith(a.slice(1)) : a.slice(1).endsWith(b.slice(1));
  if (aw) return b.endsWith(a.slice(1));
  if (bw) return a.endsWith(b.slice(1));
  return a === b;
}

/** agent.ValidateIPSubnet: an IP address or a CIDR. */
export function ipSubnetProblem(v: string): string | undefined {
  if (v.split('/').length === 2) {
    const c = parseCidr(v);
    return typeof c === 'string' ? `${JSON.stringify(v)} is not a valid CIDR block` : undefined;
  }
  return isIP(v) ? undefined : `${JSON.stringify(v)} is not a valid IP`;
}

export function ipOrSubnet(): Schema<string> {
  return string({ expected: 'an IP address or a CIDR such as "10.0.0.0/16"', check: ipSubnetProblem });
}

/** ValidateUnixAddress, on the part after "unix://". */
export function unixAddressProblem(addr: string): string | undefined {
  if (addr.length === 0) return 'unix address must not be empty';
  if (addr.startsWith('@')) return undefined;
  if (!addr.startsWith('/') || addr.endsWith('/')) return `${addr} is not an absolute path to a file`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Gateways, exportTo

/** validateGatewayNames: "namespace/name", or a legacy plain or FQDN-style name (e.g. "mesh", "my-gw"). */
export function gatewayName(): Schema<string> {
  return string({
    expected: 'a gateway reference "<namespace>/<name>" (or "mesh" for the sidecars)',
    check: (v) => {
      const slash = v.indexOf('/');
      if (slash < 0) {
        const p = fqdnProblem(v);
        return p ? `invalid gateway name: ${p}` : undefined;
      }
      const ns = v.slice(0, slash);
      const name = v.slice(slash + 1);
      if (ns === '' || name === '') return 'the namespace and the gateway name cannot be empty';
      if (!isIstioDnsLabel(ns)) return `invalid value for namespace: ${JSON.stringify(ns)}`;
      if (!isIstioDnsLabel(name)) return `invalid value for gateway name: ${JSON.stringify(name)}`;
      return undefined;
    },
  });
}

/** One exportTo entry: ".", "*", a namespace name, and for ServiceEntry also "~" (no one). */
export function exportToEntry(allowNone: boolean): Schema<string> {
  return string({
    expected: allowNone ? '".", "*", "~" or a namespace name (DNS label)' : '".", "*" or a namespace name (DNS label)',
    check: (v) => {
      if (v === '.' || v === '*') return undefined;
      if (v === '~') return allowNone ? undefined : '"~" (export to no one) is only allowed in a ServiceEntry';
      return isIstioDnsLabel(v) ? undefined : `${JSON.stringify(v)} is not ".", "*" or a valid namespace name`;
    },
  });
}

export function exportToList(allowNone: boolean): Schema<readonly string[]> {
  return array(exportToEntry(allowNone));
}

/** The document's metadata.namespace, when the kind-level check runs on a whole document. */
export function namespaceOf(doc: unknown): string | undefined {
  const md = (doc as { metadata?: { namespace?: unknown } } | undefined)?.metadata;
  return typeof md?.namespace === 'string' ? md.namespace : undefined;
}

/**
 * validateExportTo's cross-entry rules: no duplicates ("." counts as the object's own namespace), "*" alone,
 * "~" alone, and a DestinationRule with a workloadSelector exported only to its own namespace.
 */
export function checkExportTo(
  exportTo: readonly string[] | undefined,
  namespace: string | undefined,
  report: Reporter,
  base: readonly (string | number)[],
  drWithSelector = false,
): void {
  if (!exportTo || exportTo.length === 0) return;
  const seen = new Map<string, number>();
  exportTo.forEach((e, i) => {
    const key = e === '.' ? (namespace ?? '.') : e;
    const prev = seen.get(key);
    if (prev !== undefined) {
      const what = key !== e || exportTo[prev] !== e ? `"." and the object's namespace ${key}` : JSON.stringify(e);
      report([...base, i], `duplicate exportTo entry ${what} (also exportTo[${prev}])`, 'unique exportTo entries');
    } else {
      seen.set(key, i);
    }
  });
  if (seen.has('*') && exportTo.length > 1) {
    report([...base], 'cannot mix "*" (all namespaces) with other exportTo entries', '"*" alone');
  }
  if (seen.has('~') && exportTo.length > 1) {
    report([...base], 'cannot export to no one ("~") and to someone at once', '"~" alone');
  }
  if (drWithSelector) {
    const own = namespace ?? '.';
    if (!seen.has(own) && !(namespace === undefined && seen.has('.'))) {
      report([...base], 'a DestinationRule with a workloadSelector cannot be exported beyond its own namespace', '"."');
    } else if (seen.size > 1) {
      report([...base], 'a DestinationRule with a workloadSelector cannot have several exportTo entries', '"."');
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Labels (labels.Instance.Validate) and workload selectors

const TAG_KEY =
  /^((?:[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*\/)?((?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/;
const TAG_VALUE = /^((?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function istioLabelKey(): Schema<string> {
  return string({
    expected: 'a label key: an optional DNS prefix and "/", then letters, digits, "-", "_" or "."',
    check: (k) => {
      const m = TAG_KEY.exec(k);
      if (!m) return `invalid label key ${JSON.stringify(k)}`;
      if (m[1] && m[1].length - 1 > 253) return `the DNS prefix of label key ${JSON.stringify(k)} is too long`;
      if (m[2]!.length > 63) return `the name of label key ${JSON.stringify(k)} is longer than 63 characters`;
      return undefined;
    },
  });
}

export function istioLabels(max?: number): Schema<Readonly<Record<string, string>>> {
  const value = string({
    pattern: TAG_VALUE,
    expected: 'a label value: letters, digits, "-", "_" or ".", starting and ending with a letter or digit',
  });
  return record(value, { key: istioLabelKey(), ...(max !== undefined ? { max } : {}) });
}

/** Selector labels: istiod rejects empty keys and "*" anywhere; the CRD caps values at 63 characters. */
export function selectorLabels(max: number): Schema<Readonly<Record<string, string>>> {
  const noWildcard = (what: string) => (v: string) =>
    v.includes('*') ? `wildcard is not supported in a selector ${what}` : undefined;
  return record(string({ maxLength: 63, check: noWildcard('value'), expected: 'a label value without "*"' }), {
    key: string({ minLength: 1, check: noWildcard('key'), expected: 'a label key without "*"' }),
    max,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Durations (agent.ValidateDuration and the CRDs' "must be a valid duration greater than 1ms")

export interface DurationOptions {
  /** "0s" is allowed and means "disabled" (TCP idleTimeout). */
  readonly allowZero?: boolean;
  /** Only whole seconds (CORS maxAge). */
  readonly seconds?: boolean;
  /** No lower bound at all (cookie TTL: "0s" makes a session cookie). */
  readonly any?: boolean;
}

export function istioDuration(opts: DurationOptions = {}): Schema<string> {
  const expected = opts.any
    ? 'a duration such as "10s", "250ms" or "1m30s"'
    : `a duration of at least ${opts.seconds ? '1s in whole seconds' : '1ms'}, such as "10s", "250ms" or "1m30s"${opts.allowZero ? ', or "0s"' : ''}`;
  return refine(
    goDuration(),
    (v) => {
      const ms = parseGoDuration(v)!;
      if (opts.any) return undefined;
      if (opts.allowZero && ms === 0) return undefined;
      if (ms < 1) return `${JSON.stringify(v)} is shorter than 1ms`;
      if (Math.abs(ms - Math.round(ms)) > 1e-6) return `${JSON.stringify(v)} is more precise than a millisecond`;
      if (opts.seconds && Math.round(ms) % 1000 !== 0) return `${JSON.stringify(v)} is not a whole number of seconds`;
      return undefined;
    },
    expected,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Numbers with proto widths

export const uint32 = (): Schema<number> => integer({ min: 0, max: 4294967295 });
export const int32NonNegative = (): Schema<number> => integer({ min: 0, max: 2147483647 });
/** A port where 0 (the proto default) means "not set". */
export const optionalPortNumber = (): Schema<number> =>
  integer({ min: 0, max: 65535, expected: 'a port number 1-65535 (0 means unset)' });

// ---------------------------------------------------------------------------------------------------------
// StringMatch

export interface StringMatchOptions {
  /** Only URI matches accept an empty prefix (Envoy allows it for paths). */
  readonly allowEmptyPrefix?: boolean;
  /** withoutHeaders treats regex "*" as "header present", not as RE2. */
  readonly starMeansPresent?: boolean;
  /** CORS allowOrigins: every form needs a non-empty value. */
  readonly nonEmpty?: boolean;
}

/** StringMatch: exact | prefix | regex (at most one; none tests presence, for headers). */
export interface StringMatch {
  readonly exact?: string;
  readonly prefix?: string;
  readonly regex?: string;
}

/**
 * StringMatch: at most one of exact | prefix | regex (an empty match tests presence for headers).
 * Regexes are RE2, at most 1024 characters (validateStringRegexp).
 */
export function stringMatch(opts: StringMatchOptions = {}): Schema<StringMatch> {
  const regexSchema = re2Regex(1024);
  const fields = {
    exact: opt(string()),
    prefix: opt(string({ ...(opts.allowEmptyPrefix ? {} : { minLength: 1 }), expected: 'a non-empty prefix' })),
    regex: opt<string>({
      expected: regexSchema.expected,
      parse(input, path, sink) {
        if (opts.starMeansPresent && input === '*') return '*';
        if (input === '') {
          sink.report(path, 'format', 'a regex string match must not be empty', regexSchema.expected);
          return INVALID;
        }
        return regexSchema.parse(input, path, sink);
      },
    }),
  };
  const atMostOne = oneOfFields<StringMatch>(['exact', 'prefix', 'regex'], false);
  return object(fields, {
    expected: 'a string match with one of exact, prefix or regex',
    check: (m, report) => {
      atMostOne(m, report);
      if (opts.nonEmpty) {
        const set = (['exact', 'prefix', 'regex'] as const).find((k) => m[k] !== undefined);
        if (set === undefined || m[set] === '') {
          report(
            set ? [set] : [],
            'a CORS allowed origin needs a non-empty exact, prefix or regex',
            'a non-empty match',
          );
        }
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------------------
// Percent, PortSelector, Destination

/** Percent {value}: 0, or 0.0001-100 (validatePercentage). */
export const percent = object(
  { value: opt(number()) },
  {
    check: (p, report) => {
      const v = p.value ?? 0;
      if (v < 0 || v > 100 || (v > 0 && v < 0.0001)) {
        report(
          ['value'],
          `percentage ${v} is neither 0 nor in the range 0.0001-100`,
          'a number 0.0001-100, or 0',
          'range',
        );
      }
    },
  },
);

/** Percent used by mirrors: only 0-100 (validateHTTPMirrors / mirrorPercentage). */
export const mirrorPercent = object({ value: opt(number({ min: 0, max: 100, expected: 'a number 0-100' })) });

export const portSelector = object({ number: req(integer({ min: 1, max: 65535, expected: 'a port number 1-65535' })) });

export const destination = object(
  {
    host: req(
      string({
        expected: `${HOST_EXPECTED}, but not "*" alone`,
        check: (h) => (h === '*' ? 'the destination host cannot be "*"' : wildcardDomainProblem(h)),
      }),
    ),
    subset: opt(istioDnsLabel('subset name')),
    port: opt(portSelector),
  },
  { expected: 'a destination with host, and optionally subset and port' },
);
export type Destination = ObjectOf<typeof destination.fields>;

// ---------------------------------------------------------------------------------------------------------
// Header names and values

const HEADER_NAME = /^[-_A-Za-z0-9]+$/;

export function headerNameProblem(name: string): string | undefined {
  if (name === '') return 'a header name cannot be empty';
  return HEADER_NAME.test(name) ? undefined : `${JSON.stringify(name)} is not a valid header name`;
}

/** Header matches may also name a JWT claim ("@request.auth.claims.group", "@request.auth.claims[a][b]"). */
export function isJwtClaimRoute(name: string): boolean {
  return /^@request\.auth\.claims(?:(?:\.[^.[\]]+)+|(?:\[[^[\]]+\])+)$/.test(name);
}

export function matchHeaderName(): Schema<string> {
  return string({
    expected: 'a header name (letters, digits, "-" and "_") or a JWT claim "@request.auth.claims.<name>"',
    check: (n) => (n !== '' && isJwtClaimRoute(n) ? undefined : headerNameProblem(n)),
  });
}

const isInternalHeader = (k: string) => k.startsWith(':') || k.toLowerCase() === 'host';
export const isAuthorityHeader = (k: string): boolean => k.toLowerCase() === ':authority' || k.toLowerCase() === 'host';

/** A request header that may be set or added (Host/:authority allowed; validated against rewrite.authority). */
function requestSetName(): Schema<string> {
  return string({
    expected: 'a header name not starting with ":" (except ":authority")',
    check: (n) => {
      if (n === '') return 'a header name cannot be empty';
      if (isInternalHeader(n) && !isAuthorityHeader(n)) return `header ${JSON.stringify(n)} cannot have a ":" prefix`;
      return undefined;
    },
  });
}

/** A header that may be removed from requests, or changed on responses. */
function plainOperationName(): Schema<string> {
  return string({
    expected: 'a header name other than Host, not starting with ":"',
    check: (n) => {
      if (n === '') return 'a header name cannot be empty';
      if (n.toLowerCase() === 'host') return 'the Host header cannot be changed here';
      if (isInternalHeader(n)) return `header ${JSON.stringify(n)} cannot have a ":" prefix`;
      return undefined;
    },
  });
}

/** ValidateHTTPHeaderValue: no control characters, and Envoy's %VARIABLE% syntax well-formed. */
export function headerValueProblem(value: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000A-\u001F\u007F]/.test(value)) return 'the header value contains control characters';
  type State = 'literal' | 'var' | 'array' | 'string' | 'str' | 'delim' | 'argsEnd' | 'varEnd';
  let state: State = 'literal';
  for (let pos = 0; pos < value.length; pos++) {
    const ch = value[pos];
    const hasNext = pos + 1 < value.length;
    switch (state) {
      case 'literal':
        if (ch !== '%') break;
        if (!hasNext) return 'un-escaped "%" (write "%%" for a literal percent sign)';
        if (value[pos + 1] === '%') pos++;
        else state = 'var';
        break;
      case 'var':
        if (ch === '%') state = 'literal';
        else if (ch === '(') state = 'array';
        break;
      case 'array':
        if (ch === '[') state = 'string';
        else if (ch !== ' ') state = 'str';
        break;
      case 'delim':
        if (ch === ',') state = 'string';
        else if (ch === ']') state = 'argsEnd';
        else if (ch !== ' ') return "expected ',', ']' or whitespace in a %VAR([...])% argument list";
        break;
      case 'string':
        if (ch === '"') state = 'str';
        else if (ch !== ' ') return "expected '\"' in a %VAR([...])% argument list";
        break;
      case 'str':
        if (ch === '\\') {
          if (!hasNext) return 'un-terminated backslash in a %VAR(...)% argument';
          pos++;
        } else if (ch === ')') state = 'varEnd';
        else if (ch === '"') state = 'delim';
        break;
      case 'argsEnd':
        if (ch === ')') state = 'varEnd';
        else if (ch !== ' ') return "expected ')' after a %VAR([...])% argument list";
        break;
      case 'varEnd':
        if (ch === '%') state = 'literal';
        else if (ch !== ' ') return "expected '%' to close a %VAR(...)% expression";
        break;
    }
  }
  return state === 'literal' ? undefined : `un-terminated %VARIABLE% expression in ${JSON.stringify(value)}`;
}

const headerValue = (): Schema<string> =>
  string({
    expected: 'a header value (Envoy %VARIABLE% expressions allowed, "%%" for "%")',
    check: headerValueProblem,
  });

const requestOperations = object({
  set: opt(record(headerValue(), { key: requestSetName() })),
  add: opt(record(headerValue(), { key: requestSetName() })),
  remove: opt(array(plainOperationName())),
});
const responseOperations = object({
  set: opt(record(headerValue(), { key: plainOperationName() })),
  add: opt(record(headerValue(), { key: plainOperationName() })),
  remove: opt(array(plainOperationName())),
});

/** Headers {request, response}: the header operations of a route or a route destination. */
export const headers = object({ request: opt(requestOperations), response: opt(responseOperations) });
export type Headers = ObjectOf<typeof headers.fields>;

/** Go's http.StatusText table: the status codes retryOn accepts as numbers. */
export const KNOWN_HTTP_STATUS = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400,
  401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425,
  426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

/** The port protocols istiod understands (protocol.Parse, case-insensitive). */
export const PORT_PROTOCOLS = [
  'HTTP',
  'HTTPS',
  'GRPC',
  'GRPC-Web',
  'HTTP2',
  'HTTP_PROXY',
  'MONGO',
  'REDIS',
  'MYSQL',
  'TCP',
  'TLS',
  'UDP',
] as const;
export type PortProtocol = (typeof PORT_PROTOCOLS)[number];

/** protocol.Parse: the canonical protocol, or undefined when istiod does not know it. */
export function parseProtocol(p: string): PortProtocol | undefined {
  const lower = p.toLowerCase();
  return PORT_PROTOCOLS.find((x) => x.toLowerCase() === lower);
}

export const isHttpProtocol = (p: PortProtocol | undefined): boolean =>
  p === 'HTTP' || p === 'HTTP2' || p === 'HTTP_PROXY' || p === 'GRPC' || p === 'GRPC-Web';
export const isTlsProtocol = (p: PortProtocol | undefined): boolean => p === 'HTTPS' || p === 'TLS';
