// The kernel policy for real: a node namespace, four pods attached with our CNI plugin, the
// policy compiled from NetworkPolicy / CiliumNetworkPolicy YAML applied in the node with nft,
// and TCP connections between the pods proving the Kubernetes semantics; then the drops as
// flow records, and an atomic update that leaves an established connection alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MeshModel } from '../../src/model/mesh-model.js';
import { enforceNodePolicy, readDrops, removePolicy } from '../../src/datapath/linux/policy/kernel-policy.js';
import { cniBinDir, datapathSkipReason, inNetns, netns, runPlugin, nodeInNetns, readyLine } from '../helpers/cni.js';
import { modelFromYaml } from '../helpers/yaml.js';

const tag = `trl-kp-${process.pid}`;
const PORTS = [80, 5432, 6000, 7000, 7001, 7002, 7005, 8000, 9999];

const model = (yaml: string): MeshModel => modelFromYaml(yaml);

interface Pods {
  web: string;
  api: string;
  opsApi: string;
  db: string;
}

/** shop/web, shop/api, ops/api, shop/db, each with its own service account, and the policies. */
function meshYaml(ip: Pods, cidr: string, extra = ''): string {
  const ports = `{ ${PORTS.map((p) => `p${p}: ${p}`).join(', ')} }`;
  const entry = (ns: string, name: string, app: string, addr: string) => `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: ${ns} }
spec: { address: ${addr}, serviceAccount: ${name}, labels: { app: ${app} }, ports: ${ports} }
---`;
  return `
apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: m }
spec: { trustDomain: cluster.local }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { team: shop } }
---
apiVersion: v1
kind: Namespace
metadata: { name: ops, labels: { env: ops } }
---
${entry('shop', 'web', 'web', ip.web)}
${entry('shop', 'api', 'api', ip.api)}
${entry('ops', 'ops-api', 'api', ip.opsApi)}
${entry('shop', 'db', 'db', ip.db)}
# namespaceSelector AND podSelector in one entry: only ops/api.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-and, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ namespaceSelector: { matchLabels: { env: ops } }, podSelector: { matchLabels: { app: api } } }]
      ports: [{ port: 5432 }]
---
# Two entries: ops namespace OR shop/web.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-or, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ namespaceSelector: { matchLabels: { env: ops } } }, { podSelector: { matchLabels: { app: web } } }]
      ports: [{ port: 6000 }]
---
# endPort: shop/api on 7000-7002 only.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-range, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ podSelector: { matchLabels: { app: api } } }]
      ports: [{ port: 7000, endPort: 7002 }]
---
# ipBlock with except: the pod network but web.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-ipblock, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ ipBlock: { cidr: ${cidr}, except: [${ip.web}/32] } }]
      ports: [{ port: 8000 }]
---
# Egress isolation: ops/api may only reach db.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: ops-api-egress, namespace: ops }
spec:
  podSelector: { matchLabels: { app: api } }
  policyTypes: [Egress]
  egress:
    - to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: db } } }]
---
# Cilium L3/L4: web takes port 80 from shop's api only.
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: web-from-api, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: web } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: api } }]
      toPorts: [{ ports: [{ port: '80', protocol: TCP }] }]
---
${extra}`;
}

/** A TCP echo server on every port (node, no extra tools). */
function servers(ns: string): ChildProcess {
  const js = `const net=require('net');let n=0;for(const p of ${JSON.stringify(PORTS)})net.createServer((s)=>s.pipe(s)).listen(p,'0.0.0.0',()=>{if(++n===${PORTS.length})console.log('ready')})`;
  return nodeInNetns(ns, js);
}

/** Connects from a namespace to each "ip:port" at once (1.5 s timeout); "ok" when the echo came back. */
function probe(ns: string, targets: readonly string[]): Record<string, string> {
  const js = `const net=require('net');const out={};let left=${targets.length};
for(const t of ${JSON.stringify(targets)}){const [h,p]=t.split(':');const s=net.connect(+p,h);
const done=(r)=>{if(out[t])return;out[t]=r;s.destroy();if(--left===0){console.log(JSON.stringify(out));process.exit(0)}};
s.setTimeout(1500,()=>done('timeout'));s.on('connect',()=>s.write('x'));s.on('data',()=>done('ok'));s.on('error',(e)=>done(e.code))}`;
  return JSON.parse(inNetns(ns, process.execPath, ['-e', js], 10_000)) as Record<string, string>;
}

