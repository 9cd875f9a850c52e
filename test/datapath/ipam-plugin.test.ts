// trellis-ipam run through its installed wrapper exactly as a runtime runs it: CNI_* in the
// environment, the configuration on stdin, the Result or the spec's error JSON on stdout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cniBinDir,
  datapathSkipReason,
  inNetns,
  netns,
  runPlugin,
  type Attachment,
  type PluginRun,
} from '../helpers/cni.js';

const TYPE = 'trellis-ipam';
const NETWORK = 'trl-ipam-test';

let bin: { dir: string; remove: () => void };
before(() => {
  bin = cniBinDir();
});
after(() => bin.remove());

/** A temporary data directory, removed after the test. */
function dataDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-ipam-data-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function conf(dir: string, ipam: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: '1.1.0',
    name: NETWORK,
    type: TYPE,
    ipam: { type: TYPE, podCIDR: '10.244.1.0/24', dataDir: dir, ...ipam },
    ...extra,
  };
}

function pod(id: string, ifname = 'eth0'): Attachment {
  return { containerId: id, netns: '/var/run/netns/none', ifname };
}

function run(command: string, c: unknown, a?: Attachment): PluginRun {
  return runPlugin(command, TYPE, c, a, { binDir: bin.dir });
}

/** The allocation files of the network (without last_reserved_ip.0). */
function files(dir: string, network = NETWORK): string[] {
  try {
    return readdirSync(join(dir, network))
      .filter((f) => f !== 'last_reserved_ip.0')
      .sort();
  } catch {
    return [];
  }
}

/** The spec's error JSON: exit 1, {cniVersion, code, msg, details?} on stdout. */
function assertError(r: PluginRun, code: number, msg: RegExp, version = '1.1.0'): void {
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(r.out, `stdout is not JSON: ${r.stdout}`);
  assert.equal(r.out.cniVersion, version);
  assert.equal(r.out.code, code, r.stdout);
  assert.match(String(r.out.msg), msg);
  for (const k of Object.keys(r.out)) assert.ok(['cniVersion', 'code', 'msg', 'details'].includes(k), k);
  assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /, 'no stack trace');
}

function addedIp(r: PluginRun): string {
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const ips = r.out?.ips as { address: string }[];
  return ips[0]!.address.split('/')[0]!;
}

