// VirtualService (networking.istio.io): https://istio.io/latest/docs/reference/config/networking/virtual-service/
// Routing rules for traffic addressed to a set of hosts: HTTP (match, route, redirect, direct response,
// rewrite, retries, timeouts, faults, mirroring, CORS, header edits), unterminated TLS (by SNI) and TCP.
import { isIP } from 'node:net';
import { array, record } from '../../schema/collections.js';
import { re2Regex } from '../../schema/formats.js';
import { checks, object, oneOfFields, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { boolean, integer, oneOf, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  checkExportTo,
  destination,
  exportToList,
  gatewayBoundDomainProblem,
  gatewayName,
  headerNameProblem,
  headers,
  hostsOverlap,
  hostSubsetOf,
  int32NonNegative,
  ipOrSubnet,
  isAuthorityHeader,
  isJwtClaimRoute,
  istioDnsLabel,
  istioDuration,
  istioLabels,
  ISTIO_NETWORKING_GROUP,
  ISTIO_NETWORKING_VERSIONS,
  KNOWN_HTTP_STATUS,
  matchHeaderName,
  mirrorPercent,
  namespaceOf,
  optionalPortNumber,
  percent,
  stringMatch,
  uint32,
  wildcardDomainProblem,
} from './common.js';

/** The reserved gateway name for the sidecars of the mesh. */
export const MESH_GATEWAY = 'mesh';

/** Envoy x-envoy-retry-on and x-envoy-retry-grpc-on policies istiod accepts in retryOn. */
export const RETRY_ON_POLICIES = [
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'envoy-ratelimited',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
] as const;
const RETRY_ON = new Set<string>(RETRY_ON_POLICIES);

export const GRPC_STATUS_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE'] as const;

const present = (s: string | undefined): boolean => s !== undefined && s !== '';
const httpStatus = () => integer({ min: 200, max: 600, expected: 'an HTTP status code 200-599' });

// ---------------------------------------------------------------------------------------------------------
// HTTP match

const httpMatchRequest = object({
  name: opt(string()),
  /** An empty prefix is allowed for URIs only. */
  uri: opt(stringMatch({ allowEmptyPrefix: true })),
  scheme: opt(stringMatch()),
  method: opt(stringMatch()),
  authority: opt(stringMatch()),
  headers: opt(record(stringMatch(), { key: matchHeaderName() })),
  port: opt(optionalPortNumber()),
  sourceLabels: opt(istioLabels()),
  gateways: opt(array(gatewayName())),
  queryParams: opt(record(stringMatch())),
  ignoreUriCase: opt(boolean()),
  /** regex "*" here means "the header is present". */
  withoutHeaders: opt(record(stringMatch({ starMeansPresent: true }), { key: matchHeaderName() })),
  sourceNamespace: opt(istioDnsLabel('namespace name')),
  statPrefix: opt(string()),
});
export type HTTPMatchRequest = ObjectOf<typeof httpMatchRequest.fields>;

// ---------------------------------------------------------------------------------------------------------
// HTTP actions

const httpRouteDestination = object({
  destination: req(destination),
  /** Relative share; with several destinations they may not all be 0. */
  weight: opt(int32NonNegative()),
  headers: opt(headers),
});
export type HTTPRouteDestination = ObjectOf<typeof httpRouteDestination.fields>;

const redirectFields = {
  uri: opt(string()),
  authority: opt(string()),
  port: opt(uint32()),
  derivePort: opt(oneOf(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT'])),
  scheme: opt(string()),
  redirectCode: opt(uint32()),
} as const;
type Redirect = ObjectOf<typeof redirectFields>;

const redirect = object(redirectFields, {
  check: checks<Redirect>(oneOfFields(['port', 'derivePort'], false), (r, report) => {
    if (
      !present(r.uri) &&
      !present(r.authority) &&
      r.port === undefined &&
      r.derivePort === undefined &&
      !present(r.scheme)
    ) {
      report(
        [],
        'a redirect must change the uri, authority, scheme or port',
        'uri, authority, scheme, port or derivePort',
        'required',
      );
    }
    if (r.redirectCode !== undefined && r.redirectCode !== 0 && (r.redirectCode < 300 || r.redirectCode > 399)) {
      report(['redirectCode'], `${r.redirectCode} is not a redirect status code`, 'a 3xx status code', 'range');
    }
    if (present(r.scheme) && r.scheme !== 'http' && r.scheme !== 'https') {
      report(['scheme'], `redirect scheme ${JSON.stringify(r.scheme)} is not "http" or "https"`, '"http" or "https"');
    }
    if (r.port !== undefined && r.port > 65535) {
      report(['port'], `${r.port} is out of range`, 'a port number 1-65535', 'range');
    }
  }),
});

const MAX_BODY = 1024 * 1024;
const directResponse = object({
  status: req(httpStatus()),
  body: opt(
    object(
      {
        string: opt(string({ maxLength: MAX_BODY, expected: 'a response body below 1MB' })),
        bytes: opt(
          string({
            expected: 'base64-encoded bytes, below 1MB decoded',
            check: (b) => {
              if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b) || b.length % 4 !== 0) return 'is not valid base64';
              return Buffer.from(b, 'base64').length > MAX_BODY ? 'the decoded body is 1MB or larger' : undefined;
            },
          }),
        ),
      },
      { check: oneOfFields(['string', 'bytes'], false) },
    ),
  ),
});

const delegate = object({ name: opt(string()), namespace: opt(string()) });

const rewriteFields = {
  uri: opt(string()),
  authority: opt(string()),
  uriRegexRewrite: opt(
    object({
      match: opt(re2Regex(1024)),
      rewrite: opt(string()),
    }),
  ),
} as const;

const rewrite = object(rewriteFields, {
  check: (r, report) => {
    if (present(r.uri) && r.uriRegexRewrite !== undefined) {
      report(['uriRegexRewrite'], 'cannot be set together with "uri"', 'one of uri, uriRegexRewrite', 'conflict');
    }
    if (!present(r.uri) && r.uriRegexRewrite === undefined && !present(r.authority)) {
      report([], 'a rewrite must change the uri or the authority', 'uri, uriRegexRewrite or authority', 'required');
    }
    const rx = r.uriRegexRewrite;
    if (rx && (!present(rx.match) || !present(rx.rewrite))) {
      report(
        ['uriRegexRewrite', present(rx.match) ? 'rewrite' : 'match'],
        'uriRegexRewrite needs both match and rewrite',
        'match and rewrite',
        'required',
      );
    }
  },
});

const retriesFields = {
  attempts: opt(int32NonNegative()),
  perTryTimeout: opt(istioDuration()),
  /** Comma-separated Envoy retry policies and HTTP status codes. */
  retryOn: opt(
    string({
      expected: `comma-separated policies (${RETRY_ON_POLICIES.join(', ')}) or HTTP status codes`,
      check: (v) => {
        if (v === '') return undefined;
        for (const p of v.split(',')) {
          const code = /^[+-]?\d+$/.test(p) ? Number(p) : 0;
          if (!KNOWN_HTTP_STATUS.has(code) && !RETRY_ON.has(p))
            return `${JSON.stringify(p)} is not a valid retryOn policy`;
        }
        return undefined;
      },
    }),
  ),
  retryRemoteLocalities: opt(boolean()),
  retryIgnorePreviousHosts: opt(boolean()),
  backoff: opt(istioDuration()),
} as const;

const retries = object(retriesFields, {
  check: (r, report) => {
    if (
      (r.attempts ?? 0) === 0 &&
      (r.perTryTimeout !== undefined || present(r.retryOn) || r.retryRemoteLocalities !== undefined)
    ) {
      report(
        ['attempts'],
        'retries are disabled (attempts is 0 or unset) but perTryTimeout, retryOn or retryRemoteLocalities is set',
        'attempts of 1 or more',
        'required',
      );
    }
  },
});

const abortFields = {
  httpStatus: opt(httpStatus()),
  grpcStatus: opt(oneOf(GRPC_STATUS_CODES)),
  http2Error: opt(string()),
  percentage: opt(percent),
} as const;
type Abort = ObjectOf<typeof abortFields>;

const delayFields = {
  fixedDelay: opt(istioDuration()),
  exponentialDelay: opt(istioDuration()),
  /** Deprecated integer percentage: use percentage. */
  percent: opt(integer({ min: -2147483648, max: 2147483647 })),
  percentage: opt(percent),
} as const;
type Delay = ObjectOf<typeof delayFields>;

const fault = object(
  {
    delay: opt(
      object(delayFields, {
        check: checks<Delay>(oneOfFields(['fixedDelay', 'exponentialDelay'], false), (d, report) => {
          if (d.exponentialDelay !== undefined && d.fixedDelay === undefined) {
            report(['exponentialDelay'], 'exponential delays are not supported yet', 'fixedDelay', 'invalid');
          }
        }),
      }),
    ),
    abort: opt(
      object(abortFields, {
        check: checks<Abort>(oneOfFields(['httpStatus', 'grpcStatus', 'http2Error'], false), (a, report) => {
          if (a.http2Error !== undefined && a.httpStatus === undefined && a.grpcStatus === undefined) {
            report(
              ['http2Error'],
              'HTTP/2 abort fault injection is not supported yet',
              'httpStatus or grpcStatus',
              'invalid',
            );
          }
        }),
      }),
    ),
  },
  {
    check: (f, report) => {
      if (f.delay === undefined && f.abort === undefined) {
        report([], 'fault injection needs an abort and/or a delay', 'abort and/or delay', 'required');
      }
    },
  },
);

const corsHeaderName = () =>
  string({
    expected: 'a header name (letters, digits, "-" and "_") or "*"',
    check: (n) => (n === '*' ? undefined : headerNameProblem(n)),
  });

const corsPolicy = object({
  /** Deprecated exact origins: use allowOrigins. */
  allowOrigin: opt(array(string())),
  allowOrigins: opt(array(stringMatch({ nonEmpty: true }))),
  allowMethods: opt(array(oneOf(HTTP_METHODS))),
  allowHeaders: opt(array(corsHeaderName())),
  exposeHeaders: opt(array(corsHeaderName())),
  maxAge: opt(istioDuration({ seconds: true })),
  allowCredentials: opt(boolean()),
  unmatchedPreflights: opt(oneOf(['UNSPECIFIED', 'FORWARD', 'IGNORE'])),
});

const mirrorPolicy = object({ destination: req(destination), percentage: opt(mirrorPercent) });

const mirrorPercentLegacy = () => integer({ min: 0, max: 100, expected: 'a percentage 0-100' });

const httpRouteFields = {
  name: opt(string()),
  match: opt(array(httpMatchRequest)),
  route: opt(array(httpRouteDestination)),
  redirect: opt(redirect),
  directResponse: opt(directResponse),
  delegate: opt(delegate),
  rewrite: opt(rewrite),
  timeout: opt(istioDuration()),
  retries: opt(retries),
  fault: opt(fault),
  mirror: opt(destination),
  /** Deprecated integer mirror percentage (the CRD accepts both spellings): use mirrorPercentage. */
  mirrorPercent: opt(mirrorPercentLegacy()),
  mirror_percent: opt(mirrorPercentLegacy()),
  mirrorPercentage: opt(mirrorPercent),
  mirrors: opt(array(mirrorPolicy)),
  corsPolicy: opt(corsPolicy),
  headers: opt(headers),
} as const;
export type HTTPRoute = ObjectOf<typeof httpRouteFields>;

/** Several weighted destinations may not all weigh 0 (validateHTTPRouteDestinations). */
function checkTotalWeight(route: readonly { weight?: number }[] | undefined, report: Reporter): void {
  if (route && route.length > 1 && route.every((r) => (r.weight ?? 0) === 0)) {
    report(
      ['route'],
      `the weights of the ${route.length} destinations add up to 0`,
      'weights that add up to more than 0 (usually 100)',
      'range',
    );
  }
}

const httpRoute = object(httpRouteFields, {
  check: (h, report) => {
    checkTotalWeight(h.route, report);
    // The authority may be rewritten in one place only (validateAuthorityRewrite).
    let authority = h.rewrite?.authority ?? '';
    let where = 'rewrite.authority';
    for (const op of ['set', 'add'] as const) {
      for (const [k, v] of Object.entries(h.headers?.request?.[op] ?? {})) {
        if (!isAuthorityHeader(k)) continue;
        if (authority !== '') {
          report(
            ['headers', 'request', op, k],
            `the authority is already rewritten to ${JSON.stringify(authority)} by ${where}`,
            'one authority rewrite',
            'conflict',
          );
        }
        authority = v;
        where = `headers.request.${op}`;
      }
    }
  },
});

// ---------------------------------------------------------------------------------------------------------
// TCP and TLS routes

const routeDestination = object({ destination: req(destination), weight: opt(int32NonNegative()) });

const l4Match = object({
  destinationSubnets: opt(array(ipOrSubnet())),
  port: opt(optionalPortNumber()),
  /** Not documented; kept for compatibility. */
  sourceSubnet: opt(string()),
  sourceLabels: opt(istioLabels()),
  gateways: opt(array(gatewayName())),
  sourceNamespace: opt(istioDnsLabel('namespace name')),
});

const tcpRoute = object(
  { match: opt(array(l4Match)), route: opt(array(routeDestination)) },
  {
    check: (t, report) => {
      if (!t.route || t.route.length === 0)
        report(['route'], 'a TCP route needs at least one destination', 'at least 1 route destination', 'required');
      checkTotalWeight(t.route, report);
    },
  },
);

const tlsMatch = object({
  sniHosts: req(array(string({ minLength: 1, expected: 'SNI host names within spec.hosts' }), { min: 1 })),
  destinationSubnets: opt(array(ipOrSubnet())),
  port: opt(optionalPortNumber()),
  sourceLabels: opt(istioLabels()),
  gateways: opt(array(gatewayName())),
  sourceNamespace: opt(istioDnsLabel('namespace name')),
});

const tlsRoute = object(
  { match: req(array(tlsMatch, { min: 1 })), route: opt(array(routeDestination)) },
  {
    check: (t, report) => {
      if (!t.route || t.route.length === 0)
        report(['route'], 'a TLS route needs at least one destination', 'at least 1 route destination', 'required');
      checkTotalWeight(t.route, report);
    },
  },
);

// ---------------------------------------------------------------------------------------------------------
// VirtualService

const virtualServiceFields = {
  /** Empty for a delegate VirtualService (referenced from another one's http[].delegate). */
  hosts: opt(array(string({ expected: 'a host name, a "*" wildcard name, or an IP address' }))),
  gateways: opt(array(gatewayName())),
  http: opt(array(httpRoute)),
  tls: opt(array(tlsRoute)),
  tcp: opt(array(tcpRoute)),
  exportTo: opt(exportToList(false)),
} as const;
type VirtualServiceValue = ObjectOf<typeof virtualServiceFields>;

/** validateHTTPRouteConflict: what an HTTP route does (route, redirect, directResponse or delegate). */
function checkHttpRouteActions(h: HTTPRoute, inDelegateVs: boolean, report: Reporter): void {
  if (!inDelegateVs && h.delegate !== undefined) {
    if (h.redirect !== undefined)
      report(['redirect'], 'cannot be set together with "delegate"', 'delegate alone', 'conflict');
    if (h.route !== undefined)
      report(['route'], 'cannot be set together with "delegate"', 'delegate alone', 'conflict');
    return;
  }
  if (inDelegateVs && h.delegate !== undefined) {
    report(
      ['delegate'],
      'a delegate VirtualService (one without hosts) cannot delegate again',
      'route, redirect or directResponse',
      'invalid',
    );
  }
  const routes = h.route ?? [];
  if (h.redirect !== undefined) {
    if (routes.length > 0)
      report(['redirect'], 'cannot be set together with "route"', 'one of route, redirect, directResponse', 'conflict');
    if (h.fault !== undefined)
      report(['fault'], 'cannot be set together with "redirect"', 'no fault on a redirect', 'conflict');
    if (h.rewrite !== undefined)
      report(['rewrite'], 'cannot be set together with "redirect"', 'no rewrite on a redirect', 'conflict');
    if (h.directResponse !== undefined)
      report(
        ['directResponse'],
        'cannot be set together with "redirect"',
        'one of route, redirect, directResponse',
        'conflict',
      );
  } else if (h.directResponse !== undefined) {
    if (routes.length > 0)
      report(
        ['directResponse'],
        'cannot be set together with "route"',
        'one of route, redirect, directResponse',
        'conflict',
      );
    if (h.fault !== undefined)
      report(['fault'], 'cannot be set together with "directResponse"', 'no fault on a direct response', 'conflict');
    if (h.rewrite !== undefined)
      report(
        ['rewrite'],
        'cannot be set together with "directResponse"',
        'no rewrite on a direct response',
        'conflict',
      );
  } else if (routes.length === 0) {
    report(
      [],
      'an HTTP route needs a route, redirect or directResponse',
      'route, redirect, directResponse (or delegate)',
      'required',
    );
  }
  if (h.mirror !== undefined && (h.mirrors ?? []).length > 0) {
    report(['mirrors'], 'cannot be set together with "mirror"', 'one of mirror, mirrors', 'conflict');
  }
}

function checkVirtualService(vs: VirtualServiceValue, report: Reporter): void {
  const hosts = vs.hosts ?? [];
  const gateways = vs.gateways ?? [];
  const http = vs.http ?? [];
  const tls = vs.tls ?? [];
  const tcp = vs.tcp ?? [];
  const isDelegate = hosts.length === 0;

  if (isDelegate) {
    if (gateways.length > 0)
      report(
        ['gateways'],
        'a delegate VirtualService (no hosts) cannot name gateways',
        'no gateways, or hosts',
        'conflict',
      );
    if (tls.length > 0)
      report(
        ['tls'],
        'a delegate VirtualService (no hosts) cannot have TLS routes',
        'http routes only, or hosts',
        'conflict',
      );
    if (tcp.length > 0)
      report(
        ['tcp'],
        'a delegate VirtualService (no hosts) cannot have TCP routes',
        'http routes only, or hosts',
        'conflict',
      );
  }

  // Bound to gateways only when gateways are listed and "mesh" is not one of them.
  const appliesToGateway = gateways.length > 0 && !gateways.includes(MESH_GATEWAY);
  const appliesToMesh = !appliesToGateway;

  if (!appliesToGateway) {
    http.forEach((h, i) =>
      (h.match ?? []).forEach((m, j) => {
        for (const field of ['headers', 'withoutHeaders'] as const) {
          for (const key of Object.keys(m[field] ?? {})) {
            if (isJwtClaimRoute(key)) {
              report(
                ['http', i, 'match', j, field, key],
                'JWT claim based routing is only supported on gateways',
                'a VirtualService bound to gateways (not "mesh")',
                'invalid',
              );
            }
          }
        }
      }),
    );
  }

  const sniRoutes = tls.some((t) => t.match.some((m) => m.sniHosts.length > 0));
  let allHostsValid = true;
  hosts.forEach((h, i) => {
    const problem = appliesToGateway ? gatewayBoundDomainProblem(sniRoutes, h) : wildcardDomainProblem(h);
    if (problem !== undefined) {
      if (!isIP(h)) {
        report(['hosts', i], problem, 'a DNS name, optionally starting with a "*" label, or an IP address');
        allHostsValid = false;
      }
    } else if (appliesToMesh && h === '*') {
      report(
        ['hosts', i],
        'the wildcard host "*" is not allowed for VirtualServices that apply to the mesh',
        'a DNS name, or gateways without "mesh"',
      );
      allHostsValid = false;
    }
  });
  if (allHostsValid) {
    for (let i = 0; i < hosts.length; i++) {
      for (let j = i + 1; j < hosts.length; j++) {
        if (hostsOverlap(hosts[i]!, hosts[j]!)) {
          report(
            ['hosts', j],
            `duplicate host: ${hosts[j]} overlaps ${hosts[i]} (hosts[${i}])`,
            'hosts that do not overlap',
          );
        }
      }
    }
  }

  if (http.length === 0 && tcp.length === 0 && tls.length === 0) {
    report([], 'a VirtualService needs http, tls or tcp routes', 'at least one of http, tls, tcp', 'required');
  }

  http.forEach((h, i) => checkHttpRouteActions(h, isDelegate, (rel, m, e, c) => report(['http', i, ...rel], m, e, c)));

  tls.forEach((t, i) =>
    t.match.forEach((m, j) =>
      m.sniHosts.forEach((sni, k) => {
        const path = ['tls', i, 'match', j, 'sniHosts', k];
        const problem = appliesToGateway ? gatewayBoundDomainProblem(true, sni) : wildcardDomainProblem(sni);
        if (problem !== undefined) {
          // An IP address goes against the SNI spec, but istiod only warns about it.
          if (!isIP(sni)) report(path, problem, 'a DNS name, optionally starting with a "*" label');
          return;
        }
        if (!hosts.some((h) => hostSubsetOf(sni, h))) {
          report(
            path,
            `SNI host ${JSON.stringify(sni)} is not covered by any of the hosts [${hosts.join(', ')}]`,
            'an SNI host within spec.hosts',
          );
        }
      }),
    ),
  );
}

const virtualServiceSpec = object(virtualServiceFields, { check: checkVirtualService });

export type VirtualServiceSpec = ObjectOf<typeof virtualServiceSpec.fields>;

export const virtualServiceKind = defineKind({
  group: ISTIO_NETWORKING_GROUP,
  kind: 'VirtualService',
  versions: ISTIO_NETWORKING_VERSIONS,
  namespaced: true,
  summary: 'Routing rules for HTTP, TLS (by SNI) and TCP traffic addressed to a set of hosts.',
  fields: { spec: req(virtualServiceSpec), status: opt(unchecked()) },
  check: (doc, report) => checkExportTo(doc.spec.exportTo, namespaceOf(doc), report, ['spec', 'exportTo']),
});

export type VirtualServiceBody = BodyOf<typeof virtualServiceKind>;
