// HTTPRoute (gateway.networking.k8s.io v1, v1beta1): apis/v1/httproute_types.go, standard and
// experimental channel fields, with the CRD's limits, defaults and CEL rules.
import { array } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { boolean, integer, oneOf, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  backendObjectReference,
  backendRefFields,
  checkFilterUnion,
  checkFiltersNotRepeated,
  checkParentRefs,
  checkRegex,
  checkServicePort,
  checkUniqueNames,
  checkTotalMatches,
  checkUniqueRuleNames,
  commonRouteFields,
  duration,
  durationMs,
  headerName,
  headerValue,
  httpHeaderFilter,
  httpRequestMirrorFilter,
  intEnum,
  localObjectReference,
  portNumber,
  preciseHostname,
  routeHostnames,
  sectionName,
  sessionPersistence,
} from './common.js';

// ---------------------------------------------------------------------------
// Matches
// ---------------------------------------------------------------------------

const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/;

/** The HTTPPathMatch CEL rules for Exact and PathPrefix values, in upstream order. */
function pathProblems(value: string): string[] {
  const out: string[] = [];
  if (!value.startsWith('/')) out.push('value must be an absolute path and start with "/"');
  if (value.includes('//')) out.push('must not contain "//"');
  if (value.includes('/./')) out.push('must not contain "/./"');
  if (value.includes('/../')) out.push('must not contain "/../"');
  if (value.includes('%2f')) out.push('must not contain "%2f"');
  if (value.includes('%2F')) out.push('must not contain "%2F"');
  if (value.includes('#')) out.push('must not contain "#"');
  if (value.endsWith('/..')) out.push('must not end with "/.."');
  if (value.endsWith('/.')) out.push('must not end with "/."');
  if (!PATH_CHARS.test(value)) out.push('must only contain valid path characters (RFC 3986 pchar or %-encoded octets)');
  return out;
}

const pathMatchTypes = ['Exact', 'PathPrefix', 'RegularExpression'] as const;

export const httpPathMatch = object(
  {
    type: def(oneOf(pathMatchTypes), 'PathPrefix'),
    value: def(string({ maxLength: 1024, expected: 'a path of at most 1024 characters' }), '/'),
  },
  {
    check: (v, report) => {
      if (v.type === 'RegularExpression') {
        checkRegex(v.value, ['value'], report);
        return;
      }
      for (const p of pathProblems(v.value)) {
        report(['value'], `${p} when type is ${v.type}`, 'an absolute path such as "/api/v1"', 'format');
      }
    },
  },
);
export type HTTPPathMatch = ObjectOf<typeof httpPathMatch.fields>;

/** A header or query parameter match whose value is a regular expression when type says so. */
function valueMatch(maxValue: number) {
  return object(
    {
      type: def(oneOf(['Exact', 'RegularExpression']), 'Exact'),
      name: req(headerName()),
      value: req(headerValue(maxValue)),
    },
    {
      check: (v, report) => {
        if (v.type === 'RegularExpression') checkRegex(v.value, ['value'], report);
      },
    },
  );
}

export const httpHeaderMatch = valueMatch(4096);
export type HTTPHeaderMatch = ObjectOf<typeof httpHeaderMatch.fields>;
export const httpQueryParamMatch = valueMatch(1024);
export type HTTPQueryParamMatch = ObjectOf<typeof httpQueryParamMatch.fields>;

export const httpMethods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

export const httpRouteMatch = object(
  {
    path: def(httpPathMatch, () => ({ type: 'PathPrefix' as const, value: '/' })),
    headers: opt(array(httpHeaderMatch, { max: 16 })),
    queryParams: opt(array(httpQueryParamMatch, { max: 16 })),
    method: opt(oneOf(httpMethods)),
  },
  {
    check: (v, report) => {
      checkUniqueNames(
        v.headers,
        (h) => h.name,
        report,
        (i) => ['headers', i, 'name'],
        'header name',
      );
      // Query parameter names are compared exactly (listMapKey=name).
      checkUniqueNames(
        v.queryParams,
        (q) => q.name,
        report,
        (i) => ['queryParams', i, 'name'],
        'query parameter name',
        false,
      );
    },
  },
);
export type HTTPRouteMatch = ObjectOf<typeof httpRouteMatch.fields>;

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

