// npm run bench:datapath — new-connection rate and connect latency between two pods with 10,
// 1,000 and 10,000 policy rules in force: Trellis' compiled nftables ruleset against a naive
// linear iptables chain holding the same rules, in the same run, with "no policy at all" as the
// anchor. The eBPF-vs-iptables comparison, reproduced with nftables: set lookups should keep the
// Trellis figure flat while the linear chain degrades with its length.
//
// Topology (root; all names carry this process's PID, everything removed on exit, Ctrl-C or a
// crash): a node network namespace and three pod namespaces (client, server, intruder) attached
// by our CNI plugin (installed into a temporary bin directory, run inside the node namespace as
// a runtime would), so pod-to-pod traffic is routed by the node's forward hook.
//
// Rules, N in all: N-1 NetworkPolicies selecting the server pod, each allowing TCP/8080 from one
// ipBlock /32 of 10.200.0.0/16 (never a pod), and one allowing the client pod on 8080.
//   nft: the real compiler (YAML -> model -> compileNodePolicy -> renderPolicyScript), applied in
//     the node namespace with applyPolicy (one `nft -f -` transaction).
//   iptables: FORWARD accepts established/related, then jumps to TRELLIS-LINEAR for the server's
//     address; TRELLIS-LINEAR holds one `-s <src>/32 -d <server> -p tcp --dport 8080 -j ACCEPT`
//     per rule in the same order with the client's LAST (the worst case), then DROP. Loaded with
//     one iptables-restore; iptables-legacy when installed (the classic linear chain), otherwise
//     whatever `iptables` is (with iptables-nft the chain is N nftables rules evaluated in order).
// Both accept established traffic first, so only a connection's first packet (ct state new) meets
// the rules: that is what a new-connection rate measures.
//
// Load: a Node TCP server in the server pod writes one byte and closes; a Node client in the
// client pod runs K connectors, each making new connections one after another (connect, read the
// byte, reset: no TIME_WAIT, so no source port is held and none is reused while in use) for
// BENCH_DURATION seconds, at most BENCH_MAX_CONNECTIONS per run. Latency is connect() to the
// 'connect' event (SYN -> SYN-ACK through the node). Each configuration runs BENCH_RUNS times,
// configurations alternating (the order reversed every other run); medians.
//
// Before measuring, each ruleset is checked: the client reaches server:8080, the intruder pod
// (not allowed) does not, nor does the client on server:8081. A ruleset that fails is reported
// and not measured.
//
// Env: BENCH_RUNS (3), BENCH_DURATION (5 s), BENCH_CONNECTIONS (4 connectors),
//      BENCH_MAX_CONNECTIONS (200,000 per run), BENCH_SIZES ("10,1000,10000").
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadDocuments } from '../src/config/load.js';
import { parseYamlFile } from '../src/config/source/yaml-documents.js';
import { installPlugins } from '../src/datapath/linux/cni/install.js';
import { applyPolicy, removePolicy } from '../src/datapath/linux/policy/kernel-policy.js';
import { renderPolicyScript } from '../src/datapath/linux/policy/nft-policy.js';
import { compileNodePolicy, modelIpcache, workloadsOnNode } from '../src/datapath/linux/policy/policy-map.js';
import { applyNft } from '../src/datapath/linux/nft.js';
import { compileModel } from '../src/model/compile.js';
import { installCleanupHandlers, registerTempDir, runToCompletion, startProcess, type Proc } from './proxy/procs.js';
import { envInt, median } from './stats.js';

const RUNS = envInt('BENCH_RUNS', 3);
const DURATION_S = envInt('BENCH_DURATION', 5);
const CONNECTORS = envInt('BENCH_CONNECTIONS', 4);
const MAX_PER_RUN = envInt('BENCH_MAX_CONNECTIONS', 200_000);
const SIZES = (process.env.BENCH_SIZES ?? '10,1000,10000').split(',').map((s) => {
  const n = Number.parseInt(s, 10);
  if (!Number.isFinite(n) || n < 1 || n > 60_000) throw new Error(`BENCH_SIZES: ${s}: expected 1..60000`);
  return n;
});
const FLAT = 0.1;
const PORT = 8080;
const OTHER_PORT = 8081;
const POD_CIDR = '10.248.0.0/24';
const NODE = 'bench-node';
const TAG = `trl-dpb-${process.pid}`;

