// trellis ca init | issue: create a CA (root, or intermediate under an organisation's root)
// and issue X.509-SVIDs from it, for operators and tests.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { formatDiagnostic } from '../../config/diagnostic.js';
import type { MeshSpec } from '../../config/kinds/trellis/mesh.js';
import { loadPaths } from '../../config/load.js';
import { UsageError } from '../../errors.js';
import { compileModel } from '../../model/compile.js';
import { CertificateAuthority, type KeyAlgorithm } from '../../identity/ca.js';
import { CA_FILES, loadCa, saveCa } from '../../identity/ca-store.js';
import { writeSvidFiles } from '../../identity/svid-files.js';
import { parseGoDuration } from '../../util/duration.js';
import { didYouMean } from '../../util/did-you-mean.js';
import { HELP_FLAG, type Command } from '../command.js';
import { readFlagFile } from '../flag-file.js';
import { OUTPUT_FLAG, renderData, type OutputFormat } from '../output.js';

const KEY_ALGORITHMS = ['ec-p256', 'ec-p384', 'rsa-2048'] as const;

function durationFlag(value: string | undefined, flag: string, fallback: string): number {
  const text = value ?? fallback;
  const ms = parseGoDuration(text);
  if (ms === undefined || ms <= 0)
    throw new UsageError(`--${flag} ${JSON.stringify(text)} is not a duration (expected e.g. 1h, 30m, 87600h)`);
  return ms;
}

/** The Mesh settings of the given manifests (defaults when they hold no Mesh); errors stop the command. */
function meshFrom(paths: readonly string[] | undefined): MeshSpec | undefined {
  if (!paths || paths.length === 0) return undefined;
  const loaded = loadPaths(paths);
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    throw new UsageError(
      `the manifests given with -f have problems (run "trellis validate -f ${paths.join(' -f ')}"):\n  ${errors.slice(0, 3).map(formatDiagnostic).join('\n  ')}`,
    );
  }
  return compileModel(loaded.resources).mesh;
}

