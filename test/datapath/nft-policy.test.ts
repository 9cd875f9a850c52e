// The policy compiler without a kernel: ipcache fragmentation and identity numbering, the policy
// maps the engine's decisions give for known policies, a deterministic script, and (as root) nft
// itself accepting the script (`nft -c`) inside a scratch network namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import type { MeshModel } from '../../src/model/mesh-model.js';
import {
  buildIpcache,
  fragment,
  FIRST_CIDR_IDENTITY,
  FIRST_WORKLOAD_IDENTITY,
  identityOf,
  ipv4ToNumber,
  numberToIpv4,
  WORLD_IDENTITY,
} from '../../src/datapath/linux/policy/ipcache.js';
import { compileNodePolicy, modelIpcache, portPieces } from '../../src/datapath/linux/policy/policy-map.js';
import { renderPolicyScript } from '../../src/datapath/linux/policy/nft-policy.js';
import { datapathSkipReason } from '../helpers/cni.js';
import { modelFromYaml } from '../helpers/yaml.js';

const model = (yaml: string): MeshModel => modelFromYaml(yaml);

const entry = (ns: string, name: string, ip: string, sa: string, app: string, ports: Record<string, number>) => `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: ${ns} }
spec: { address: ${ip}, serviceAccount: ${sa}, labels: { app: ${app} }, ports: ${JSON.stringify(ports)} }
---`;

const YAML = `
apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec: { trustDomain: cluster.local }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { team: shop } }
---
${entry('shop', 'web', '10.1.0.2', 'web', 'web', { http: 80 })}
${entry('shop', 'api', '10.1.0.3', 'api', 'api', { http: 80 })}
${entry('shop', 'db', '10.1.0.4', 'db', 'db', { pg: 5432, r1: 7000, r2: 7001 })}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ podSelector: { matchLabels: { app: api } } }]
      ports: [{ port: 5432 }, { port: 7000, endPort: 7001 }]
    - from: [{ ipBlock: { cidr: 192.168.0.0/16, except: [192.168.1.0/24] } }]
      ports: [{ port: 5432 }]
`;

test('fragmentation: disjoint intervals, the most specific prefix wins, neighbours merged', () => {
  const n = (ip: string) => ipv4ToNumber(ip)!;
  const pieces = fragment([
    { start: 0, end: 0xffffffff, rank: 0, key: 'world' },
    { start: n('10.0.0.0'), end: n('10.255.255.255'), rank: 9, key: 'a' },
    { start: n('10.1.0.0'), end: n('10.1.255.255'), rank: 17, key: 'b' },
    { start: n('10.1.0.5'), end: n('10.1.0.5'), rank: 100, key: 'pod' },
    { start: n('10.1.0.5'), end: n('10.1.0.5'), rank: 33, key: 'cidr32' },
  ]).map((p) => `${numberToIpv4(p.start)}-${numberToIpv4(p.end)} ${p.key}`);
  assert.deepEqual(pieces, [
    '0.0.0.0-9.255.255.255 world',
    '10.0.0.0-10.0.255.255 a',
    '10.1.0.0-10.1.0.4 b',
    '10.1.0.5-10.1.0.5 pod',
    '10.1.0.6-10.1.255.255 b',
    '10.2.0.0-10.255.255.255 a',
    '11.0.0.0-255.255.255.255 world',
  ]);
});

