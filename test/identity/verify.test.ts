import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, generateKey } from '../../src/identity/ca.js';
import * as der from '../../src/identity/der.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  encodeName,
  extKeyUsage,
  keyIdentifier,
  keyUsage,
  KeyUsage,
  pemEncode,
  subjectAltName,
  subjectKeyIdentifier,
  subjectOf,
} from '../../src/identity/x509-builder.js';
import {
  bundlesOf,
  REJECT_REASONS,
  spiffeIdOfCertificate,
  verifyX509Svid,
  type RejectReason,
  type VerifyResult,
} from '../../src/identity/verify.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const TD = 'cluster.local';
const ID = 'spiffe://cluster.local/ns/a/sa/b';

const root = CertificateAuthority.createRoot({ trustDomain: TD, ttlMs: DAY });
const bundles = bundlesOf(root);

/** What a CA needs to sign a hand-crafted certificate. */
interface Signer {
  readonly name: Buffer;
  readonly key: KeyObject;
  readonly keyId: Buffer;
}

function signerOf(ca: CertificateAuthority): Signer {
  const key = createPrivateKey(ca.toPem().caKey);
  const certDer = ca.intermediates[0] ?? ca.roots[0]!;
  return {
    name: subjectOf(certDer),
    key,
    keyId: keyIdentifier(createPublicKey(key).export({ type: 'spki', format: 'der' })),
  };
}

const rootSigner = signerOf(root);

interface LeafOptions {
  signer?: Signer | 'self';
  uris?: readonly string[];
  dnsNames?: readonly string[];
  ca?: boolean;
  /** Key usage bits; null leaves the extension out. */
  usage?: readonly number[] | null;
  notBefore?: Date;
  notAfter?: Date;
  extraExtensions?: readonly Buffer[];
}

/** A leaf SVID built like CertificateAuthority.sign, with one thing changed per test. */
function craft(o: LeafOptions = {}): Buffer {
  const key = generateKey();
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const ownId = keyIdentifier(spki);
  const subject = o.signer === 'self' ? encodeName([['CN', 'workload']]) : encodeName([]);
  const signer: Signer = o.signer === 'self' ? { name: subject, key, keyId: ownId } : (o.signer ?? rootSigner);
  const now = Date.now();
  const usage = o.usage === undefined ? [KeyUsage.digitalSignature] : o.usage;
  return buildCertificate(
    {
      issuer: signer.name,
      subject,
      notBefore: o.notBefore ?? new Date(now - 60_000),
      notAfter: o.notAfter ?? new Date(now + HOUR),
      spki,
      extensions: [
        basicConstraints(o.ca ?? false),
        ...(usage === null ? [] : [keyUsage(usage)]),
        extKeyUsage(true, true),
        subjectAltName(o.uris ?? [ID], o.dnsNames ?? [], true),
        subjectKeyIdentifier(ownId),
        authorityKeyIdentifier(signer.keyId),
        ...(o.extraExtensions ?? []),
      ],
    },
    signer.key,
  );
}

function assertOk(r: VerifyResult, spiffeId = ID): void {
  assert.ok(r.ok, r.ok ? '' : `expected acceptance, got ${r.reason}: ${r.message}`);
  assert.equal(r.spiffeId, spiffeId);
}

function assertRejected(r: VerifyResult, reason: RejectReason, message?: RegExp): void {
  assert.equal(r.ok, false, `expected ${reason}, got acceptance`);
  if (r.ok) return;
  assert.equal(r.reason, reason, `expected ${reason}, got ${r.reason}: ${r.message}`);
  if (message) assert.match(r.message, message);
}

// --- accepted -----------------------------------------------------------------------------

