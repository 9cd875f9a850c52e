// The SVIDs a node process holds (from SDS Secrets) as TLS contexts, and the trust bundles
// peers are verified against. Swapped as a whole on every SDS update (rotation).
import { createHash, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { TrustBundles } from '../../identity/verify.js';

export interface SvidPem {
  readonly identity: string;
  readonly chain: string;
  readonly key: string;
}

type Secret = Record<string, unknown>;

function inline(v: unknown): string | undefined {
  const b = (v as { inline_bytes?: unknown; inline_string?: unknown } | undefined) ?? {};
  if (typeof b.inline_string === 'string') return b.inline_string;
  const bytes = b.inline_bytes;
  if (Buffer.isBuffer(bytes) || bytes instanceof Uint8Array) return Buffer.from(bytes).toString('utf8');
  return undefined;
}

const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * TLS SNI naming an identity: a hash label, since SPIFFE IDs are not host names. The client
 * asks for the identity it expects; a node holding several identities presents that one.
 */
export function sniFor(identity: string): string {
  return `${createHash('sha256').update(identity).digest('hex').slice(0, 40)}.hbone.trellis`;
}

export class Credentials {
  readonly #byIdentity = new Map<string, { svid: SvidPem; context: SecureContext; sni: string }>();
  readonly #bySni = new Map<string, { identity: string; context: SecureContext }>();
  #bundlePem = '';
  #bundles: TrustBundles = new Map();

  /** From the SDS secrets "spiffe:<id>" (certificate and key) and "spiffe-bundle:spiffe://<td>" (roots). */
  static fromSecrets(secrets: ReadonlyMap<string, Secret>): Credentials {
    const c = new Credentials();
    const bundles = new Map<string, Buffer[]>();
    const pems: string[] = [];
    for (const [name, s] of secrets) {
      if (!name.startsWith('spiffe-bundle:')) continue;
      const pem = inline((s.validation_context as Secret | undefined)?.trusted_ca);
      if (!pem) continue;
      pems.push(pem);
      const td = name.slice('spiffe-bundle:spiffe://'.length);
      bundles.set(
        td,
        (pem.match(PEM) ?? []).map((p) => new X509Certificate(p).raw),
      );
    }
    c.#bundlePem = pems.join('');
    c.#bundles = bundles;
    for (const [name, s] of secrets) {
      if (!name.startsWith('spiffe:')) continue;
      const tls = s.tls_certificate as Secret | undefined;
      const chain = inline(tls?.certificate_chain);
      const key = inline(tls?.private_key);
      if (!chain || !key) continue;
      c.add({ identity: name.slice('spiffe:'.length), chain, key });
    }
    return c;
  }

  add(svid: SvidPem): void {
    const context = createSecureContext({ cert: svid.chain, key: svid.key, ca: this.#bundlePem || undefined });
    const sni = sniFor(svid.identity);
    this.#byIdentity.set(svid.identity, { svid, context, sni });
    this.#bySni.set(sni, { identity: svid.identity, context });
  }

  setBundle(pem: string, trustDomain: string): void {
    this.#bundlePem = pem;
    this.#bundles = new Map([[trustDomain, (pem.match(PEM) ?? []).map((p) => new X509Certificate(p).raw)]]);
  }

  get bundlePem(): string {
    return this.#bundlePem;
  }

  get bundles(): TrustBundles {
    return this.#bundles;
  }

  svid(identity: string): SvidPem | undefined {
    return this.#byIdentity.get(identity)?.svid;
  }

  contextForSni(sni: string): SecureContext | undefined {
    return this.#bySni.get(sni)?.context;
  }

  /** The identity an SNI name asks for, when we hold it. */
  identityForSni(sni: string): string | undefined {
    return this.#bySni.get(sni)?.identity;
  }

  get identities(): string[] {
    return [...this.#byIdentity.keys()];
  }
}
