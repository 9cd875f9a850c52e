// Verifying a peer's X.509-SVID (the SPIFFE X.509-SVID specification, sections 4 and 5):
// RFC 5280 path validation to a root of the SPIFFE ID's trust domain, using the
// intermediates the peer presented, plus the SPIFFE leaf rules. This runs on every new
// connection, so the checks are ordered cheap-first (DER walks before signature checks),
// and parsed roots are cached per bundle Buffer.
import { X509Certificate, type KeyObject } from 'node:crypto';
import { parseSpiffeId } from './spiffe-id.js';
import { readTlv } from './x509-builder.js';

export type RejectReason =
  | 'malformed-certificate'
  | 'unsupported-critical-extension'
  | 'ca-as-leaf'
  | 'bad-key-usage'
  | 'no-uri-san'
  | 'multiple-uri-sans'
  | 'malformed-spiffe-id'
  | 'wrong-trust-domain'
  | 'untrusted-issuer'
  | 'expired'
  | 'not-yet-valid'
  | 'unexpected-identity';

/** Every RejectReason, e.g. for labelling a metric. */
export const REJECT_REASONS: readonly RejectReason[] = [
  'malformed-certificate',
  'unsupported-critical-extension',
  'ca-as-leaf',
  'bad-key-usage',
  'no-uri-san',
  'multiple-uri-sans',
  'malformed-spiffe-id',
  'wrong-trust-domain',
  'untrusted-issuer',
  'expired',
  'not-yet-valid',
  'unexpected-identity',
];

export type VerifyResult =
  | {
      readonly ok: true;
      readonly spiffeId: string;
      readonly trustDomain: string;
      /** The earliest notAfter on the verified path: when this authentication stops holding. */
      readonly notAfter: Date;
    }
  | { readonly ok: false; readonly reason: RejectReason; readonly message: string };

export interface VerifyOptions {
  readonly now?: Date;
  /** The trust domain the peer must belong to; otherwise any trust domain we hold a bundle for. */
  readonly trustDomain?: string;
  /** When the caller expects specific identities (SPIFFE ID strings). */
  readonly allowedIds?: ReadonlySet<string>;
}

/** Trust domain -> root certificates (DER). */
export type TrustBundles = ReadonlyMap<string, readonly Buffer[]>;

/** Longest chain a peer may present, and the most intermediates a path may use. */
const MAX_PRESENTED = 10;
const MAX_INTERMEDIATES = 8;

// --- DER parsing -------------------------------------------------------------------------

const KU_DIGITAL_SIGNATURE = 0x8000; // bit 0
const KU_KEY_CERT_SIGN = 0x0400; // bit 5
const KU_CRL_SIGN = 0x0200; // bit 6

// GeneralName tags (context-specific, RFC 5280 4.2.1.6).
const GN_DNS = 0x82;
const GN_URI = 0x86;
const GN_DIRECTORY_NAME = 0xa4;

interface Subtree {
  readonly tag: number;
  /** Lowercased base for URI and DNS subtrees; empty for name forms we do not interpret. */
  readonly base: string;
}

interface NameConstraints {
  readonly permitted: readonly Subtree[];
  readonly excluded: readonly Subtree[];
}

interface ParsedCert {
  readonly der: Buffer;
  readonly x509: X509Certificate;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Issuer and subject names are byte-identical (RFC 5280 "self-issued"). */
  readonly selfIssued: boolean;
  readonly subjectEmpty: boolean;
  readonly ca: boolean;
  readonly pathLen: number | undefined;
  /** First 16 key-usage bits (bit 0 = 0x8000), or undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  /** Tags of other GeneralName forms present in the subjectAltName. */
  readonly otherNameForms: readonly number[];
  readonly nameConstraints: NameConstraints | undefined;
  /** Dotted OID of a critical extension we do not process, if any. */
  readonly unknownCritical: string | undefined;
  publicKey: KeyObject | undefined;
}

class DerError extends Error {}

