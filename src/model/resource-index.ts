// Resources grouped by kind and keyed by namespace/name, in a deterministic order.
import type { KindName } from '../config/kinds/registry.js';
import type { Resource } from '../config/resource.js';

function order(a: Resource, b: Resource): number {
  return (a.namespace ?? '').localeCompare(b.namespace ?? '') || a.name.localeCompare(b.name);
}

export class ResourceIndex {
  readonly #byKind = new Map<string, Resource[]>();
  readonly #byKey = new Map<string, Resource>();

  constructor(resources: readonly Resource[]) {
    for (const r of resources) {
      let list = this.#byKind.get(r.kind);
      if (!list) this.#byKind.set(r.kind, (list = []));
      list.push(r);
      this.#byKey.set(`${r.kind}/${r.namespace ?? ''}/${r.name}`, r);
    }
    for (const list of this.#byKind.values()) list.sort(order);
  }

  all<K extends KindName>(kind: K): readonly Resource<K>[] {
    return (this.#byKind.get(kind) ?? []) as unknown as readonly Resource<K>[];
  }

  get<K extends KindName>(kind: K, namespace: string | undefined, name: string): Resource<K> | undefined {
    return this.#byKey.get(`${kind}/${namespace ?? ''}/${name}`) as Resource<K> | undefined;
  }
}

/** Groups items by a key, keeping the input order inside each group. */
export function groupBy<T>(items: Iterable<T>, key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    let list = m.get(k);
    if (!list) m.set(k, (list = []));
    list.push(it);
  }
  return m;
}
