// trellis cni install: the plugin executables and the node's configuration list, used by a
// runtime as written (root: one pod attached through the installed list).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  addList,
  datapathSkipReason,
  listCommand,
  netns,
  REFERENCE_PLUGINS,
  runPlugin,
  type ConfList,
} from '../helpers/cni.js';
import { runCli } from '../helpers/run-cli.js';

test('trellis cni install writes executable plugins and a configuration list', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-cni-install-'));
  try {
    const r = runCli([
      'cni',
      'install',
      '--bin-dir',
      join(dir, 'bin'),
      '--conf-dir',
      join(dir, 'net.d'),
      '--pod-cidr',
      '10.244.7.0/24',
      '--mtu',
      '1450',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /installed .*trellis-cni\ninstalled .*trellis-ipam\nwrote .*10-trellis\.conflist/);
    for (const p of ['trellis-cni', 'trellis-ipam']) assert.ok(statSync(join(dir, 'bin', p)).mode & 0o100, p);
    const list = JSON.parse(readFileSync(join(dir, 'net.d', '10-trellis.conflist'), 'utf8')) as ConfList;
    assert.equal(list.cniVersion, '1.0.0');
    assert.deepEqual(
      list.plugins.map((p) => p.type),
      ['trellis-cni', 'portmap', 'bandwidth'],
    );
    assert.deepEqual(list.plugins[0], {
      type: 'trellis-cni',
      mtu: 1450,
      ipam: { type: 'trellis-ipam', podCIDR: '10.244.7.0/24' },
    });
    const v = runPlugin('VERSION', 'trellis-ipam', { cniVersion: '1.1.0' }, undefined, { binDir: join(dir, 'bin') });
    assert.equal(v.out?.cniVersion, '1.1.0');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('trellis cni install: usage errors name the flag and what was expected', () => {
  const cases: [string[], RegExp][] = [
    [['cni'], /expected "install"/],
    [['cni', 'install'], /needs --bin-dir/],
    [['cni', 'install', '--bin-dir', '/tmp/x', '--conf-dir', '/tmp/y'], /--conf-dir needs --pod-cidr/],
    [
      ['cni', 'install', '--bin-dir', '/tmp/x', '--conf-dir', '/tmp/y', '--pod-cidr', '10.244.1.1/24'],
      /--pod-cidr: .*did you mean 10\.244\.1\.0\/24/,
    ],
    [
      ['cni', 'install', '--bin-dir', '/tmp/x', '--conf-dir', '/tmp/y', '--pod-cidr', '10.244.1.0/31'],
      /--pod-cidr: .*\/30 or shorter/,
    ],
    [['cni', 'install', '--bin-dir', '/tmp/x', '--mtu', '9'], /--mtu "9": expected an integer from 576/],
  ];
  for (const [args, msg] of cases) {
    const r = runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, msg, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('a runtime uses the installed configuration list as written', { skip: datapathSkipReason(true) }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-cni-install-'));
  const node = netns(`trl-inst-${process.pid}-node`);
  const pod = netns(`trl-inst-${process.pid}-pod`);
  try {
    const bin = join(dir, 'bin');
    const r = runCli([
      'cni',
      'install',
      '--bin-dir',
      bin,
      '--conf-dir',
      join(dir, 'net.d'),
      '--pod-cidr',
      '10.244.8.0/24',
      '--ipam-data-dir',
      join(dir, 'ipam'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    for (const p of readdirSync(REFERENCE_PLUGINS)) symlinkSync(join(REFERENCE_PLUGINS, p), join(bin, p));
    const list = JSON.parse(readFileSync(join(dir, 'net.d', '10-trellis.conflist'), 'utf8')) as ConfList;
    const a = { containerId: 'inst1', netns: pod.path, ifname: 'eth0' };
    const o = { binDir: bin, inNetns: node.name };
    const added = addList(list, a, o);
    assert.ok(added.result, JSON.stringify(added.failed));
    assert.deepEqual(added.result.ips, [{ interface: 1, address: '10.244.8.2/24', gateway: '10.244.8.1' }]);
    for (const d of listCommand('DEL', list, a, added.result, o)) assert.equal(d.code, 0, d.stdout);
    assert.deepEqual(
      readdirSync(join(dir, 'ipam', 'trellis')).filter((f) => f.startsWith('10.')),
      [],
    );
  } finally {
    pod.remove();
    node.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});