test('accepts a leaf issued by a root CA, with its trust domain and expiry', () => {
  const svid = root.issue({ spiffeId: ID, ttlMs: HOUR, dnsNames: ['b.a.svc'] });
  const r = verifyX509Svid(svid.chain, bundles, { trustDomain: TD, allowedIds: new Set([ID]) });
  assertOk(r);
  assert.ok(r.ok);
  assert.equal(r.trustDomain, TD);
  assert.equal(r.notAfter.getTime(), Math.floor(svid.notAfter.getTime() / 1000) * 1000);
});

test('the hand-crafted baseline leaf verifies (so each rejection below is its one change)', () => {
  assertOk(verifyX509Svid([craft()], bundles));
});

test('accepts a chain that also carries the root itself', () => {
  const svid = root.issue({ spiffeId: ID, ttlMs: HOUR });
  assertOk(verifyX509Svid([...svid.chain, root.roots[0]!], bundles));
});

test('accepts SVIDs of any trust domain we hold a bundle for when none is expected (federation)', () => {
  const other = CertificateAuthority.createRoot({ trustDomain: 'example.org', ttlMs: DAY });
  const svid = other.issue({ spiffeId: 'spiffe://example.org/billing', ttlMs: HOUR });
  const r = verifyX509Svid(svid.chain, bundlesOf(root, other));
  assertOk(r, 'spiffe://example.org/billing');
  assert.ok(r.ok);
  assert.equal(r.trustDomain, 'example.org');
});

test('root rollover: a bundle with the old and new roots verifies SVIDs from both', () => {
  const next = CertificateAuthority.createRoot({ trustDomain: TD, ttlMs: 2 * DAY });
  const both = bundlesOf(root, next);
  assert.equal(both.get(TD)!.length, 2);
  const fromOld = root.issue({ spiffeId: ID, ttlMs: HOUR });
  const fromNew = next.issue({ spiffeId: 'spiffe://cluster.local/ns/a/sa/c', ttlMs: HOUR });
  assertOk(verifyX509Svid(fromOld.chain, both, { trustDomain: TD }));
  assertOk(verifyX509Svid(fromNew.chain, both, { trustDomain: TD }), 'spiffe://cluster.local/ns/a/sa/c');
  // ...and only the old root: the new SVID is untrusted.
  assertRejected(verifyX509Svid(fromNew.chain, bundles), 'untrusted-issuer');
});

// --- an organisation's RSA root made by openssl, with an intermediate ---------------------

