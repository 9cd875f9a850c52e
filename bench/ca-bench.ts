// npm run bench:ca — X.509-SVIDs issued per second (key generation + signing) and signing
// only, against the raw ECDSA P-256 signature rate of `openssl speed` and of node:crypto
// measured in the same run.
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { cpus } from 'node:os';
import { CertificateAuthority } from '../src/identity/ca.js';

const SECONDS = Number(process.env.TRELLIS_BENCH_SECONDS ?? 2);

function rate(fn: () => void): number {
  for (let i = 0; i < 200; i++) fn(); // warm up
  const end = performance.now() + SECONDS * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    fn();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

function opensslSignRate(): number | undefined {
  const r = spawnSync('openssl', ['speed', '-seconds', String(SECONDS), 'ecdsap256'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  38000.0  12000.0"
  const m = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)/.exec(r.stdout ?? '');
  return m ? Number(m[1]) : undefined;
}

const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 86_400_000 * 365 });
const pub = createPublicKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
let i = 0;
const issue = rate(
  () => void ca.issue({ spiffeId: `spiffe://cluster.local/ns/bench/sa/w${i++ % 1000}`, ttlMs: 86_400_000 }),
);
const signOnly = rate(
  () =>
    void ca.sign({ spiffeId: `spiffe://cluster.local/ns/bench/sa/w${i++ % 1000}`, publicKey: pub, ttlMs: 86_400_000 }),
);
const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const tbs = Buffer.alloc(400, 7);
const rawNode = rate(() => void sign('sha256', tbs, caKey));
const rawOpenssl = opensslSignRate();
const t = performance.now();
for (let k = 0; k < 1000; k++)
  ca.issue({ spiffeId: `spiffe://cluster.local/ns/bench/sa/node-w${k}`, ttlMs: 86_400_000 });
const rekey1000 = performance.now() - t;

const f = (x: number) => `${Math.round(x).toLocaleString('en-US')}/s`;
const rows: [string, string, string, string][] = [
  ['anchor: raw ECDSA P-256 signatures, openssl speed', rawOpenssl ? f(rawOpenssl) : 'n/a', '', '1.00'],
  [
    'anchor: raw ECDSA P-256 signatures, node:crypto',
    f(rawNode),
    '',
    rawOpenssl ? (rawNode / rawOpenssl).toFixed(2) : '',
  ],
  [
    'SVID signing only (certify a given key)',
    f(signOnly),
    '>= 2,000/s',
    rawOpenssl ? (signOnly / rawOpenssl).toFixed(2) : '',
  ],
  ['SVID issue: P-256 key generation + signing', f(issue), '', rawOpenssl ? (issue / rawOpenssl).toFixed(2) : ''],
  ['re-key a node of 1,000 workloads', `${rekey1000.toFixed(0)} ms`, '< 1,000 ms', ''],
];
console.log(
  `\nbench:ca — ${SECONDS} s per measure, one core; node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}\n`,
);
const w = [52, 14, 12, 6];
console.log(['measure', 'Trellis', 'target', 'ratio'].map((h, k) => h.padEnd(w[k]!)).join(' | '));
console.log(w.map((n) => '-'.repeat(n)).join('-|-'));
for (const r of rows) console.log(r.map((c, k) => c.padEnd(w[k]!)).join(' | '));
console.log(
  `\ntarget signing >= 2,000/s: ${signOnly >= 2000 ? 'met' : 'MISSED'}; 1,000 workloads re-keyed in ${rekey1000 < 1000 ? 'under' : 'OVER'} 1 s`,
);
