// Header maps as the engine passes them around: one plain object per message with lowercase
// names (what node:http and node:http2 give us, so no copy is made), values a string or, for
// repeated headers, an array. Pseudo-headers live on the request context, never in the map.

export type HeaderValue = string | string[];
export type HeaderMap = Record<string, HeaderValue | undefined>;

/** RFC 9110 7.6.1 connection-specific headers; never forwarded, and illegal in HTTP/2. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'] as const;

/**
 * Removes hop-by-hop headers in place: the fixed set, anything the Connection header names,
 * and TE unless it is exactly "trailers" (what gRPC sends, and all HTTP/2 allows).
 */
export function stripHopByHop(h: HeaderMap): void {
  const connection = h.connection;
  if (connection !== undefined) {
    for (const v of typeof connection === 'string' ? [connection] : connection) {
      for (const token of v.split(',')) {
        const name = token.trim().toLowerCase();
        if (name && name !== 'te' && h[name] !== undefined) delete h[name];
      }
    }
  }
  for (const name of HOP_BY_HOP) if (h[name] !== undefined) delete h[name];
  const te = h.te;
  if (te !== undefined && (typeof te !== 'string' || te.trim().toLowerCase() !== 'trailers')) delete h.te;
}

/** A header's value as matchers see it: repeated values joined with "," (Envoy). */
export function joined(v: HeaderValue | undefined): string | undefined {
  return v === undefined || typeof v === 'string' ? v : v.join(',');
}

/** First value of a repeated header. */
export function first(v: HeaderValue | undefined): string | undefined {
  return v === undefined || typeof v === 'string' ? v : v[0];
}

/** Adds one more value under a name (a second entry on the wire, as Envoy's append does). */
export function appendValue(h: HeaderMap, name: string, value: string): void {
  const cur = h[name];
  if (cur === undefined) h[name] = value;
  else if (typeof cur === 'string') h[name] = [cur, value];
  else cur.push(value);
}

/** Value of `name` in a Cookie header, without allocating a parsed map. */
export function cookieValue(header: HeaderValue | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const text = typeof header === 'string' ? header : header.join('; ');
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
