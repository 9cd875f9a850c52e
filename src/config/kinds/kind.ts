// What a configuration kind is: its API group, served versions, scope and body schema.
import type { Fields, ObjectOf, ObjectOptions } from '../schema/object.js';
import type { Schema } from '../schema/schema.js';

export interface KindDefinition<K extends string = string, Body = unknown> {
  /** API group; "" for the Kubernetes core group (apiVersion "v1"). */
  readonly group: string;
  readonly kind: K;
  /** Served versions, the preferred (storage) version first. */
  readonly versions: readonly string[];
  readonly namespaced: boolean;
  /** The fields besides apiVersion, kind and metadata (usually `spec`, sometimes `status`). */
  readonly fields: Fields;
  /** Cross-field rules over the whole body. */
  readonly check?: ObjectOptions<Body>['check'];
  /** One line for `trellis validate --help` and docs. */
  readonly summary: string;
  /** A stricter format for metadata.name than the DNS subdomain every object allows. */
  readonly nameSchema?: Schema<string>;
  /** Phantom: the parsed body type. */
  readonly __body?: Body;
}

export function defineKind<const K extends string, const F extends Fields>(def: {
  group: string;
  kind: K;
  versions: readonly string[];
  namespaced: boolean;
  fields: F;
  check?: ObjectOptions<ObjectOf<F>>['check'];
  summary: string;
  nameSchema?: Schema<string>;
}): KindDefinition<K, ObjectOf<F>> {
  return def as KindDefinition<K, ObjectOf<F>>;
}

export type BodyOf<D> = D extends KindDefinition<string, infer B> ? B : never;

export function apiVersionOf(group: string, version: string): string {
  return group === '' ? version : `${group}/${version}`;
}
