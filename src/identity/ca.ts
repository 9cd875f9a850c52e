// The SPIFFE certificate authority: a root (or an intermediate under an organisation's root)
// that issues X.509-SVIDs. The private key stays inside this object: it is never serialised
// by inspect or JSON, and appears in no message.
import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, X509Certificate } from 'node:crypto';
import { inspect } from 'node:util';
import { TrellisError } from '../errors.js';
import { parseSpiffeId, trustDomainId } from './spiffe-id.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  encodeName,
  extKeyUsage,
  keyIdentifier,
  keyUsage,
  KeyUsage,
  pemDecodeAll,
  pemEncode,
  spiffeNameConstraints,
  subjectAltName,
  subjectKeyIdentifier,
  subjectOf,
} from './x509-builder.js';

export class CaError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_CA';
}

export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048';

export function generateKey(alg: KeyAlgorithm = 'ec-p256'): KeyObject {
  switch (alg) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  }
}

/** An issued X.509-SVID: the leaf, the chain up to (not including) the root, and its key. */
export interface X509Svid {
  readonly spiffeId: string;
  /** Leaf first, then intermediates; never the root. DER. */
  readonly chain: readonly Buffer[];
  readonly privateKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** A certificate chain for a key the caller holds (a CSR-style request). */
export interface IssuedChain {
  readonly spiffeId: string;
  /** Leaf first, then intermediates; never the root. DER. */
  readonly chain: readonly Buffer[];
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IssueRequest {
  readonly spiffeId: string;
  readonly ttlMs: number;
  readonly dnsNames?: readonly string[];
  /** "now", injectable for tests. */
  readonly now?: Date;
}

const MAX_BACKDATE_MS = 60_000;

export class CertificateAuthority {
  readonly trustDomain: string;
  /** The CA certificate that signs SVIDs. */
  readonly certificate: X509Certificate;
  /** DER of the signing CA and any intermediates above it, excluding the root. */
  readonly intermediates: readonly Buffer[];
  /** Trust bundle: the root certificate(s) that SVIDs chain to. DER. */
  readonly roots: readonly Buffer[];
  readonly #key: KeyObject;
  readonly #certDer: Buffer;
  readonly #subject: Buffer;
  readonly #keyId: Buffer;
  readonly #notAfterMs: number;

  private constructor(trustDomain: string, certDer: Buffer, key: KeyObject, intermediates: Buffer[], roots: Buffer[]) {
    this.trustDomain = trustDomain;
    this.#certDer = certDer;
    this.certificate = new X509Certificate(certDer);
    this.#key = key;
    this.intermediates = intermediates;
    this.roots = roots;
    this.#subject = subjectOf(certDer);
    this.#keyId = keyIdentifier(createPublicKey(key).export({ type: 'spki', format: 'der' }));
    this.#notAfterMs = Date.parse(this.certificate.validTo);
  }

  /** A new self-signed root CA for the trust domain. */
  static createRoot(opts: {
    trustDomain: string;
    ttlMs: number;
    keyAlgorithm?: KeyAlgorithm;
    now?: Date;
  }): CertificateAuthority {
    checkTrustDomain(opts.trustDomain);
    const key = generateKey(opts.keyAlgorithm);
    const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
    const id = keyIdentifier(spki);
    const name = encodeName([
      ['O', opts.trustDomain],
      ['CN', 'Trellis Root CA'],
    ]);
    const now = opts.now ?? new Date();
    const certDer = buildCertificate(
      {
        issuer: name,
        subject: name,
        notBefore: new Date(now.getTime() - MAX_BACKDATE_MS),
        notAfter: new Date(now.getTime() + opts.ttlMs),
        spki,
        extensions: [
          basicConstraints(true),
          keyUsage([KeyUsage.digitalSignature, KeyUsage.keyCertSign, KeyUsage.cRLSign]),
          subjectKeyIdentifier(id),
          authorityKeyIdentifier(id),
          spiffeNameConstraints(opts.trustDomain),
        ],
      },
      key,
    );
    return new CertificateAuthority(opts.trustDomain, certDer, key, [], [certDer]);
  }

  /** A new intermediate CA signed by an existing (organisational) root: the production pattern. */
  static createIntermediate(opts: {
    trustDomain: string;
    ttlMs: number;
    rootCertPem: string;
    rootKeyPem: string;
    keyAlgorithm?: KeyAlgorithm;
    now?: Date;
  }): CertificateAuthority {
    checkTrustDomain(opts.trustDomain);
    const rootDer = pemDecodeAll(opts.rootCertPem)[0];
    if (!rootDer) throw new CaError('the root certificate file holds no PEM CERTIFICATE block');
    let rootCert: X509Certificate;
    let rootKey: KeyObject;
    try {
      rootCert = new X509Certificate(rootDer);
      rootKey = createPrivateKey(opts.rootKeyPem);
    } catch (e) {
      throw new CaError(`cannot read the root certificate or key: ${(e as Error).message}`);
    }
    if (!rootCert.ca) throw new CaError('the root certificate is not a CA certificate (basicConstraints CA:TRUE)');
    if (!rootCert.checkPrivateKey(rootKey)) throw new CaError('the root key does not match the root certificate');
    const key = generateKey(opts.keyAlgorithm);
    const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
    const now = opts.now ?? new Date();
    const rootNotAfter = new Date(rootCert.validTo);
    const notAfter = new Date(Math.min(now.getTime() + opts.ttlMs, rootNotAfter.getTime()));
    const certDer = buildCertificate(
      {
        issuer: subjectOf(rootDer),
        subject: encodeName([
          ['O', opts.trustDomain],
          ['CN', 'Trellis Intermediate CA'],
        ]),
        notBefore: new Date(now.getTime() - MAX_BACKDATE_MS),
        notAfter,
        spki,
        extensions: [
          basicConstraints(true, 0),
          keyUsage([KeyUsage.digitalSignature, KeyUsage.keyCertSign, KeyUsage.cRLSign]),
          subjectKeyIdentifier(keyIdentifier(spki)),
          authorityKeyIdentifier(keyIdentifier(rootCert.publicKey.export({ type: 'spki', format: 'der' }))),
          spiffeNameConstraints(opts.trustDomain),
        ],
      },
      rootKey,
    );
    return new CertificateAuthority(opts.trustDomain, certDer, key, [certDer], [rootDer]);
  }

