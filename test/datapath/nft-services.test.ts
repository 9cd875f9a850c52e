// The service load-balancing ruleset as a pure function of the model: its contents for a
// small model, determinism, names, weights, affinity carried over, and nft's own parser
// (`nft -c`, inside a scratch network namespace) accepting it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Resource } from '../../src/config/resource.js';
import { compileModel } from '../../src/model/compile.js';
import { affinityEntriesOf } from '../../src/datapath/linux/services/affinity-carry.js';
import { affinityTimeouts } from '../../src/datapath/linux/services/affinity-timeouts.js';
import { MAX_NAME_LENGTH, serviceChainName } from '../../src/datapath/linux/services/names.js';
import { servicesScript } from '../../src/datapath/linux/services/nft-services.js';
import { planServices } from '../../src/datapath/linux/services/plan.js';
import { MAX_SLOTS, slotsFor } from '../../src/datapath/linux/services/weights.js';
import { datapathSkipReason, netns } from '../helpers/cni.js';
import { resourcesFromYaml } from '../helpers/yaml.js';

const load = (yaml: string): readonly Resource[] => resourcesFromYaml(yaml, 'services.yaml');

const entry = (name: string, address: string, labels: string, extra = '') => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: shop }
spec: { address: ${address}, labels: { ${labels} }${extra} }
`;

const YAML = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  clusterIP: 10.96.0.10
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: 8080 }, { name: dns, port: 53, protocol: UDP }]
---
apiVersion: v1
kind: Service
metadata: { name: sticky, namespace: shop }
spec:
  clusterIP: 10.96.0.11
  selector: { app: web }
  sessionAffinity: ClientIP
  sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }
  ports: [{ name: http, port: 81, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: empty, namespace: shop }
spec:
  clusterIP: 10.96.0.12
  selector: { app: nothing }
  ports: [{ name: http, port: 82 }]
---
apiVersion: v1
kind: Service
metadata: { name: headless, namespace: shop }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ name: http, port: 83 }]
${entry('w3', '10.244.1.4', 'app: web', ', ports: { http: 9090 }, weight: 2')}${entry('w1', '10.244.1.2', 'app: web')}${entry('w2', '10.244.1.3', 'app: web')}`;

test('a small model: the services map, a numgen pick per service port, DNAT per endpoint, reject, hairpin', () => {
  const resources = load(YAML);
  const script = servicesScript(compileModel(resources).services, {
    affinityTimeoutSeconds: affinityTimeouts(resources),
  });
  const lines = script.split('\n').map((l) => l.trim());
  // One transaction replacing the table.
  assert.deepEqual(lines.slice(0, 3), [
    'add table ip trellis-services',
    'delete table ip trellis-services',
    'table ip trellis-services {',
  ]);
  const web = serviceChainName('shop/web/tcp/http');
  const dns = serviceChainName('shop/web/udp/dns');
  assert.ok(lines.includes(`10.96.0.10 . tcp . 80 : goto ${web},`));
  // UDP: the kernel serves it (Istio leaves it out of WorkloadEntries) at targetPort = port.
  assert.ok(lines.includes(`10.96.0.10 . udp . 53 : goto ${dns},`));
  assert.ok(lines.includes('10.96.0.12 . tcp . 82 comment "shop/empty/tcp/http" : goto reject-chain,'));
  assert.doesNotMatch(script, /headless/, 'no VIP, nothing to balance');
  // Weights 1, 1, 2 -> four slots; endpoints in address order.
  const pick = lines.find((l) => l.startsWith('numgen') && script.indexOf(l) > script.indexOf(`chain ${web} {`))!;
  assert.match(
    pick,
    /^numgen random mod 4 vmap \{ 0 : goto endpoint-\S+, 1 : goto \S+, 2 : goto (\S+), 3 : goto \1 \}$/,
  );
  // Target ports: the model's per-endpoint port (w3 names 9090 for "http"), else targetPort.
  for (const [ip, port] of [
    ['10.244.1.2', 8080],
    ['10.244.1.3', 8080],
    ['10.244.1.4', 9090],
  ])
    assert.ok(lines.includes(`meta l4proto tcp dnat to ${ip}:${port}`), `${ip}:${port}`);
  assert.ok(lines.includes('meta l4proto udp dnat to 10.244.1.2:53'));
  assert.ok(lines.includes('ip saddr 10.244.1.2 jump mark-for-masquerade'), 'hairpin');
  assert.ok(lines.includes('masquerade fully-random'));
  assert.ok(lines.includes('type nat hook prerouting priority -100; policy accept;'));
  assert.ok(lines.includes('type nat hook output priority -100; policy accept;'));
  assert.ok(lines.includes('reject with icmp type port-unreachable'));
  // ClientIP affinity: a set per endpoint with the Service's timeout, checked before numgen.
  const sticky = serviceChainName('shop/sticky/tcp/http');
  const stickyBody = script.slice(script.indexOf(`chain ${sticky} {`));
  const checks = stickyBody.split('\n').filter((l) => /ip saddr @affinity-/.test(l));
  assert.equal(checks.length, 3);
  assert.ok(stickyBody.indexOf('ip saddr @affinity-') < stickyBody.indexOf('numgen'));
  assert.equal((script.match(/timeout 60s/g) ?? []).length, 3);
  assert.equal((script.match(/update @affinity-\S+ \{ ip saddr \}/g) ?? []).length, 3);
});

