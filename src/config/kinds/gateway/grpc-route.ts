// GRPCRoute (gateway.networking.k8s.io v1, v1alpha2): apis/v1/grpcroute_types.go.
import { array } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf } from '../../schema/object.js';
import { oneOf, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
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
  headerName,
  headerValue,
  httpHeaderFilter,
  httpRequestMirrorFilter,
  localObjectReference,
  routeHostnames,
  sectionName,
  sessionPersistence,
} from './common.js';

const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

export const grpcMethodMatch = object(
  {
    type: def(oneOf(['Exact', 'RegularExpression']), 'Exact'),
    service: opt(string({ maxLength: 1024, expected: 'a gRPC service name such as "com.example.User"' })),
    method: opt(string({ maxLength: 1024, expected: 'a gRPC method name such as "Login"' })),
  },
  {
    check: (v, report) => {
      // The type is always set once defaulted, so at least one of service and method is required.
      if (v.service === undefined && v.method === undefined) {
        report([], "one or both of 'service' or 'method' must be specified", 'service and/or method', 'required');
        return;
      }
      if (v.type === 'Exact') {
        if (v.service !== undefined && !GRPC_SERVICE.test(v.service)) {
          report(
            ['service'],
            `${JSON.stringify(v.service)} is not a valid gRPC service name`,
            'dot-separated identifiers such as "com.example.User" (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)',
            'format',
          );
        }
        if (v.method !== undefined && !GRPC_METHOD.test(v.method)) {
          report(
            ['method'],
            `${JSON.stringify(v.method)} is not a valid gRPC method name`,
            'an identifier such as "Login" (matching ^[A-Za-z_][A-Za-z_0-9]*$)',
            'format',
          );
        }
      } else {
        if (v.service !== undefined) checkRegex(v.service, ['service'], report);
        if (v.method !== undefined) checkRegex(v.method, ['method'], report);
      }
    },
  },
);
export type GRPCMethodMatch = ObjectOf<typeof grpcMethodMatch.fields>;

export const grpcHeaderMatch = object(
  {
    type: def(oneOf(['Exact', 'RegularExpression']), 'Exact'),
    name: req(headerName()),
    value: req(headerValue()),
  },
  {
    check: (v, report) => {
      if (v.type === 'RegularExpression') checkRegex(v.value, ['value'], report);
    },
  },
);
export type GRPCHeaderMatch = ObjectOf<typeof grpcHeaderMatch.fields>;

export const grpcRouteMatch = object(
  {
    method: opt(grpcMethodMatch),
    headers: opt(array(grpcHeaderMatch, { max: 16 })),
  },
  {
    check: (v, report) =>
      checkUniqueNames(
        v.headers,
        (h) => h.name,
        report,
        (i) => ['headers', i, 'name'],
        'header name',
      ),
  },
);
export type GRPCRouteMatch = ObjectOf<typeof grpcRouteMatch.fields>;

export const grpcRouteFilter = object(
  {
    type: req(oneOf(['ResponseHeaderModifier', 'RequestHeaderModifier', 'RequestMirror', 'ExtensionRef'])),
    requestHeaderModifier: opt(httpHeaderFilter),
    responseHeaderModifier: opt(httpHeaderFilter),
    requestMirror: opt(httpRequestMirrorFilter),
    extensionRef: opt(localObjectReference),
  },
  {
    check: checkFilterUnion({
      RequestHeaderModifier: 'requestHeaderModifier',
      ResponseHeaderModifier: 'responseHeaderModifier',
      RequestMirror: 'requestMirror',
      ExtensionRef: 'extensionRef',
    }),
  },
);
export type GRPCRouteFilter = ObjectOf<typeof grpcRouteFilter.fields>;

const NOT_REPEATED = ['RequestHeaderModifier', 'ResponseHeaderModifier'];

export const grpcBackendRef = object(
  { ...backendRefFields, filters: opt(array(grpcRouteFilter, { max: 16 })) },
  {
    check: (v, report) => {
      checkServicePort(v, report);
      checkFiltersNotRepeated(v.filters, NOT_REPEATED, report, ['filters']);
    },
  },
);
export type GRPCBackendRef = ObjectOf<typeof grpcBackendRef.fields>;

export const grpcRouteRule = object(
  {
    name: opt(sectionName('rule name')),
    // Upstream MaxItems is 8 per GRPCRoute rule (HTTPRoute allows 64).
    matches: opt(array(grpcRouteMatch, { max: 8 })),
    filters: opt(array(grpcRouteFilter, { max: 16 })),
    backendRefs: opt(array(grpcBackendRef, { max: 16 })),
    sessionPersistence: opt(sessionPersistence),
  },
  { check: (v, report) => checkFiltersNotRepeated(v.filters, NOT_REPEATED, report, ['filters']) },
);
export type GRPCRouteRule = ObjectOf<typeof grpcRouteRule.fields>;

export const grpcRouteSpec = object(
  {
    ...commonRouteFields,
    hostnames: opt(routeHostnames()),
    rules: opt(array(grpcRouteRule, { max: 16 })),
  },
  {
    check: (v, report) => {
      if (v.parentRefs) checkParentRefs(v.parentRefs, report, ['parentRefs']);
      checkUniqueRuleNames(v.rules, report);
      checkTotalMatches(v.rules, report);
    },
  },
);
export type GRPCRouteSpec = ObjectOf<typeof grpcRouteSpec.fields>;

export const grpcRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'GRPCRoute',
  versions: ['v1', 'v1alpha2'],
  namespaced: true,
  summary: 'Routes gRPC requests by host, service, method and header to weighted backends, with filters.',
  fields: { spec: req(grpcRouteSpec), status: opt(unchecked()) },
});
export type GRPCRoute = BodyOf<typeof grpcRouteKind>;
