// `trellis up --netns` (root): every node and every workload of examples/shop in its own network
// namespace, pods attached by our CNI plugin, routed across nodes, resolving service names
// through the control plane's DNS; the demo request end to end; on the link between the nodes,
// only HBONE (TLS on 15008) for the meshed pods; everything removed on stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runIdFor } from '../../src/datapath/linux/netns/plan.js';
import { datapathSkipReason } from '../helpers/cni.js';
import { httpGet, meshUp, type MeshUp } from '../helpers/mesh-up.js';

const tcpdump = ['/usr/bin/tcpdump', '/usr/sbin/tcpdump'].find((p) => existsSync(p));

function netnsList(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

test(
  'trellis up --netns: pods in namespaces across two nodes, cluster DNS, the demo over HBONE, clean teardown',
  { skip: datapathSkipReason() ?? (tcpdump ? false : 'needs tcpdump (apt-get install tcpdump)') },
  async () => {
    let mesh: MeshUp | undefined;
    let runId = '';
    try {
      mesh = await meshUp(undefined, 90_000, ['--netns']);
      runId = runIdFor(mesh.stateDir);
      const out = mesh.stdout();
      const ns = (name: string) => `trl-${runId}-${name}`;
      // Addresses from the Mesh network defaults: node links 10.250.0.0/24, pods 10.244.<node>.0/24.
      assert.match(out, /node node-a\s+HBONE 10\.250\.0\.2:15008/);
      assert.match(out, /shop\/frontend\s+on node-a, serves 10\.244\.0\.\d+:9080/);
      assert.match(out, /shop\/orders\s+on node-b, serves 10\.244\.1\.\d+:9090, captured/);
      const ordersIp = /shop\/orders\s+on node-b, serves (10\.244\.1\.\d+)/.exec(out)![1]!;
      for (const n of ['node-a', 'node-b', 'shop_frontend', 'shop_orders', 'shop_api-v1', 'shop_api-v2'])
        assert.ok(netnsList().includes(ns(n)), n);

      // Inside a pod: its own interface and address, service names resolve to VIPs, other nodes' pods route.
      const pod = (name: string, cmd: string, args: string[]) =>
        spawnSync('ip', ['netns', 'exec', ns(name), cmd, ...args], { encoding: 'utf8', timeout: 10_000 }).stdout;
      assert.match(pod('shop_frontend', 'ip', ['-4', 'addr', 'show', 'eth0']), /inet 10\.244\.0\.\d+\/24/);
      assert.match(pod('shop_frontend', 'getent', ['hosts', 'api.shop.svc.cluster.local']), /^10\.96\.\d+\.\d+\s+api/);
      assert.match(pod('shop_frontend', 'getent', ['hosts', 'orders']), /^10\.96\.\d+\.\d+\s+orders\.shop\.svc/);
      assert.match(pod('shop_frontend', 'ping', ['-c', '1', '-W', '2', ordersIp]), /1 received/);

      // Unmodified apps (no HTTP_PROXY): their connections are captured into the node proxy, which
      // applies the mesh's policy. orders admits api's identity only: frontend's direct attempt is refused.
      const direct = pod('shop_frontend', process.execPath, [
        '-e',
        "const s=require('net').connect(7000,'orders.shop.svc.cluster.local');s.on('connect',()=>s.write('hi\\n'));s.on('data',(d)=>console.log('DATA '+d));s.on('close',()=>process.exit(0));s.on('error',()=>process.exit(0));setTimeout(()=>process.exit(0),3000)",
      ]);
      assert.doesNotMatch(direct, /DATA/);
      const flows = async (q: string) =>
        (await httpGet(`http://127.0.0.1:15014/flows?since=0&${q}`)).body
          .split('\n')
          .filter(Boolean)
          .map(
            (l) => JSON.parse(l) as { node: string; reason?: string; source: { workload?: string; identity?: string } },
          );
      const denied = await flows('verdict=DENIED');
      assert.ok(
        denied.some(
          (f) =>
            f.node === 'node-b' &&
            f.source.identity?.endsWith('/sa/frontend') &&
            /orders-allow-api/.test(f.reason ?? ''),
        ),
        JSON.stringify(denied),
      );

      // The kernel's part: service VIPs balanced in nftables on every node, and NetworkPolicy
      // enforced there (applied by the control plane when the policy arrives, atomically).
      const nft = (node: string, args: string[]) =>
        spawnSync('ip', ['netns', 'exec', ns(node), 'nft', ...args], { encoding: 'utf8' }).stdout;
      const apiVip = /^(\S+)/.exec(pod('shop_frontend', 'getent', ['hosts', 'api.shop.svc.cluster.local']))![1]!;
      assert.match(
        nft('node-b', ['list', 'map', 'ip', 'trellis-services', 'services']),
        new RegExp(apiVip.replace(/\./g, '\\.')),
      );
      const policy = [
        'apiVersion: networking.k8s.io/v1',
        'kind: NetworkPolicy',
        'metadata: {name: orders-from-api, namespace: shop}',
        'spec:',
        '  podSelector: {matchLabels: {app: orders}}',
        '  policyTypes: [Ingress]',
        '  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 9090}]}]',
      ].join('\n');
      const applied = await fetch('http://127.0.0.1:15014/apply', { method: 'POST', body: policy });
      assert.equal(applied.status, 200, await applied.text());
      let pinged = '';
      for (let i = 0; i < 20 && !/0 received/.test(pinged); i++) {
        await new Promise((r) => setTimeout(r, 250));
        pinged = pod('shop_frontend', 'ping', ['-c', '1', '-W', '1', ordersIp]);
      }
      assert.match(pinged, /0 received/, 'the kernel drops what no NetworkPolicy allows');
      const kernel = (await flows('verdict=DENIED')).filter((f) => /^kernel policy/.test(f.reason ?? ''));
      assert.ok(
        kernel.some((f) => f.node === 'node-b' && /NetworkPolicy\/shop\/orders-from-api/.test(f.reason ?? '')),
        JSON.stringify(kernel),
      );

      // The demo request, captured on node-a's link to the other node.
      const pcap = join(mesh.stateDir, 'link.pcap');
      const dump = spawn(tcpdump!, ['-i', `trl${runId}n0`, '-n', '--immediate-mode', '-U', '-s', '0', '-w', pcap], {
        stdio: 'ignore',
      });
      try {
        await new Promise((r) => setTimeout(r, 1000));
        for (let i = 0; i < 5; i++) {
          const r = await httpGet(`http://10.250.0.2:8000/call?trellis-marker-${i}`, { host: 'shop.localhost' });
          assert.equal(r.status, 200, r.body);
          const body = JSON.parse(r.body) as { upstream: { name: string; upstream: string } };
          assert.match(body.upstream.name, /^api-v[12]$/);
          assert.equal(body.upstream.upstream, 'orders: ping');
        }
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        dump.kill('SIGINT');
        await new Promise((r) => dump.once('exit', r));
      }
      // Between the two nodes (10.250.0.2 <-> 10.250.0.3): TCP on 15008 only, and no plaintext.
      const between = spawnSync(tcpdump!, ['-r', pcap, '-n', 'host 10.250.0.2 and host 10.250.0.3'], {
        encoding: 'latin1',
      }).stdout;
      const lines = between.split('\n').filter((l) => l.includes(' IP '));
      assert.ok(lines.length > 0, 'node-to-node traffic was captured');
      for (const l of lines) assert.match(l, /10\.250\.0\.[23]\.15008[ >:]/, l);
      const payload = spawnSync(tcpdump!, ['-r', pcap, '-A', 'tcp port 15008'], { encoding: 'latin1' }).stdout;
      assert.doesNotMatch(payload, /trellis-marker-|GET \/call|orders: ping/);
      assert.ok(readFileSync(pcap).includes(Buffer.from([0x17, 0x03, 0x03])), 'TLS application data on the link');
    } finally {
      await mesh?.stop();
    }
    if (runId) {
      assert.deepEqual(
        netnsList().filter((n) => n.startsWith(`trl-${runId}-`)),
        [],
        'every namespace of the run is gone',
      );
      assert.equal(spawnSync('ip', ['link', 'show', `trl${runId}br`]).status, 1, 'the bridge is gone');
    }
  },
);