test('deterministic: the same services in any order give the same script; names are stable and bounded', () => {
  const services = compileModel(load(YAML)).services;
  const a = servicesScript(services);
  assert.equal(servicesScript([...services].reverse()), a);
  assert.equal(servicesScript(compileModel(load(YAML)).services), a);
  const long = serviceChainName(`${'n'.repeat(63)}/${'s'.repeat(63)}/tcp/${'p'.repeat(15)}`);
  assert.equal(long.length, MAX_NAME_LENGTH);
  assert.match(long, /^service-[0-9A-F]{8}-n+/);
  assert.notEqual(serviceChainName('shop/a/tcp/http'), serviceChainName('shop/b/tcp/http'));
  assert.match(serviceChainName('shop/*.example.com/tcp/http'), /^[A-Za-z][A-Za-z0-9_./-]*$/);
});

test('weights become numgen slots: reduced by their gcd, bounded', () => {
  assert.deepEqual(slotsFor([1, 1, 1]), [1, 1, 1]);
  assert.deepEqual(slotsFor([10, 20, 30]), [1, 2, 3]);
  assert.deepEqual(slotsFor([0, 2]), [1, 2], 'unset/zero weight counts as 1');
  const big = slotsFor([1, 10_000, 3_333]);
  assert.ok(big.reduce((x, y) => x + y, 0) <= MAX_SLOTS);
  assert.equal(big[0], 1);
});

test('a VIP.proto.port claimed twice goes to the first service by id; the other is reported', () => {
  const base = compileModel(load(YAML)).services;
  const web = base.find((s) => s.name === 'web')!;
  const clash = { ...web, id: 'Service/shop/zzz', name: 'zzz' };
  const plan = planServices([clash, ...base]);
  assert.equal(plan.ports.filter((p) => p.key.startsWith('shop/zzz/')).length, 0);
  assert.deepEqual(plan.ignored, [
    "shop/zzz/tcp/http: 10.96.0.10 . tcp . 80 is already shop/web/tcp/http's",
    "shop/zzz/udp/dns: 10.96.0.10 . udp . 53 is already shop/web/udp/dns's",
  ]);
});

test('affinity entries read from the table in place are carried into the new one', () => {
  const resources = load(YAML);
  const services = compileModel(resources).services;
  const set = planServices(services).ports.find((p) => p.key === 'shop/sticky/tcp/http')!.endpoints[0]!.affinitySet!;
  const listing = {
    nftables: [
      { metainfo: { version: '1.0.6' } },
      {
        set: {
          name: set,
          elem: [{ elem: { val: '10.244.1.9', expires: 30 } }, { elem: { val: '10.0.0.1', expires: 0 } }],
        },
      },
      { set: { name: 'affinity-GONE', elem: [{ elem: { val: '10.244.1.9', expires: 30 } }] } },
    ],
  };
  const carried = affinityEntriesOf(listing);
  assert.deepEqual([...carried.keys()], [set, 'affinity-GONE']);
  const script = servicesScript(services, { affinity: carried, affinityTimeoutSeconds: affinityTimeouts(resources) });
  assert.match(script, /10\.244\.1\.9 expires 30s,/);
  assert.doesNotMatch(script, /10\.0\.0\.1 expires/, 'an expired entry is dropped');
  assert.doesNotMatch(script, /affinity-GONE/, 'a set whose endpoint left is not recreated');
});

test('nft parses the script (nft -c -f), empty and full', { skip: datapathSkipReason() }, () => {
  const ns = netns(`trl-nfts-${process.pid}`);
  try {
    const resources = load(YAML);
    for (const services of [[], compileModel(resources).services]) {
      const script = servicesScript(services, { affinityTimeoutSeconds: affinityTimeouts(resources) });
      execFileSync('ip', ['netns', 'exec', ns.name, 'nft', '-c', '-f', '-'], { input: script, encoding: 'utf8' });
    }
  } finally {
    ns.remove();
  }
});
