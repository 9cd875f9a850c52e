// Istio's `namespaces` sources compile to one regex shape (namespaceId() in
// src/xds/translate/rbac.ts): spiffe://<any trust domain>/ns/<NS>/sa/<any>. Recognised here so
// the evaluator indexes such policies by namespace and matches them without a regex engine
// (compiling 10,000 of them through RE2 took seconds).

// The regex text itself: spiffe://[^/]+/ns/<escaped NS>/sa/[^/]+
const NAMESPACE_REGEX = /^spiffe:\/\/\[\^\/\]\+\/ns\/((?:[A-Za-z0-9-]|\\\.)+)\/sa\/\[\^\/\]\+$/;
const SPIFFE_NS = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/;

/** The namespace a principal regex stands for, or undefined for any other regex. */
export function namespaceOfRegex(regex: string): string | undefined {
  return NAMESPACE_REGEX.exec(regex)?.[1]?.replace(/\\\./g, '.');
}

// A SPIFFE ID's namespace, cached per ID string: IDs come from the mesh's CA, so they are few.
const cache = new Map<string, string | null>();

/** The namespace of a workload SPIFFE ID (spiffe://td/ns/NS/sa/SA), else undefined. */
export function namespaceOf(principal: string): string | undefined {
  let ns = cache.get(principal);
  if (ns === undefined) {
    if (cache.size > 10_000) cache.clear();
    ns = SPIFFE_NS.exec(principal)?.[1] ?? null;
    cache.set(principal, ns);
  }
  return ns ?? undefined;
}
