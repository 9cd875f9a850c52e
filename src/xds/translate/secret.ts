// Identity -> Envoy v3 SDS `Secret` resources (envoy.extensions.transport_sockets.tls.v3.Secret),
// in the proto3-JSON-like object form proto-loader/protobufjs `fromObject` takes (keepCase).
// Pure: the control plane serves these to Trellis' proxies over ADS.
import type { SvidSnapshot } from '../../identity/secret-manager.js';
import { pemEncode } from '../../identity/x509-builder.js';

export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/** One secret per identity ("spiffe:<id>") and one bundle per trust domain ("spiffe-bundle:spiffe://<td>"). */
export function sdsSecretName(spiffeId: string, kind: 'cert' | 'bundle'): string {
  return kind === 'cert' ? `spiffe:${spiffeId}` : `spiffe-bundle:${spiffeId.replace(/^(spiffe:\/\/[^/]+).*$/, '$1')}`;
}

export interface SdsSecret {
  readonly '@type': typeof SECRET_TYPE_URL;
  readonly name: string;
  readonly tls_certificate?: {
    readonly certificate_chain: { readonly inline_bytes: Buffer };
    readonly private_key: { readonly inline_bytes: Buffer };
  };
  readonly validation_context?: { readonly trusted_ca: { readonly inline_bytes: Buffer } };
}

/** The SVID (chain + key) and the trust bundle of one identity, as two SDS secrets. */
export function svidSecrets(s: SvidSnapshot): [SdsSecret, SdsSecret] {
  return [
    {
      '@type': SECRET_TYPE_URL,
      name: sdsSecretName(s.svid.spiffeId, 'cert'),
      tls_certificate: {
        certificate_chain: { inline_bytes: Buffer.from(s.svid.chain.map((d) => pemEncode(d)).join('')) },
        private_key: {
          inline_bytes: Buffer.from(s.svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
        },
      },
    },
    {
      '@type': SECRET_TYPE_URL,
      name: sdsSecretName(s.svid.spiffeId, 'bundle'),
      validation_context: { trusted_ca: { inline_bytes: Buffer.from(s.bundle.map((d) => pemEncode(d)).join('')) } },
    },
  ];
}
