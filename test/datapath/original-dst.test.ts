// Transparent capture end to end: the native SO_ORIGINAL_DST addon, the capture listener and
// the nft capture rules, in a "node" network namespace with a pod attached by our CNI plugin
// (and an "outside" namespace for inbound capture). The listener runs inside the node
// namespace (test/helpers/capture-child.ts); clients connect from the pod, the node and
// outside. The host's own namespace is never touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyNft } from '../../src/datapath/linux/nft.js';
import { captureNftScript } from '../../src/datapath/linux/capture/nft-capture.js';
import { captureAvailable } from '../../src/datapath/linux/original-dst.js';
import { CaptureListener, type Endpoint } from '../../src/proxy/node/capture-listener.js';
import { cniBinDir, datapathSkipReason, inNetns, netns, runPlugin } from '../helpers/cni.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/test/datapath
const root = join(here, '../../..');
const tag = `trl-cap-${process.pid}`;

// Build the addon first when this machine can (build-native.js exits 0 without a toolchain,
// and captureAvailable then says the addon is missing). Only then load it: captureAvailable
// caches its answer.
const build = spawnSync(process.execPath, [join(root, 'scripts/build-native.js')], { encoding: 'utf8' });
const buildFailed = build.status === 0 ? undefined : `build-native.js failed: ${build.stdout}${build.stderr}`;
const addonReason = buildFailed ? undefined : captureAvailable();
const nftMissing = spawnSync('nft', ['--version']).error ? 'needs nft' : undefined;

test('the addon was built (or the machine has no toolchain)', () => {
  assert.equal(buildFailed, undefined);
});

test('the addon throws errno text for a descriptor that is not a socket', { skip: addonReason }, () => {
  const addon = createRequire(import.meta.url)(join(root, 'native/original-dst/build/Release/original_dst.node')) as {
    originalDst(fd: number): unknown;
  };
  const fd = openSync(fileURLToPath(import.meta.url), 'r');
  try {
    assert.throws(() => addon.originalDst(fd), { message: /^getsockname: Socket operation on non-socket$/ });
    assert.throws(() => addon.originalDst(-1), TypeError);
  } finally {
    closeSync(fd);
  }
});

test('the capture listener hands over the original destination, and closes what was not redirected', async () => {
  const seen: [Endpoint, Endpoint][] = [];
  const logs: string[] = [];
  let selfAddressed = false;
  const l = await CaptureListener.start({
    port: 0,
    host: '127.0.0.1',
    // Stands in for SO_ORIGINAL_DST: the first connection "was going" to 10.96.7.7:8080, the
    // second to the listener itself.
    resolve: (s: Socket) =>
      selfAddressed ? { address: s.localAddress!, port: s.localPort! } : { address: '10.96.7.7', port: 8080 },
    handler: (socket, original, source) => {
      seen.push([original, source]);
      socket.end('ok');
    },
    log: (_level, msg) => logs.push(msg),
  });
  const talk = () =>
    new Promise<string>((resolve) => {
      let d = '';
      const c = connect(l.port, '127.0.0.1');
      c.on('data', (b) => (d += b));
      c.on('close', () => resolve(d));
      c.on('error', () => undefined);
    });
  try {
    assert.equal(await talk(), 'ok');
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]![0], { address: '10.96.7.7', port: 8080 });
    assert.equal(seen[0]![1].address, '127.0.0.1');
    selfAddressed = true;
    assert.equal(await talk(), '', 'closed without an answer');
    assert.equal(seen.length, 1, 'never handed over');
    assert.match(logs.join('\n'), /not redirected/);
  } finally {
    await l.close();
  }
});

/** Connects from inside a namespace; the server's answer, "ERR <code>" or "TIMEOUT". */
function tcpFrom(ns: string, host: string, port: number): string {
  const script = `const s=require('net').connect(${port},'${host}');let d='';s.on('data',(c)=>d+=c);s.on('end',()=>{console.log(d);process.exit(0)});s.on('error',(e)=>{console.log('ERR '+e.code);process.exit(0)});setTimeout(()=>{console.log('TIMEOUT');process.exit(0)},3000)`;
  return inNetns(ns, process.execPath, ['-e', script]).trim();
}

