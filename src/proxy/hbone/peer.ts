// Verifying the TLS peer of an HBONE connection as an X.509-SVID (verify.ts), with the
// reason kept for the flow record when it is refused.
import type { TLSSocket } from 'node:tls';
import { verifyX509Svid, type TrustBundles, type VerifyResult } from '../../identity/verify.js';

/** The DER chain the peer presented, leaf first. */
export function peerChain(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let cert = socket.getPeerCertificate(true) as
    (ReturnType<TLSSocket['getPeerCertificate']> & { issuerCertificate?: unknown; raw?: Buffer }) | undefined;
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    out.push(cert.raw);
    cert = cert.issuerCertificate as typeof cert;
  }
  return out;
}

export function verifyPeer(socket: TLSSocket, bundles: TrustBundles, expected?: string): VerifyResult {
  const chain = peerChain(socket);
  return verifyX509Svid(chain, bundles, expected ? { allowedIds: new Set([expected]) } : {});
}
