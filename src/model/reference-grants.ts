// ReferenceGrant: may an object in namespace A refer to one in namespace B?
import type { ResourceIndex } from './resource-index.js';

export interface RefFrom {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
}
export interface RefTo {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

const coreGroup = (g: string | undefined): string => (g === undefined || g === 'core' ? '' : g);

export function referenceAllowed(index: ResourceIndex, from: RefFrom, to: RefTo): boolean {
  if (from.namespace === to.namespace) return true;
  for (const grant of index.all('ReferenceGrant')) {
    if (grant.namespace !== to.namespace) continue;
    const fromOk = grant.spec.from.some(
      (f) => coreGroup(f.group) === coreGroup(from.group) && f.kind === from.kind && f.namespace === from.namespace,
    );
    if (!fromOk) continue;
    const toOk = grant.spec.to.some(
      (t) =>
        coreGroup(t.group) === coreGroup(to.group) &&
        t.kind === to.kind &&
        (t.name === undefined || t.name === to.name),
    );
    if (toOk) return true;
  }
  return false;
}