const fmt = (x: number, d = 0): string =>
  x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const log = (s: string): void => void process.stderr.write(`${s}\n`);

if (process.getuid?.() !== 0) {
  console.log('bench:datapath — skipped: needs root (network namespaces, nft, iptables)');
  process.exit(0);
}
for (const tool of ['ip', 'nft', 'nsenter'])
  if (spawnSync(tool, ['-V'], { encoding: 'utf8' }).error) {
    console.log(`bench:datapath — skipped: ${tool} not found`);
    process.exit(0);
  }

// ---------------------------------------------------------------------------------------
// iptables backend: iptables-legacy when installed (the classic linear chain), else `iptables`.

const version = (cmd: string): string | undefined => {
  const r = spawnSync(cmd, ['-V'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? undefined : r.stdout.trim();
};
const defaultIptables = version('iptables');
const legacy = version('iptables-legacy');
const iptRestore = legacy ? 'iptables-legacy-restore' : 'iptables-restore';
const iptBackend = legacy
  ? `iptables-legacy (${legacy}; the default \`iptables\` here is ${defaultIptables ?? 'absent'})`
  : `${defaultIptables ?? 'iptables'}${defaultIptables?.includes('nf_tables') ? ': the linear chain is an nftables chain of N rules, evaluated in order' : ''}`;
if (!legacy && !defaultIptables) {
  console.log('bench:datapath — skipped: no iptables');
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
// Cleanup: processes and temp dirs (procs.ts), then the namespaces, on any exit.

installCleanupHandlers();
const namespaces: string[] = [];
process.on('exit', () => {
  for (const ns of namespaces.reverse()) spawnSync('ip', ['netns', 'delete', ns]);
});
const tmp = mkdtempSync(join(tmpdir(), 'trellis-bench-datapath-'));
registerTempDir(tmp);

function addNetns(name: string): string {
  const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
  namespaces.push(name);
  return name;
}
const nsPath = (ns: string): string => `/var/run/netns/${ns}`;

function inNs(ns: string, cmd: string, args: readonly string[], input?: string, timeoutMs = 60_000): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    input,
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${ns}: ${r.error?.message ?? ''}${r.stderr}`);
  return r.stdout;
}
const sysctl = (ns: string, key: string, value: string): void => {
  inNs(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
};

// ---------------------------------------------------------------------------------------
// Topology: node + client, server, intruder pods attached by trellis-cni.

const binDir = join(tmp, 'cni-bin');
installPlugins(binDir);
const ipamDir = join(tmp, 'ipam');
mkdirSync(ipamDir);
const nodeNs = addNetns(`${TAG}-node`);
const POD_NAMES = ['client', 'server', 'intruder'] as const;
type PodName = (typeof POD_NAMES)[number];
const podNs = Object.fromEntries(POD_NAMES.map((p) => [p, addNetns(`${TAG}-${p}`)])) as Record<PodName, string>;
const conf = {
  cniVersion: '1.0.0',
  name: 'trellis',
  type: 'trellis-cni',
  ipam: { type: 'trellis-ipam', podCIDR: POD_CIDR, dataDir: ipamDir },
};
const ip = {} as Record<PodName, string>;
for (const [i, p] of POD_NAMES.entries()) {
  const r = spawnSync('ip', ['netns', 'exec', nodeNs, join(binDir, 'trellis-cni')], {
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: 'ADD',
      CNI_PATH: binDir,
      CNI_CONTAINERID: `${TAG}-${i}`,
      CNI_IFNAME: 'eth0',
      CNI_NETNS: nsPath(podNs[p]),
    },
    input: JSON.stringify(conf),
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`trellis-cni ADD ${p}: ${r.stdout}${r.stderr}`);
  const out = JSON.parse(r.stdout) as { ips: { address: string }[] };
  ip[p] = out.ips[0]!.address.split('/')[0]!;
}
// Conntrack entries of closed connections must not pile up over the run (the node namespace is ours).
for (const [k, v] of [
  ['net.netfilter.nf_conntrack_tcp_timeout_close', '1'],
  ['net.netfilter.nf_conntrack_tcp_timeout_time_wait', '1'],
] as const)
  try {
    sysctl(nodeNs, k, v);
  } catch (e) {
    log(`note: ${(e as Error).message.trim()}`);
  }
sysctl(podNs.client, 'net.ipv4.ip_local_port_range', '10000 65000');
log(`topology: node ${nodeNs}; client ${ip.client}, server ${ip.server}, intruder ${ip.intruder}`);

// ---------------------------------------------------------------------------------------
// The rules: N-1 decoy sources then the client; the same list for both rulesets.

const decoy = (i: number): string => `10.200.${i >> 8}.${i & 255}`;

function meshYaml(n: number): string {
  const entry = (name: string) => `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: bench }
spec: { address: ${ip[name as PodName]}, serviceAccount: ${name}, labels: { app: ${name} }, ports: { tcp: ${PORT}, alt: ${OTHER_PORT} } }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: ${name}, namespace: bench }
spec: { node: ${NODE} }
`;
  const docs = [
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: bench }
spec:
  trustDomain: cluster.local
  nodes: [{ name: ${NODE}, address: 10.0.0.1 }]
---
apiVersion: v1
kind: Namespace
metadata: { name: bench }
`,
    ...POD_NAMES.map(entry).map((d) => d.replace(/---\n$/, '')),
  ];
  const policy = (name: string, from: string) => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: ${name}, namespace: bench }
