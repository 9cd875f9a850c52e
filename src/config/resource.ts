// A validated resource: its header, its typed body (spec, ...) and where it was written.
import type { Position, ResourceKey } from './diagnostic.js';
import type { ObjectMeta } from './kinds/common/meta.js';
import type { KindMap, KindName } from './kinds/registry.js';
import type { Path } from './schema/schema.js';

export interface SourceRef {
  readonly file: string;
  /** Index of the document in its file. */
  readonly index: number;
  /** Where a field of this resource is written (path relative to the resource). */
  locate(path: Path, atKey?: boolean): Position;
}

export interface ResourceHeader<K extends KindName> {
  readonly kind: K;
  readonly group: string;
  readonly apiVersion: string;
  readonly metadata: ObjectMeta;
  /** metadata.namespace with the default applied ("default"); undefined for cluster-scoped kinds. */
  readonly namespace: string | undefined;
  readonly name: string;
  readonly source: SourceRef;
}

/** A discriminated union over `kind`: narrowing on `r.kind` types `r.spec`. */
export type Resource<K extends KindName = KindName> = K extends KindName ? ResourceHeader<K> & KindMap[K] : never;

export function keyOf(r: { kind: string; namespace: string | undefined; name: string }): ResourceKey {
  return r.namespace === undefined
    ? { kind: r.kind, name: r.name }
    : { kind: r.kind, namespace: r.namespace, name: r.name };
}

export function isKind<K extends KindName>(r: Resource, kind: K): r is Resource<K> {
  return r.kind === kind;
}