describe('trellis-ipam VERSION', () => {
  test('without stdin: the newest version and every supported one', () => {
    const r = runPlugin('VERSION', TYPE, undefined, undefined, { binDir: bin.dir, rawStdin: '' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.out, { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  });

  test('with stdin: answers in the configuration version', () => {
    const r = run('VERSION', { cniVersion: '1.0.0' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out?.cniVersion, '1.0.0');
  });
});

describe('trellis-ipam ADD, CHECK, DEL', () => {
  test('ADD gives the first pod address with the gateway and default route, persisted host-local style', (t) => {
    const dir = dataDir(t);
    const r = run('ADD', conf(dir), pod('c1'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.out, {
      cniVersion: '1.1.0',
      ips: [{ address: '10.244.1.2/24', gateway: '10.244.1.1' }],
      routes: [{ dst: '0.0.0.0/0' }],
    });
    assert.equal(readFileSync(join(dir, NETWORK, '10.244.1.2'), 'utf8'), 'c1\neth0');
    assert.equal(readFileSync(join(dir, NETWORK, 'last_reserved_ip.0'), 'utf8'), '10.244.1.2');
    assert.equal(statSync(join(dir, NETWORK)).mode & 0o777, 0o700);
  });

  test('ADD is idempotent per (container, ifname); another ifname is another address', (t) => {
    const dir = dataDir(t);
    assert.equal(addedIp(run('ADD', conf(dir), pod('c1'))), '10.244.1.2');
    assert.equal(addedIp(run('ADD', conf(dir), pod('c1'))), '10.244.1.2');
    assert.equal(addedIp(run('ADD', conf(dir), pod('c1', 'net1'))), '10.244.1.3');
    assert.deepEqual(files(dir), ['10.244.1.2', '10.244.1.3']);
  });

  test('configured gateway, range and routes; 0.4.0 Results carry the IP version', (t) => {
    const dir = dataDir(t);
    const c = conf(
      dir,
      {
        gateway: '10.244.1.254',
        rangeStart: '10.244.1.100',
        rangeEnd: '10.244.1.101',
        routes: [{ dst: '10.96.0.0/12', gw: '10.244.1.254' }],
      },
      { cniVersion: '0.4.0' },
    );
    const r = run('ADD', c, pod('c1'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.out, {
      cniVersion: '0.4.0',
      ips: [{ version: '4', address: '10.244.1.100/24', gateway: '10.244.1.254' }],
      routes: [{ dst: '10.96.0.0/12', gw: '10.244.1.254' }],
    });
  });

  test('round-robin: a released address is not given again at once', (t) => {
    const dir = dataDir(t);
    assert.equal(addedIp(run('ADD', conf(dir), pod('c1'))), '10.244.1.2');
    assert.equal(run('DEL', conf(dir), pod('c1')).code, 0);
    assert.equal(addedIp(run('ADD', conf(dir), pod('c2'))), '10.244.1.3');
  });

  test('CHECK passes for the address held, fails (103) for another or none', (t) => {
    const dir = dataDir(t);
    const added = run('ADD', conf(dir), pod('c1'));
    assert.equal(added.code, 0, added.stdout);
    const ok = run('CHECK', conf(dir, {}, { prevResult: added.out }), pod('c1'));
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(ok.stdout, '');
    const wrong = { ...added.out, ips: [{ address: '10.244.1.9/24', gateway: '10.244.1.1' }] };
    assertError(
      run('CHECK', conf(dir, {}, { prevResult: wrong }), pod('c1')),
      103,
      /c1 \(eth0\) holds 10\.244\.1\.2 .* but prevResult says 10\.244\.1\.9/,
    );
    assertError(run('CHECK', conf(dir, {}, { prevResult: added.out }), pod('c2')), 103, /holds no address/);
    assertError(run('CHECK', conf(dir), pod('c1')), 7, /CHECK needs prevResult/);
  });

  test('DEL releases; DEL again (or of what was never added) succeeds', (t) => {
    const dir = dataDir(t);
    addedIp(run('ADD', conf(dir), pod('c1')));
    for (let i = 0; i < 2; i++) {
      const r = run('DEL', conf(dir), pod('c1'));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(files(dir), []);
    assert.equal(run('DEL', conf(dataDir(t)), pod('never')).code, 0);
  });
});

describe('trellis-ipam errors', () => {
  test('garbage stdin: 6', () => {
    const r = runPlugin('ADD', TYPE, undefined, pod('c1'), { binDir: bin.dir, rawStdin: '{not json' });
    assertError(r, 6, /not JSON/);
  });

  test('missing CNI_* variables: 4, naming them', () => {
    const r = runPlugin('ADD', TYPE, conf('/tmp/unused'), undefined, {
      binDir: bin.dir,
      env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0' },
    });
    assertError(r, 4, /CNI_CONTAINERID, CNI_NETNS must be set for ADD/);
  });

  test('a cniVersion we do not speak: 1', () => {
    assertError(
      run('ADD', conf('/tmp/unused', {}, { cniVersion: '9.9.9' }), pod('c1')),
      1,
      /incompatible CNI version 9\.9\.9/,
    );
  });

  test('an unknown ipam field: 2, with its key and value', (t) => {
    const dir = dataDir(t);
    const r = run('ADD', conf(dir, { subnet: '10.0.0.0/24' }), pod('c1'));
    assertError(r, 2, /ipam\.subnet: unsupported field "subnet" with value "10\.0\.0\.0\/24"/);
    assert.match(String(r.out?.details), /supported fields of ipam: type, podCIDR/);
    assertError(run('ADD', conf(dir, { podCidr: '10.0.0.0/24' }), pod('c1')), 2, /ipam\.podCidr/);
    assert.match(String(run('ADD', conf(dir, { podCidr: 'x' }), pod('c1')).out?.details), /did you mean "podCIDR"/);
    assertError(
      run('ADD', conf(dir, { routes: [{ dst: '0.0.0.0/0', via: '1.2.3.4' }] }), pod('c1')),
      2,
      /routes\[0\]\.via/,
    );
    assert.deepEqual(files(dir), []);
  });

  test('invalid ipam values: 7, naming the field path and what was expected', (t) => {
    const dir = dataDir(t);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ podCIDR: 'x' }, /^ipam\.podCIDR: expected an IPv4 CIDR like 10\.244\.1\.0\/24, got "x"/],
      [{ podCIDR: 24 }, /^ipam\.podCIDR: expected an IPv4 CIDR like 10\.244\.1\.0\/24, got 24$/],
      [{ podCIDR: undefined }, /^ipam\.podCIDR: required/],
      [{ podCIDR: 'fd00:1::/64' }, /^ipam\.podCIDR: .*IPv6 is not supported yet/],
      [{ podCIDR: '10.244.1.0/31' }, /^ipam\.podCIDR: .*no address for pods/],
      [{ podCIDR: '10.244.1.5/24' }, /^ipam\.podCIDR: .*did you mean 10\.244\.1\.0\/24/],
      [{ gateway: '10.9.9.9' }, /^ipam\.gateway: 10\.9\.9\.9 is not inside 10\.244\.1\.0\/24/],
      [{ rangeStart: 7 }, /^ipam\.rangeStart: expected an IPv4 address, got 7/],
      [{ rangeEnd: '10.244.1.255' }, /^ipam\.rangeEnd: .*broadcast/],
      [{ dataDir: 'relative/dir' }, /^ipam\.dataDir: expected an absolute directory path/],
      [{ routes: {} }, /^ipam\.routes: expected a list/],
      [{ routes: [{ dst: 'nope' }] }, /^ipam\.routes\[0\]\.dst: expected an IPv4 CIDR/],
      [{ routes: [{ dst: '0.0.0.0/0', gw: 'nope' }] }, /^ipam\.routes\[0\]\.gw: expected an IPv4 address/],
    ];
    for (const [ipam, msg] of cases) assertError(run('ADD', conf(dir, ipam), pod('c1')), 7, msg);
    const noIpam = { cniVersion: '1.1.0', name: NETWORK, type: TYPE };
    assertError(run('ADD', noIpam, pod('c1')), 7, /^ipam: expected an object/);
    assert.deepEqual(files(dir), []);
  });
});

/** ADD from a separate process without waiting for it (runPlugin's spawnSync would serialize them). */
function addAsync(c: unknown, a: Attachment): Promise<{ code: number | null; out: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(bin.dir, TYPE), [], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: 'ADD',
        CNI_PATH: bin.dir,
        CNI_CONTAINERID: a.containerId,
        CNI_IFNAME: a.ifname,
        CNI_NETNS: a.netns,
      },
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        resolve({ code, out: JSON.parse(stdout) as Record<string, unknown> });
      } catch {
        reject(new Error(`ADD ${a.containerId} printed ${JSON.stringify(stdout)}`));
      }
    });
    child.stdin.end(JSON.stringify(c));
  });
}