test('identities: numbered by sorted key whatever the order; CIDRs masked; lookups by address', () => {
  const m = model(YAML);
  const a = buildIpcache(m.workloads, ['192.168.1.0/24', '192.168.7.7/16', '0.0.0.0/0']);
  const b = buildIpcache([...m.workloads].reverse(), ['192.168.0.0/16', '192.168.1.0/24']);
  assert.deepEqual(a.identities, b.identities);
  assert.deepEqual(
    a.identities.map((i) => [i.id, i.name]),
    [
      [WORLD_IDENTITY, 'world'],
      [FIRST_WORKLOAD_IDENTITY, 'spiffe://cluster.local/ns/shop/sa/api'],
      [FIRST_WORKLOAD_IDENTITY + 1, 'spiffe://cluster.local/ns/shop/sa/db'],
      [FIRST_WORKLOAD_IDENTITY + 2, 'spiffe://cluster.local/ns/shop/sa/web'],
      [FIRST_CIDR_IDENTITY, 'cidr:192.168.0.0/16'],
      [FIRST_CIDR_IDENTITY + 1, 'cidr:192.168.1.0/24'],
    ],
  );
  assert.equal(identityOf(a, '192.168.1.9')?.name, 'cidr:192.168.1.0/24');
  assert.equal(identityOf(a, '192.168.2.9')?.name, 'cidr:192.168.0.0/16');
  assert.equal(identityOf(a, '10.1.0.4')?.workloads[0], 'WorkloadEntry/shop/db');
  assert.equal(identityOf(a, '8.8.8.8')?.id, WORLD_IDENTITY);
  // Fragments cover the whole space without overlap.
  let next = 0;
  for (const f of a.fragments) {
    assert.equal(f.start, next);
    next = f.end + 1;
  }
  assert.equal(next, 2 ** 32);
});

test('a pod inside a policy CIDR gets an identity of its own, so ipBlock stays exact', () => {
  const m = model(YAML);
  const c = buildIpcache(m.workloads, ['10.1.0.0/24', '10.1.0.3/32']);
  const web = identityOf(c, '10.1.0.2')!;
  const api = identityOf(c, '10.1.0.3')!;
  assert.equal(web.principal, 'spiffe://cluster.local/ns/shop/sa/web');
  assert.notEqual(web.id, api.id);
  assert.deepEqual(api.samples, ['10.1.0.3']);
});

test('port pieces follow the ports and ranges the filters name', () => {
  const f = [{ a: { destination_port: 80 }, b: { destination_port_range: { start: 7000, end: 7002 } } }];
  assert.deepEqual(portPieces(f), [
    [0, 79],
    [80, 80],
    [81, 6999],
    [7000, 7001],
    [7002, 65535],
  ]);
});

test('policy maps: only api on 5432 and 7000-7001, the ipBlock minus its except on 5432; web untouched', () => {
  const m = model(YAML);
  const p = compileNodePolicy(m, m.workloads);
  assert.deepEqual(p.problems, []);
  assert.deepEqual(
    p.ingress.map((w) => w.workload.id),
    ['WorkloadEntry/shop/db'],
  );
  assert.deepEqual(p.egress, []);
  const name = (id: number) => p.ipcache.identities.find((i) => i.id === id)!.name;
  assert.deepEqual(
    p.ingress[0]!.allow.map((e) => `${name(e.identity)} ${e.proto} ${e.from}-${e.to}`),
    [
      'spiffe://cluster.local/ns/shop/sa/api tcp 5432-5432',
      'spiffe://cluster.local/ns/shop/sa/api tcp 7000-7001',
      'cidr:192.168.0.0/16 tcp 5432-5432',
    ],
  );
  assert.deepEqual(p.ingress[0]!.policies, ['NetworkPolicy/shop/db']);
  assert.equal(modelIpcache(m).identities.length, 6);
});

test(
  'the script is deterministic, replaces everything but the drop sets, and nft accepts it',
  { skip: datapathSkipReason() },
  () => {
    const m = model(YAML);
    const script = renderPolicyScript(compileNodePolicy(m, m.workloads));
    const again = renderPolicyScript(compileNodePolicy(model(YAML), [...m.workloads].reverse()));
    assert.equal(script, again);
    assert.match(script, /10\.1\.0\.4 \. 256 \. tcp \. 5432,/);
    assert.match(script, /10\.1\.0\.4 \. 256 \. tcp \. 7000-7001/);
    assert.match(script, /^add set inet trellis-policy ingress_drops .*counter; }$/m);
    assert.doesNotMatch(script, /delete set inet trellis-policy \w+_drops/);
    const ns = `trl-nftc-${process.pid}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      const check = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: script, encoding: 'utf8' });
      assert.equal(check.status, 0, check.stderr);
    } finally {
      spawnSync('ip', ['netns', 'delete', ns]);
    }
  },
);