export const httpPathModifier = object(
  {
    type: req(oneOf(['ReplaceFullPath', 'ReplacePrefixMatch'])),
    replaceFullPath: opt(string({ maxLength: 1024, expected: 'a path of at most 1024 characters' })),
    replacePrefixMatch: opt(string({ maxLength: 1024, expected: 'a path prefix of at most 1024 characters' })),
  },
  {
    check: (v, report) => {
      if (v.type === 'ReplaceFullPath' && v.replaceFullPath === undefined) {
        report(
          ['replaceFullPath'],
          'must be specified when type is ReplaceFullPath',
          'the replacement path',
          'required',
        );
      }
      if (v.type === 'ReplacePrefixMatch' && v.replacePrefixMatch === undefined) {
        report(
          ['replacePrefixMatch'],
          'must be specified when type is ReplacePrefixMatch',
          'the replacement prefix',
          'required',
        );
      }
      if (v.type !== 'ReplaceFullPath' && v.replaceFullPath !== undefined) {
        report(['replaceFullPath'], `must not be set when type is ${v.type}`, 'type: ReplaceFullPath', 'conflict');
      }
      if (v.type !== 'ReplacePrefixMatch' && v.replacePrefixMatch !== undefined) {
        report(
          ['replacePrefixMatch'],
          `must not be set when type is ${v.type}`,
          'type: ReplacePrefixMatch',
          'conflict',
        );
      }
    },
  },
);
export type HTTPPathModifier = ObjectOf<typeof httpPathModifier.fields>;

export const httpRequestRedirectFilter = object({
  scheme: opt(oneOf(['http', 'https'])),
  hostname: opt(preciseHostname()),
  path: opt(httpPathModifier),
  port: opt(portNumber()),
  statusCode: def(intEnum([301, 302, 303, 307, 308]), 302),
});
export type HTTPRequestRedirectFilter = ObjectOf<typeof httpRequestRedirectFilter.fields>;

export const httpURLRewriteFilter = object({
  hostname: opt(preciseHostname()),
  path: opt(httpPathModifier),
});
export type HTTPURLRewriteFilter = ObjectOf<typeof httpURLRewriteFilter.fields>;

