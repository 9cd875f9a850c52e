// TLSRoute (gateway.networking.k8s.io v1alpha2, v1alpha3; experimental): apis/v1alpha2 and
// apis/v1alpha3 tlsroute_types.go. v1alpha3 requires 1-16 hostnames and allows a single rule.
import { array } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf } from '../../schema/object.js';
import { unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  backendRef,
  checkParentRefs,
  checkUniqueRuleNames,
  commonRouteFields,
  documentVersion,
  routeHostnames,
  sectionName,
} from './common.js';

export const tlsRouteRule = object({
  name: opt(sectionName('rule name')),
  backendRefs: req(array(backendRef, { min: 1, max: 16 })),
});
export type TLSRouteRule = ObjectOf<typeof tlsRouteRule.fields>;

export const tlsRouteSpec = object(
  {
    ...commonRouteFields,
    hostnames: opt(routeHostnames()),
    rules: req(array(tlsRouteRule, { min: 1, max: 16 })),
  },
  {
    check: (v, report) => {
      if (v.parentRefs) checkParentRefs(v.parentRefs, report, ['parentRefs']);
      checkUniqueRuleNames(v.rules, report);
    },
  },
);
export type TLSRouteSpec = ObjectOf<typeof tlsRouteSpec.fields>;

export const tlsRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'TLSRoute',
  versions: ['v1alpha2', 'v1alpha3'],
  namespaced: true,
  summary: 'Routes TLS connections by SNI hostname to weighted backends (passthrough or terminated).',
  fields: { spec: req(tlsRouteSpec), status: opt(unchecked()) },
  check: (doc, report) => {
    if (documentVersion(doc) !== 'v1alpha3') return;
    if ((doc.spec.hostnames?.length ?? 0) === 0) {
      report(['spec', 'hostnames'], 'is required in TLSRoute v1alpha3', 'at least one SNI hostname', 'required');
    }
    if (doc.spec.rules.length > 1) {
      report(
        ['spec', 'rules'],
        `has ${doc.spec.rules.length} items, more than the upstream limit for TLSRoute v1alpha3`,
        'at most 1',
        'limit',
      );
    }
  },
});
export type TLSRoute = BodyOf<typeof tlsRouteKind>;