spec:
  podSelector: { matchLabels: { app: server } }
  ingress: [{ from: [${from}], ports: [{ port: ${PORT} }] }]
`;
  for (let i = 0; i < n - 1; i++) docs.push(policy(`allow-${i}`, `{ ipBlock: { cidr: ${decoy(i)}/32 } }`));
  docs.push(policy('allow-client', '{ podSelector: { matchLabels: { app: client } } }'));
  return docs.join('---\n');
}

interface Compiled {
  readonly script: string;
  readonly loadMs: number;
  readonly ipcacheMs: number;
  readonly compileMs: number;
  readonly renderMs: number;
  readonly counts: string;
}

function compileTrellis(n: number): Compiled {
  let t = performance.now();
  const parsed = parseYamlFile(`datapath-${n}.yaml`, meshYaml(n));
  if (parsed.problems.length) throw new Error(`bench YAML: ${JSON.stringify(parsed.problems[0])}`);
  const loaded = loadDocuments(parsed.documents);
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length) throw new Error(`bench config invalid: ${errors[0]!.message}`);
  const model = compileModel(loaded.resources);
  const loadMs = performance.now() - t;
  t = performance.now();
  const ipcache = modelIpcache(model);
  const ipcacheMs = performance.now() - t;
  t = performance.now();
  const policy = compileNodePolicy(model, workloadsOnNode(model, NODE), ipcache);
  const compileMs = performance.now() - t;
  if (policy.problems.length) throw new Error(`compileNodePolicy(${n}): ${policy.problems[0]}`);
  t = performance.now();
  const script = renderPolicyScript(policy);
  const renderMs = performance.now() - t;
  const allow = policy.ingress.reduce((a, p) => a + p.allow.length, 0);
  const counts = `ipcache ${fmt(ipcache.fragments.length)} intervals / ${fmt(ipcache.identities.length)} identities; ingress_allow ${fmt(allow)}; ingress_isolated ${policy.ingress.length}; egress_isolated ${policy.egress.length}; 3 rules in forward, 4 in ingress; script ${fmt(script.length / 1024, 0)} KiB`;
  return { script, loadMs, ipcacheMs, compileMs, renderMs, counts };
}

function iptablesScript(n: number): string {
  const lines = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':TRELLIS-LINEAR - [0:0]',
    '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    `-A FORWARD -d ${ip.server}/32 -j TRELLIS-LINEAR`,
  ];
  const rule = (src: string) =>
    `-A TRELLIS-LINEAR -s ${src}/32 -d ${ip.server}/32 -p tcp -m tcp --dport ${PORT} -j ACCEPT`;
  for (let i = 0; i < n - 1; i++) lines.push(rule(decoy(i)));
  lines.push(rule(ip.client), `-A TRELLIS-LINEAR -d ${ip.server}/32 -j DROP`, 'COMMIT');
  return `${lines.join('\n')}\n`;
}
const IPT_EMPTY = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
// The conntrack-only anchor: what turning conntrack on costs, with no policy.
const CT_TABLE = 'trellis-bench-ct';
const CT_SCRIPT = `table inet ${CT_TABLE} {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n  }\n}\n`;
const CT_REMOVE = `add table inet ${CT_TABLE}\ndelete table inet ${CT_TABLE}\n`;

// ---------------------------------------------------------------------------------------
// Configurations: apply / remove (timed), verify, measure.

type Kind = 'none' | 'ct' | 'nft' | 'iptables';
interface Config {
  readonly kind: Kind;
  readonly n: number;
  readonly label: string;
  apply(): Promise<number>;
  readonly applyMs: number[];
  readonly runs: RunResult[];
  verified?: string; // undefined = not yet; '' = ok; otherwise why not
}
interface RunResult {
  readonly count: number;
  readonly errors: number;
  readonly seconds: number;
  readonly p50Us: number;
  readonly p99Us: number;
}

let applied: Kind = 'none';
async function clearAll(): Promise<void> {
  if (applied === 'nft') await removePolicy({ netns: nsPath(nodeNs) });
  if (applied === 'iptables') inNs(nodeNs, iptRestore, [], IPT_EMPTY);
  if (applied === 'ct') await applyNft(CT_REMOVE, { netns: nsPath(nodeNs) });
  applied = 'none';
}
async function timed(f: () => Promise<void> | void): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}

// Compile first: the compile time of the largest size is a result of its own.
const compiled = new Map<number, Compiled>();
for (const n of SIZES) {
  log(`compiling ${fmt(n)} policies ...`);
  const c = compileTrellis(n);
  compiled.set(n, c);
  log(
    `  ${fmt(n)}: YAML -> model ${fmt(c.loadMs)} ms, modelIpcache ${fmt(c.ipcacheMs)} ms, compileNodePolicy ${fmt(c.compileMs)} ms, render ${fmt(c.renderMs)} ms; ${c.counts}`,
  );
}
const iptScripts = new Map(SIZES.map((n) => [n, iptablesScript(n)]));

const configs: Config[] = [
  {
    kind: 'none',
    n: 0,
    label: 'no policy (anchor)',
    apply: () => timed(clearAll),
    applyMs: [],
    runs: [],
  },
  {
    kind: 'ct',
    n: 0,
    label: 'conntrack only (ct state established accept, no rules)',
    apply: () =>
      timed(async () => {
        await clearAll();
        await applyNft(CT_SCRIPT, { netns: nsPath(nodeNs) });
        applied = 'ct';
      }),
    applyMs: [],
    runs: [],
  },
];
for (const n of SIZES) {
  configs.push({
    kind: 'nft',
    n,
    label: `Trellis nftables, ${fmt(n)} rules`,
    apply: async () => {
      await clearAll();
      const ms = await timed(() => applyPolicy(compiled.get(n)!.script, { netns: nsPath(nodeNs) }));
      applied = 'nft';
      return ms;
    },
    applyMs: [],
    runs: [],
  });
  configs.push({
    kind: 'iptables',
    n,
    label: `linear iptables chain, ${fmt(n)} rules`,
    apply: async () => {
      await clearAll();
      const ms = await timed(() => void inNs(nodeNs, iptRestore, [], iptScripts.get(n)!));
      applied = 'iptables';
      return ms;
    },
    applyMs: [],
    runs: [],
  });
}

// The server: one byte, then close; 8080 (allowed) and 8081 (never allowed).
const serverLog = join(tmp, 'server.log');
const server: Proc = await startProcess({
  name: 'server',
  command: 'ip',
  args: [
    'netns',
    'exec',
    podNs.server,
    process.execPath,
    '-e',
    `const net=require('net');let n=0;for(const p of [${PORT},${OTHER_PORT}])net.createServer((s)=>{s.on('error',()=>{});s.end('x')}).listen({port:p,host:'0.0.0.0',backlog:4096},()=>{if(++n===2)console.log('ready')})`,
  ],
  log: serverLog,
});
for (let i = 0; !readFileSync(serverLog, 'utf8').includes('ready'); i++) {
  if (i > 200 || server.exited()) throw new Error(`server did not start: ${readFileSync(serverLog, 'utf8')}`);
  await sleep(50);
}

/** Connects from a pod to each "ip:port" at once (1.5 s timeout); "ok" when the byte came back. */
function probe(from: PodName, targets: readonly string[]): Record<string, string> {
  const js = `const net=require('net');const out={};let left=${targets.length};
