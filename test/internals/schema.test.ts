import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkResource } from '../../src/config/kinds/check-resource.js';
import { serviceKind } from '../../src/config/kinds/kubernetes/service.js';
import { formatPath } from '../../src/config/schema/schema.js';

test('a valid Service gets upstream defaults', () => {
  const r = checkResource(serviceKind, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'api', namespace: 'prod' },
    spec: { selector: { app: 'api' }, ports: [{ name: 'http', port: 8080 }] },
  });
  assert.deepEqual(r.issues, []);
  assert.equal(r.value?.body.spec.type, 'ClusterIP');
  assert.equal(r.value?.body.spec.ports?.[0]?.protocol, 'TCP');
  assert.equal(r.value?.body.spec.ports?.[0]?.targetPort, 8080);
});

test('unknown fields get a did-you-mean, including one level down', () => {
  const r = checkResource(serviceKind, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: null,
    name: 'api',
    spec: { selecter: { app: 'api' }, ports: [{ port: 70000 }] },
  });
  const byPath = new Map(r.issues.map((i) => [formatPath(i.path), i]));
  assert.match(byPath.get('name')!.message, /did you mean "metadata.name"/);
  assert.match(byPath.get('spec.selecter')!.message, /did you mean "selector"/);
  assert.equal(byPath.get('metadata')!.code, 'required');
  assert.equal(byPath.get('spec.ports[0].port')!.expected, 'a port number 1-65535');
});
