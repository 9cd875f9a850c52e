// WorkloadGroup readiness probes, end to end through the L7 engine over real sockets: resources
// (WorkloadGroup + WorkloadEntries + Service) -> model -> xDS (decoded through the Envoy protos)
// -> engine, with real upstreams on 127.0.0.1. Each "VM" (a WorkloadEntry) serves on its own port
// and answers its readiness probe on the group's probe port, which is the same number on every VM:
// on one loopback address, the test's connector sends a connection for (VM, probe port) to that
// VM's probe server, and any other to the port asked for. A host whose probe fails gets no
// traffic; once its probe passes it gets traffic back; a host outside the group is not checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { EnvoyObject } from '../../../src/proxy/l7/config.js';
import { loadDocuments } from '../../../src/config/load.js';
import { parseYamlFile } from '../../../src/config/source/yaml-documents.js';
import { compileModel } from '../../../src/model/compile.js';
import { TYPE_URLS } from '../../../src/xds/snapshot.js';
import { proxylessSnapshot } from '../../../src/xds/translate/proxyless.js';
import { decodedAsClient } from '../../helpers/envoy-protos.js';
import type { UpstreamConnector } from '../../../src/proxy/l7/upstream.js';
import { closable, get, startEngine } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HOST = 'web.demo.svc.cluster.local:8080';

/** Polls `cond` every 20 ms for at most `ms`; fails the test when it never holds. */
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The probe port every VM of the group answers its readiness probe on (Istio's example: 3100). */
const PROBE_PORT = 3100;

interface Vm {
  readonly name: string;
  /** Serving port. */
  port: number;
  /** The port its readiness server really listens on (reached as PROBE_PORT). */
  probePort: number;
  /** Status of GET /ready on the probe port. */
  ready: number;
  served: number;
  probes: number;
  lastProbe: http.IncomingHttpHeaders | undefined;
  close(): Promise<void>;
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** A VM: its service on one port (GET /ready there is a 404), its readiness probe on another. */
async function vm(name: string, ready: number): Promise<Vm> {
  const v: Vm = {
    name,
    port: 0,
    probePort: 0,
    ready,
    served: 0,
    probes: 0,
    lastProbe: undefined,
    close: async () => {},
  };
  const app = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/ready') return void res.writeHead(404).end();
    v.served++;
    res.writeHead(200, { 'x-backend': name }).end(name);
  });
  const probe = http.createServer((req, res) => {
    req.resume();
    if (req.url !== '/ready') return void res.writeHead(404).end();
    v.probes++;
    v.lastProbe = req.headers;
    res.writeHead(v.ready).end();
  });
  v.port = await listen(app);
  v.probePort = await listen(probe);
  const closeApp = closable(app);
  const closeProbe = closable(probe);
  v.close = async () => {
    await closeApp();
    await closeProbe();
  };
  return v;
}

/** Plain TCP to 127.0.0.1; (a VM's serving port, PROBE_PORT) goes to that VM's probe server. */
function connectorFor(vms: readonly Vm[]): UpstreamConnector {
  return (t) => {
    const sa = (t.endpoint.endpoint as EnvoyObject).address as { socket_address: { port_value: number } };
    const serving = Number(sa.socket_address.port_value);
    const target = t.port === PROBE_PORT ? vms.find((v) => v.port === serving)?.probePort : t.port;
    const s = net.connect({ host: '127.0.0.1', port: target ?? 9 });
    s.setNoDelay(true);
    return s;
  };
}

const decoded = (body: Readonly<Record<string, unknown>>): EnvoyObject => decodedAsClient(body) as EnvoyObject;

/** The engine's config, from the resources through the translation and the Envoy protos. */
function l7From(yaml: string) {
  const parsed = parseYamlFile('mesh.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  const snap = proxylessSnapshot(compileModel(loaded.resources));
  const map = (t: string) => new Map([...snap.resources(t)].map(([name, r]) => [name, decoded(r.body)]));
  return { routes: map(TYPE_URLS.route), clusters: map(TYPE_URLS.cluster), endpoints: map(TYPE_URLS.endpoint) };
}

const entry = (name: string, port: number, labels: string) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { ${labels} }, ports: { http: ${port} } }
`;

/** Sends n requests; counts answers by x-backend (or status). */
async function spread(port: number, n: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await get(port, '/', { headers: { host: HOST } });
    const who = r.status === 200 ? String(r.headers['x-backend']) : `status ${r.status}`;
    out.set(who, (out.get(who) ?? 0) + 1);
  }
  return out;
}

test('WorkloadGroup probe through the engine: a failing VM gets no traffic, and gets it back once its probe passes', async () => {
  const a = await vm('a', 200);
  const b = await vm('b', 500);
  // Outside the group: its probe server would fail, but it is never checked.
  const other = await vm('other', 500);
  const fleet = [a, b, other];
  const l7 = l7From(`apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: web-vms, namespace: demo }