function expectReach(ns: string, expected: Record<string, boolean>): void {
  const got = probe(ns, Object.keys(expected));
  const actual = Object.fromEntries(Object.keys(expected).map((k) => [k, got[k] === 'ok']));
  assert.deepEqual(actual, expected, `from ${ns}: ${JSON.stringify(got)}`);
}

test(
  'NetworkPolicy and CiliumNetworkPolicy enforced by nftables between real pods; drops as flow records; atomic update',
  { skip: datapathSkipReason(true), timeout: 120_000 },
  async () => {
    const bin = cniBinDir();
    const dataDir = mkdtempSync(join(tmpdir(), 'trellis-kp-ipam-'));
    const node = netns(`${tag}-node`);
    const names = ['web', 'api', 'opsapi', 'db'] as const;
    const pods = names.map((n) => netns(`${tag}-${n}`));
    const procs: ChildProcess[] = [];
    const cidr = '10.244.7.0/24';
    const conf = {
      cniVersion: '1.0.0',
      name: 'trellis',
      type: 'trellis-cni',
      ipam: { type: 'trellis-ipam', podCIDR: cidr, dataDir },
    };
    try {
      const ips = pods.map((p, i) => {
        const r = runPlugin(
          'ADD',
          'trellis-cni',
          conf,
          { containerId: `${tag}-${i}`, netns: p.path, ifname: 'eth0' },
          {
            binDir: bin.dir,
            inNetns: node.name,
          },
        );
        assert.equal(r.code, 0, r.stdout + r.stderr);
        return (r.out!.ips as { address: string }[])[0]!.address.split('/')[0]!;
      });
      const ip: Pods = { web: ips[0]!, api: ips[1]!, opsApi: ips[2]!, db: ips[3]! };
      const [webNs, apiNs, opsNs, dbNs] = pods.map((p) => p.name) as [string, string, string, string];
      for (const p of pods) {
        const s = servers(p.name);
        procs.push(s);
        await readyLine(s);
      }
      // Before any policy: everything reaches everything.
      expectReach(webNs, { [`${ip.db}:9999`]: true, [`${ip.api}:80`]: true });

      const m = model(meshYaml(ip, cidr));
      const nodePath = node.path;
      const policy = await enforceNodePolicy(m, m.workloads, { netns: nodePath });
      assert.deepEqual(policy.problems, []);

      const at = (addr: string, ...ports: number[]) => ports.map((p) => `${addr}:${p}`);
      const reach = (yes: string[], no: string[]) =>
        Object.fromEntries([...yes.map((t) => [t, true]), ...no.map((t) => [t, false])]) as Record<string, boolean>;
      // shop/api: AND entry refuses it (wrong namespace), OR entry too; endPort 7000-7002 only; ipBlock lets it in.
      expectReach(
        apiNs,
        reach(
          [...at(ip.db, 7000, 7001, 7002, 8000), ...at(ip.web, 80), ...at(ip.opsApi, 80)],
          at(ip.db, 5432, 6000, 7005, 9999),
        ),
      );
      // ops/api: AND entry and OR entry (namespace) let it in; egress isolation keeps it off web and shop/api.
      expectReach(
        opsNs,
        reach(at(ip.db, 5432, 6000, 8000), [...at(ip.web, 80), ...at(ip.api, 80), ...at(ip.db, 7000)]),
      );
      // shop/web: OR entry (podSelector) lets it in on 6000; the ipBlock except keeps it off 8000; api is not isolated.
      expectReach(webNs, reach([...at(ip.db, 6000), ...at(ip.api, 80, 9999)], at(ip.db, 5432, 7000, 8000, 9999)));
      // Cilium fromEndpoints is confined to its namespace: db (wrong labels) is refused at web; web's other ports too.
      expectReach(dbNs, reach([...at(ip.api, 80), ...at(ip.opsApi, 80)], at(ip.web, 80, 9999)));

      // The drops, as flow records naming identity, port and the policies in force.
      const drops = await readDrops(policy, { netns: nodePath, node: 'node-a' });
      const webToDb = drops.find(
        (d) =>
          d.flow.source.address === ip.web &&
          d.flow.destination.address === ip.db &&
          d.flow.reason?.includes('TCP/9999'),
      );
      assert.ok(webToDb, JSON.stringify(drops.map((d) => d.flow.reason)));
      assert.ok(webToDb.packets >= 1);
      assert.equal(webToDb.flow.verdict, 'DENIED');
      assert.equal(webToDb.flow.observationPoint, 'node-inbound');
      assert.equal(webToDb.flow.source.workload, 'WorkloadEntry/shop/web');
      assert.equal(webToDb.flow.destination.identity, 'spiffe://cluster.local/ns/shop/sa/db');
      assert.match(
        webToDb.flow.reason!,
        /^kernel policy: no network policy allows TCP\/9999 from spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web \(policies in force: NetworkPolicy\/shop\/db-and, NetworkPolicy\/shop\/db-ipblock, NetworkPolicy\/shop\/db-or, NetworkPolicy\/shop\/db-range\)$/,
      );
      const egress = drops.find((d) => d.flow.source.address === ip.opsApi && d.flow.destination.address === ip.web);
      assert.equal(egress?.flow.observationPoint, 'node-outbound');
      assert.match(
        egress?.flow.reason ?? '',
        /TCP\/80 to spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web .*NetworkPolicy\/ops\/ops-api-egress/,
      );

      // An update while api holds an established connection to db:7000 and web keeps connecting to db:6000.
      const loop = spawn(
        'ip',
        [
          'netns',
          'exec',
          apiNs,
          process.execPath,
          '-e',
          `const net=require('net');const s=net.connect(7000,'${ip.db}');let sent=0,got=0,fails=0,i=0;
s.on('data',(d)=>{got+=d.length});s.on('error',()=>{fails++});
const t=setInterval(()=>{if(++i>30){clearInterval(t);setTimeout(()=>{console.log(JSON.stringify({sent,got,fails}));process.exit(0)},300);return}
s.write('ping');sent+=4},100);`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      procs.push(loop);
      const loopOut = new Promise<string>((resolve) => {
        let out = '';
        loop.stdout!.on('data', (c: Buffer) => (out += c.toString()));
        loop.on('exit', () => resolve(out));
      });
      const extra = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-debug, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress: [{ from: [{ podSelector: { matchLabels: { app: web } } }], ports: [{ port: 9999 }] }]
`;
      const updated = model(meshYaml(ip, cidr, extra));
      let updates = 0;
      let connects = 0;
      const deadline = Date.now() + 2500;
      while (Date.now() < deadline) {
        await enforceNodePolicy(Date.now() % 2 ? updated : m, m.workloads, { netns: nodePath });
        updates++;
        expectReach(webNs, { [`${ip.db}:6000`]: true });
        connects++;
      }
      const after = await enforceNodePolicy(updated, updated.workloads, { netns: nodePath });
      const stats = JSON.parse(await loopOut) as { sent: number; got: number; fails: number };
      assert.deepEqual(
        { fails: stats.fails, echoed: stats.got === stats.sent },
        { fails: 0, echoed: true },
        JSON.stringify(stats),
      );
      assert.ok(updates >= 2 && connects >= 2);
      // The new policy took effect; the drops counted before the updates are still there.
      expectReach(webNs, { [`${ip.db}:9999`]: true, [`${ip.db}:5432`]: false });
      const later = await readDrops(after, { netns: nodePath });
      assert.ok(later.some((d) => d.flow.source.address === ip.web && d.flow.reason?.includes('TCP/9999')));

      await removePolicy({ netns: nodePath });
      expectReach(opsNs, { [`${ip.web}:80`]: true });
    } finally {
      for (const p of procs) p.kill();
      for (const p of pods) p.remove();
      node.remove();
      bin.remove();
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
);
