// Envoy's normalize_path (Istio's default path normalization, BASE): the :path is normalized per
// RFC 3986 before filters and routing see it, so that "/a/../admin" or "/%2e%2e/admin" cannot get
// past a path rule written for "/admin" (authorization and routing decide on the same path the
// upstream receives). Slashes are not merged (Istio's BASE leaves "//" alone).

const DOT = 46;
const SLASH = 47;
const PERCENT = 37;
const BACKSLASH = 92;

/** Whether the path part may need normalizing (a dot segment, an encoded dot, a backslash). */
function suspicious(path: string, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = path.charCodeAt(i);
    if (c === DOT && path.charCodeAt(i - 1) === SLASH) return true;
    if (c === PERCENT && path.charCodeAt(i + 1) === 50 /* 2 */ && (path.charCodeAt(i + 2) | 32) === 101 /* e */)
      return true;
    if (c === BACKSLASH) return true;
  }
  return false;
}

/**
 * The normalized origin-form path (query kept as is). Most paths need nothing and are returned
 * unchanged without allocating; others get encoded dots decoded, backslashes as slashes (as
 * Envoy's canonicalizer does) and dot segments removed (RFC 3986 5.2.4).
 */
export function normalizePath(path: string): string {
  if (path.charCodeAt(0) !== SLASH) return path;
  const q = path.indexOf('?');
  const end = q < 0 ? path.length : q;
  if (!suspicious(path, end)) return path;
  const raw = path.slice(0, end).replace(/%2e/gi, '.').replace(/\\/g, '/');
  const out: string[] = [];
  const segments = raw.split('/');
  // segments[0] is "" (the leading slash).
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(s);
  }
  return `/${out.join('/')}${q < 0 ? '' : path.slice(q)}`;
}