  /** A CA from its PEM parts (what `trellis ca init` writes; Istio's cacerts layout). */
  static fromPem(opts: {
    trustDomain: string;
    caCertPem: string;
    caKeyPem: string;
    certChainPem: string;
    rootCertPem: string;
  }): CertificateAuthority {
    const caDer = pemDecodeAll(opts.caCertPem)[0];
    if (!caDer) throw new CaError('ca-cert.pem holds no PEM CERTIFICATE block');
    let key: KeyObject;
    try {
      key = createPrivateKey(opts.caKeyPem);
    } catch (e) {
      throw new CaError(`cannot read ca-key.pem: ${(e as Error).message}`);
    }
    const ca = new CertificateAuthority(
      opts.trustDomain,
      caDer,
      key,
      pemDecodeAll(opts.certChainPem),
      pemDecodeAll(opts.rootCertPem),
    );
    if (!ca.certificate.checkPrivateKey(key)) throw new CaError('ca-key.pem does not match ca-cert.pem');
    if (ca.roots.length === 0) throw new CaError('root-cert.pem holds no certificate');
    return ca;
  }

  /** Issues an X.509-SVID with a new P-256 key. */
  issue(req: IssueRequest): X509Svid {
    const privateKey = generateKey();
    return { ...this.sign({ ...req, publicKey: createPublicKey(privateKey) }), privateKey };
  }

  /** Certifies `publicKey` as `spiffeId` per the SPIFFE X.509-SVID specification. */
  sign(req: IssueRequest & { readonly publicKey: KeyObject }): IssuedChain {
    const id = parseSpiffeId(req.spiffeId);
    if (typeof id === 'string') throw new CaError(`invalid SPIFFE ID ${JSON.stringify(req.spiffeId)}: ${id}`);
    if (id.trustDomain !== this.trustDomain) {
      throw new CaError(`SPIFFE ID ${req.spiffeId} is not in this CA's trust domain ${this.trustDomain}`);
    }
    if (id.path === '')
      throw new CaError(
        `an X.509-SVID needs a workload path, not the bare trust domain ${trustDomainId(this.trustDomain)}`,
      );
    const publicKey = req.publicKey;
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const now = (req.now ?? new Date()).getTime();
    const notBefore = new Date(now - Math.min(MAX_BACKDATE_MS, req.ttlMs / 10));
    const notAfter = new Date(Math.min(now + req.ttlMs, this.#notAfterMs));
    const usage =
      publicKey.asymmetricKeyType === 'rsa'
        ? [KeyUsage.digitalSignature, KeyUsage.keyEncipherment]
        : [KeyUsage.digitalSignature];
    const leaf = buildCertificate(
      {
        issuer: this.#subject,
        subject: encodeName([]),
        notBefore,
        notAfter,
        spki,
        extensions: [
          basicConstraints(false),
          keyUsage(usage),
          extKeyUsage(true, true),
          // Critical because the subject is empty (RFC 5280 4.2.1.6).
          subjectAltName([req.spiffeId], req.dnsNames ?? [], true),
          subjectKeyIdentifier(keyIdentifier(spki)),
          authorityKeyIdentifier(this.#keyId),
        ],
      },
      this.#key,
    );
    return { spiffeId: req.spiffeId, chain: [leaf, ...this.intermediates], notBefore, notAfter };
  }

  /** PEM files in Istio's cacerts layout. The key is included only here, for writing with mode 0600. */
  toPem(): { caCert: string; caKey: string; certChain: string; rootCert: string } {
    return {
      caCert: pemEncode(this.#certDer),
      caKey: this.#key.export({ type: 'pkcs8', format: 'pem' }) as string,
      certChain: this.intermediates.map((d) => pemEncode(d)).join(''),
      rootCert: this.roots.map((d) => pemEncode(d)).join(''),
    };
  }

  toJSON(): unknown {
    return { trustDomain: this.trustDomain, subject: this.certificate.subject, notAfter: this.certificate.validTo };
  }

  [inspect.custom](): string {
    return `CertificateAuthority { trustDomain: ${this.trustDomain}, subject: ${JSON.stringify(this.certificate.subject)}, key: [redacted] }`;
  }
}

function checkTrustDomain(td: string): void {
  const id = parseSpiffeId(trustDomainId(td));
  if (typeof id === 'string') throw new CaError(`invalid trust domain ${JSON.stringify(td)}: ${id}`);
}
