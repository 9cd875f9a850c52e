// GatewayClass (gateway.networking.k8s.io v1, v1beta1; cluster-scoped): apis/v1/gatewayclass_types.go.
import { object, opt, req, type ObjectOf } from '../../schema/object.js';
import { string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import { gatewayController, group, kind, namespaceName } from './common.js';

/** ParametersReference: a cluster-scoped or (with namespace) namespaced configuration object. */
export const parametersReference = object({
  group: req(group()),
  kind: req(kind()),
  name: req(string({ minLength: 1, maxLength: 253, expected: 'a name (1-253 characters)' })),
  namespace: opt(namespaceName()),
});
export type ParametersReference = ObjectOf<typeof parametersReference.fields>;

export const gatewayClassSpec = object({
  controllerName: req(gatewayController()),
  parametersRef: opt(parametersReference),
  description: opt(string({ maxLength: 64, expected: 'a description of at most 64 characters' })),
});
export type GatewayClassSpec = ObjectOf<typeof gatewayClassSpec.fields>;

export const gatewayClassKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'GatewayClass',
  versions: ['v1', 'v1beta1'],
  namespaced: false,
  summary: 'A class of Gateways, implemented by the controller named in controllerName.',
  fields: { spec: req(gatewayClassSpec), status: opt(unchecked()) },
});
export type GatewayClass = BodyOf<typeof gatewayClassKind>;