/** readTlv with bounds checks: the TLV must end within `limit`. */
function tlvAt(buf: Buffer, offset: number, limit: number): { tag: number; contentStart: number; end: number } {
  if (offset + 2 > limit) throw new DerError('truncated DER');
  if ((buf[offset + 1]! & 0x80) !== 0 && (buf[offset + 1]! & 0x7f) > 4) throw new DerError('DER length too long');
  const t = readTlv(buf, offset);
  if (t.contentStart > limit || t.end > limit) throw new DerError('truncated DER');
  return t;
}

/** Each TLV directly inside [start, end). */
function* children(
  buf: Buffer,
  start: number,
  end: number,
): Generator<{ tag: number; contentStart: number; end: number }> {
  let p = start;
  while (p < end) {
    const t = tlvAt(buf, p, end);
    yield t;
    p = t.end;
  }
}

function parseTime(buf: Buffer, t: { tag: number; contentStart: number; end: number }): number {
  const s = buf.toString('latin1', t.contentStart, t.end);
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === 0x17 && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280 4.1.2.5.1
  } else if (t.tag === 0x18 && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    year = Number(m[1]);
  } else {
    throw new DerError(`unsupported time encoding ${JSON.stringify(s)}`);
  }
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

function oidText(buf: Buffer, start: number, end: number): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = start; i < end; i++) {
    v = v * 128 + (buf[i]! & 0x7f);
    if ((buf[i]! & 0x80) === 0) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

function parseGeneralNames(
  buf: Buffer,
  start: number,
  end: number,
  out: { uris: string[]; dnsNames: string[]; other: number[] },
): void {
  for (const gn of children(buf, start, end)) {
    if (gn.tag === GN_URI) out.uris.push(buf.toString('latin1', gn.contentStart, gn.end));
    else if (gn.tag === GN_DNS) out.dnsNames.push(buf.toString('latin1', gn.contentStart, gn.end));
    else if (!out.other.includes(gn.tag)) out.other.push(gn.tag);
  }
}

function parseSubtrees(buf: Buffer, start: number, end: number): Subtree[] {
  const out: Subtree[] = [];
  for (const st of children(buf, start, end)) {
    const base = tlvAt(buf, st.contentStart, st.end);
    const text =
      base.tag === GN_URI || base.tag === GN_DNS
        ? buf.toString('latin1', base.contentStart, base.end).toLowerCase()
        : '';
    out.push({ tag: base.tag, base: text });
  }
  return out;
}

/** Parses a certificate with Node (structure, signature, keys) and its extensions from the DER. */
function parseCertificate(der: Buffer): ParsedCert {
  const x509 = new X509Certificate(der);
  const cert = tlvAt(der, 0, der.length);
  const tbs = tlvAt(der, cert.contentStart, cert.end);
  let p = tbs.contentStart;
  let field = tlvAt(der, p, tbs.end);
  if (field.tag === 0xa0) field = tlvAt(der, (p = field.end), tbs.end); // [0] version
  const sigAlg = tlvAt(der, field.end, tbs.end); // field is the serial
  const issuer = tlvAt(der, sigAlg.end, tbs.end);
  const validity = tlvAt(der, issuer.end, tbs.end);
  const subject = tlvAt(der, validity.end, tbs.end);
  const spki = tlvAt(der, subject.end, tbs.end);
  const nb = tlvAt(der, validity.contentStart, validity.end);
  const na = tlvAt(der, nb.end, validity.end);

  let ca = false;
  let pathLen: number | undefined;
  let keyUsage: number | undefined;
  const names = { uris: [] as string[], dnsNames: [] as string[], other: [] as number[] };
  let nameConstraints: NameConstraints | undefined;
  let unknownCritical: string | undefined;

  for (const f of children(der, spki.end, tbs.end)) {
    if (f.tag !== 0xa3) continue; // [1]/[2] unique identifiers
    const exts = tlvAt(der, f.contentStart, f.end);
    for (const ext of children(der, exts.contentStart, exts.end)) {
      const oid = tlvAt(der, ext.contentStart, ext.end);
      let next = tlvAt(der, oid.end, ext.end);
      let critical = false;
      if (next.tag === 0x01) {
        critical = der[next.contentStart] !== 0;
        next = tlvAt(der, next.end, ext.end);
      }
      const value = next; // OCTET STRING holding the extension's DER
      // Every extension we process is id-ce (2.5.29.x = 55 1d xx).
      const known =
        oid.end - oid.contentStart === 3 && der[oid.contentStart] === 0x55 && der[oid.contentStart + 1] === 0x1d;
      const id = known ? der[oid.contentStart + 2]! : -1;
      switch (id) {
        case 19: {
          // basicConstraints: SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }
          const seq = tlvAt(der, value.contentStart, value.end);
          for (const item of children(der, seq.contentStart, seq.end)) {
            if (item.tag === 0x01) ca = der[item.contentStart] !== 0;
            else if (item.tag === 0x02) {
              let n = 0;
              for (let i = item.contentStart; i < item.end; i++) n = n * 256 + der[i]!;
              pathLen = n;
            }
          }
          break;
        }
        case 15: {
          // keyUsage: BIT STRING, bit 0 = most significant bit of the first content octet
          const bits = tlvAt(der, value.contentStart, value.end);
          const b0 = bits.end > bits.contentStart + 1 ? der[bits.contentStart + 1]! : 0;
          const b1 = bits.end > bits.contentStart + 2 ? der[bits.contentStart + 2]! : 0;
          keyUsage = (b0 << 8) | b1;
          break;
        }
        case 17: {
          const seq = tlvAt(der, value.contentStart, value.end);
          parseGeneralNames(der, seq.contentStart, seq.end, names);
          break;
        }
        case 30: {
          // nameConstraints: SEQUENCE { permittedSubtrees [0] OPTIONAL, excludedSubtrees [1] OPTIONAL }
          const seq = tlvAt(der, value.contentStart, value.end);
          let permitted: Subtree[] = [];
          let excluded: Subtree[] = [];
          for (const part of children(der, seq.contentStart, seq.end)) {
            if (part.tag === 0xa0) permitted = parseSubtrees(der, part.contentStart, part.end);
            else if (part.tag === 0xa1) excluded = parseSubtrees(der, part.contentStart, part.end);
          }
          nameConstraints = { permitted, excluded };
          break;
        }
        case 37: // extKeyUsage: recognised; the caller's TLS layer decides on server/client purpose
        case 14: // subjectKeyIdentifier
        case 35: // authorityKeyIdentifier (checked by checkIssued)
          break;
        default:
          if (critical && unknownCritical === undefined) unknownCritical = oidText(der, oid.contentStart, oid.end);
      }
    }
  }

  return {
    der,
    x509,
    notBefore: parseTime(der, nb),
    notAfter: parseTime(der, na),
    selfIssued: der.subarray(issuer.contentStart, issuer.end).equals(der.subarray(subject.contentStart, subject.end)),
    subjectEmpty: subject.end === subject.contentStart,
    ca,
    pathLen,
    keyUsage,
    uris: names.uris,
    dnsNames: names.dnsNames,
    otherNameForms: names.other,
    nameConstraints,
    unknownCritical,
    publicKey: undefined,
  };
}

function tryParse(der: Buffer): ParsedCert | string {
  try {
    return parseCertificate(der);
  } catch (e) {
    return (e as Error).message;
  }
}

const rootCache = new WeakMap<Buffer, ParsedCert | null>();

/** A bundle root, parsed once per Buffer; null when it does not parse (it is then ignored). */
function parsedRoot(der: Buffer): ParsedCert | null {
  let cached = rootCache.get(der);
  if (cached === undefined) {
    const p = tryParse(der);
    cached = typeof p === 'string' ? null : p;
    rootCache.set(der, cached);
  }
  return cached;
}

function publicKeyOf(c: ParsedCert): KeyObject {
  return (c.publicKey ??= c.x509.publicKey);
}

// --- SPIFFE ID of a certificate ----------------------------------------------------------

/**
 * The SPIFFE ID in a certificate's single URI SAN, without any verification (for logs and
 * diagnostics); undefined when the DER does not parse or there is not exactly one valid ID.
 */
export function spiffeIdOfCertificate(der: Buffer): string | undefined {
  const c = tryParse(der);
  if (typeof c === 'string' || c.uris.length !== 1) return undefined;
  const id = parseSpiffeId(c.uris[0]!);
  return typeof id === 'string' ? undefined : id.text;
}

// --- bundles -----------------------------------------------------------------------------

export interface BundleSource {
  readonly trustDomain: string;
  readonly roots: readonly Buffer[];
}

/**
 * Builds the trust-domain -> roots map: `bundlesOf('cluster.local', roots)`, or from any
 * number of {trustDomain, roots} (a CertificateAuthority is one); roots of the same trust
 * domain are merged (root rollover: old and new roots side by side), duplicates dropped.
 */
export function bundlesOf(trustDomain: string, roots: readonly Buffer[]): Map<string, readonly Buffer[]>;
export function bundlesOf(...sources: readonly BundleSource[]): Map<string, readonly Buffer[]>;
export function bundlesOf(...args: unknown[]): Map<string, readonly Buffer[]> {
  const sources: BundleSource[] =
    typeof args[0] === 'string'
      ? [{ trustDomain: args[0], roots: args[1] as readonly Buffer[] }]
      : (args as BundleSource[]);
  const out = new Map<string, Buffer[]>();
  for (const { trustDomain, roots } of sources) {
    let list = out.get(trustDomain);
    if (!list) out.set(trustDomain, (list = []));
    for (const r of roots) if (!list.some((x) => x.equals(r))) list.push(r);
  }
  return out;
}

// --- verification ------------------------------------------------------------------------

function reject(reason: RejectReason, message: string): VerifyResult {
  return { ok: false, reason, message };
}

function position(i: number): string {
  return i === 0 ? 'the leaf' : `certificate ${i} of the path`;
}

/** Host of a URI (RFC 3986 authority without userinfo and port), lowercased; undefined if none. */
function uriHost(uri: string): string | undefined {
  const start = uri.indexOf('://');
  if (start < 0) return undefined;
  let end = uri.length;
  for (const ch of ['/', '?', '#']) {
    const i = uri.indexOf(ch, start + 3);
    if (i >= 0 && i < end) end = i;
  }
  let host = uri.slice(start + 3, end);
  const at = host.lastIndexOf('@');
  if (at >= 0) host = host.slice(at + 1);
  if (!host.startsWith('[')) {
    const colon = host.indexOf(':');
    if (colon >= 0) host = host.slice(0, colon);
  }
  return host === '' ? undefined : host.toLowerCase();
}

/** RFC 5280 4.2.1.10: a URI constraint is a host (exact) or ".domain" (any subdomain). */
function uriMatches(host: string, base: string): boolean {
  return base.startsWith('.') ? host.endsWith(base) : host === base;
}

/** RFC 5280 4.2.1.10: a DNS constraint matches the name and any name with labels added on the left. */
function dnsMatches(name: string, base: string): boolean {
  const n = name.toLowerCase();
  if (base === '') return true;
  const b = base.startsWith('.') ? base.slice(1) : base;
  return n === b || n.endsWith('.' + b);
}

/** Why `c`'s names break `nc`, or undefined when they satisfy it. */
function nameConstraintViolation(nc: NameConstraints, c: ParsedCert): string | undefined {
  for (const uri of c.uris) {
    const host = uriHost(uri) ?? '';
    let constrained = false;
    let permitted = false;
    for (const s of nc.permitted) {
      if (s.tag !== GN_URI) continue;
      constrained = true;
      if (uriMatches(host, s.base)) permitted = true;
    }
    if (constrained && !permitted) return `${JSON.stringify(uri)} is outside the permitted name constraints`;
    for (const s of nc.excluded)
      if (s.tag === GN_URI && uriMatches(host, s.base))
        return `${JSON.stringify(uri)} is inside an excluded name constraint`;
  }
  for (const name of c.dnsNames) {
    let constrained = false;
    let permitted = false;
    for (const s of nc.permitted) {
      if (s.tag !== GN_DNS) continue;
      constrained = true;
      if (dnsMatches(name, s.base)) permitted = true;
    }
    if (constrained && !permitted) return `${JSON.stringify(name)} is outside the permitted name constraints`;
    for (const s of nc.excluded)
      if (s.tag === GN_DNS && dnsMatches(name, s.base))
        return `${JSON.stringify(name)} is inside an excluded name constraint`;
  }
  // Name forms Trellis does not interpret: RFC 5280 4.2.1.10 requires rejecting when a
  // constraint of that form applies to a name of that form in a subsequent certificate.
  for (const list of [nc.permitted, nc.excluded]) {
    for (const s of list) {
      if (s.tag === GN_URI || s.tag === GN_DNS) continue;
      if (c.otherNameForms.includes(s.tag) || (s.tag === GN_DIRECTORY_NAME && !c.subjectEmpty))
        return `a name constraint of a form Trellis does not process (GeneralName tag 0x${s.tag.toString(16)}) applies`;
    }
  }
  return undefined;
}

interface Failure {
  /** Higher is closer to success: validity failures on an otherwise valid path rank above structure. */
  readonly rank: number;
  readonly reason: RejectReason;
  readonly message: string;
}

/** Checks a complete path (leaf first, trust anchor last) beyond the per-link checks. */
function checkPath(path: readonly ParsedCert[], now: number): Failure | { notAfter: number } {
  // pathLenConstraint: non-self-issued intermediates below each CA.
  for (let i = 1; i < path.length; i++) {
    const ca = path[i]!;
    if (ca.pathLen === undefined) continue;
    let below = 0;
    for (let j = 1; j < i; j++) if (!path[j]!.selfIssued) below++;
    if (below > ca.pathLen)
      return {
        rank: 1,
        reason: 'untrusted-issuer',
        message: `${position(i)} allows ${ca.pathLen} intermediate(s) below it (pathLenConstraint), the path has ${below}`,
      };
  }
  // Name constraints apply to the leaf and to non-self-issued certificates below each CA.
  for (let i = 1; i < path.length; i++) {
    const nc = path[i]!.nameConstraints;
    if (!nc) continue;
    for (let j = 0; j < i; j++) {
      if (j > 0 && path[j]!.selfIssued) continue;
      const why = nameConstraintViolation(nc, path[j]!);
      if (why)
        return {
          rank: 1,
          reason: 'untrusted-issuer',
          message: `${position(j)} breaks the name constraints of ${position(i)}: ${why}`,
        };
    }
  }
  let notAfter = Infinity;
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (now < c.notBefore)
      return {
        rank: 2,
        reason: 'not-yet-valid',
        message: `${position(i)} is not valid before ${new Date(c.notBefore).toISOString()} (now ${new Date(now).toISOString()})`,
      };
    if (now > c.notAfter)
      return {
        rank: 2,
        reason: 'expired',
        message: `${position(i)} expired at ${new Date(c.notAfter).toISOString()} (now ${new Date(now).toISOString()})`,
      };
    if (c.notAfter < notAfter) notAfter = c.notAfter;
  }
  return { notAfter };
}

