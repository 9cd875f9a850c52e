// The control plane's /metrics on its admin port: istiod's names (pilot_xds_pushes,
// pilot_total_xds_rejects, pilot_proxy_convergence_time, ...), driven by a real ADS client
// against `trellis controlplane --ca`, and checked with promtool.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { loadXdsProtos } from '../../src/xds/server/protos.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { loadCa } from '../../src/identity/ca-store.js';
import { startControlPlaneWith } from '../helpers/controlplane.js';
import { REPO_ROOT, runCliAsync } from '../helpers/run-cli.js';

interface Response {
  version_info: string;
  type_url: string;
  nonce: string;
}
interface Request {
  node?: object;
  type_url: string;
  resource_names: string[];
  response_nonce?: string;
  version_info?: string;
  error_detail?: { code: number; message: string };
}

/** Parses a Prometheus text page into `name{labels}` -> value (labels as written). */
function parse(page: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of page.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function until(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const EXTRA_SERVICE = (port: number) => `apiVersion: v1
kind: Service
metadata:
  name: extra
  namespace: shop
spec:
  selector:
    app: api
  ports:
    - name: http
      port: ${port}
`;

test(
  'controlplane /metrics: pushes, convergence after the ACK, NACKs, reloads, certificate expiry; promtool accepts the page',
  { timeout: 60_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cp-metrics-'));
    const config = join(dir, 'config');
    cpSync(join(REPO_ROOT, 'examples/shop'), config, { recursive: true });
    const init = await runCliAsync(['ca', 'init', '--trust-domain', 'cluster.local', '--out', join(dir, 'ca')]);
    assert.equal(init.code, 0, init.stderr);
    const cp = await startControlPlaneWith(config, ['--ca', join(dir, 'ca')]);
    const protos = loadXdsProtos();
    const client = new protos.AdsClient(cp.xds, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      StreamAggregatedResources(): grpc.ClientDuplexStream<Request, Response>;
    };
    const stream = client.StreamAggregatedResources();
    const scrape = async () => {
      const res = await fetch(`${cp.admin}/metrics`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      const page = await res.text();
      return { page, m: parse(page) };
    };
    const value = async (series: string) => (await scrape()).m.get(series) ?? 0;
    try {
      // The client ACKs every response, except that it rejects CDS responses while `rejectCds` is set.
      let rejectCds = false;
      const acked = new Map<string, string>();
      stream.on('data', (r: Response) => {
        const nack = rejectCds && r.type_url === TYPE_URLS.cluster;
        stream.write({
          type_url: r.type_url,
          resource_names: [],
          response_nonce: r.nonce,
          version_info: nack ? (acked.get(r.type_url) ?? '') : r.version_info,
          ...(nack ? { error_detail: { code: 3, message: 'test: cluster rejected' } } : {}),
        });
        if (!nack) acked.set(r.type_url, r.version_info);
      });
      stream.on('error', () => undefined); // cancelled at the end
      // Envoy-style wildcard subscriptions: an empty first request per type.
      const node = { id: 'node-b', locality: {}, user_agent_name: 'metrics-test', user_agent_version: '9.9.9' };
      stream.write({ node, type_url: TYPE_URLS.cluster, resource_names: [] });
      for (const t of [TYPE_URLS.endpoint, TYPE_URLS.listener, TYPE_URLS.secret])
        stream.write({ type_url: t, resource_names: [] });
      await until('CDS, EDS, LDS and SDS ACKed', async () => acked.size === 4);

      const first = await scrape();
      assert.equal(first.m.get('pilot_xds{version="9.9.9"}'), 1);
      const cds0 = first.m.get('pilot_xds_pushes{type="cds"}') ?? 0;
      assert.ok(cds0 >= 1, 'the initial CDS response is counted');
      assert.ok((first.m.get('pilot_xds_pushes{type="sds"}') ?? 0) >= 1);
      assert.ok((first.m.get('pilot_xds_push_time_count{type="cds"}') ?? 0) >= 1);
      // Initial responses answer the client's requests: no config change to converge to.
      assert.equal(first.m.get('pilot_proxy_convergence_time_count') ?? 0, 0);
      assert.equal(first.m.get('trellis_config_reloads_total{result="applied"}'), 1);
      assert.equal(first.m.get('trellis_config_generation'), 1);
      assert.ok((first.m.get('trellis_config_translation_seconds_count{phase="translate"}') ?? 0) >= 1);
      // Certificates: the CA's root, and node-b's SVIDs (issued asynchronously, hence SDS was awaited above).
      const ca = loadCa(join(dir, 'ca'));
      assert.equal(
        first.m.get('citadel_server_root_cert_expiry_timestamp'),
        Date.parse(ca.certificate.validTo) / 1000,
        'a self-signed root CA: the root is the signing certificate',
      );
      const svidExpiry = first.m.get('trellis_workload_cert_expiry_timestamp{node="node-b"}') ?? 0;
      assert.ok(svidExpiry > Date.now() / 1000 && svidExpiry <= Date.now() / 1000 + 86_400 + 60, String(svidExpiry));

      // A config change: a new Service is a new cluster. The client ACKs the push.
      writeFileSync(join(config, 'extra.yaml'), EXTRA_SERVICE(8090));
      await until('the change pushed and ACKed', async () => {
        const m = (await scrape()).m;
        return (
          (m.get('pilot_xds_pushes{type="cds"}') ?? 0) > cds0 && (m.get('pilot_proxy_convergence_time_count') ?? 0) >= 1
        );
      });
      const second = await scrape();
      assert.equal(second.m.get('trellis_config_generation'), 2);
      assert.equal(second.m.get('trellis_config_reloads_total{result="applied"}'), 2);
      // One observation for the change, although it touched several types (CDS, EDS, LDS).
      assert.equal(second.m.get('pilot_proxy_convergence_time_count'), 1);
      assert.ok((second.m.get('pilot_xds_pushes{type="eds"}') ?? 0) >= 1);
      const converged = second.m.get('pilot_proxy_convergence_time_sum')!;
      assert.ok(converged > 0 && converged < 10, `convergence ${converged}s`);
      assert.equal(
        second.m.get('pilot_proxy_convergence_time_bucket{le="+Inf"}'),
        second.m.get('pilot_proxy_convergence_time_count'),
      );

      // A rejected reload: the last good configuration keeps serving, the rejection is counted.
      writeFileSync(join(config, 'broken.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {}\nspec: [\n');
      await until(
        'the reload rejected',
        async () => (await value('trellis_config_reloads_total{result="rejected"}')) === 1,
      );
      assert.equal(await value('trellis_config_generation'), 2);
      rmSync(join(config, 'broken.yaml'));

      // The client NACKs the next CDS push.
      rejectCds = true;
      writeFileSync(join(config, 'extra.yaml'), EXTRA_SERVICE(8091));
      await until('the NACK counted', async () => (await value('pilot_total_xds_rejects{type="cds"}')) === 1);
      const third = await scrape();
      assert.equal(third.m.get('pilot_xds_cds_reject{node="node-b"}'), 1);
      assert.equal(third.m.get('pilot_total_xds_rejects{type="lds"}') ?? 0, 0);

      const promtool = spawnSync('promtool', ['check', 'metrics'], {
        input: third.page,
        encoding: 'utf8',
        timeout: 10_000,
      });
      if (promtool.error && (promtool.error as NodeJS.ErrnoException).code === 'ENOENT') {
        t.skip('promtool is not installed');
        return;
      }
      // istiod's counters carry no `_total` suffix; the names are kept for its dashboards and
      // alerts, so that one lint is expected for them and nothing else may be reported.
      const problems = `${promtool.stdout}${promtool.stderr}`
        .split('\n')
        .filter((l) => l.trim() !== '')
        .filter(
          (l) => !/^(pilot_xds_pushes|pilot_total_xds_rejects) counter metrics should have "_total" suffix$/.test(l),
        );
      assert.deepEqual(problems, [], `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);
      assert.ok(promtool.status === 0 || promtool.status === 3, `promtool exit ${promtool.status}`);
    } finally {
      stream.cancel();
      client.close();
      cp.proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
