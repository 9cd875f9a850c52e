// Delivering SVIDs as files: the shape grpc-js's `file_watcher` certificate provider
// (certificate_file, private_key_file, ca_certificate_file) and most TLS servers read.
//
// All three files change together, the way Kubernetes' atomic writer updates projected
// volumes: the new files go to a fresh hidden directory, a `..data` symlink is swapped to
// it with one rename, and the visible names are symlinks through `..data`. A reader never
// pairs a new certificate with an old key. The key is written 0600.
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SvidSnapshot } from './secret-manager.js';
import { pemEncode } from './x509-builder.js';

export const SVID_FILES = { certChain: 'cert-chain.pem', key: 'key.pem', bundle: 'bundle.pem' } as const;

export interface SvidPaths {
  readonly certificateFile: string;
  readonly privateKeyFile: string;
  readonly caCertificateFile: string;
}

export function svidPaths(dir: string): SvidPaths {
  return {
    certificateFile: join(dir, SVID_FILES.certChain),
    privateKeyFile: join(dir, SVID_FILES.key),
    caCertificateFile: join(dir, SVID_FILES.bundle),
  };
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export function writeSvidFiles(dir: string, s: SvidSnapshot): SvidPaths {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const version = `..${Date.now()}_${randomBytes(4).toString('hex')}`;
  const versionDir = join(dir, version);
  mkdirSync(versionDir, { mode: 0o755 });
  writeFileSync(join(versionDir, SVID_FILES.bundle), s.bundle.map((d) => pemEncode(d)).join(''), { mode: 0o644 });
  writeFileSync(
    join(versionDir, SVID_FILES.key),
    s.svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    {
      mode: 0o600,
    },
  );
  writeFileSync(join(versionDir, SVID_FILES.certChain), s.svid.chain.map((d) => pemEncode(d)).join(''), {
    mode: 0o644,
  });

  const data = join(dir, '..data');
  const previous = exists(data) ? readlinkSync(data) : undefined;
  const tmpLink = join(dir, `..data_tmp_${randomBytes(4).toString('hex')}`);
  symlinkSync(version, tmpLink);
  renameSync(tmpLink, data); // the atomic switch
  for (const name of Object.values(SVID_FILES)) {
    const visible = join(dir, name);
    if (!exists(visible)) symlinkSync(join('..data', name), visible);
  }
  // Old versions go once nothing points at them (keep the one just replaced for slow readers).
  for (const entry of readdirSync(dir)) {
    if (
      entry.startsWith('..') &&
      entry !== '..data' &&
      entry !== version &&
      entry !== previous &&
      !entry.startsWith('..data_tmp')
    ) {
      rmSync(join(dir, entry), { recursive: true, force: true });
    }
  }
  return svidPaths(dir);
}
