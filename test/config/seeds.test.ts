// The complete resource examples of the domain documents load; the ones Trellis does not
// read, and the ones whose indentation was lost, are rejected with a precise reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const SEEDS = join(REPO_ROOT, 'test/fixtures/seeds');

test('every complete seed example of a supported kind loads', () => {
  const r = loadPaths([join(SEEDS, 'complete')]);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  assert.deepEqual(r.resources.map((x) => `${x.apiVersion} ${x.kind}/${x.name}`).sort(), [
    'cilium.io/v2 CiliumNetworkPolicy/allow-api-from-frontend',
    'gateway.networking.k8s.io/v1 HTTPRoute/api-route',
    'networking.istio.io/v1 VirtualService/payment',
    'networking.istio.io/v1beta1 DestinationRule/api-service',
    'networking.istio.io/v1beta1 VirtualService/api-service',
    'networking.k8s.io/v1 NetworkPolicy/allow-frontend-to-api',
    'security.istio.io/v1 AuthorizationPolicy/api-allow-frontend',
    'security.istio.io/v1 AuthorizationPolicy/backend-policy',
  ]);
});

test('seed examples of kinds Trellis does not read say what to use instead', () => {
  const r = loadPaths([join(SEEDS, 'unsupported')]);
  const errs = r.diagnostics.filter((d) => d.severity === 'error');
  assert.equal(errs.length, 4);
  assert.ok(errs.every((e) => e.code === 'TRELLIS_ERR_UNKNOWN_KIND'));
  assert.match(errs.find((e) => e.message.includes('BGPPeer'))!.message, /use networking\.k8s\.io\/v1 NetworkPolicy/);
  assert.match(errs.find((e) => e.message.includes('Gateway'))!.message, /gateway\.networking\.k8s\.io\/v1/);
});

test('a seed example whose indentation was lost gets hints pointing at the indentation', () => {
  const r = loadPaths([join(SEEDS, 'as-extracted')]);
  const byField = new Map(r.diagnostics.map((d) => [d.field, d]));
  assert.match(byField.get('name')!.message, /did you mean "metadata\.name"\? check the indentation under "metadata:"/);
  assert.match(byField.get('endpointSelector')!.message, /did you mean "spec\.endpointSelector"/);
  assert.equal(byField.get('metadata')!.code, 'TRELLIS_ERR_MISSING_FIELD');
});
