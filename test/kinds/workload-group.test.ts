// WorkloadGroup: the kind's rules with field paths, and the probe defaults the model applies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkResource } from '../../src/config/kinds/check-resource.js';
import { workloadGroupKind } from '../../src/config/kinds/istio/workload-group.js';
import { kindByName } from '../../src/config/kinds/registry.js';
import { formatPath } from '../../src/config/schema/schema.js';
import { loadDocuments } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';

const doc = (spec: unknown, apiVersion = 'networking.istio.io/v1') => ({
  apiVersion,
  kind: 'WorkloadGroup',
  metadata: { name: 'g', namespace: 'default' },
  spec,
});
const issues = (spec: unknown) =>
  checkResource(workloadGroupKind, doc(spec)).issues.map((i) => `${formatPath(i.path)}: ${i.message}`);

test('WorkloadGroup is registered at v1, v1beta1 and v1alpha3', () => {
  assert.deepEqual(kindByName('WorkloadGroup')?.versions, ['v1', 'v1beta1', 'v1alpha3']);
  for (const v of ['v1', 'v1beta1', 'v1alpha3']) {
    const r = checkResource(workloadGroupKind, doc({ template: {} }, `networking.istio.io/${v}`));
    assert.deepEqual(r.issues, [], v);
  }
});

test('WorkloadGroup problems are reported at their field paths', () => {
  const one = (spec: unknown, path: string, re: RegExp) => {
    const got = issues(spec);
    assert.ok(
      got.some((g) => g.startsWith(`${path}: `) && re.test(g)),
      `${path} ${re}: got ${JSON.stringify(got)}`,
    );
  };
  one({ probe: { tcpSocket: { port: 1 } } }, 'spec.template', /required/);
  one({ template: {}, probe: { httpGet: { port: 0 } } }, 'spec.probe.httpGet.port', /out of range/);
  one({ template: {}, probe: { httpGet: { port: 80, scheme: 'ftp' } } }, 'spec.probe.httpGet.scheme', /HTTPS/);
  one({ template: {}, probe: { tcpSocket: { port: 80 }, exec: { command: ['x'] } } }, 'spec.probe.exec', /together/);
  one({ template: {}, probe: { timeoutSeconds: 1 } }, 'spec.probe', /one of httpGet, tcpSocket, exec is required/);
  one(
    { template: {}, probe: { failureThreshold: -2, tcpSocket: { port: 80 } } },
    'spec.probe.failureThreshold',
    /range/,
  );
  one(
    { template: {}, probe: { httpGet: { port: 80, httpHeaders: [{ name: 'a b' }] } } },
    'spec.probe.httpGet.httpHeaders[0].name',
    /not a valid header name/,
  );
  one({ template: {}, probe: { httpget: { port: 80 } } }, 'spec.probe.httpget', /did you mean "httpGet"/);
  one(
    { template: {}, metadata: { labels: { 'bad key!': 'x' } } },
    'spec.metadata.labels["bad key!"]',
    /invalid label key/,
  );
});

function model(yaml: string) {
  const parsed = parseYamlFile('m.yaml', yaml);
  assert.deepEqual(parsed.problems, []);
  const loaded = loadDocuments(parsed.documents);
  assert.deepEqual(
    loaded.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  return compileModel(loaded.resources);
}

const entries = `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: a, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: web, tier: vm }, ports: { http: 9001 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: b, namespace: demo, annotations: { istio.io/autoRegistrationGroup: web-vms } }
spec: { address: 127.0.0.1, labels: { app: web }, ports: { http: 9002 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: c, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: web }, ports: { http: 9003 } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: d, namespace: other }
spec: { address: 127.0.0.1, labels: { app: web, tier: vm }, ports: { http: 9004 } }
`;

test('model: entries join a group by its labels (same namespace) or the auto-registration annotation; defaults applied', () => {
  const m = model(`${entries}---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: web-vms, namespace: demo }
spec:
  metadata: { labels: { tier: vm } }
  template: { serviceAccount: web }
  probe: { httpGet: { port: 9001 } }
`);
  const probeOf = (id: string) => m.workloads.find((w) => w.id === id)?.probe;
  assert.deepEqual(probeOf('WorkloadEntry/demo/a'), {
    group: 'WorkloadGroup/demo/web-vms',
    initialDelaySeconds: 0,
    timeoutSeconds: 1,
    periodSeconds: 10,
    successThreshold: 1,
    failureThreshold: 3,
    http: { path: '/', port: 9001, scheme: 'HTTP', headers: [] },
  });
  assert.equal(probeOf('WorkloadEntry/demo/b')?.group, 'WorkloadGroup/demo/web-vms', 'annotated entry');
  assert.equal(probeOf('WorkloadEntry/demo/c'), undefined, 'labels do not match');
  assert.equal(probeOf('WorkloadEntry/other/d'), undefined, 'other namespace');
});

test('model: exec and HTTPS probes are reported (TRL0011) and not health-checked', () => {
  const m = model(`${entries}---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: web-vms, namespace: demo }
spec:
  metadata: { labels: { tier: vm } }
  template: {}
  probe: { exec: { command: [cat, /tmp/ready] } }
`);
  const msg = m.analysis.find((a) => a.code === 'TRL0011');
  assert.equal(msg?.field, 'spec.probe.exec');
  assert.equal(msg?.level, 'Warning');
  assert.equal(msg?.resource.name, 'web-vms');
});