/** A long-running node process in a namespace whose stdout lines are collected; resolves once it prints "ready". */
async function started(ns: string, args: string[]): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 10_000);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code})`)));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
      if (parts.includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return { child, lines };
}

async function eventually(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(check(), what);
}

test(
  'a pod connection to any address lands in the node proxy with its original destination; exemptions and the node are not captured',
  { skip: datapathSkipReason() ?? nftMissing ?? addonReason },
  async () => {
    const bin = cniBinDir();
    const dataDir = mkdtempSync(join(tmpdir(), 'trellis-cni-ipam-'));
    const node = netns(`${tag}-node`);
    const pod = netns(`${tag}-pod`);
    const outside = netns(`${tag}-out`);
    const procs: ChildProcess[] = [];
    try {
      const conf = {
        cniVersion: '1.0.0',
        name: 'trellis',
        type: 'trellis-cni',
        ipam: { type: 'trellis-ipam', podCIDR: '10.244.1.0/24', dataDir },
      };
      const attachment = { containerId: `${tag}-c`, netns: pod.path, ifname: 'eth0' };
      const add = runPlugin('ADD', 'trellis-cni', conf, attachment, { binDir: bin.dir, inNetns: node.name });
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const podIp = (add.out!.ips as { address: string }[])[0]!.address.split('/')[0]!;
      const gateway = '10.244.1.1';
      // The node: a local service address (10.96.9.9 on lo) and an "outside" peer on a link
      // that is not a pod veth.
      const n = (...args: string[]) => inNetns(node.name, 'ip', args);
      n('link', 'set', 'lo', 'up');
      n('addr', 'add', '10.96.9.9/32', 'dev', 'lo');
      n('link', 'add', 'ext0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name);
      n('addr', 'add', '192.168.77.1/24', 'dev', 'ext0');
      n('link', 'set', 'ext0', 'up');
      const o = (...args: string[]) => inNetns(outside.name, 'ip', args);
      o('addr', 'add', '192.168.77.2/24', 'dev', 'eth0');
      o('link', 'set', 'eth0', 'up');
      o('route', 'add', 'default', 'via', '192.168.77.1');

      const opts = { excludeCidrs: ['10.96.9.0/24'], excludePorts: [8081] };
      await applyNft(captureNftScript(opts), { netns: node.path });
      const listener = await started(node.name, [
        join(here, '../helpers/capture-child.js'),
        JSON.stringify({ capturePorts: [15001, 15006], directPorts: [80, 8081, 15020] }),
      ]);
      procs.push(listener.child);
      const podServer = await started(pod.name, [
        '-e',
        `require('net').createServer((s) => s.end('pod')).listen(8080, '0.0.0.0', () => console.log('ready'))`,
      ]);
      procs.push(podServer.child);
      type Capture = { listener: number; original: Endpoint; source: Endpoint };
      const reports = () =>
        listener.lines.filter((l) => l !== 'ready').map((l) => JSON.parse(l) as Record<string, unknown>);
      const captures = () => reports().filter((r): r is Capture & Record<string, unknown> => 'original' in r);
      // The client may have its answer before this process has read the child's report line.
      const capture = async (i: number) => {
        await eventually(`capture report #${i}`, () => captures().length > i);
        return captures()[i]!;
      };

      // Nothing listens at 10.96.7.7:8080: the connection lands in the capture listener.
      assert.equal(tcpFrom(pod.name, '10.96.7.7', 8080), 'captured:15001');
      const first = await capture(0);
      assert.equal(first.listener, 15001);
      assert.deepEqual(first.original, { address: '10.96.7.7', port: 8080 });
      assert.equal(first.source.address, podIp);
      // The node's own address on another port is captured too (the proxy decides)...
      assert.equal(tcpFrom(pod.name, gateway, 80), 'captured:15001');
      assert.deepEqual((await capture(1)).original, { address: gateway, port: 80 });
      // ...but not the proxy's own ports on the node, nor the excluded CIDR and port.
      assert.equal(tcpFrom(pod.name, gateway, 15020), 'direct', 'metrics port on the node');
      assert.equal(tcpFrom(pod.name, '10.96.9.9', 80), 'direct', 'excluded CIDR');
      assert.equal(tcpFrom(pod.name, gateway, 8081), 'direct', 'excluded port');
      // A pod dialling the capture port itself reaches it unredirected: closed, never looped.
      assert.match(tcpFrom(pod.name, gateway, 15001), /^(|ERR ECONNRESET)$/);
      await eventually('the listener logged the unredirected connection', () =>
        reports().some((r) => /not redirected/.test(String(r.msg))),
      );
      // What the node originates (the proxy's upstream connections) is never captured.
      assert.equal(tcpFrom(node.name, podIp, 8080), 'pod');
      assert.equal(tcpFrom(node.name, '10.96.9.9', 8080), 'ERR ECONNREFUSED');
      // Inbound capture is off by default: outside reaches the pod directly.
      assert.equal(tcpFrom(outside.name, podIp, 8080), 'pod');
      assert.equal(captures().length, 2, 'only the two captured connections');

      // Inbound on (the table replaced in one transaction): outside -> pod goes to :15006.
      await applyNft(captureNftScript({ ...opts, inbound: true }), { netns: node.path });
      assert.equal(tcpFrom(outside.name, podIp, 8080), 'captured:15006');
      const inbound = await capture(2);
      assert.deepEqual(
        { listener: inbound.listener, original: inbound.original, source: inbound.source.address },
        { listener: 15006, original: { address: podIp, port: 8080 }, source: '192.168.77.2' },
      );
      assert.equal(tcpFrom(node.name, podIp, 8080), 'pod', 'the node still reaches the pod directly');
      assert.equal(tcpFrom(pod.name, '10.96.7.7', 8080), 'captured:15001');
    } finally {
      for (const p of procs) p.kill();
      pod.remove();
      outside.remove();
      node.remove();
      bin.remove();
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
);
