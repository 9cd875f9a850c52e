// trellis-cni run exactly as a container runtime runs it (CNI_* + the configuration on stdin,
// through its installed executable), alone and chained with Debian's reference plugins
// (loopback, portmap, bandwidth, tuning). Every kernel change happens inside network
// namespaces the test creates: a "node" namespace in which the plugins run, and pods.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostVethName } from '../../src/datapath/linux/cni/interface-plugin.js';
import {
  addList,
  cniBinDir,
  cniLab,
  datapathSkipReason,
  inNetns,
  listCommand,
  runPlugin,
  type Attachment,
  type ConfList,
  nodeInNetns,
  readyLine,
} from '../helpers/cni.js';

const tag = `trl-cni-${process.pid}`;

function interfaceConf(dataDir: string, podCIDR = '10.244.1.0/24', version = '1.0.0', extra: object = {}) {
  return {
    cniVersion: version,
    name: 'trellis',
    type: 'trellis-cni',
    ipam: { type: 'trellis-ipam', podCIDR, dataDir },
    ...extra,
  };
}

function allocations(dataDir: string, network = 'trellis'): string[] {
  const dir = join(dataDir, network);
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}

function linkNames(ns: string): string[] {
  return (JSON.parse(inNetns(ns, 'ip', ['-json', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname);
}

/** A TCP server inside a namespace that answers "pong" (node, no extra tools). */
function podServer(ns: string, port: number): ChildProcess {
  return nodeInNetns(
    ns,
    `require('net').createServer((s) => { s.end('pong'); }).listen(${port}, '0.0.0.0', () => console.log('ready'))`,
  );
}

/** Connects from inside a namespace; resolves with what the server said. */
function tcpFrom(ns: string, host: string, port: number): string {
  const script = `const s=require('net').connect(${port},'${host}');let d='';s.on('data',(c)=>d+=c);s.on('end',()=>{console.log(d);process.exit(0)});s.on('error',(e)=>{console.log('ERR '+e.code);process.exit(0)});setTimeout(()=>{console.log('TIMEOUT');process.exit(0)},3000)`;
  return inNetns(ns, process.execPath, ['-e', script]).trim();
}

test('VERSION answers in the asked version (and without stdin in the newest)', () => {
  const bin = cniBinDir();
  try {
    const r = runPlugin('VERSION', 'trellis-cni', { cniVersion: '1.0.0' }, undefined, { binDir: bin.dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.out, { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
    const bare = runPlugin('VERSION', 'trellis-cni', undefined, undefined, { binDir: bin.dir, rawStdin: '' });
    assert.equal(bare.out?.cniVersion, '1.1.0');
  } finally {
    bin.remove();
  }
});

test("bad input gets the spec's error JSON with its code, naming what is wrong", () => {
  const bin = cniBinDir();
  const dataDir = mkdtempSync(join(tmpdir(), 'trellis-cni-ipam-'));
  const a: Attachment = { containerId: 'bad1', netns: '/var/run/netns/does-not-exist-trellis', ifname: 'eth0' };
  const o = { binDir: bin.dir };
  const conf = interfaceConf(dataDir);
  const cases: [string, ReturnType<typeof runPlugin>, number, RegExp][] = [
    ['garbage stdin', runPlugin('ADD', 'trellis-cni', undefined, a, { ...o, rawStdin: '{not json' }), 6, /not JSON/],
    [
      'no CNI_COMMAND',
      runPlugin('ADD', 'trellis-cni', conf, a, { ...o, env: { PATH: process.env.PATH } }),
      4,
      /CNI_COMMAND is not set/,
    ],
    [
      'ADD without CNI_NETNS',
      runPlugin('ADD', 'trellis-cni', conf, { containerId: 'x', ifname: 'eth0' }, o),
      4,
      /CNI_NETNS must be set for ADD/,
    ],
    [
      'a version we do not speak',
      runPlugin('ADD', 'trellis-cni', { ...conf, cniVersion: '0.2.0' }, a, o),
      1,
      /0\.2\.0/,
    ],
    ['an unknown field', runPlugin('ADD', 'trellis-cni', { ...conf, mut: 9000 }, a, o), 2, /"mut" \(value 9000\)/],
    ['a bad mtu', runPlugin('ADD', 'trellis-cni', { ...conf, mtu: 'big' }, a, o), 7, /^mtu: expected an integer/],
    ['no ipam', runPlugin('ADD', 'trellis-cni', { ...conf, ipam: {} }, a, o), 7, /^ipam\.type/],
    ['a netns that does not exist', runPlugin('ADD', 'trellis-cni', conf, a, o), 3, /does not exist/],
    ['CHECK without prevResult', runPlugin('CHECK', 'trellis-cni', conf, a, o), 7, /CHECK needs prevResult/],
  ];
  try {
    for (const [what, r, code, msg] of cases) {
      assert.equal(r.code, 1, `${what}: exit status`);
      assert.equal(r.out?.code, code, `${what}: ${r.stdout}`);
      assert.match(String(r.out?.msg), msg, what);
      assert.equal(typeof r.out?.cniVersion, 'string', what);
      assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /, `${what}: no stack trace`);
    }
    assert.deepEqual(allocations(dataDir), [], 'nothing allocated by a refused ADD');
  } finally {
    bin.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test(
  'chained with loopback, portmap, bandwidth and tuning: pods reach each other, CHECK, DEL (twice), nothing left',
  { skip: datapathSkipReason(true) },
  async () => {
    const lab = cniLab(tag, ['p1', 'p2']);
    const { dataDir, node, pods, opts: o } = lab;
    let server: ChildProcess | undefined;
    const list: ConfList = {
      cniVersion: '1.0.0',
      name: 'trellis',
      plugins: [
        { type: 'trellis-cni', mtu: 1400, ipam: { type: 'trellis-ipam', podCIDR: '10.244.1.0/24', dataDir } },
        { type: 'portmap', capabilities: { portMappings: true }, snat: true },
        { type: 'bandwidth', capabilities: { bandwidth: true } },
        { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.accept_redirects': '0' } },
      ],
    };
    const runtimeConfig = {
      portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }],
      bandwidth: { ingressRate: 10_000_000, ingressBurst: 1_000_000, egressRate: 10_000_000, egressBurst: 1_000_000 },
    };
    const att = pods.map((p, i): Attachment => ({ containerId: `${tag}-c${i}`, netns: p.path, ifname: 'eth0' }));
    try {
      const results = att.map((a, i) => {
        // The runtime's own loopback network, then the pod network.
        const lo = runPlugin(
          'ADD',
          'loopback',
          { cniVersion: '1.0.0', name: 'lo', type: 'loopback' },
          { ...a, ifname: 'lo' },
          o,
        );
        assert.equal(lo.code, 0, lo.stdout);
        const r = addList(list, a, o, i === 0 ? runtimeConfig : {});
        assert.ok(r.result, JSON.stringify(r.failed));
        return r.result;
      });
      const [r1, r2] = results as [Record<string, unknown>, Record<string, unknown>];
      // The Result: host veth, pod interface with its sandbox, the address on the pod interface.
      const ifaces = r1.interfaces as { name: string; mac?: string; sandbox?: string }[];
      assert.equal(ifaces[0]!.name, hostVethName(att[0]!.containerId, 'eth0'));
      assert.deepEqual(
        { name: ifaces[1]!.name, sandbox: ifaces[1]!.sandbox },
        { name: 'eth0', sandbox: pods[0]!.path },
      );
      assert.match(ifaces[1]!.mac ?? '', /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      const ips = r1.ips as { address: string; gateway: string; interface: number }[];
      assert.deepEqual(ips, [{ address: '10.244.1.2/24', gateway: '10.244.1.1', interface: 1 }]);
      const ip2 = (r2.ips as { address: string }[])[0]!.address.split('/')[0]!;
      assert.equal(ip2, '10.244.1.3');
      // The kernel agrees: address, MTU, routes through the gateway, loopback up.
      const eth0 = JSON.parse(inNetns(pods[0]!.name, 'ip', ['-json', 'addr', 'show', 'dev', 'eth0'])) as {
        mtu: number;
        addr_info: { family: string; local: string; prefixlen: number }[];
      }[];
      assert.equal(eth0[0]!.mtu, 1400);
      assert.deepEqual(
        eth0[0]!.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`),
        ['10.244.1.2/24'],
      );
      assert.match(inNetns(pods[0]!.name, 'ip', ['route']), /default via 10\.244\.1\.1 dev eth0/);
      assert.match(inNetns(pods[0]!.name, 'ip', ['link', 'show', 'lo']), /state UNKNOWN|UP/);

      // Pod to pod (routed by the node namespace) and the port mapping portmap added after us.
      assert.match(inNetns(pods[0]!.name, 'ping', ['-c', '1', '-W', '2', ip2]), /1 received/);
      server = podServer(pods[0]!.name, 80);
      await readyLine(server);
      assert.equal(tcpFrom(pods[1]!.name, '10.244.1.2', 80), 'pong');
      assert.equal(tcpFrom(node.name, '10.244.1.1', 18080), 'pong', 'hostPort 18080 -> pod :80 (portmap)');
      // bandwidth shaped our host veth; tuning set the sysctl inside the pod.
      assert.match(
        inNetns(node.name, 'tc', ['qdisc', 'show', 'dev', hostVethName(att[0]!.containerId, 'eth0')]),
        /tbf/,
      );
      assert.equal(inNetns(pods[0]!.name, 'sysctl', ['-n', 'net.ipv4.conf.eth0.accept_redirects']).trim(), '0');

      // CHECK through the chain (portmap left out: its CHECK wants ip6tables chains this namespace lacks).
      const checkList = { ...list, plugins: list.plugins.filter((p) => p.type !== 'portmap') };
      for (const r of listCommand('CHECK', checkList, att[0]!, r1, o, runtimeConfig)) assert.equal(r.code, 0, r.stdout);
      // Break what ADD set up: CHECK says what is wrong.
      inNetns(pods[0]!.name, 'ip', ['addr', 'del', '10.244.1.2/24', 'dev', 'eth0']);
      const broken = listCommand('CHECK', checkList, att[0]!, r1, o, runtimeConfig)[0]!;
      assert.equal(broken.out?.code, 103);
      assert.match(String(broken.out?.msg), /eth0 in \/var\/run\/netns\/.* lacks 10\.244\.1\.2\/24/);

      server.kill();
      // DEL in reverse order, twice (idempotent), then with the pod's namespace already gone.
      for (let i = 0; i < 2; i++)
        for (const r of listCommand('DEL', list, att[0]!, r1, o, runtimeConfig)) assert.equal(r.code, 0, r.stdout);
      pods[1]!.remove();
      for (const r of listCommand('DEL', list, att[1]!, r2, o)) assert.equal(r.code, 0, r.stdout);
      assert.deepEqual(linkNames(node.name), ['lo'], 'no veth left in the node');
      assert.deepEqual(allocations(dataDir), [], 'no address left allocated');
      assert.doesNotMatch(inNetns(node.name, 'ip', ['route']), /10\.244\.1\./);
    } finally {
      server?.kill();
      lab.remove();
    }
  },
);

test(
  'a failed ADD leaves nothing behind: an exhausted pod CIDR, a taken interface name, a kernel error midway',
  { skip: datapathSkipReason() },
  () => {
    const lab = cniLab(`${tag}-f`, ['1', '2', '3']);
    const { dataDir, node, pods, opts: o } = lab;
    try {
      // A /30 has one pod address (network, gateway and broadcast are not given out).
      const tiny = interfaceConf(dataDir, '10.244.9.0/30');
      const first = runPlugin(
        'ADD',
        'trellis-cni',
        tiny,
        { containerId: 'f1', netns: pods[0]!.path, ifname: 'eth0' },
        o,
      );
      assert.equal(first.code, 0, first.stdout);
      const second = runPlugin(
        'ADD',
        'trellis-cni',
        tiny,
        { containerId: 'f2', netns: pods[1]!.path, ifname: 'eth0' },
        o,
      );
      assert.equal(second.out?.code, 100, second.stdout);
      assert.match(String(second.out?.msg), /10\.244\.9\.0\/30/);
      assert.deepEqual(linkNames(pods[1]!.name), ['lo']);
      assert.equal(linkNames(node.name).length, 2, 'lo and the first pod only');

      // The interface name is taken in the pod: refused before anything is allocated.
      inNetns(pods[2]!.name, 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
      const taken = runPlugin(
        'ADD',
        'trellis-cni',
        interfaceConf(dataDir),
        { containerId: 'f3', netns: pods[2]!.path, ifname: 'eth0' },
        o,
      );
      assert.equal(taken.out?.code, 101, taken.stdout);
      assert.match(String(taken.out?.msg), /eth0 already exists/);
      assert.deepEqual(
        allocations(dataDir),
        allocations(dataDir).filter((ip) => ip.startsWith('10.244.9.')),
      );

      // A route the kernel refuses (the gateway's /32 twice): the veth and the address are undone.
      inNetns(pods[2]!.name, 'ip', ['link', 'del', 'eth0']);
      const conflicting = interfaceConf(dataDir, '10.244.1.0/24', '1.0.0');
      conflicting.ipam = { ...conflicting.ipam, routes: [{ dst: '10.244.1.1/32' }] } as typeof conflicting.ipam;
      const midway = runPlugin(
        'ADD',
        'trellis-cni',
        conflicting,
        { containerId: 'f4', netns: pods[2]!.path, ifname: 'eth0' },
        o,
      );
      assert.equal(midway.out?.code, 101, midway.stdout);
      assert.match(String(midway.out?.msg), /setting up eth0/);
      assert.deepEqual(linkNames(pods[2]!.name), ['lo'], 'no eth0 left in the pod');
      assert.equal(linkNames(node.name).length, 2, 'no host veth left');
      assert.deepEqual(
        allocations(dataDir).filter((ip) => ip.startsWith('10.244.1.')),
        [],
        'the address was released',
      );
    } finally {
      lab.remove();
    }
  },
);

test(
  'CNI 1.1: STATUS, and GC removes what the runtime no longer knows (veth and address)',
  { skip: datapathSkipReason() },
  () => {
    const lab = cniLab(`${tag}-g`, ['1', '2']);
    const { dataDir, node, pods, opts: o } = lab;
    const conf = interfaceConf(dataDir, '10.244.2.0/24', '1.1.0');
    try {
      const status = runPlugin('STATUS', 'trellis-cni', conf, undefined, o);
      assert.equal(status.code, 0, status.stdout);
      const att = pods.map((p, i) => ({ containerId: `g${i}`, netns: p.path, ifname: 'eth0' }));
      for (const a of att) {
        const r = runPlugin('ADD', 'trellis-cni', conf, a, o);
        assert.equal(r.code, 0, r.stdout);
        assert.equal(r.out?.cniVersion, '1.1.0');
        assert.equal((r.out?.interfaces as { mtu?: number }[])[1]!.mtu, 1500, '1.1 results carry the MTU');
      }
      const gc = runPlugin(
        'GC',
        'trellis-cni',
        { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'g0', ifname: 'eth0' }] },
        undefined,
        o,
      );
      assert.equal(gc.code, 0, gc.stdout);
      assert.deepEqual(linkNames(node.name).sort(), ['lo', hostVethName('g0', 'eth0')].sort());
      assert.deepEqual(allocations(dataDir), ['10.244.2.2']);
      assert.deepEqual(linkNames(pods[1]!.name), ['lo'], "the stale pod's end went with its veth");
      // GC before 1.1 is not a command of that version.
      const old = runPlugin('GC', 'trellis-cni', { ...conf, cniVersion: '1.0.0' }, undefined, o);
      assert.equal(old.out?.code, 1);
      // An IPAM that cannot work makes the plugin not available.
      const file = join(dataDir, 'not-a-dir');
      writeFileSync(file, '');
      const down = runPlugin(
        'STATUS',
        'trellis-cni',
        { ...conf, ipam: { ...conf.ipam, dataDir: join(file, 'x') } },
        undefined,
        o,
      );
      assert.equal(down.out?.code, 50, down.stdout);
    } finally {
      lab.remove();
    }
  },
);

test(
  'concurrent ADDs (as a node starting many pods): distinct addresses, every pod reachable',
  { skip: datapathSkipReason() },
  async () => {
    const N = 8;
    const lab = cniLab(
      `${tag}-c`,
      Array.from({ length: N }, (_, i) => String(i)),
    );
    const { bin, dataDir, node, pods } = lab;
    const conf = interfaceConf(dataDir, '10.244.3.0/24');
    try {
      const runs = await Promise.all(
        pods.map(
          (p, i) =>
            new Promise<string>((resolve, reject) => {
              const child = spawn('ip', ['netns', 'exec', node.name, join(bin.dir, 'trellis-cni')], {
                env: {
                  PATH: process.env.PATH,
                  CNI_COMMAND: 'ADD',
                  CNI_CONTAINERID: `cc${i}`,
                  CNI_NETNS: p.path,
                  CNI_IFNAME: 'eth0',
                  CNI_PATH: bin.dir,
                },
              });
              let out = '';
              child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
              child.on('error', reject);
              child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`ADD ${i}: ${out}`))));
              child.stdin.end(JSON.stringify(conf));
            }),
        ),
      );
      const ips = runs.map((o) => (JSON.parse(o) as { ips: { address: string }[] }).ips[0]!.address.split('/')[0]!);
      assert.equal(new Set(ips).size, N, ips.join(' '));
      for (const ip of ips.slice(1))
        assert.match(inNetns(pods[0]!.name, 'ping', ['-c', '1', '-W', '2', ip]), /1 received/, ip);
    } finally {
      lab.remove();
    }
  },
);
