import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  allocatableFrom,
  isAllocatable,
  ipv4ToText,
  nodePodCidrs,
  podRange,
  PodRangeError,
} from '../../src/datapath/linux/ipam/pod-cidr.js';

test('nodePodCidrs: consecutive blocks, one per node, in the order given', () => {
  const m = nodePodCidrs('10.244.0.0/16', 24, ['node-b', 'node-a', 'node-c']);
  assert.deepEqual(
    [...m],
    [
      ['node-b', '10.244.0.0/24'],
      ['node-a', '10.244.1.0/24'],
      ['node-c', '10.244.2.0/24'],
    ],
  );
  assert.equal(nodePodCidrs('10.244.0.0/16', 24, []).size, 0);
});

test('nodePodCidrs: exactly as many nodes as blocks fits; one more does not', () => {
  const m = nodePodCidrs('10.0.0.0/24', 26, ['a', 'b', 'c', 'd']);
  assert.equal(m.get('d'), '10.0.0.192/26');
  assert.throws(
    () => nodePodCidrs('10.0.0.0/24', 26, ['a', 'b', 'c', 'd', 'e']),
    /10\.0\.0\.0\/24 holds 4 pod CIDRs of \/26 but there are 5 nodes/,
  );
});

test('nodePodCidrs: the mask must be longer than the cluster prefix and leave pod addresses', () => {
  assert.throws(() => nodePodCidrs('10.244.0.0/16', 16, ['a']), /expected an integer from 17 to 30.*got 16/);
  assert.throws(() => nodePodCidrs('10.244.0.0/16', 8, ['a']), /got 8/);
  assert.throws(() => nodePodCidrs('10.244.0.0/16', 31, ['a']), /got 31/);
  assert.throws(() => nodePodCidrs('10.244.0.0/16', 32, ['a']), /got 32/);
  assert.throws(() => nodePodCidrs('10.244.0.0/16', 24.5, ['a']), /got 24\.5/);
  assert.equal(nodePodCidrs('10.244.0.0/16', 30, ['a']).get('a'), '10.244.0.0/30');
});

test('nodePodCidrs: a bad cluster CIDR or a duplicate node is a clear error', () => {
  assert.throws(() => nodePodCidrs('10.244.1.0/16', 24, ['a']), /host bits set.*did you mean 10\.244\.0\.0\/16/);
  assert.throws(() => nodePodCidrs('fd00::/48', 64, ['a']), /IPv6 is not supported yet/);
  assert.throws(() => nodePodCidrs('nonsense', 24, ['a']), /cluster CIDR: expected an IPv4 CIDR/);
  assert.throws(() => nodePodCidrs('10.244.0.0/16', 24, ['a', 'a']), /node "a" is listed twice/);
});

test('podRange: gateway is the first host; network, gateway and broadcast are never given', () => {
  const r = podRange('10.244.1.0/24');
  assert.equal(ipv4ToText(r.gateway), '10.244.1.1');
  assert.equal(r.size, 253);
  const all = [...allocatableFrom(r)];
  assert.equal(all.length, 253);
  assert.equal(all[0], '10.244.1.2');
  assert.equal(all.at(-1), '10.244.1.254');
  for (const ip of ['10.244.1.0', '10.244.1.1', '10.244.1.255', '10.244.2.2', 'x']) assert.ok(!isAllocatable(r, ip));
});

test('podRange: a /30 has one pod address; /31 and /32 have none', () => {
  assert.deepEqual([...allocatableFrom(podRange('10.0.0.4/30'))], ['10.0.0.6']);
  for (const c of ['10.0.0.4/31', '10.0.0.4/32']) {
    assert.throws(
      () => podRange(c),
      (e) => e instanceof PodRangeError && e.field === 'podCIDR' && /no address for pods/.test(e.message),
    );
  }
});

test('podRange: rangeStart/rangeEnd and a custom gateway', () => {
  const r = podRange('10.244.1.0/24', { rangeStart: '10.244.1.10', rangeEnd: '10.244.1.20' });
  assert.equal(r.size, 11); // the gateway (.1) is outside the range
  assert.equal([...allocatableFrom(r)][0], '10.244.1.10');
  const g = podRange('10.244.1.0/24', { gateway: '10.244.1.15', rangeStart: '10.244.1.10', rangeEnd: '10.244.1.20' });
  assert.equal(g.size, 10);
  assert.ok(!isAllocatable(g, '10.244.1.15'));
  assert.ok(!isAllocatable(g, '10.244.1.9') && !isAllocatable(g, '10.244.1.21'));
  // With the gateway elsewhere, the first host address is a pod address.
  const last = podRange('10.244.1.0/24', { gateway: '10.244.1.254' });
  assert.equal(last.size, 253);
  assert.equal([...allocatableFrom(last)][0], '10.244.1.1');
  assert.ok(!isAllocatable(last, '10.244.1.254'));
});

test('podRange: each bad option names its field', () => {
  const field = (opts: Parameters<typeof podRange>[1], name: string, msg: RegExp) =>
    assert.throws(
      () => podRange('10.244.1.0/24', opts),
      (e) => e instanceof PodRangeError && e.field === name && msg.test(e.message),
    );
  field({ rangeStart: '10.244.2.1' }, 'rangeStart', /not inside 10\.244\.1\.0\/24/);
  field({ rangeEnd: '10.244.1.255' }, 'rangeEnd', /broadcast address/);
  field({ gateway: '10.244.1.0' }, 'gateway', /network address/);
  field({ gateway: 'gw' }, 'gateway', /expected an IPv4 address/);
  field({ rangeStart: '10.244.1.20', rangeEnd: '10.244.1.10' }, 'rangeEnd', /before rangeStart/);
  field({ rangeStart: '10.244.1.1', rangeEnd: '10.244.1.1' }, 'rangeEnd', /only the gateway/);
  assert.throws(() => podRange('10.244.1.7/24'), /did you mean 10\.244\.1\.0\/24/);
});

test('allocatableFrom: round-robin after the last address given, skipping the gateway, once around', () => {
  const r = podRange('10.244.9.0/29'); // hosts .1-.6, gateway .1
  assert.deepEqual(
    [...allocatableFrom(r, '10.244.9.4')],
    ['10.244.9.5', '10.244.9.6', '10.244.9.2', '10.244.9.3', '10.244.9.4'],
  );
  assert.deepEqual([...allocatableFrom(r, '10.244.9.6')][0], '10.244.9.2');
  // An address outside the range (the configuration changed) restarts at the beginning.
  assert.deepEqual([...allocatableFrom(r, '10.9.9.9')][0], '10.244.9.2');
});
