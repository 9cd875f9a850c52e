// Building and signing X.509 v3 certificates (RFC 5280) from their parts.
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import * as der from './der.js';

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  ed25519: '1.3.101.112',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  nameConstraints: '2.5.29.30',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
} as const;

export type NameAttribute = readonly ['CN' | 'O' | 'OU', string];

/** A distinguished name; an empty list encodes the empty name (SVIDs carry none). */
export function encodeName(attrs: readonly NameAttribute[]): Buffer {
  const types = { CN: OID.commonName, O: OID.organization, OU: OID.organizationalUnit };
  return der.sequence(...attrs.map(([t, v]) => der.set(der.sequence(der.oid(types[t]), der.utf8String(v)))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? der.sequence(der.oid(id), der.boolean(true), der.octetString(value))
    : der.sequence(der.oid(id), der.octetString(value));
}

export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  const body = ca ? [der.boolean(true), ...(pathLen === undefined ? [] : [der.smallInteger(pathLen)])] : [];
  return extension(OID.basicConstraints, true, der.sequence(...body));
}

export const KeyUsage = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

export function keyUsage(bits: readonly number[]): Buffer {
  let value = 0;
  for (const b of bits) value |= 0x80 >> b;
  // Bits 0-7 fit one byte; unused trailing bits = position after the last set bit.
  const highest = Math.max(...bits);
  return extension(OID.keyUsage, true, der.bitString(Buffer.from([value]), 7 - highest));
}

export function extKeyUsage(server: boolean, client: boolean): Buffer {
  const ids = [...(server ? [OID.serverAuth] : []), ...(client ? [OID.clientAuth] : [])];
  return extension(OID.extKeyUsage, false, der.sequence(...ids.map((i) => der.oid(i))));
}

export function subjectAltName(uris: readonly string[], dnsNames: readonly string[], critical: boolean): Buffer {
  const names = [
    ...uris.map((u) => der.implicitPrimitive(6, Buffer.from(u, 'ascii'))),
    ...dnsNames.map((d) => der.implicitPrimitive(2, Buffer.from(d, 'ascii'))),
  ];
  return extension(OID.subjectAltName, critical, der.sequence(...names));
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value. */
export function keyIdentifier(spkiDer: Buffer): Buffer {
  const spki = readTlv(spkiDer, 0);
  const algorithm = readTlv(spkiDer, spki.contentStart);
  const bits = readTlv(spkiDer, algorithm.end);
  return createHash('sha1')
    .update(spkiDer.subarray(bits.contentStart + 1, bits.end))
    .digest();
}

export function subjectKeyIdentifier(id: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, der.octetString(id));
}

export function authorityKeyIdentifier(id: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, der.sequence(der.implicitPrimitive(0, id)));
}

/** Name constraints permitting only URI SANs under the trust domain (spiffe://TD). */
export function spiffeNameConstraints(trustDomain: string): Buffer {
  // GeneralSubtree { base GeneralName } with base = uniformResourceIdentifier; a URI
  // constraint is a host name, so "trust.domain" matches spiffe://trust.domain/... SANs.
  const subtree = der.sequence(der.implicitPrimitive(6, Buffer.from(trustDomain, 'ascii')));
  return extension(OID.nameConstraints, true, der.sequence(der.explicit(0, subtree)));
}

export function signatureAlgorithm(key: KeyObject): { der: Buffer; hash: string | null } {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'secp384r1') return { der: der.sequence(der.oid(OID.ecdsaWithSha384)), hash: 'sha384' };
      return { der: der.sequence(der.oid(OID.ecdsaWithSha256)), hash: 'sha256' };
    }
    case 'rsa':
      return { der: der.sequence(der.oid(OID.sha256WithRsa), der.nullValue()), hash: 'sha256' };
    case 'ed25519':
      return { der: der.sequence(der.oid(OID.ed25519)), hash: null };
    default:
      throw new Error(`unsupported signing key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

export interface CertificateParts {
  /** DER Name of the issuer (the CA's subject, byte for byte). */
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DER SubjectPublicKeyInfo of the certified key. */
  readonly spki: Buffer;
  readonly extensions: readonly Buffer[];
  readonly serial?: Buffer;
}

/** Encodes the TBSCertificate, signs it with `signingKey`, and returns the certificate DER. */
export function buildCertificate(parts: CertificateParts, signingKey: KeyObject): Buffer {
  const alg = signatureAlgorithm(signingKey);
  // 128-bit positive serial (RFC 5280 allows up to 20 octets).
  const serial = parts.serial ?? randomBytes(16);
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)), // v3
    der.unsignedInteger(serial),
    alg.der,
    parts.issuer,
    der.sequence(der.time(parts.notBefore), der.time(parts.notAfter)),
    parts.subject,
    parts.spki,
    der.explicit(3, der.sequence(...parts.extensions)),
  );
  const signature = sign(alg.hash, tbs, signingKey);
  return der.sequence(tbs, alg.der, der.bitString(signature));
}

interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** Reads one DER TLV at `offset`. */
export function readTlv(buf: Buffer, offset: number): Tlv {
  const tag = buf[offset]!;
  let len = buf[offset + 1]!;
  let contentStart = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    contentStart += n;
  }
  return { tag, start: offset, contentStart, end: contentStart + len };
}

/** The subject Name of a certificate, as DER bytes (needed byte-exact as a child's issuer). */
export function subjectOf(certDer: Buffer): Buffer {
  const cert = readTlv(certDer, 0);
  const tbs = readTlv(certDer, cert.contentStart);
  let p = tbs.contentStart;
  let field = readTlv(certDer, p);
  if (field.tag === 0xa0) field = readTlv(certDer, (p = field.end)); // skip [0] version
  // serial, signature, issuer, validity, subject
  for (let i = 0; i < 4; i++) field = readTlv(certDer, (p = field.end));
  return certDer.subarray(field.start, field.end);
}

export function pemEncode(derBytes: Buffer, label = 'CERTIFICATE'): string {
  const b64 = derBytes.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/** Every PEM block of the given label, as DER. */
export function pemDecodeAll(pem: string, label = 'CERTIFICATE'): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}