export const caCommand: Command = {
  name: 'ca',
  summary: 'Create a SPIFFE certificate authority and issue X.509-SVIDs',
  usage: [
    'trellis ca init (--trust-domain TD | -f MANIFESTS) --out DIR [--root-cert FILE --root-key FILE] [--ttl 87600h] [--key-algorithm ec-p256]',
    '       trellis ca issue --ca CA_DIR --spiffe-id spiffe://TD/ns/NS/sa/SA --out DIR [--ttl 24h | -f MANIFESTS] [--dns NAME ...]',
  ].join('\n'),
  flags: [
    {
      name: 'trust-domain',
      type: 'string',
      valueName: 'TD',
      description: 'init: the SPIFFE trust domain, e.g. cluster.local',
    },
    {
      name: 'filename',
      short: 'f',
      type: 'list',
      valueName: 'PATH',
      description:
        'manifests whose Mesh gives the defaults: trust domain and root lifetime (init), SVID lifetime (issue)',
    },
    {
      name: 'out',
      type: 'string',
      valueName: 'DIR',
      description: 'directory to write the CA (init) or the SVID files (issue) to',
    },
    {
      name: 'root-cert',
      type: 'string',
      valueName: 'FILE',
      description: 'init: an existing root CA certificate (PEM): create an intermediate under it',
    },
    { name: 'root-key', type: 'string', valueName: 'FILE', description: 'init: the private key of --root-cert (PEM)' },
    {
      name: 'key-algorithm',
      type: 'string',
      valueName: 'ALG',
      choices: KEY_ALGORITHMS,
      description: 'init: ec-p256 (default), ec-p384 or rsa-2048',
    },
    { name: 'force', type: 'boolean', description: 'init: overwrite an existing CA in --out' },
    { name: 'ca', type: 'string', valueName: 'CA_DIR', description: 'issue: the CA directory "ca init --out" wrote' },
    { name: 'spiffe-id', type: 'string', valueName: 'ID', description: 'issue: the SPIFFE ID to certify' },
    { name: 'dns', type: 'list', valueName: 'NAME', description: 'issue: a DNS SAN to add; repeatable' },
    { name: 'ttl', type: 'string', valueName: 'DURATION', description: 'lifetime: init 87600h (10 years), issue 24h' },
    OUTPUT_FLAG,
    HELP_FLAG,
  ],
  run(args, io) {
    const [sub, ...extra] = args.positionals;
    if (sub === undefined) throw new UsageError('trellis ca needs a subcommand: init or issue');
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    if (sub !== 'init' && sub !== 'issue') {
      throw new UsageError(`unknown subcommand "ca ${sub}"${didYouMean(sub, ['init', 'issue'])}`);
    }
    const f = args.flags as Record<string, string | boolean | readonly string[] | undefined>;
    const format = (f.output as OutputFormat | undefined) ?? 'human';
    const mesh = meshFrom(f.filename as readonly string[] | undefined);
    const out = f.out as string | undefined;
    if (out === undefined) throw new UsageError(`trellis ca ${sub} needs --out DIR`);

    if (sub === 'init') {
      const trustDomain = (f['trust-domain'] as string | undefined) ?? mesh?.trustDomain;
      if (trustDomain === undefined) {
        throw new UsageError('trellis ca init needs --trust-domain (e.g. cluster.local), or -f manifests with a Mesh');
      }
      if ((f['root-cert'] === undefined) !== (f['root-key'] === undefined)) {
        throw new UsageError('--root-cert and --root-key go together');
      }
      if (existsSync(join(out, CA_FILES.caKey)) && f.force !== true) {
        throw new UsageError(`${out} already holds a CA (${CA_FILES.caKey}); pass --force to replace it`);
      }
      const ttlMs = durationFlag(f.ttl as string | undefined, 'ttl', mesh?.certificates.rootTTL ?? '87600h');
      const keyAlgorithm = (f['key-algorithm'] as KeyAlgorithm | undefined) ?? 'ec-p256';
      const ca =
        f['root-cert'] === undefined
          ? CertificateAuthority.createRoot({ trustDomain, ttlMs, keyAlgorithm })
          : CertificateAuthority.createIntermediate({
              trustDomain,
              ttlMs,
              keyAlgorithm,
              rootCertPem: readFlagFile(f['root-cert'] as string, 'root-cert'),
              rootKeyPem: readFlagFile(f['root-key'] as string, 'root-key'),
            });
      saveCa(ca, out);
      const info = {
        trustDomain,
        kind: f['root-cert'] === undefined ? 'root' : 'intermediate',
        subject: ca.certificate.subject.replace(/\n/g, ', '),
        notAfter: new Date(ca.certificate.validTo).toISOString(),
        dir: out,
        files: Object.values(CA_FILES),
      };
      io.out(
        format === 'human'
          ? `created ${info.kind} CA for trust domain ${trustDomain} in ${out} (valid until ${info.notAfter}; ${CA_FILES.caKey} is mode 0600)`
          : renderData(info, format),
      );
      return 0;
    }

    if (sub === 'issue') {
      const caDir = f.ca as string | undefined;
      const spiffeId = f['spiffe-id'] as string | undefined;
      if (caDir === undefined) throw new UsageError('trellis ca issue needs --ca CA_DIR');
      if (spiffeId === undefined) throw new UsageError('trellis ca issue needs --spiffe-id spiffe://TD/ns/NS/sa/SA');
      const ttlMs = durationFlag(f.ttl as string | undefined, 'ttl', mesh?.certificates.workloadTTL ?? '24h');
      const ca = loadCa(caDir);
      const svid = ca.issue({ spiffeId, ttlMs, dnsNames: (f.dns as readonly string[] | undefined) ?? [] });
      const paths = writeSvidFiles(out, { svid, bundle: ca.roots });
      const info = {
        spiffeId,
        notBefore: svid.notBefore.toISOString(),
        notAfter: svid.notAfter.toISOString(),
        ...paths,
      };
      io.out(
        format === 'human'
          ? `issued ${spiffeId} until ${info.notAfter}:\n  ${paths.certificateFile}\n  ${paths.privateKeyFile} (0600)\n  ${paths.caCertificateFile}`
          : renderData(info, format),
      );
      return 0;
    }
    throw new UsageError(`unknown subcommand "ca ${sub}"`);
  },
};
