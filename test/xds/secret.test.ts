// SVIDs as Envoy v3 SDS Secrets, encoded and decoded with the real Envoy protos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { existsSync } from 'node:fs';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { svidSecrets, SECRET_TYPE_URL } from '../../src/xds/translate/secret.js';

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

test('an SVID becomes a tls_certificate Secret and a validation_context Secret that round-trip through the Envoy proto', () => {
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: 86_400_000 });
  const svid = ca.issue({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/api', ttlMs: 3_600_000 });
  const [cert, bundle] = svidSecrets({ svid, bundle: ca.roots });
  assert.equal(cert.name, 'spiffe:spiffe://cluster.local/ns/shop/sa/api');
  assert.equal(bundle.name, 'spiffe-bundle:spiffe://cluster.local');

  const includeDirs = [
    ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)),
    dirname(require.resolve('protobufjs/package.json')),
  ];
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => includeDirs.map((d) => join(d, target)).find((p) => existsSync(p)) ?? target;
  root.loadSync('envoy/extensions/transport_sockets/tls/v3/secret.proto', { keepCase: true });
  const Secret = root.lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
  assert.equal(`type.googleapis.com/${Secret.fullName.slice(1)}`, SECRET_TYPE_URL);

  const { '@type': _t, ...certFields } = cert;
  const decoded = Secret.toObject(Secret.decode(Secret.encode(Secret.fromObject(certFields)).finish()), {
    bytes: Buffer,
  }) as {
    name: string;
    tls_certificate: { certificate_chain: { inline_bytes: Buffer }; private_key: { inline_bytes: Buffer } };
  };
  assert.equal(decoded.name, cert.name);
  const leaf = new X509Certificate(decoded.tls_certificate.certificate_chain.inline_bytes);
  assert.match(leaf.subjectAltName ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api/);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(decoded.tls_certificate.private_key.inline_bytes)));

  const { '@type': _b, ...bundleFields } = bundle;
  const vc = Secret.toObject(Secret.decode(Secret.encode(Secret.fromObject(bundleFields)).finish()), {
    bytes: Buffer,
  }) as {
    validation_context: { trusted_ca: { inline_bytes: Buffer } };
  };
  assert.ok(new X509Certificate(vc.validation_context.trusted_ca.inline_bytes).ca);
});
