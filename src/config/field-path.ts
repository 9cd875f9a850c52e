import type { Path, PathSegment } from './schema/schema.js';

/** "spec.rules[0].backendRefs[1]" or 'metadata.labels["app.kubernetes.io/name"]' -> path segments. */
export function parseFieldPath(text: string): Path {
  const out: PathSegment[] = [];
  const re = /([^.[\]]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g;
  for (const m of text.matchAll(re)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(JSON.parse(m[3]) as string);
  }
  return out;
}
