// A CA on disk, in Istio's "cacerts" layout so operators' habits and tools carry over:
// ca-cert.pem, ca-key.pem (0600), cert-chain.pem, root-cert.pem, plus trellis-ca.json
// naming the trust domain.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { CaError, CertificateAuthority } from './ca.js';

export const CA_FILES = {
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  certChain: 'cert-chain.pem',
  rootCert: 'root-cert.pem',
  meta: 'trellis-ca.json',
} as const;

export function saveCa(ca: CertificateAuthority, dir: string): void {
  const pem = ca.toPem();
  writeFileAtomic(join(dir, CA_FILES.caKey), pem.caKey, 0o600);
  writeFileAtomic(join(dir, CA_FILES.caCert), pem.caCert);
  writeFileAtomic(join(dir, CA_FILES.certChain), pem.certChain);
  writeFileAtomic(join(dir, CA_FILES.rootCert), pem.rootCert);
  writeFileAtomic(join(dir, CA_FILES.meta), JSON.stringify({ trustDomain: ca.trustDomain }, null, 2) + '\n');
}

export function loadCa(dir: string, trustDomain?: string): CertificateAuthority {
  const read = (name: string, optional = false): string => {
    const p = join(dir, name);
    if (!existsSync(p)) {
      if (optional) return '';
      throw new CaError(`${p} does not exist (expected a CA directory written by "trellis ca init --out ${dir}")`);
    }
    return readFileSync(p, 'utf8');
  };
  let td = trustDomain;
  if (td === undefined) {
    const meta = read(CA_FILES.meta, true);
    try {
      td = meta ? (JSON.parse(meta) as { trustDomain?: string }).trustDomain : undefined;
    } catch {
      throw new CaError(`${join(dir, CA_FILES.meta)} is not valid JSON`);
    }
    if (td === undefined)
      throw new CaError(`${dir} does not say its trust domain (${CA_FILES.meta}); pass it explicitly`);
  }
  return CertificateAuthority.fromPem({
    trustDomain: td,
    caCertPem: read(CA_FILES.caCert),
    caKeyPem: read(CA_FILES.caKey),
    certChainPem: read(CA_FILES.certChain, true),
    rootCertPem: read(CA_FILES.rootCert),
  });
}