/** Whether `issuer` may have signed `child`, and did. `anchor`: a bundle root. */
function issued(issuer: ParsedCert, child: ParsedCert, anchor: boolean): boolean {
  if (!issuer.ca || issuer.unknownCritical !== undefined) return false;
  // Intermediates are SVID signing certificates: key usage MUST be present with keyCertSign.
  // A trust anchor is trusted by configuration; without a key usage extension it is unrestricted.
  if (issuer.keyUsage === undefined ? !anchor : (issuer.keyUsage & KU_KEY_CERT_SIGN) === 0) return false;
  // Issuer name = child's issuer, and AKID/SKID agree; then the signature itself.
  if (!child.x509.checkIssued(issuer.x509)) return false;
  try {
    return child.x509.verify(publicKeyOf(issuer));
  } catch {
    return false;
  }
}

/**
 * Verifies an X.509-SVID presented by a TLS peer: `chain` is DER, leaf first, with or without
 * intermediates; `bundles` maps trust domains to their root certificates. The path must end at
 * a root of the leaf SPIFFE ID's own trust domain.
 */
export function verifyX509Svid(
  chain: readonly Buffer[],
  bundles: TrustBundles,
  opts: VerifyOptions = {},
): VerifyResult {
  if (chain.length === 0) return reject('malformed-certificate', 'the peer presented no certificate');
  if (chain.length > MAX_PRESENTED)
    return reject(
      'malformed-certificate',
      `the peer presented ${chain.length} certificates (at most ${MAX_PRESENTED})`,
    );
  const leaf = tryParse(chain[0]!);
  if (typeof leaf === 'string') return reject('malformed-certificate', `the leaf certificate does not parse: ${leaf}`);

  // Leaf validation (X.509-SVID 5.2, 4.1, 4.3).
  if (leaf.unknownCritical !== undefined)
    return reject(
      'unsupported-critical-extension',
      `the leaf has a critical extension Trellis does not process (${leaf.unknownCritical})`,
    );
  if (leaf.ca) return reject('ca-as-leaf', 'the leaf is a CA certificate (basicConstraints CA:TRUE)');
  if (leaf.keyUsage !== undefined && (leaf.keyUsage & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) !== 0)
    return reject('ca-as-leaf', 'the leaf has the keyCertSign or cRLSign key usage of a signing certificate');
  if (leaf.keyUsage === undefined)
    return reject('bad-key-usage', 'the leaf has no key usage extension (an X.509-SVID must have one)');
  if ((leaf.keyUsage & KU_DIGITAL_SIGNATURE) === 0)
    return reject('bad-key-usage', 'the leaf key usage lacks digitalSignature');
  if (leaf.uris.length === 0) return reject('no-uri-san', 'the leaf has no URI subjectAltName (no SPIFFE ID)');
  if (leaf.uris.length > 1)
    return reject('multiple-uri-sans', `the leaf has ${leaf.uris.length} URI subjectAltNames; an SVID has exactly one`);
  const uri = leaf.uris[0]!;
  const id = parseSpiffeId(uri);
  if (typeof id === 'string') return reject('malformed-spiffe-id', `${JSON.stringify(uri)} is not a SPIFFE ID: ${id}`);
  if (id.path === '')
    return reject('malformed-spiffe-id', `${uri} has no path; a leaf SVID identifies a workload, not a trust domain`);

  if (opts.trustDomain !== undefined && id.trustDomain !== opts.trustDomain)
    return reject('wrong-trust-domain', `${uri} is in trust domain ${id.trustDomain}, expected ${opts.trustDomain}`);
  const bundle = bundles.get(id.trustDomain);
  if (!bundle || bundle.length === 0)
    return reject('wrong-trust-domain', `${uri} is in trust domain ${id.trustDomain}, for which no bundle is held`);

  // Path validation (X.509-SVID 5.1 -> RFC 5280 6.1).
  const roots: ParsedCert[] = [];
  for (const der of bundle) {
    const r = parsedRoot(der);
    if (r) roots.push(r);
  }
  const intermediates: ParsedCert[] = [];
  for (let i = 1; i < chain.length; i++) {
    const c = tryParse(chain[i]!);
    if (typeof c === 'string')
      return reject('malformed-certificate', `presented certificate ${i} does not parse: ${c}`);
    intermediates.push(c);
  }

  const now = (opts.now ?? new Date()).getTime();
  const path: ParsedCert[] = [leaf];
  const used: boolean[] = intermediates.map(() => false);
  let best: Failure | undefined;
  let found: number | undefined;

  const extend = (cur: ParsedCert): boolean => {
    for (const root of roots) {
      if (!issued(root, cur, true)) continue;
      path.push(root);
      const r = checkPath(path, now);
      path.pop();
      if ('notAfter' in r) {
        found = r.notAfter;
        return true;
      }
      if (!best || r.rank > best.rank) best = r;
    }
    if (path.length > MAX_INTERMEDIATES) return false;
    for (let i = 0; i < intermediates.length; i++) {
      if (used[i]) continue;
      const int = intermediates[i]!;
      if (!issued(int, cur, false)) continue;
      used[i] = true;
      path.push(int);
      const done = extend(int);
      path.pop();
      used[i] = false;
      if (done) return true;
    }
    return false;
  };

  if (!extend(leaf)) {
    if (best) return reject(best.reason, best.message);
    return reject(
      'untrusted-issuer',
      `no chain from ${uri} to a root of trust domain ${id.trustDomain} (${roots.length} root(s), ${intermediates.length} intermediate(s) presented)`,
    );
  }

  if (opts.allowedIds && !opts.allowedIds.has(id.text))
    return reject('unexpected-identity', `${uri} is not one of the ${opts.allowedIds.size} expected identities`);

  return { ok: true, spiffeId: id.text, trustDomain: id.trustDomain, notAfter: new Date(found!) };
}