describe('trellis-ipam allocation under pressure', () => {
  test('32 concurrent ADDs from separate processes get 32 distinct addresses', async (t) => {
    const dir = dataDir(t);
    const runs = await Promise.all(Array.from({ length: 32 }, (_, i) => addAsync(conf(dir), pod(`par${i}`))));
    const ips = runs.map((r) => {
      assert.equal(r.code, 0, JSON.stringify(r.out));
      return (r.out.ips as { address: string }[])[0]!.address.split('/')[0]!;
    });
    assert.equal(new Set(ips).size, 32, ips.join(' '));
    assert.deepEqual(files(dir), [...ips].sort());
    // Every file names its owner.
    const owners = new Set(files(dir).map((f) => readFileSync(join(dir, NETWORK, f), 'utf8')));
    assert.equal(owners.size, 32);
  });

  test('exhausting a /29 gives 100 naming the CIDR and the count, and leaves no stray file', (t) => {
    const dir = dataDir(t);
    const c = conf(dir, { podCIDR: '10.244.9.0/29' });
    const ips = [1, 2, 3, 4, 5].map((i) => addedIp(run('ADD', c, pod(`c${i}`))));
    assert.deepEqual(ips, ['10.244.9.2', '10.244.9.3', '10.244.9.4', '10.244.9.5', '10.244.9.6']);
    assertError(run('ADD', c, pod('c6')), 100, /no free address in 10\.244\.9\.0\/29: 5 of 5 allocatable addresses/);
    assert.deepEqual(readdirSync(join(dir, NETWORK)).sort(), [...ips, 'last_reserved_ip.0'].sort());
    // STATUS says so too; a DEL frees one again.
    assertError(run('STATUS', c), 50, /no free address in 10\.244\.9\.0\/29/);
    assert.equal(run('DEL', c, pod('c3')).code, 0);
    assert.equal(addedIp(run('ADD', c, pod('c6'))), '10.244.9.4');
  });
});

