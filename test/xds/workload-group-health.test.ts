// WorkloadGroup readiness probes -> Envoy active health checking in the proxyless/L7 translation:
// Cluster.health_checks and per-endpoint health_check_config, round-tripped through the Envoy protos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDocuments } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import { TYPE_URLS } from '../../src/xds/snapshot.js';
import { clusterName, proxylessSnapshot } from '../../src/xds/translate/proxyless.js';
import { roundTrip } from '../helpers/envoy-protos.js';

function snapshot(yaml: string) {
  const parsed = parseYamlFile('m.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  const model = compileModel(loaded.resources);
  return { model, snap: proxylessSnapshot(model) };
}

const base = (probe: string) => `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: web-vms, namespace: demo }
spec:
  metadata: { labels: { app: web, tier: vm } }
  template: { serviceAccount: web }
  probe:
${probe}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: vm1, namespace: demo }
spec: { address: 10.0.0.1, labels: { app: web, tier: vm }, ports: { http: 8080 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: vm2, namespace: demo }
spec: { address: 10.0.0.2, labels: { app: web, tier: vm }, ports: { http: 8081 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: other, namespace: demo }
spec: { address: 10.0.0.3, labels: { app: web }, ports: { http: 8080 } }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }, { name: tcp-admin, port: 9000 }]
`;

const NAME = clusterName('web.demo.svc.cluster.local', 80);

test('an httpGet probe becomes Cluster.health_checks with Istio defaults and the probe port per endpoint', () => {
  const { model, snap } = snapshot(
    base(`    periodSeconds: 4
    failureThreshold: 2
    successThreshold: 3
    httpGet:
      path: /ready
      port: 8080
      httpHeaders: [{ name: Host, value: web.internal }, { name: X-Probe, value: trellis }]`),
  );
  assert.deepEqual(snap.consistent(), []);
  const port = model.services.find((s) => s.name === 'web')!.ports.find((p) => p.port === 80)!;
  assert.equal(port.healthCheck?.group, 'WorkloadGroup/demo/web-vms');
  const c = snap.resources(TYPE_URLS.cluster).get(NAME)!.body;
  roundTrip(c); // every field survives the Envoy protos
  assert.deepEqual(c.health_checks, [
    {
      timeout: { seconds: 1, nanos: 0 },
      interval: { seconds: 4, nanos: 0 },
      no_traffic_interval: { seconds: 4, nanos: 0 },
      unhealthy_threshold: { value: 2 },
      healthy_threshold: { value: 3 },
      http_health_check: {
        path: '/ready',
        host: 'web.internal',
        expected_statuses: [{ start: 200, end: 400 }],
        request_headers_to_add: [
          { header: { key: 'X-Probe', value: 'trellis' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
        ],
      },
    },
  ]);
  assert.deepEqual(c.common_lb_config, { healthy_panic_threshold: { value: 0 } });
  const claBody = snap.resources(TYPE_URLS.endpoint).get(NAME)!.body;
  roundTrip(claBody);
  const cla = claBody as unknown as {
    endpoints: {
      lb_endpoints: { endpoint: { address: { socket_address: { address: string } }; health_check_config?: unknown } }[];
    }[];
  };
  const hc = new Map(
    cla.endpoints
      .flatMap((g) => g.lb_endpoints)
      .map((l) => [l.endpoint.address.socket_address.address, l.endpoint.health_check_config]),
  );
  assert.equal(hc.get('10.0.0.1'), undefined, 'probe port = serving port: no override');
  assert.deepEqual(hc.get('10.0.0.2'), { port_value: 8080 }, 'serving 8081, probed on 8080');
  assert.deepEqual(hc.get('10.0.0.3'), { disable_active_health_check: true }, 'not in the group');
});

test('a tcpSocket probe becomes tcp_health_check; timing defaults are 1s / 10s / 1 / 3', () => {
  const { snap } = snapshot(base(`    tcpSocket: { port: 8080 }`));
  const c = snap.resources(TYPE_URLS.cluster).get(NAME)!.body;
  roundTrip(c);
  assert.deepEqual(c.health_checks, [
    {
      timeout: { seconds: 1, nanos: 0 },
      interval: { seconds: 10, nanos: 0 },
      no_traffic_interval: { seconds: 10, nanos: 0 },
      unhealthy_threshold: { value: 3 },
      healthy_threshold: { value: 1 },
      tcp_health_check: {},
    },
  ]);
  // Every port of the service whose endpoints are in the group is checked.
  const admin = roundTrip(snap.resources(TYPE_URLS.cluster).get(clusterName('web.demo.svc.cluster.local', 9000))!.body);
  assert.ok(Array.isArray(admin.health_checks));
});

test('exec and HTTPS probes, and services without a group, get no health_checks', () => {
  for (const probe of [`    exec: { command: [cat, /ready] }`, `    httpGet: { port: 8080, scheme: HTTPS }`]) {
    const { model, snap } = snapshot(base(probe));
    assert.equal(snap.resources(TYPE_URLS.cluster).get(NAME)!.body.health_checks, undefined, probe);
    assert.ok(
      model.analysis.some((a) => a.code === 'TRL0011'),
      probe,
    );
    const cla = JSON.stringify(snap.resources(TYPE_URLS.endpoint).get(NAME)!.body);
    assert.ok(!cla.includes('health_check_config'), probe);
  }
  const { snap } = snapshot(
    base(`    tcpSocket: { port: 8080 }`).replace('tier: vm } }\n  template', 'tier: none } }\n  template'),
  );
  assert.equal(snap.resources(TYPE_URLS.cluster).get(NAME)!.body.health_checks, undefined);
});