for(const t of ${JSON.stringify(targets)}){const [h,p]=t.split(':');const s=net.connect(+p,h);
const done=(r)=>{if(out[t])return;out[t]=r;s.destroy();if(--left===0){console.log(JSON.stringify(out));process.exit(0)}};
s.setTimeout(1500,()=>done('timeout'));s.on('data',()=>done('ok'));s.on('error',(e)=>done(e.code))}`;
  return JSON.parse(inNs(podNs[from], process.execPath, ['-e', js], undefined, 10_000)) as Record<string, string>;
}

function verify(c: Config): string {
  const open = c.kind === 'none' || c.kind === 'ct';
  const fromClient = probe('client', [`${ip.server}:${PORT}`, `${ip.server}:${OTHER_PORT}`]);
  const fromIntruder = probe('intruder', [`${ip.server}:${PORT}`]);
  const got = {
    'client -> server:8080': fromClient[`${ip.server}:${PORT}`],
    'client -> server:8081': fromClient[`${ip.server}:${OTHER_PORT}`],
    'intruder -> server:8080': fromIntruder[`${ip.server}:${PORT}`],
  };
  const want = { 'client -> server:8080': true, 'client -> server:8081': open, 'intruder -> server:8080': open };
  const wrong = Object.entries(want).filter(([k, ok]) => (got[k as keyof typeof got] === 'ok') !== ok);
  return wrong.length
    ? `expected ${wrong.map(([k, ok]) => `${k} ${ok ? 'allowed' : 'denied'}`).join(', ')}; got ${JSON.stringify(got)}`
    : '';
}

// The load: K connectors, new connections one after another, bounded in time and count.
const CLIENT_JS = `const net=require('net');
const [host,port,durMs,max,k]=process.argv.slice(1).map((x,i)=>i===0?x:Number(x));
const lat=[];let count=0,errors=0;const end=Date.now()+durMs;
function one(){return new Promise((resolve)=>{const t0=process.hrtime.bigint();let tc=0n,done=false;
const s=net.connect({host,port:+port});
const fin=(ok)=>{if(done)return;done=true;clearTimeout(to);if(ok){count++;lat.push(Number(tc-t0)/1e3)}else errors++;
if(s.resetAndDestroy&&!s.destroyed)s.resetAndDestroy();else s.destroy();resolve()};
const to=setTimeout(()=>fin(false),2000);
s.on('error',()=>fin(false));s.once('connect',()=>{tc=process.hrtime.bigint()});s.once('data',()=>fin(tc>0n));s.once('end',()=>fin(false))})}
async function worker(){while(Date.now()<end&&count+errors<max)await one()}
const t=process.hrtime.bigint();
Promise.all(Array.from({length:k},worker)).then(()=>{const seconds=Number(process.hrtime.bigint()-t)/1e9;
lat.sort((a,b)=>a-b);const q=(p)=>lat.length?lat[Math.min(lat.length-1,Math.floor(lat.length*p))]:NaN;
console.log(JSON.stringify({count,errors,seconds,p50Us:q(0.5),p99Us:q(0.99)}));process.exit(0)})`;

let runSeq = 0;
async function load(durationS: number): Promise<RunResult> {
  const out = join(tmp, `client-${runSeq++}.log`);
  const r = await runToCompletion({
    name: 'client',
    command: 'ip',
    args: [
      'netns',
      'exec',
      podNs.client,
      process.execPath,
      '-e',
      CLIENT_JS,
      ip.server,
      String(PORT),
      String(durationS * 1000),
      String(MAX_PER_RUN),
      String(CONNECTORS),
    ],
    log: out,
    timeoutMs: durationS * 1000 + 20_000,
  });
  const text = readFileSync(out, 'utf8');
  if (!r.ok) throw new Error(`client: ${r.info}: ${text}`);
  return JSON.parse(text.trim().split('\n').pop()!) as RunResult;
}

const load0 = loadavg();
const started = performance.now();
try {
  // Warm-up (not counted): the pods' first connections, ARP/neighbour entries, page cache.
  await load(1);
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? configs : [...configs].reverse();
    for (const c of order) {
      if (c.verified) continue; // broken: not measured
      c.applyMs.push(await c.apply());
      if (c.verified === undefined) {
        c.verified = verify(c);
        if (c.verified) {
          log(`NOT MEASURED: ${c.label}: ${c.verified}`);
          continue;
        }
        log(
          `verified ${c.label}: ${c.kind === 'none' || c.kind === 'ct' ? 'all three probes connect' : 'client -> server:8080 connects; client -> server:8081 and intruder -> server:8080 do not'}`,
        );
      }
      const r = await load(DURATION_S);
      c.runs.push(r);
      log(
        `run ${run + 1}/${RUNS} ${c.label}: ${fmt(r.count / r.seconds)} conn/s, p50 ${fmt(r.p50Us)} µs, p99 ${fmt(r.p99Us)} µs, ${r.errors} errors (apply ${fmt(c.applyMs.at(-1)!, 1)} ms)`,
      );
    }
  }
  await clearAll();
} finally {
  await server.stop(2000);
}
const load1 = loadavg();

// ---------------------------------------------------------------------------------------
// Report.

const rate = (c: Config | undefined): number => (c ? median(c.runs.map((r) => r.count / r.seconds)) : NaN);
const p50 = (c: Config | undefined): number => (c ? median(c.runs.map((r) => r.p50Us)) : NaN);
const p99 = (c: Config | undefined): number => (c ? median(c.runs.map((r) => r.p99Us)) : NaN);
const spread = (c: Config): number => {
  const xs = c.runs.map((r) => r.count / r.seconds);
  return xs.length ? (Math.max(...xs) - Math.min(...xs)) / median(xs) : NaN;
};
const find = (kind: Kind, n: number) => configs.find((c) => c.kind === kind && c.n === n);
const anchor = find('none', 0)!;
const ctOnly = find('ct', 0)!;
const a = rate(anchor);
const cell = (x: number, unit = ''): string => (Number.isFinite(x) ? `${fmt(x)}${unit}` : 'n/a');
const ratio = (x: number): string => (Number.isFinite(x) ? (x / a).toFixed(2) : 'n/a');

console.log(
  `\nbench:datapath — new TCP connections client pod -> server pod through the node's forward hook; ${CONNECTORS} connectors, ${DURATION_S} s per run (at most ${fmt(MAX_PER_RUN)} connections), median of ${RUNS} runs, configurations alternating; node ${process.version}, ${cpus().length} vCPU, ${process.platform} ${spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim()}`,
);
console.log(`iptables: ${iptBackend}; nft: ${spawnSync('nft', ['-v'], { encoding: 'utf8' }).stdout.trim()}\n`);
console.log(
  `anchor: no policy ${cell(a, ' conn/s')}, p50 ${cell(p50(anchor), ' µs')}, p99 ${cell(p99(anchor), ' µs')}; conntrack only ${cell(rate(ctOnly), ' conn/s')} (${ratio(rate(ctOnly))}), p99 ${cell(p99(ctOnly), ' µs')}\n`,
);
const head = [
  'rules',
  'nft conn/s',
  'iptables conn/s',
  'nft p50',
  'iptables p50',
  'nft p99',
  'iptables p99',
  'nft ÷ no-policy',
  'iptables ÷ no-policy',
];
const rows = SIZES.map((n) => {
  const t = find('nft', n);
  const l = find('iptables', n);
  return [
    fmt(n),
    cell(rate(t), '/s'),
    cell(rate(l), '/s'),
    cell(p50(t), ' µs'),
    cell(p50(l), ' µs'),
    cell(p99(t), ' µs'),
    cell(p99(l), ' µs'),
    ratio(rate(t)),
    ratio(rate(l)),
  ];
});
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const r of rows) console.log(line(r));

