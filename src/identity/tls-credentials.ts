// An SVID snapshot as the PEM strings node:tls and grpc-js take.
import type { SvidSnapshot } from './secret-manager.js';
import { pemEncode } from './x509-builder.js';

export interface TlsPem {
  /** Leaf and intermediates. */
  readonly cert: string;
  readonly key: string;
  /** Trust bundle roots. */
  readonly ca: string;
}

export function tlsPem(s: SvidSnapshot): TlsPem {
  return {
    cert: s.svid.chain.map((d) => pemEncode(d)).join(''),
    key: s.svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    ca: s.bundle.map((d) => pemEncode(d)).join(''),
  };
}
