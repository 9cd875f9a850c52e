// What `trellis up --netns` will build (pure): names, node links, pod CIDRs, Service VIPs; the
// runtime addresses laid over the resources; the Mesh network settings' validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadDocuments, loadPaths } from '../../src/config/load.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';

/** Loads without failing the test: some of these documents are meant to be rejected. */
const loadYaml = (file: string, yaml: string) => loadDocuments(parseYamlFile(file, yaml).documents);
import { withRuntimeAddresses } from '../../src/config/runtime-addresses.js';
import { compileModel } from '../../src/model/compile.js';
import { planNetns, runIdFor } from '../../src/datapath/linux/netns/plan.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const resources = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources;

test('the plan for examples/shop: two nodes on the bridge, a /24 each, a pod per workload, VIPs in order', () => {
  const id = runIdFor('/state');
  assert.match(id, /^[0-9a-f]{6}$/);
  const plan = planNetns(compileModel(resources), id);
  assert.deepEqual(plan.bridge, { name: `trl${id}br`, address: '10.250.0.1', prefix: 24 });
  assert.deepEqual(
    plan.nodes.map((n) => [n.name, n.netns, n.hostVeth, n.underlayIp, n.podCidr]),
    [
      ['node-a', `trl-${id}-node-a`, `trl${id}n0`, '10.250.0.2', '10.244.0.0/24'],
      ['node-b', `trl-${id}-node-b`, `trl${id}n1`, '10.250.0.3', '10.244.1.0/24'],
    ],
  );
  for (const n of plan.nodes) assert.ok(n.hostVeth.length <= 15, n.hostVeth);
  assert.deepEqual(plan.pods.map((p) => `${p.key}@${p.node}`).sort(), [
    'shop/api-v1@node-a',
    'shop/api-v2@node-b',
    'shop/frontend@node-a',
    'shop/orders@node-b',
  ]);
  // The first service address is the cluster's own (kubernetes.default), as the API server keeps it.
  assert.equal([...plan.serviceVips.values()][0], '10.96.0.2');
  assert.equal(new Set(plan.serviceVips.values()).size, plan.serviceVips.size);
});

test('runtime addresses replace node, pod and VIP addresses, but never a clusterIP the user wrote', () => {
  const withVip = [
    ...resources,
    ...loadYaml(
      'fixed.yaml',
      'apiVersion: v1\nkind: Service\nmetadata: {name: fixed, namespace: shop}\nspec: {clusterIP: 10.96.9.9, ports: [{port: 80}]}\n',
    ).resources,
  ];
  const out = withRuntimeAddresses(withVip, {
    nodes: { 'node-a': '10.250.0.2' },
    workloads: { 'shop/frontend': '10.244.0.3' },
    services: { 'shop/api': '10.96.0.2', 'shop/fixed': '10.96.0.99' },
  });
  const model = compileModel(out);
  assert.equal(model.nodes.find((n) => n.name === 'node-a')!.address, '10.250.0.2');
  assert.equal(model.workloads.find((w) => w.name === 'frontend')!.address, '10.244.0.3');
  assert.deepEqual(model.services.find((s) => s.name === 'api')!.addresses, ['10.96.0.2']);
  assert.deepEqual(model.services.find((s) => s.name === 'fixed')!.addresses, ['10.96.9.9']);
  const input = resources.find((r) => r.kind === 'WorkloadEntry' && r.name === 'frontend');
  assert.equal(input?.kind === 'WorkloadEntry' ? input.spec.address : undefined, '127.0.0.1', 'input untouched');
});

test('Mesh spec.network: defaults, and overlapping or impossible ranges named by field', () => {
  const mesh = (network: string) =>
    loadYaml(
      'mesh.yaml',
      `apiVersion: trellis.dev/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec:\n  network: ${network}\n`,
    );
  const ok = mesh('{}');
  assert.deepEqual(ok.diagnostics, []);
  const messages = (network: string) =>
    mesh(network)
      .diagnostics.map((d) => d.message)
      .join('\n');
  assert.match(
    messages('{clusterCIDR: 10.0.0.0/8, nodeCIDRMaskSize: 8}'),
    /\/8 is not longer than clusterCIDR 10\.0\.0\.0\/8/,
  );
  assert.match(messages('{underlayCIDR: "fd00::/64"}'), /IPv6 pod networking is not supported yet/);
  const overlap = mesh('{clusterCIDR: 10.0.0.0/8, serviceCIDR: 10.96.0.0/16}');
  assert.match(
    overlap.diagnostics.map((d) => d.message).join('\n'),
    /10\.96\.0\.0\/16 overlaps clusterCIDR 10\.0\.0\.0\/8/,
  );
});
