// SPIFFE IDs: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. IPs are never identity.
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** Istio principals omit the scheme: "cluster.local/ns/prod/sa/frontend". */
export function principalOf(spiffe: string): string {
  return spiffe.startsWith('spiffe://') ? spiffe.slice('spiffe://'.length) : spiffe;
}
