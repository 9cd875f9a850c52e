// SPIFFE IDs (spiffe://trust-domain/path) as the SPIFFE-ID specification defines them.

export interface SpiffeId {
  readonly trustDomain: string;
  readonly path: string;
  readonly text: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Parses a SPIFFE ID; returns the reason when it is malformed. */
export function parseSpiffeId(text: string): SpiffeId | string {
  if (text.length > 2048) return 'a SPIFFE ID is at most 2048 bytes';
  if (!text.startsWith('spiffe://')) return 'a SPIFFE ID starts with "spiffe://" (lowercase scheme)';
  const rest = text.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (trustDomain === '') return 'the trust domain is empty';
  if (!TRUST_DOMAIN.test(trustDomain)) {
    return `trust domain ${JSON.stringify(trustDomain)} may contain only lowercase letters, digits, ".", "-" and "_" (no port, user info or uppercase)`;
  }
  if (path !== '') {
    if (path === '/') return 'the path must not end with "/"';
    for (const seg of path.slice(1).split('/')) {
      if (seg === '') return 'the path has an empty segment ("//" or a trailing "/")';
      if (seg === '.' || seg === '..') return 'the path has a "." or ".." segment';
      if (!SEGMENT.test(seg))
        return `path segment ${JSON.stringify(seg)} may contain only letters, digits, ".", "-" and "_" (no query or fragment)`;
    }
  }
  return { trustDomain, path, text };
}

/** The Istio/Kubernetes identity layout: /ns/<namespace>/sa/<service-account>. */
export function workloadSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export function trustDomainId(trustDomain: string): string {
  return `spiffe://${trustDomain}`;
}