const lo = SIZES[0]!;
const hi = SIZES[SIZES.length - 1]!;
console.log('');
for (const kind of ['nft', 'iptables'] as const) {
  const x = rate(find(kind, hi)) / rate(find(kind, lo));
  const name = kind === 'nft' ? 'Trellis nftables' : 'linear iptables';
  const verdict = kind === 'nft' ? (Math.abs(1 - x) <= FLAT ? 'flat (within 10%): met' : 'NOT flat (over 10%)') : '';
  console.log(
    `  ${name}: ${fmt(hi)} rules ÷ ${fmt(lo)} rules = ${Number.isFinite(x) ? x.toFixed(3) : 'n/a'} (${Number.isFinite(x) ? `${((x - 1) * 100).toFixed(1)}%` : 'n/a'})${verdict ? `; ${verdict}` : ''}; p99 ${cell(p99(find(kind, lo)), ' µs')} -> ${cell(p99(find(kind, hi)), ' µs')}`,
  );
}
console.log('\n  apply (median over the runs; each configuration is re-applied before each of its runs):');
for (const n of SIZES) {
  const t = find('nft', n)!;
  const l = find('iptables', n)!;
  console.log(
    `    ${fmt(n).padStart(6)} rules: nft -f (applyPolicy) ${fmt(median(t.applyMs), 1)} ms, ${iptRestore} ${fmt(median(l.applyMs), 1)} ms`,
  );
}
console.log(
  '\n  Trellis compile (YAML -> model; modelIpcache; compileNodePolicy; renderPolicyScript) and the nft ruleset:',
);
for (const n of SIZES) {
  const c = compiled.get(n)!;
  console.log(
    `    ${fmt(n).padStart(6)} policies: ${fmt(c.loadMs)} ms; ${fmt(c.ipcacheMs)} ms; ${fmt(c.compileMs)} ms; ${fmt(c.renderMs)} ms — ${c.counts}`,
  );
}
console.log('\n  noise: run-to-run spread of conn/s, (max - min) ÷ median:');
console.log(
  `    ${configs.map((c) => `${c.kind === 'none' ? 'no policy' : c.kind === 'ct' ? 'ct only' : `${c.kind} ${fmt(c.n)}`} ${Number.isFinite(spread(c)) ? `${(spread(c) * 100).toFixed(0)}%` : 'n/a'}`).join(', ')}`,
);
console.log(
  `    load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${load1.map((x) => x.toFixed(2)).join(' ')}; measuring took ${fmt((performance.now() - started) / 1000)} s`,
);
const errs = configs.reduce((s, c) => s + c.runs.reduce((e, r) => e + r.errors, 0), 0);
if (errs) console.log(`    ${errs} connection(s) failed or timed out (2 s) across the runs`);
for (const c of configs) if (c.verified) console.log(`  NOT MEASURED: ${c.label}: ${c.verified}`);
if (existsSync(nsPath(nodeNs))) log('removing the namespaces');