/** CORSOrigin: "*" or scheme://host[:port], where the host may contain "*". */
const corsOrigin = () =>
  string({
    minLength: 1,
    maxLength: 253,
    pattern: /(^\*$)|(^([a-zA-Z][a-zA-Z0-9+\-.]+):\/\/([^:/?#]+)(:([0-9]{1,5}))?$)/,
    expected: 'an origin such as "https://app.example.com", "https://*.example.com" or "*"',
  });

/** "<field> cannot contain '*' alongside other values". */
function noWildcardWithOthers(list: readonly string[] | undefined, field: string, report: Reporter): void {
  if (list && list.includes('*') && list.length > 1) {
    report([field], `cannot contain "*" alongside other values`, `either ["*"] or a list without "*"`, 'conflict');
  }
}

export const httpCORSFilter = object(
  {
    allowOrigins: opt(array(corsOrigin(), { max: 64 })),
    allowCredentials: opt(boolean()),
    allowMethods: opt(array(oneOf([...httpMethods, '*']), { max: 9 })),
    allowHeaders: opt(array(headerName(), { max: 64 })),
    exposeHeaders: opt(array(headerName(), { max: 64 })),
    maxAge: def(integer({ min: 1, max: 2147483647, expected: 'a number of seconds >= 1' }), 5),
  },
  {
    check: (v, report) => {
      noWildcardWithOthers(v.allowOrigins, 'allowOrigins', report);
      noWildcardWithOthers(v.allowMethods, 'allowMethods', report);
      noWildcardWithOthers(v.allowHeaders, 'allowHeaders', report);
    },
  },
);
export type HTTPCORSFilter = ObjectOf<typeof httpCORSFilter.fields>;

/** ExternalAuth filter (experimental). */
export const httpExternalAuthFilter = object(
  {
    protocol: req(oneOf(['HTTP', 'GRPC'])),
    backendRef: req(backendObjectReference),
    grpc: opt(object({ allowedHeaders: opt(array(string(), { max: 64 })) })),
    http: opt(
      object({
        path: opt(
          string({
            maxLength: 1024,
            pattern: /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/,
            expected: 'a path prefix such as "/auth"',
          }),
        ),
        allowedHeaders: opt(array(string(), { max: 64 })),
        allowedResponseHeaders: opt(array(string(), { max: 64 })),
      }),
    ),
    forwardBody: opt(object({ maxSize: opt(integer({ min: 0, max: 2147483647 })) })),
  },
  {
    check: (v, report) => {
      if (v.protocol === 'GRPC' && v.grpc === undefined)
        report(['grpc'], 'must be specified when protocol is GRPC', 'a grpc block', 'required');
      if (v.protocol !== 'GRPC' && v.grpc !== undefined)
        report(['grpc'], `must not be set when protocol is ${v.protocol}`, 'protocol: GRPC', 'conflict');
      if (v.protocol === 'HTTP' && v.http === undefined)
        report(['http'], 'must be specified when protocol is HTTP', 'an http block', 'required');
      if (v.protocol !== 'HTTP' && v.http !== undefined)
        report(['http'], `must not be set when protocol is ${v.protocol}`, 'protocol: HTTP', 'conflict');
    },
  },
);

const httpFilterFields: Readonly<Record<string, string>> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  CORS: 'cors',
  ExternalAuth: 'externalAuth',
  ExtensionRef: 'extensionRef',
};

export const httpRouteFilter = object(
  {
    type: req(
      oneOf([
        'RequestHeaderModifier',
        'ResponseHeaderModifier',
        'RequestMirror',
        'RequestRedirect',
        'URLRewrite',
        'ExtensionRef',
        'CORS',
        'ExternalAuth',
      ]),
    ),
    requestHeaderModifier: opt(httpHeaderFilter),
    responseHeaderModifier: opt(httpHeaderFilter),
    requestMirror: opt(httpRequestMirrorFilter),
    requestRedirect: opt(httpRequestRedirectFilter),
    urlRewrite: opt(httpURLRewriteFilter),
    cors: opt(httpCORSFilter),
    externalAuth: opt(httpExternalAuthFilter),
    extensionRef: opt(localObjectReference),
  },
  { check: checkFilterUnion(httpFilterFields) },
);
export type HTTPRouteFilter = ObjectOf<typeof httpRouteFilter.fields>;

/** The list-level filter rules, shared by rule filters and backendRef filters. */
function checkFilterList(
  filters: readonly HTTPRouteFilter[] | undefined,
  report: Reporter,
  at: readonly (string | number)[],
) {
  if (!filters) return;
  const redirect = filters.findIndex((f) => f.type === 'RequestRedirect');
  const rewrite = filters.findIndex((f) => f.type === 'URLRewrite');
  if (redirect >= 0 && rewrite >= 0) {
    report(
      [...at, Math.max(redirect, rewrite), 'type'],
      'RequestRedirect and URLRewrite filters cannot both be used in the same list',
      'either a RequestRedirect or a URLRewrite filter, not both',
      'conflict',
    );
  }
  checkFiltersNotRepeated(
    filters,
    ['CORS', 'RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'],
    report,
    at,
  );
}

const httpFilters = () => array(httpRouteFilter, { max: 16 });

export const httpBackendRef = object(
  { ...backendRefFields, filters: opt(httpFilters()) },
  {
    check: (v, report) => {
      checkServicePort(v, report);
      checkFilterList(v.filters, report, ['filters']);
    },
  },
);
export type HTTPBackendRef = ObjectOf<typeof httpBackendRef.fields>;

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

export const httpRouteTimeouts = object(
  { request: opt(duration()), backendRequest: opt(duration()) },
  {
    check: (v, report) => {
      if (v.request === undefined || v.backendRequest === undefined) return;
      const request = durationMs(v.request);
      if (request !== 0 && durationMs(v.backendRequest) > request) {
        report(
          ['backendRequest'],
          `backendRequest timeout ${v.backendRequest} cannot be longer than request timeout ${v.request}`,
          `at most ${v.request}`,
          'range',
        );
      }
    },
  },
);
export type HTTPRouteTimeouts = ObjectOf<typeof httpRouteTimeouts.fields>;

export const httpRouteRetry = object({
  codes: opt(array(integer({ min: 400, max: 599, expected: 'an HTTP status code 400-599' }))),
  attempts: opt(integer({ min: 0, expected: 'a number of retries >= 0' })),
  backoff: opt(duration()),
});
export type HTTPRouteRetry = ObjectOf<typeof httpRouteRetry.fields>;

const defaultMatches = (): HTTPRouteMatch[] => [{ path: { type: 'PathPrefix', value: '/' } }];

/** True when `filters` contains a RequestRedirect/URLRewrite with path.type ReplacePrefixMatch. */
function usesReplacePrefixMatch(
  filters: readonly HTTPRouteFilter[] | undefined,
  kind: 'requestRedirect' | 'urlRewrite',
) {
  return (filters ?? []).some((f) => {
    const path = f[kind]?.path;
    return path?.type === 'ReplacePrefixMatch' && path.replacePrefixMatch !== undefined;
  });
}

const singlePathPrefix = (matches: readonly HTTPRouteMatch[]) =>
  matches.length === 1 && matches[0]!.path.type === 'PathPrefix';

export const httpRouteRule = object(
  {
    name: opt(sectionName('rule name')),
    matches: def(array(httpRouteMatch, { max: 64 }), defaultMatches),
    filters: opt(httpFilters()),
    backendRefs: opt(array(httpBackendRef, { max: 16 })),
    timeouts: opt(httpRouteTimeouts),
    retry: opt(httpRouteRetry),
    sessionPersistence: opt(sessionPersistence),
  },
  {
    check: (v, report) => {
      checkFilterList(v.filters, report, ['filters']);
      if ((v.backendRefs?.length ?? 0) > 0) {
        const i = (v.filters ?? []).findIndex((f) => f.requestRedirect !== undefined);
        if (i >= 0) {
          report(
            ['filters', i],
            'RequestRedirect filter must not be used together with backendRefs',
            'either a RequestRedirect filter or backendRefs',
            'conflict',
          );
        }
      }
      const prefixOnly = singlePathPrefix(v.matches);
      for (const kind of ['requestRedirect', 'urlRewrite'] as const) {
        const name = kind === 'requestRedirect' ? 'RequestRedirect' : 'URLRewrite';
        if (!prefixOnly && usesReplacePrefixMatch(v.filters, kind)) {
          report(
            ['matches'],
            `when using ${name} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified`,
            'exactly one match, with a PathPrefix path',
          );
        }
        if (!prefixOnly && (v.backendRefs ?? []).some((b) => usesReplacePrefixMatch(b.filters, kind))) {
          report(
            ['matches'],
            `within backendRefs, when using ${name} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified`,
            'exactly one match, with a PathPrefix path',
          );
        }
      }
    },
  },
);
export type HTTPRouteRule = ObjectOf<typeof httpRouteRule.fields>;

const defaultRules = (): HTTPRouteRule[] => [{ matches: defaultMatches() }];

export const httpRouteSpec = object(
  {
    ...commonRouteFields,
    hostnames: opt(routeHostnames()),
    rules: def(array(httpRouteRule, { min: 1, max: 16 }), defaultRules),
  },
  {
    check: (v, report) => {
      if (v.parentRefs) checkParentRefs(v.parentRefs, report, ['parentRefs']);
      checkUniqueRuleNames(v.rules, report);
      checkTotalMatches(v.rules, report);
    },
  },
);
export type HTTPRouteSpec = ObjectOf<typeof httpRouteSpec.fields>;

export const httpRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'HTTPRoute',
  versions: ['v1', 'v1beta1'],
  namespaced: true,
  summary: 'Routes HTTP requests by host, path, header, query and method to weighted backends, with filters.',
  fields: { spec: req(httpRouteSpec), status: opt(unchecked()) },
});
export type HTTPRoute = BodyOf<typeof httpRouteKind>;
