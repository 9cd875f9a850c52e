// SDS: with --ca, each Mesh node gets the SVIDs of the identities its workloads run as.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadXdsProtos } from '../../src/xds/server/protos.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { startControlPlaneWith } from '../helpers/controlplane.js';
import { REPO_ROOT, runCliAsync } from '../helpers/run-cli.js';

interface Secret {
  name: string;
  tls_certificate?: { certificate_chain?: { inline_bytes?: Buffer } };
  validation_context?: unknown;
}

test(
  'trellis controlplane --ca: node-b receives SDS secrets for api and orders, and only those',
  { timeout: 60_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-sds-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), join(dir, 'config'), { recursive: true });
    const init = await runCliAsync(['ca', 'init', '--trust-domain', 'cluster.local', '--out', join(dir, 'ca')]);
    assert.equal(init.code, 0, init.stderr);
    const cp = await startControlPlaneWith(join(dir, 'config'), ['--ca', join(dir, 'ca')]);
    const protos = loadXdsProtos();
    const client = new protos.AdsClient(cp.xds, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      StreamAggregatedResources(): grpc.ClientDuplexStream<
        object,
        { type_url: string; resources: { type_url: string; value: Buffer }[] }
      >;
    };
    const stream = client.StreamAggregatedResources();
    try {
      const secrets = await new Promise<Secret[]>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no SDS response')), 10_000);
        stream.on('data', (r) => {
          if (r.type_url !== TYPE_URLS.secret) return;
          clearTimeout(t);
          resolve(
            r.resources.map((a: { type_url: string; value: Buffer }) => protos.unpackAny(a) as unknown as Secret),
          );
        });
        stream.on('error', reject);
        // Envoy's wildcard: an empty first request for the type.
        stream.write({ node: { id: 'node-b', locality: {} }, type_url: TYPE_URLS.secret, resource_names: [] });
      });
      const names = secrets.map((s) => s.name).sort();
      assert.deepEqual(names, [
        'spiffe-bundle:spiffe://cluster.local',
        'spiffe:spiffe://cluster.local/ns/shop/sa/api',
        'spiffe:spiffe://cluster.local/ns/shop/sa/orders',
      ]);
      const cert = secrets.find((s) => s.name.endsWith('/sa/orders'))!.tls_certificate!.certificate_chain!
        .inline_bytes!;
      assert.match(
        new X509Certificate(cert).subjectAltName ?? '',
        /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/orders/,
      );
      // The admin API never shows the keys.
      const res = await (await fetch(`${cp.admin}/debug/resources?type=secret`)).text();
      assert.doesNotMatch(res, /PRIVATE KEY/);
    } finally {
      stream.cancel();
      client.close();
      cp.proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
