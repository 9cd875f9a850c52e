// v1 Secret: the certificates Gateway listeners (certificateRefs) and BackendTLSPolicies
// (caCertificateRefs via ConfigMap/Secret) point at. `data` is base64, `stringData` plain.
import { record } from '../../schema/collections.js';
import { def, opt } from '../../schema/object.js';
import { boolean, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';

const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;
const dataKey = string({
  minLength: 1,
  maxLength: 253,
  pattern: /^[-._a-zA-Z0-9]+$/,
  expected: 'a key of letters, digits, "-", "_" or "."',
});

export const secretKind = defineKind({
  group: '',
  kind: 'Secret',
  versions: ['v1'],
  namespaced: true,
  summary: 'Certificates and keys referenced by Gateway listeners (type kubernetes.io/tls).',
  fields: {
    type: def(string({ minLength: 1 }), 'Opaque'),
    data: opt(record(string({ pattern: BASE64, expected: 'base64-encoded data' }), { key: dataKey })),
    stringData: opt(record(string(), { key: dataKey })),
    immutable: opt(boolean()),
    status: opt(unchecked()),
  },
  check: (body, report) => {
    if (body.type === 'kubernetes.io/tls') {
      for (const k of ['tls.crt', 'tls.key']) {
        if (body.data?.[k] === undefined && body.stringData?.[k] === undefined) {
          report(
            ['data', k],
            `a kubernetes.io/tls Secret needs ${JSON.stringify(k)}`,
            'PEM data under data (base64) or stringData',
          );
        }
      }
    }
  },
});
export type SecretBody = BodyOf<typeof secretKind>;

/** A Secret value as text, from stringData or base64 data. */
export function secretValue(body: SecretBody, key: string): string | undefined {
  const plain = body.stringData?.[key];
  if (plain !== undefined) return plain;
  const b64 = body.data?.[key];
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
}