const opensslMissing = spawnSync('openssl', ['version'], { timeout: 10_000 }).status !== 0;
const SKIP_OPENSSL = opensslMissing ? 'openssl is not installed' : false;
const tmp = mkdtempSync(join(tmpdir(), 'trellis-verify-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function openssl(args: readonly string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { cwd: tmp, timeout: 30_000, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

let orgRoot: { certPem: string; keyPem: string } | undefined;
function opensslRoot(): { certPem: string; keyPem: string } {
  if (!orgRoot) {
    const r = openssl([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'org-root.key',
      '-out',
      'org-root.pem',
      '-days',
      '2',
      '-subj',
      '/O=Example Org/CN=Example Org Root',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    assert.equal(r.status, 0, r.out);
    orgRoot = {
      certPem: readFileSync(join(tmp, 'org-root.pem'), 'utf8'),
      keyPem: readFileSync(join(tmp, 'org-root.key'), 'utf8'),
    };
  }
  return orgRoot;
}

function intermediateCa(trustDomain = TD): CertificateAuthority {
  const { certPem, keyPem } = opensslRoot();
  return CertificateAuthority.createIntermediate({ trustDomain, ttlMs: DAY, rootCertPem: certPem, rootKeyPem: keyPem });
}

test('accepts a leaf via an intermediate under an openssl-made RSA root', { skip: SKIP_OPENSSL }, () => {
  const int = intermediateCa();
  const svid = int.issue({ spiffeId: ID, ttlMs: HOUR });
  assert.equal(svid.chain.length, 2);
  assertOk(verifyX509Svid(svid.chain, bundlesOf(int), { trustDomain: TD }));
  // Without the intermediate there is no path to the root.
  assertRejected(verifyX509Svid([svid.chain[0]!], bundlesOf(int)), 'untrusted-issuer');
});

test('expired: an intermediate in the path has expired (validity of every certificate)', { skip: SKIP_OPENSSL }, () => {
  const { certPem, keyPem } = opensslRoot();
  const int = CertificateAuthority.createIntermediate({
    trustDomain: TD,
    ttlMs: HOUR,
    rootCertPem: certPem,
    rootKeyPem: keyPem,
    now: new Date(Date.now() - 3 * HOUR),
  });
  const leaf = craft({ signer: signerOf(int) });
  assertRejected(verifyX509Svid([leaf, int.intermediates[0]!], bundlesOf(int)), 'expired', /certificate 1/);
});

/** A CA certificate (CA:TRUE, keyCertSign) signed by `signer`, and its key. */
function craftCa(signer: Signer, cn: string): { der: Buffer; signer: Signer } {
  const key = generateKey();
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const name = encodeName([
    ['O', TD],
    ['CN', cn],
  ]);
  const now = Date.now();
  const certDer = buildCertificate(
    {
      issuer: signer.name,
      subject: name,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + HOUR),
      spki,
      extensions: [
        basicConstraints(true),
        keyUsage([KeyUsage.keyCertSign, KeyUsage.cRLSign]),
        subjectKeyIdentifier(keyIdentifier(spki)),
        authorityKeyIdentifier(signer.keyId),
      ],
    },
    signer.key,
  );
  return { der: certDer, signer: { name, key, keyId: keyIdentifier(spki) } };
}

test('untrusted-issuer: an intermediate exceeding its issuer pathLenConstraint', { skip: SKIP_OPENSSL }, () => {
  const int = intermediateCa(); // pathLen 0
  const sub = craftCa(signerOf(int), 'Team CA');
  const leaf = craft({ signer: sub.signer });
  const chain = [leaf, sub.der, int.intermediates[0]!];
  assertRejected(verifyX509Svid(chain, bundlesOf(int)), 'untrusted-issuer', /pathLenConstraint/);
  assert.equal(opensslVerify('pathlen', leaf, int.roots[0]!, chain.slice(1)), false);
  // A self-issued CA (same name as its issuer, e.g. a key rollover) does not count (RFC 5280 6.1.4).
  const pem = int.toPem();
  const rekeyed = CertificateAuthority.createIntermediate({
    trustDomain: TD,
    ttlMs: HOUR,
    rootCertPem: pem.caCert,
    rootKeyPem: pem.caKey,
  });
  const svid = rekeyed.issue({ spiffeId: ID, ttlMs: HOUR });
  const selfIssued = [...svid.chain, int.intermediates[0]!];
  assertOk(verifyX509Svid(selfIssued, bundlesOf(int)));
  assert.equal(opensslVerify('self-issued', selfIssued[0]!, int.roots[0]!, selfIssued.slice(1)), true);
});

test(
  'untrusted-issuer: an intermediate name-constrained to its trust domain cannot issue for another',
  {
    skip: SKIP_OPENSSL,
  },
  () => {
    // One organisation root trusted for two trust domains; the cluster.local intermediate is
    // constrained to spiffe://cluster.local, so it cannot mint example.org identities.
    const int = intermediateCa();
    const leaf = craft({ signer: signerOf(int), uris: ['spiffe://example.org/ns/a/sa/b'] });
    const shared = bundlesOf({ trustDomain: TD, roots: int.roots }, { trustDomain: 'example.org', roots: int.roots });
    assertRejected(verifyX509Svid([leaf, int.intermediates[0]!], shared), 'untrusted-issuer', /name constraints/);
    assert.equal(opensslVerify('name-constraints', leaf, int.roots[0]!, int.intermediates), false);
    // The same intermediate issuing inside its own trust domain is fine.
    assertOk(verifyX509Svid([craft({ signer: signerOf(int) }), int.intermediates[0]!], shared));
  },
);

// --- one test per rejection reason ---------------------------------------------------------

test('expired: a leaf whose notAfter has passed', () => {
  const leaf = craft({ notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) });
  assertRejected(verifyX509Svid([leaf], bundles), 'expired', /the leaf expired/);
});

test('not-yet-valid: a leaf whose notBefore is in the future', () => {
  const leaf = craft({ notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 2 * HOUR) });
  assertRejected(verifyX509Svid([leaf], bundles), 'not-yet-valid');
  // The same certificate verifies at a `now` inside its validity.
  assertOk(verifyX509Svid([leaf], bundles, { now: new Date(Date.now() + 90 * 60_000) }));
});

test('untrusted-issuer: a self-signed certificate carrying a valid-looking SPIFFE ID', () => {
  const leaf = craft({ signer: 'self', uris: ['spiffe://cluster.local/ns/a/sa/b'] });
  assertRejected(verifyX509Svid([leaf], bundles), 'untrusted-issuer');
});

test("untrusted-issuer: a leaf forging the root's issuer name and key identifier", () => {
  const forger = generateKey();
  const leaf = craft({ signer: { ...rootSigner, key: forger } });
  assertRejected(verifyX509Svid([leaf], bundles), 'untrusted-issuer');
});

test('untrusted-issuer: a leaf signed by another CA of the same trust domain name', () => {
  const impostor = CertificateAuthority.createRoot({ trustDomain: TD, ttlMs: DAY });
  assert.equal(impostor.certificate.subject, root.certificate.subject); // same name, different key
  const svid = impostor.issue({ spiffeId: ID, ttlMs: HOUR });
  assertRejected(verifyX509Svid(svid.chain, bundles), 'untrusted-issuer');
  // Presenting the impostor root as an "intermediate" does not help.
  assertRejected(verifyX509Svid([...svid.chain, impostor.roots[0]!], bundles), 'untrusted-issuer');
});

test('wrong-trust-domain: a valid SVID of another trust domain', () => {
  const other = CertificateAuthority.createRoot({ trustDomain: 'example.org', ttlMs: DAY });
  const svid = other.issue({ spiffeId: 'spiffe://example.org/ns/a/sa/b', ttlMs: HOUR });
  // Expected cluster.local, though we do hold example.org's bundle.
  assertRejected(
    verifyX509Svid(svid.chain, bundlesOf(root, other), { trustDomain: TD }),
    'wrong-trust-domain',
    /expected cluster\.local/,
  );
  // No expectation, but no bundle for example.org.
  assertRejected(verifyX509Svid(svid.chain, bundles), 'wrong-trust-domain', /no bundle/);
});

test('wrong-trust-domain: an SVID from our CA with a foreign ID is not checked against our roots', () => {
  // Our root signs it, but example.org's bundle (empty here) is the one that counts.
  const leaf = craft({ uris: ['spiffe://example.org/ns/a/sa/b'] });
  assertRejected(verifyX509Svid([leaf], bundles), 'wrong-trust-domain');
});

test('ca-as-leaf: a CA certificate presented as the leaf', () => {
  const caLeaf = craft({ ca: true, usage: [KeyUsage.digitalSignature, KeyUsage.keyCertSign, KeyUsage.cRLSign] });
  assertRejected(verifyX509Svid([caLeaf], bundles), 'ca-as-leaf', /CA:TRUE/);
  assertRejected(verifyX509Svid([root.roots[0]!], bundles), 'ca-as-leaf');
  // CA:FALSE but a signing certificate's key usage.
  const signing = craft({ usage: [KeyUsage.digitalSignature, KeyUsage.keyCertSign] });
  assertRejected(verifyX509Svid([signing], bundles), 'ca-as-leaf', /keyCertSign/);
  const crl = craft({ usage: [KeyUsage.digitalSignature, KeyUsage.cRLSign] });
  assertRejected(verifyX509Svid([crl], bundles), 'ca-as-leaf');
});

test('no-uri-san: a leaf with only DNS names, even one that looks like a URI SAN in text form', () => {
  assertRejected(verifyX509Svid([craft({ uris: [], dnsNames: ['b.a.svc'] })], bundles), 'no-uri-san');
  // A naive split of "DNS:x, URI:spiffe://..." would find a SPIFFE ID here.
  const tricky = craft({ uris: [], dnsNames: [`x, URI:${ID}`] });
  assertRejected(verifyX509Svid([tricky], bundles), 'no-uri-san');
  assert.equal(spiffeIdOfCertificate(tricky), undefined);
});

test('multiple-uri-sans: a leaf with two URI SANs', () => {
  const leaf = craft({ uris: [ID, 'spiffe://cluster.local/ns/a/sa/c'] });
  assertRejected(verifyX509Svid([leaf], bundles), 'multiple-uri-sans');
  // Two URIs where one is not SPIFFE is still two.
  assertRejected(verifyX509Svid([craft({ uris: [ID, 'https://example.com/'] })], bundles), 'multiple-uri-sans');
});

test('malformed-spiffe-id: uppercase trust domain, wrong scheme, no path, a URI containing ", "', () => {
  for (const uri of [
    'spiffe://Cluster.Local/ns/a',
    'https://x/y',
    'SPIFFE://cluster.local/ns/a/sa/b',
    'spiffe://cluster.local',
    'spiffe://cluster.local/ns/a/sa/b, URI:spiffe://cluster.local/ns/admin',
    'spiffe://cluster.local:8443/ns/a',
  ]) {
    assertRejected(verifyX509Svid([craft({ uris: [uri] })], bundles), 'malformed-spiffe-id');
  }
});

test('bad-key-usage: a leaf without digitalSignature, or without key usage at all', () => {
  assertRejected(verifyX509Svid([craft({ usage: [KeyUsage.keyEncipherment] })], bundles), 'bad-key-usage');
  assertRejected(verifyX509Svid([craft({ usage: null })], bundles), 'bad-key-usage');
});

test('malformed-certificate: garbage, truncated DER, an empty chain, a garbage intermediate', () => {
  assertRejected(verifyX509Svid([Buffer.from('not a certificate')], bundles), 'malformed-certificate');
  assertRejected(verifyX509Svid([Buffer.alloc(0)], bundles), 'malformed-certificate');
  const good = root.issue({ spiffeId: ID, ttlMs: HOUR }).chain[0]!;
  assertRejected(verifyX509Svid([good.subarray(0, good.length - 20)], bundles), 'malformed-certificate');
  assertRejected(verifyX509Svid([], bundles), 'malformed-certificate');
  assertRejected(verifyX509Svid([good, Buffer.from([0x30, 0x82, 0xff])], bundles), 'malformed-certificate');
  assert.equal(spiffeIdOfCertificate(Buffer.from([0x30, 0x03, 1, 2])), undefined);
});

test('unexpected-identity: a valid SVID that is not one of the allowed identities', () => {
  const svid = root.issue({ spiffeId: 'spiffe://cluster.local/ns/a/sa/intruder', ttlMs: HOUR });
  assertRejected(verifyX509Svid(svid.chain, bundles, { allowedIds: new Set([ID]) }), 'unexpected-identity');
});

test('unsupported-critical-extension: a leaf with a critical extension nobody processes', () => {
  const unknown = der.sequence(der.oid('1.3.6.1.4.1.55555.1'), der.boolean(true), der.octetString(der.nullValue()));
  const r = verifyX509Svid([craft({ extraExtensions: [unknown] })], bundles);
  assertRejected(r, 'unsupported-critical-extension', /1\.3\.6\.1\.4\.1\.55555\.1/);
  // The same extension, non-critical, is ignored.
  const benign = der.sequence(der.oid('1.3.6.1.4.1.55555.1'), der.octetString(der.nullValue()));
  assertOk(verifyX509Svid([craft({ extraExtensions: [benign] })], bundles));
});

test('every reject reason is distinct and covered by a test above', () => {
  assert.equal(new Set(REJECT_REASONS).size, REJECT_REASONS.length);
  const source = readFileSync(new URL(import.meta.url), 'utf8');
  for (const reason of REJECT_REASONS) assert.ok(source.includes(`'${reason}'`), reason);
});

// --- helpers -------------------------------------------------------------------------------

test('spiffeIdOfCertificate reads the single URI SAN without verifying', () => {
  assert.equal(spiffeIdOfCertificate(root.issue({ spiffeId: ID, ttlMs: HOUR }).chain[0]!), ID);
  assert.equal(spiffeIdOfCertificate(craft({ signer: 'self' })), ID);
  assert.equal(spiffeIdOfCertificate(craft({ uris: [ID, ID] })), undefined);
});

test('bundlesOf builds the map from a trust domain and roots, merging and de-duplicating', () => {
  const m = bundlesOf(TD, root.roots);
  assert.deepEqual([...m.keys()], [TD]);
  assert.equal(m.get(TD)!.length, 1);
  assert.equal(bundlesOf(root, root).get(TD)!.length, 1);
  assertOk(verifyX509Svid(root.issue({ spiffeId: ID, ttlMs: HOUR }).chain, m));
});

// --- openssl agrees ------------------------------------------------------------------------

function opensslVerify(name: string, leaf: Buffer, rootDer: Buffer, intermediates: readonly Buffer[]): boolean {
  writeFileSync(join(tmp, `${name}-root.pem`), pemEncode(rootDer));
  writeFileSync(join(tmp, `${name}-leaf.pem`), pemEncode(leaf));
  const args = ['verify', '-CAfile', `${name}-root.pem`];
  if (intermediates.length > 0) {
    writeFileSync(join(tmp, `${name}-int.pem`), intermediates.map((d) => pemEncode(d)).join(''));
    args.push('-untrusted', `${name}-int.pem`);
  }
  const r = openssl([...args, `${name}-leaf.pem`]);
  assert.notEqual(r.status, null, `openssl verify timed out or was killed: ${r.out}`);
  return r.status === 0 && /: OK\s*$/.test(r.out);
}

test('openssl verify agrees with verifyX509Svid', { skip: SKIP_OPENSSL }, () => {
  const int = intermediateCa();
  const viaInt = int.issue({ spiffeId: ID, ttlMs: HOUR });
  const direct = root.issue({ spiffeId: ID, ttlMs: HOUR });
  const selfSigned = craft({ signer: 'self' });
  const impostor = CertificateAuthority.createRoot({ trustDomain: TD, ttlMs: DAY }).issue({
    spiffeId: ID,
    ttlMs: HOUR,
  });
  const cases: [string, Buffer, Buffer, readonly Buffer[], CertificateAuthority][] = [
    ['intermediate', viaInt.chain[0]!, int.roots[0]!, viaInt.chain.slice(1), int],
    ['direct', direct.chain[0]!, root.roots[0]!, [], root],
    ['self-signed', selfSigned, root.roots[0]!, [], root],
    ['other-ca', impostor.chain[0]!, root.roots[0]!, [], root],
  ];
  for (const [name, leaf, rootDer, ints, ca] of cases) {
    const ours = verifyX509Svid([leaf, ...ints], bundlesOf(ca)).ok;
    const theirs = opensslVerify(name, leaf, rootDer, ints);
    assert.equal(theirs, ours, `${name}: openssl says ${theirs ? 'OK' : 'fail'}, verifyX509Svid says ${ours}`);
    assert.equal(ours, name === 'intermediate' || name === 'direct', name);
  }
});
