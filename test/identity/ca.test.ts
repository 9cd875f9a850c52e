// The CA and its SVIDs against real peers: openssl, curl, node:tls and grpc-js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { tlsPem } from '../../src/identity/tls-credentials.js';
import { runCli } from '../helpers/run-cli.js';

const HOUR = 3_600_000;
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const hasCurl = spawnSync('curl', ['--version']).status === 0;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'trellis-ca-'));
}

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

test(
  'trellis ca init + issue: openssl verifies the chain and shows the SPIFFE X.509-SVID profile',
  { skip: !hasOpenssl && 'openssl is not installed' },
  () => {
    const dir = tmp();
    try {
      let r = runCli(['ca', 'init', '--trust-domain', 'cluster.local', '--out', join(dir, 'ca')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(statSync(join(dir, 'ca', 'ca-key.pem')).mode & 0o777, 0o600);
      r = runCli([
        'ca',
        'issue',
        '--ca',
        join(dir, 'ca'),
        '--spiffe-id',
        'spiffe://cluster.local/ns/shop/sa/api',
        '--out',
        join(dir, 'svid'),
        '--ttl',
        '1h',
        '--dns',
        'api.shop.svc.cluster.local',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /PRIVATE KEY/);
      assert.equal(statSync(join(dir, 'svid', 'key.pem')).mode & 0o777, 0o600);
      assert.match(
        openssl(['verify', '-CAfile', join(dir, 'svid', 'bundle.pem'), join(dir, 'svid', 'cert-chain.pem')]),
        /OK/,
      );
      const text = openssl(['x509', '-in', join(dir, 'svid', 'cert-chain.pem'), '-noout', '-text']);
      assert.match(text, /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api/);
      assert.equal(text.match(/URI:/g)!.length, 1, 'exactly one URI SAN');
      assert.match(text, /DNS:api\.shop\.svc\.cluster\.local/);
      assert.match(text, /Subject Alternative Name: critical/);
      assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
      assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
      assert.match(text, /CA:FALSE/);
      const notBefore = Date.parse(/Not Before: (.*)/.exec(text)![1]!);
      const notAfter = Date.parse(/Not After : (.*)/.exec(text)![1]!);
      assert.ok(
        notAfter - notBefore <= HOUR + 60_000 && notAfter - notBefore >= HOUR,
        `lifetime ${notAfter - notBefore}`,
      );
      // The root is not part of the delivered chain.
      assert.equal(readFileSync(join(dir, 'svid', 'cert-chain.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)!.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'an intermediate under an organisation RSA root: chain = leaf + intermediate, verified by openssl',
  { skip: !hasOpenssl && 'openssl is not installed' },
  () => {
    const dir = tmp();
    try {
      openssl([
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'org-key.pem'),
        '-out',
        join(dir, 'org-root.pem'),
        '-days',
        '30',
        '-subj',
        '/O=Example Corp/CN=Example Root',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]);
      let r = runCli([
        'ca',
        'init',
        '--trust-domain',
        'prod.example.com',
        '--out',
        join(dir, 'ca'),
        '--root-cert',
        join(dir, 'org-root.pem'),
        '--root-key',
        join(dir, 'org-key.pem'),
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /created intermediate CA/);
      r = runCli([
        'ca',
        'issue',
        '--ca',
        join(dir, 'ca'),
        '--spiffe-id',
        'spiffe://prod.example.com/ns/pay/sa/billing',
        '--out',
        join(dir, 'svid'),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const chain = readFileSync(join(dir, 'svid', 'cert-chain.pem'), 'utf8');
      const blocks = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g)!;
      assert.equal(blocks.length, 2);
      writeFileSync(join(dir, 'leaf.pem'), blocks[0]!);
      writeFileSync(join(dir, 'int.pem'), blocks[1]!);
      assert.match(
        openssl([
          'verify',
          '-CAfile',
          join(dir, 'org-root.pem'),
          '-untrusted',
          join(dir, 'int.pem'),
          join(dir, 'leaf.pem'),
        ]),
        /OK/,
      );
      assert.equal(
        readFileSync(join(dir, 'svid', 'bundle.pem'), 'utf8'),
        readFileSync(join(dir, 'org-root.pem'), 'utf8'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('the CA key never appears in inspect, JSON or error messages', () => {
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: HOUR * 24 });
  const keyPem = ca.toPem().caKey;
  const body = keyPem.split('\n')[1]!;
  assert.doesNotMatch(inspect(ca, { depth: 5, showHidden: true }), new RegExp(body.slice(0, 20).replace(/[+/]/g, '.')));
  assert.doesNotMatch(JSON.stringify(ca), /PRIVATE/);
  assert.throws(
    () => ca.issue({ spiffeId: 'spiffe://other/ns/a/sa/b', ttlMs: HOUR }),
    (e: Error) => !e.message.includes(body.slice(0, 20)) && /trust domain/.test(e.message),
  );
  assert.throws(() => ca.issue({ spiffeId: 'spiffe://cluster.local', ttlMs: HOUR }), /workload path/);
  assert.throws(() => ca.issue({ spiffeId: 'spiffe://Cluster.Local/x', ttlMs: HOUR }), /invalid SPIFFE ID/);
});

function runAsync(cmd: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function spiffeIdOf(sock: TLSSocket): string | undefined {
  const san = sock.getPeerCertificate().subjectaltname ?? '';
  return /URI:(spiffe:\/\/[^,\s]+)/.exec(san)?.[1];
}

test(
  'curl with a client SVID completes mTLS with a node:tls server that requires client certificates',
  { skip: !hasCurl && 'curl is not installed' },
  async () => {
    const dir = tmp();
    const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: HOUR * 24 });
    const server = tlsPem({
      svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/api', ttlMs: HOUR, dnsNames: ['localhost'] }),
      bundle: ca.roots,
    });
    const client = tlsPem({
      svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/frontend', ttlMs: HOUR }),
      bundle: ca.roots,
    });
    writeFileSync(join(dir, 'c.pem'), client.cert);
    writeFileSync(join(dir, 'k.pem'), client.key, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), client.ca);
    const srv = createTlsServer({ ...server, requestCert: true, rejectUnauthorized: true }, (sock) => {
      const body = `peer=${spiffeIdOf(sock)}`;
      sock.end(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    });
    try {
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      const port = (srv.address() as AddressInfo).port;
      // curl runs asynchronously: the TLS server lives in this process.
      const curl = (extra: string[]) =>
        runAsync('curl', [
          '-sS',
          '--max-time',
          '5',
          '--cacert',
          join(dir, 'ca.pem'),
          '--resolve',
          `localhost:${port}:127.0.0.1`,
          ...extra,
          `https://localhost:${port}/`,
        ]);
      const ok = await curl(['--cert', join(dir, 'c.pem'), '--key', join(dir, 'k.pem')]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal(ok.stdout, 'peer=spiffe://cluster.local/ns/shop/sa/frontend');
      const noCert = await curl([]);
      assert.notEqual(noCert.status, 0, 'a client without a certificate must be refused');
    } finally {
      srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('a grpc-js channel with SSL credentials from SVIDs: handshake, and the server reads the client SPIFFE ID', async () => {
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: HOUR * 24 });
  const server = tlsPem({
    svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/orders', ttlMs: HOUR }),
    bundle: ca.roots,
  });
  const client = tlsPem({
    svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/api', ttlMs: HOUR }),
    bundle: ca.roots,
  });
  const json = {
    serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
    deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
  };
  const service = {
    whoami: {
      path: '/trellis.test.Echo/WhoAmI',
      requestStream: false,
      responseStream: false,
      requestSerialize: json.serialize,
      requestDeserialize: json.deserialize,
      responseSerialize: json.serialize,
      responseDeserialize: json.deserialize,
    },
  };
  const srv = new grpc.Server();
  srv.addService(service, {
    whoami: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const san = call.getAuthContext()?.sslPeerCertificate?.subjectaltname ?? '';
      cb(null, { peer: /URI:(spiffe:\/\/[^,\s]+)/.exec(san)?.[1] ?? null });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    srv.bindAsync(
      '127.0.0.1:0',
      grpc.ServerCredentials.createSsl(
        Buffer.from(server.ca),
        [{ private_key: Buffer.from(server.key), cert_chain: Buffer.from(server.cert) }],
        true,
      ),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  // Server identity is checked by SPIFFE ID (URI SAN), not by host name.
  const creds = grpc.credentials.createSsl(Buffer.from(client.ca), Buffer.from(client.key), Buffer.from(client.cert), {
    checkServerIdentity: (_host, cert) =>
      /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/orders(,|$)/.test(cert.subjectaltname ?? '')
        ? undefined
        : new Error(`unexpected server identity ${cert.subjectaltname}`),
  });
  const c = new Client(`127.0.0.1:${port}`, creds) as unknown as grpc.Client & {
    whoami: (
      req: unknown,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: { peer: string }) => void,
    ) => void;
  };
  try {
    const reply = await new Promise<{ peer: string }>((resolve, reject) =>
      c.whoami({}, { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r!))),
    );
    assert.equal(reply.peer, 'spiffe://cluster.local/ns/shop/sa/api');
  } finally {
    c.close();
    srv.forceShutdown();
  }
});
