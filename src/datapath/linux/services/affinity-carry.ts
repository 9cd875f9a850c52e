// ClientIP affinity across re-applies. Each apply replaces the whole table (one transaction,
// nothing left over from a previous ruleset), which would forget which client is stuck to
// which endpoint. So the apply first reads the affinity sets (`nft -j list table`) and the
// new table is created holding, for every set it keeps (same service port, same endpoint),
// the entries still alive with the time they had left.

/** Live entries per affinity set name. */
export type AffinityEntries = ReadonlyMap<
  string,
  readonly { readonly address: string; readonly expiresSeconds: number }[]
>;

interface JsonSet {
  readonly name?: unknown;
  readonly elem?: unknown;
}

/** One element of `nft -j`: a bare value, or { elem: { val, expires, timeout } }. */
function entryOf(e: unknown): { address: string; expiresSeconds: number } | undefined {
  const inner = (e as { elem?: { val?: unknown; expires?: unknown } } | null)?.elem;
  if (!inner || typeof inner.val !== 'string' || typeof inner.expires !== 'number') return undefined;
  return inner.expires > 0 ? { address: inner.val, expiresSeconds: Math.ceil(inner.expires) } : undefined;
}

/** The affinity sets (by name prefix) of an `nft -j list table` answer, with their live entries. */
export function affinityEntriesOf(listing: unknown, prefix = 'affinity-'): AffinityEntries {
  const out = new Map<string, { address: string; expiresSeconds: number }[]>();
  const items = (listing as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) return out;
  for (const item of items as { set?: JsonSet }[]) {
    const set = item.set;
    if (!set || typeof set.name !== 'string' || !set.name.startsWith(prefix)) continue;
    const entries = (Array.isArray(set.elem) ? set.elem : []).map(entryOf).filter((x) => x !== undefined);
    if (entries.length > 0) out.set(set.name, entries);
  }
  return out;
}