describe('trellis-ipam STATUS and GC', () => {
  test('STATUS: success when usable, 50 when the data dir is not', (t) => {
    const dir = dataDir(t);
    const ok = run('STATUS', conf(dir));
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(ok.stdout, '');
    writeFileSync(join(dir, 'a-file'), '');
    assertError(run('STATUS', conf(join(dir, 'a-file'))), 50, /IPAM data directory .*a-file.* is not usable/);
    assertError(run('STATUS', conf(dir, {}, { cniVersion: '1.0.0' })), 1, /STATUS needs CNI version 1\.1\.0/, '1.0.0');
  });

  test('GC releases the allocations not in cni.dev/valid-attachments, only in this network', (t) => {
    const dir = dataDir(t);
    for (const id of ['c1', 'c2', 'c3']) addedIp(run('ADD', conf(dir), pod(id)));
    const other = { ...conf(dir), name: 'other-net' };
    addedIp(run('ADD', other, pod('c2')));
    const valid = [
      { containerID: 'c1', ifname: 'eth0' },
      { containerID: 'c3', ifname: 'eth0' },
      { containerID: 'c2', ifname: 'net9' },
    ];
    const r = run('GC', conf(dir, {}, { 'cni.dev/valid-attachments': valid }));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(files(dir), ['10.244.1.2', '10.244.1.4']);
    assert.deepEqual(files(dir, 'other-net'), ['10.244.1.2']);
    // Nothing valid: everything of this network goes.
    assert.equal(run('GC', conf(dir, {}, { 'cni.dev/valid-attachments': [] })).code, 0);
    assert.deepEqual(files(dir), []);
    assertError(run('GC', conf(dir, {}, { 'cni.dev/valid-attachments': 'all' })), 7, /valid-attachments/);
  });
});

// Debian's bridge plugin delegating to trellis-ipam, inside a node network namespace the test
// creates: the addresses we give must work for real traffic between two pods.
const PING = ['/usr/bin/ping', '/bin/ping'].some((p) => existsSync(p));
describe('trellis-ipam with the reference bridge plugin', () => {
  test(
    'bridge + trellis-ipam attach two pods that can ping each other; DEL releases',
    { skip: datapathSkipReason(true) ?? (PING ? undefined : 'needs ping (iputils-ping)') },
    (t) => {
      const dir = dataDir(t);
      const cleanup: (() => void)[] = [];
      try {
        const node = netns(`trl-ipn-${process.pid}`);
        cleanup.push(node.remove);
        const pods = [1, 2].map((i) => {
          const ns = netns(`trl-ipp${i}-${process.pid}`);
          cleanup.push(ns.remove);
          return { ns, a: { containerId: `pod${i}-${process.pid}`, netns: ns.path, ifname: 'eth0' } };
        });
        const net = {
          cniVersion: '1.0.0',
          name: 'trl-bridge-test',
          type: 'bridge',
          bridge: 'trl-test-br0',
          isGateway: true,
          ipam: { type: TYPE, podCIDR: '10.244.7.0/24', dataDir: dir },
        };
        const opts = { binDir: bin.dir, inNetns: node.name };
        const results = pods.map((p) => {
          const r = runPlugin('ADD', 'bridge', net, p.a, opts);
          assert.equal(r.code, 0, r.stdout + r.stderr);
          return r.out!;
        });
        const ips = results.map((r) => (r.ips as { address: string }[])[0]!.address);
        assert.deepEqual(ips, ['10.244.7.2/24', '10.244.7.3/24']);
        assert.match(inNetns(pods[0]!.ns.name, 'ip', ['-4', '-o', 'addr', 'show', 'eth0']), /10\.244\.7\.2\/24/);
        inNetns(pods[0]!.ns.name, 'ping', ['-c', '1', '-W', '2', '10.244.7.3']);
        // CHECK through the bridge reaches our CHECK with the cached Result.
        pods.forEach((p, i) => {
          const r = runPlugin('CHECK', 'bridge', { ...net, prevResult: results[i] }, p.a, opts);
          assert.equal(r.code, 0, r.stdout + r.stderr);
        });
        assert.deepEqual(files(dir, 'trl-bridge-test'), ['10.244.7.2', '10.244.7.3']);
        pods.forEach((p, i) => {
          const r = runPlugin('DEL', 'bridge', { ...net, prevResult: results[i] }, p.a, opts);
          assert.equal(r.code, 0, r.stdout + r.stderr);
        });
        assert.deepEqual(files(dir, 'trl-bridge-test'), []);
      } finally {
        for (const c of cleanup.reverse()) c();
      }
    },
  );
});
