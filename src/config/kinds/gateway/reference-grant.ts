// ReferenceGrant (gateway.networking.k8s.io v1beta1, v1alpha2): apis/v1beta1/referencegrant_types.go.
import { array } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf } from '../../schema/object.js';
import { unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import { group, kind, namespaceName, objectName } from './common.js';

/** ReferenceGrantFrom: the kind of object (in a namespace) allowed to refer. */
export const referenceGrantFrom = object({
  group: req(group()),
  kind: req(kind()),
  namespace: req(namespaceName()),
});
export type ReferenceGrantFrom = ObjectOf<typeof referenceGrantFrom.fields>;

/** ReferenceGrantTo: the kind (and optionally name) of local object that may be referred to. */
export const referenceGrantTo = object({
  group: req(group()),
  kind: req(kind()),
  name: opt(objectName()),
});
export type ReferenceGrantTo = ObjectOf<typeof referenceGrantTo.fields>;

export const referenceGrantSpec = object({
  from: req(array(referenceGrantFrom, { min: 1, max: 16 })),
  to: req(array(referenceGrantTo, { min: 1, max: 16 })),
});
export type ReferenceGrantSpec = ObjectOf<typeof referenceGrantSpec.fields>;

export const referenceGrantKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'ReferenceGrant',
  versions: ['v1beta1', 'v1alpha2'],
  namespaced: true,
  summary: 'Allows objects in other namespaces to refer to objects in this namespace.',
  fields: { spec: req(referenceGrantSpec), status: opt(unchecked()) },
});
export type ReferenceGrant = BodyOf<typeof referenceGrantKind>;
