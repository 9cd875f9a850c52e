// TCPRoute (gateway.networking.k8s.io v1alpha2, experimental): apis/v1alpha2/tcproute_types.go.
import { array } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf } from '../../schema/object.js';
import { unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import { backendRef, checkParentRefs, checkUniqueRuleNames, commonRouteFields, sectionName } from './common.js';

export const tcpRouteRule = object({
  name: opt(sectionName('rule name')),
  backendRefs: req(array(backendRef, { min: 1, max: 16 })),
});
export type TCPRouteRule = ObjectOf<typeof tcpRouteRule.fields>;

export const tcpRouteSpec = object(
  {
    ...commonRouteFields,
    rules: req(array(tcpRouteRule, { min: 1, max: 16 })),
  },
  {
    check: (v, report) => {
      if (v.parentRefs) checkParentRefs(v.parentRefs, report, ['parentRefs']);
      checkUniqueRuleNames(v.rules, report);
    },
  },
);
export type TCPRouteSpec = ObjectOf<typeof tcpRouteSpec.fields>;

export const tcpRouteKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'TCPRoute',
  versions: ['v1alpha2'],
  namespaced: true,
  summary: 'Forwards TCP connections from a listener to weighted backends.',
  fields: { spec: req(tcpRouteSpec), status: opt(unchecked()) },
});
export type TCPRoute = BodyOf<typeof tcpRouteKind>;