spec:
  metadata: { labels: { app: web, tier: vm } }
  template: {}
  probe:
    periodSeconds: 1
    httpGet: { path: /ready, port: ${PROBE_PORT}, httpHeaders: [{ name: X-Probe, value: trellis }] }
${entry('a', a.port, 'app: web, tier: vm')}${entry('b', b.port, 'app: web, tier: vm')}${entry('other', other.port, 'app: web')}---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 8080, targetPort: http }]
`);
  const proxy = await startEngine(l7, HOST, { connector: connectorFor(fleet) });
  try {
    assert.ok(proxy.engine.clusters.get('outbound|8080||web.demo.svc.cluster.local')?.healthChecker);
    await until(() => a.probes > 0 && b.probes > 0, 3000, 'the first probes of a and b');
    await until(async () => (await spread(proxy.port, 6)).get('a') !== undefined, 3000, 'a to be ready');
    assert.equal(other.probes, 0, 'a host outside the group is not probed');
    assert.equal(a.lastProbe?.['x-probe'], 'trellis', 'httpHeaders go with the probe');
    const before = await spread(proxy.port, 40);
    assert.equal(before.get('b'), undefined, `b (probe 500) gets no traffic: ${JSON.stringify([...before])}`);
    assert.ok((before.get('a') ?? 0) >= 15 && (before.get('other') ?? 0) >= 15, JSON.stringify([...before]));

    // b becomes ready: its next probe (period 1 s) passes and it gets traffic again.
    const flippedAt = Date.now();
    b.ready = 200;
    await until(async () => (await spread(proxy.port, 3)).has('b'), 4000, 'b to get traffic after its probe passes');
    const recovery = Date.now() - flippedAt;
    const after = await spread(proxy.port, 30);
    assert.ok((after.get('b') ?? 0) >= 6, JSON.stringify([...after]));

    // Not ready again: an HTTP status outside [200, 400) fails the host at its next probe.
    b.ready = 503;
    const seen = b.probes;
    await until(() => b.probes > seen, 3000, 'the next probe of b');
    await sleep(30);
    const again = await spread(proxy.port, 20);
    assert.equal(again.get('b'), undefined, JSON.stringify([...again]));
    console.log(`# b got traffic ${recovery} ms after its probe turned 200 (period 1 s)`);
  } finally {
    await proxy.close();
    for (const v of fleet) await v.close();
  }
});

test('a changed health_check_config.port_value restarts the checks on the new port; disabled hosts are never failed', async () => {
  const app = await vm('app', 200);
  const asked: number[] = [];
  const connector: UpstreamConnector = (t) => {
    if (t.port !== app.port) asked.push(t.port);
    // Every probe port reaches the app's probe server (answers app.ready).
    const s = net.connect({ host: '127.0.0.1', port: t.port === app.port ? app.port : app.probePort });
    s.setNoDelay(true);
    return s;
  };
  const name = 'outbound|8080||web.demo.svc.cluster.local';
  const config = (hc: EnvoyObject) => ({
    routes: new Map([
      [
        HOST,
        {
          name: HOST,
          virtual_hosts: [
            { name: 'web', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: name } }] },
          ],
        },
      ],
    ]),
    clusters: new Map([
      [
        name,
        {
          name,
          type: 'EDS',
          eds_cluster_config: { service_name: name },
          lb_policy: 'ROUND_ROBIN',
          common_lb_config: { healthy_panic_threshold: { value: 0 } },
          health_checks: [
            {
              timeout: '1s',
              interval: '0.2s',
              unhealthy_threshold: 1,
              healthy_threshold: 1,
              http_health_check: { path: '/ready' },
            },
          ],
        } as EnvoyObject,
      ],
    ]),
    endpoints: new Map([
      [
        name,
        {
          cluster_name: name,
          endpoints: [
            {
              lb_endpoints: [
                {
                  endpoint: {
                    address: { socket_address: { address: '127.0.0.1', port_value: app.port } },
                    health_check_config: hc,
                  },
                },
              ],
            },
          ],
        } as EnvoyObject,
      ],
    ]),
  });
  const proxy = await startEngine(config({ port_value: 3100 }), HOST, { connector });
  try {
    await until(() => asked.includes(3100), 3000, 'a probe on port 3100');
    await until(async () => (await get(proxy.port, '/', { headers: { host: HOST } })).status === 200, 3000, 'ready');
    proxy.engine.update(config({ port_value: 3101 }));
    await until(() => asked.includes(3101), 3000, 'a probe on port 3101 after the update');
    // Disabled: no probes at all, and the host serves even though its probe server says 500.
    app.ready = 500;
    proxy.engine.update(config({ disable_active_health_check: true }));
    await sleep(100);
    const n = asked.length;
    await sleep(500);
    assert.equal(asked.length, n, 'no probes for a host with disable_active_health_check');
    assert.equal((await get(proxy.port, '/', { headers: { host: HOST } })).status, 200);
  } finally {
    await proxy.close();
    await app.close();
  }
});
