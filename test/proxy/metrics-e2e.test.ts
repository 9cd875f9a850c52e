// Golden signals end to end: `trellis up -f examples/shop`, a known mix of requests through the
// gateway (N that reach the frontend, which calls api through the waypoint; M that get 404),
// then each node's /metrics (:15020): exact istio_requests_total / duration series, a promtool
// lint, and a real Prometheus scraping both nodes answering an error-rate query.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { httpGet, meshUp, waitFor, type MeshUp } from '../helpers/mesh-up.js';

const NODES = ['127.0.0.1:15020', '127.0.0.2:15020'];
const N = 6;
const M = 4;
const ID = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;

type Sample = { name: string; labels: Record<string, string>; value: number };

/** The sample lines of a text-format page (enough for our own output: no timestamps). */
function parse(page: string): Sample[] {
  const out: Sample[] = [];
  for (const line of page.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function sum(samples: readonly Sample[], name: string, match: Record<string, string>): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

async function pages(): Promise<string[]> {
  return Promise.all(NODES.map(async (n) => (await httpGet(`http://${n}/metrics`)).body));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function traffic(ok: number, notFound: number): Promise<void> {
  for (let i = 0; i < ok; i++) {
    const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
    assert.equal(r.status, 200, r.body);
  }
  for (let i = 0; i < notFound; i++) {
    const r = await httpGet('http://127.0.0.1:8000/call', { host: 'nowhere.localhost' });
    assert.equal(r.status, 404, r.body);
  }
}

async function promQuery(base: string, q: string): Promise<{ value: [number, string] }[]> {
  const r = await httpGet(`${base}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = JSON.parse(r.body) as { status: string; data: { result: { value: [number, string] }[] } };
  assert.equal(body.status, 'success', r.body);
  return body.data.result;
}

test(
  'node proxies serve Istio golden-signal metrics that promtool and Prometheus accept',
  { timeout: 90_000 },
  async (t) => {
    const promtool = existsSync('/usr/bin/promtool');
    const prometheus = existsSync('/usr/bin/prometheus');
    let mesh: MeshUp | undefined;
    let prom: ReturnType<typeof spawn> | undefined;
    const promDir = mkdtempSync(join(tmpdir(), 'trellis-prom-'));
    try {
      mesh = await meshUp();
      let promBase = '';
      if (prometheus) {
        const port = await freePort();
        promBase = `http://127.0.0.1:${port}`;
        writeFileSync(
          join(promDir, 'prometheus.yml'),
          `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: trellis-nodes\n    static_configs:\n      - targets: [${NODES.map((n) => `'${n}'`).join(', ')}]\n`,
        );
        prom = spawn(
          '/usr/bin/prometheus',
          [
            `--config.file=${join(promDir, 'prometheus.yml')}`,
            `--storage.tsdb.path=${join(promDir, 'data')}`,
            `--web.listen-address=127.0.0.1:${port}`,
          ],
          { stdio: 'ignore' },
        );
      }

      // Half the mix, a scrape, the other half: Prometheus sees the counters increase.
      await traffic(N / 2, M / 2);
      if (prom) {
        let up = 0;
        await waitFor(() => {
          void promQuery(promBase, 'sum(up)')
            .then((r) => (up = Number(r[0]?.value[1] ?? 0)))
            .catch(() => undefined);
          return up === 2;
        }, 20_000);
        await new Promise((r) => setTimeout(r, 2_500));
      }
      await traffic(N / 2, M / 2);

      const [a, b] = await pages();
      const all = [...parse(a!), ...parse(b!)];
      // The waypoint (node-a) reports the frontend's calls to api, addressed to the api service.
      const waypoint = {
        reporter: 'waypoint',
        source_workload: 'frontend',
        source_workload_namespace: 'shop',
        source_principal: ID('frontend'),
        destination_service: 'api.shop.svc.cluster.local',
        destination_service_name: 'api',
        destination_service_namespace: 'shop',
        request_protocol: 'http',
        response_code: '200',
        grpc_response_status: 'unknown',
        response_flags: '-',
        connection_security_policy: 'mutual_tls',
      };
      assert.equal(sum(parse(a!), 'istio_requests_total', waypoint), N, a);
      assert.equal(sum(all, 'istio_request_duration_milliseconds_count', waypoint), N);
      assert.equal(sum(all, 'istio_request_duration_milliseconds_bucket', { ...waypoint, le: '+Inf' }), N);
      // The canary split: each destination series names a workload of api, with its identity.
      const dests = all.filter((s) => s.name === 'istio_requests_total' && s.labels.reporter === 'waypoint');
      for (const s of dests) {
        assert.ok(['api-v1', 'api-v2'].includes(s.labels.destination_workload!), JSON.stringify(s.labels));
        assert.equal(s.labels.destination_workload_namespace, 'shop');
        assert.match(s.labels.destination_principal!, /^spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api/);
      }
      // The gateway reports as a source proxy, labelled with its own identity (as Istio's gateways):
      // N to the frontend, M answered 404 with no route.
      const gateway = {
        reporter: 'source',
        source_workload: 'shop-gateway-trellis',
        source_principal: ID('shop-gateway-trellis'),
        connection_security_policy: 'unknown',
      };
      assert.equal(
        sum(all, 'istio_requests_total', {
          ...gateway,
          destination_service: 'frontend.shop.svc.cluster.local',
          destination_workload: 'frontend',
          response_code: '200',
        }),
        N,
      );
      assert.equal(
        sum(all, 'istio_requests_total', {
          ...gateway,
          destination_service: 'unknown',
          response_code: '404',
          response_flags: 'NR',
        }),
        M,
      );
      assert.equal(sum(all, 'istio_requests_total', { response_code: '404' }), M);
      // L4: the tunnels carry workload namespaces and the security policy.
      assert.ok(
        sum(all, 'istio_tcp_connections_opened_total', {
          reporter: 'destination',
          source_workload_namespace: 'shop',
          connection_security_policy: 'mutual_tls',
        }) > 0,
      );
      for (const page of [a!, b!]) assert.ok(!/\d+\.\d+\.\d+\.\d+:\d+"/.test(page), 'an address in a label value');
      // node-a runs the gateway and the waypoint; node-b only L4.
      assert.ok(a!.includes('# TYPE istio_request_duration_milliseconds histogram\n'), a);

      if (!promtool) t.diagnostic('skipped promtool: /usr/bin/promtool is not installed');
      else
        for (const page of [a!, b!]) {
          const p = spawnSync('/usr/bin/promtool', ['check', 'metrics'], {
            input: page,
            encoding: 'utf8',
            timeout: 10_000,
          });
          // The one lint left is Istio's own metric name (dashboards query it), not a format problem.
          const problems = `${p.stdout}${p.stderr}`
            .split('\n')
            .filter((l) => l.trim() && !l.startsWith('istio_request_duration_milliseconds use base unit "seconds"'));
          assert.deepEqual(problems, [], page);
          assert.ok(
            p.status === 0 || (p.status === 3 && page.includes('istio_request_duration_milliseconds')),
            String(p.status),
          );
        }

      if (!prom) t.diagnostic('skipped Prometheus: /usr/bin/prometheus is not installed');
      else {
        await new Promise((r) => setTimeout(r, 2_500));
        const errors = await promQuery(
          promBase,
          'sum(rate(istio_requests_total{response_code=~"4..|5.."}[30s])) / sum(rate(istio_requests_total[30s]))',
        );
        const ratio = Number(errors[0]?.value[1]);
        // Second half: M/2 errors among N/2 gateway + N/2 waypoint successes and M/2 errors.
        const expected = M / 2 / (N + M / 2);
        assert.ok(ratio > 0 && Math.abs(ratio - expected) < 0.15, `error rate ${ratio}, expected about ${expected}`);
        const series = await promQuery(promBase, 'count(istio_requests_total{reporter="waypoint"})');
        assert.ok(Number(series[0]?.value[1]) >= 1);
      }
    } finally {
      if (prom?.pid !== undefined && prom.exitCode === null) {
        const exited = new Promise((r) => prom!.once('exit', r));
        process.kill(prom.pid, 'SIGTERM');
        const timer = setTimeout(() => prom?.pid !== undefined && process.kill(prom.pid, 'SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(promDir, { recursive: true, force: true });
      await mesh?.stop();
    }
  },
);
