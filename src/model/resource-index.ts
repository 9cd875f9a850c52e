// Resources grouped by kind and keyed by namespace/name, in a deterministic order.
import { compareStrings } from '../util/compare.js';
import type { KindName } from '../config/kinds/registry.js';
import type { Resource } from '../config/resource.js';

function order(a: Resource, b: Resource): number {
  return compareStrings(a.namespace ?? '', b.namespace ?? '') || compareStrings(a.name, b.name);
}

const NONE: readonly Resource[] = [];

function sourceOrder(a: Resource, b: Resource): number {
  return compareStrings(a.source.file, b.source.file) || a.source.index - b.source.index;
}

export class ResourceIndex {
  readonly #byKind = new Map<string, Resource[]>();
  /** kind -> namespace ("" when cluster-scoped) -> name -> resource; no key strings to build. */
  readonly #byKey = new Map<string, Map<string, Map<string, Resource>>>();

  constructor(resources: readonly Resource[]) {
    for (const r of resources) {
      let byNs = this.#byKey.get(r.kind);
      if (!byNs) this.#byKey.set(r.kind, (byNs = new Map()));
      const ns = r.namespace ?? '';
      let byName = byNs.get(ns);
      if (!byName) byNs.set(ns, (byName = new Map()));
      const prev = byName.get(r.name);
      // Duplicates (the loader reports them): keep the first by source position, whatever the input order.
      if (prev === undefined || sourceOrder(r, prev) < 0) byName.set(r.name, r);
    }
    for (const [kind, byNs] of this.#byKey) {
      const list: Resource[] = [];
      for (const byName of byNs.values()) for (const r of byName.values()) list.push(r);
      this.#byKind.set(kind, list.sort(order));
    }
  }

  all<K extends KindName>(kind: K): readonly Resource<K>[] {
    return (this.#byKind.get(kind) ?? NONE) as unknown as readonly Resource<K>[];
  }

  get<K extends KindName>(kind: K, namespace: string | undefined, name: string): Resource<K> | undefined {
    return this.#byKey
      .get(kind)
      ?.get(namespace ?? '')
      ?.get(name) as Resource<K> | undefined;
  }
}
