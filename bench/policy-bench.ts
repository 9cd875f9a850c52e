// npm run bench:policy — the cost of one policy decision with 10, 1,000 and 10,000 policies in
// force. Each configuration goes the whole way a node proxy's does: YAML -> validated kinds ->
// compiled model -> xDS (the destination workload's inbound Listener with its RBAC filters) ->
// the evaluator the node compiles from it. Then decisions for a rotating mix of callers: 50%
// allowed by one of the policies, 25% an unknown identity (denied), 25% plaintext (denied).
//
// Scenarios:
//   namespace-wide: every policy applies to the destination (no selector, its namespace); each
//     allows one client identity — the worst case for a linear scan.
//   namespaces: like namespace-wide, each allowing one namespace (Istio `namespaces` sources).
//   spread: each policy selects its own workload (as teams write them); the destination has a
//     few, the rest of the mesh has the others.
//
// decisions/s is the median over interleaved rounds of a tight loop; p99 is over batches of 1,000 decisions (one
// decision takes well under the timer's resolution). The anchor is the 10-policy figure of the
// same scenario, same run: the per-decision cost must stay within 2x of it up to 10,000.
//
// A last row turns the identity index off (every principal matcher marked ignore_case, which the
// index does not take) to show what a linear scan of 10,000 policies costs.
//
// Env: BENCH_DECISIONS (1000000), BENCH_ROUNDS (5).
import { performance } from 'node:perf_hooks';
import { loadDocuments } from '../src/config/load.js';
import { parseYamlFile } from '../src/config/source/yaml-documents.js';
import { compileModel } from '../src/model/compile.js';
import { compileRbacFilters, type CompiledRbac, type RbacAttributes } from '../src/proxy/rbac/evaluate.js';
import { TYPE_URLS } from '../src/xds/snapshot.js';
import { proxylessSnapshot } from '../src/xds/translate/proxyless.js';
import { median } from './stats.js';

const DECISIONS = Number(process.env.BENCH_DECISIONS ?? '') || 1_000_000;
const BATCH = 1000;
const SIZES = [10, 1000, 10_000] as const;
type Scenario = 'namespace-wide' | 'namespaces' | 'spread' | 'linear scan (no index)';

const HEADER = `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: bench }
spec:
  trustDomain: cluster.local
  nodes: [{ name: n1, address: 10.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api, namespace: prod }
spec: { address: 10.1.0.1, labels: { app: api }, serviceAccount: api, ports: { http: 8080 } }
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api, namespace: prod }
spec: { node: n1 }
`;

const client = (i: number): string => `cluster.local/ns/clients/sa/c-${i}`;

function policyYaml(scenario: Scenario, n: number): string {
  const docs: string[] = [HEADER];
  for (let i = 0; i < n; i++) {
    // spread: the destination (app: api) has every 1,000th policy, the rest select other apps.
    const selector =
      scenario !== 'spread' ? '' : `\n  selector: { matchLabels: { app: ${i % 1000 === 0 ? 'api' : `app-${i}`} } }`;
    docs.push(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-${i}, namespace: prod }
spec:${selector}
  action: ALLOW
  rules:
    - from: [{ source: { ${scenario === 'namespaces' ? `namespaces: ['team-${i}']` : `principals: ['${client(i)}']`} } }]
      to: [{ operation: { ports: ['8080'] } }]
`);
  }
  return docs.join('---\n');
}

function compile(scenario: Scenario, n: number): { rbac: CompiledRbac; allowed: string[]; setupMs: number } {
  const t0 = performance.now();
  const parsed = parseYamlFile(`${scenario}-${n}.yaml`, policyYaml(scenario, n));
  const loaded = loadDocuments(parsed.documents);
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length) throw new Error(`bench config invalid: ${errors[0]!.message}`);
  const model = compileModel(loaded.resources);
  const listener = proxylessSnapshot(model).resources(TYPE_URLS.listener).get('trellis/n1/inbound/10.1.0.1:8080');
  if (!listener) throw new Error('no inbound listener for prod/api');
  const chains = (listener.body as { filter_chains?: { filters?: Record<string, unknown>[] }[] }).filter_chains ?? [];
  const filters = chains[0]?.filters ?? [];
  const rbac = compileRbacFilters(scenario === 'linear scan (no index)' ? unindexable(filters) : filters, 'l4');
  if (rbac.empty) throw new Error('the inbound listener has no RBAC filter');
  const allowed: string[] = [];
  for (let i = 0; i < n; i++)
    if (scenario === 'namespaces') allowed.push(`cluster.local/ns/team-${i}/sa/caller`);
    else if (scenario !== 'spread' || i % 1000 === 0) allowed.push(client(i));
  return { rbac, allowed, setupMs: performance.now() - t0 };
}

/** The same filters with every exact principal matcher marked ignore_case (same verdicts here: all lowercase). */
function unindexable<T>(v: T): T {
  if (Array.isArray(v)) return v.map(unindexable) as T;
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = unindexable(x);
  if (isExactPrincipal(out)) (out.principal_name as Record<string, unknown>).ignore_case = true;
  return out as T;
}

function isExactPrincipal(o: Record<string, unknown>): boolean {
  const m = o.principal_name as Record<string, unknown> | undefined;
  return typeof m === 'object' && m !== null && typeof m.exact === 'string';
}

function callers(allowed: readonly string[]): RbacAttributes[] {
  const out: RbacAttributes[] = [];
  for (let k = 0; k < 64; k++) {
    const base = { sourceIp: `10.2.0.${k}`, destinationIp: '10.1.0.1', destinationPort: 8080 };
    if (k % 4 < 2) out.push({ ...base, principal: `spiffe://${allowed[(k * 7919) % allowed.length]}` });
    else if (k % 4 === 2) out.push({ ...base, principal: `spiffe://cluster.local/ns/clients/sa/stranger-${k}` });
    else out.push(base);
  }
  return out;
}

interface Row {
  readonly scenario: Scenario;
  readonly n: number;
  readonly perSecond: number;
  readonly p99Ns: number;
  readonly setupMs: number;
}

interface Prepared {
  readonly scenario: Scenario;
  readonly n: number;
  readonly rbac: CompiledRbac;
  readonly who: readonly RbacAttributes[];
  readonly setupMs: number;
  readonly decisions: number;
}

function prepare(scenario: Scenario, n: number, decisions: number): Prepared {
  const { rbac, allowed, setupMs } = compile(scenario, n);
  const who = callers(allowed);
  // Verify before timing: the mix decides as intended.
  for (const [k, a] of who.entries()) {
    if (rbac.evaluate(a).allowed !== k % 4 < 2)
      throw new Error(`caller ${k} decided wrongly: ${rbac.evaluate(a).reason}`);
  }
  return { scenario, n, rbac, who, setupMs, decisions };
}

let sink = 0;

/** One timed round: decisions/s and the per-decision time of each batch. */
function round(p: Prepared): { perSecond: number; batches: number[] } {
  const { rbac, who, decisions } = p;
  for (let i = 0; i < decisions / 10; i++) if (rbac.evaluate(who[i & 63]!).allowed) sink++;
  const batches: number[] = [];
  const start = performance.now();
  for (let b = 0; b < decisions / BATCH; b++) {
    const t = performance.now();
    for (let i = 0; i < BATCH; i++) if (rbac.evaluate(who[(b * BATCH + i) & 63]!).allowed) sink++;
    batches.push(((performance.now() - t) * 1e6) / BATCH);
  }
  return { perSecond: (decisions / (performance.now() - start)) * 1000, batches };
}

const fmt = (x: number, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '') || 5;
const plan: [Scenario, number][] = [
  ...(['namespace-wide', 'namespaces', 'spread'] as const).flatMap((s) => SIZES.map((n): [Scenario, number] => [s, n])),
  ['linear scan (no index)', 10],
  ['linear scan (no index)', 10_000],
];
// The linear scan of 10,000 policies is slow by design: fewer decisions for it.
const prepared = plan.map(([s, n]) => prepare(s, n, s === 'linear scan (no index)' ? DECISIONS / 50 : DECISIONS));
// Rounds interleave the configurations so machine noise and JIT order fall on all of them alike.
const results = prepared.map(() => ({ perSecond: [] as number[], batches: [] as number[] }));
for (let r = 0; r < ROUNDS; r++) {
  prepared.forEach((p, i) => {
    const x = round(p);
    results[i]!.perSecond.push(x.perSecond);
    results[i]!.batches.push(...x.batches);
  });
}
if (sink < 0) console.log(sink); // keeps the loops' results live
const rows: Row[] = prepared.map((p, i) => {
  const b = results[i]!.batches.sort((x, y) => x - y);
  const row = {
    scenario: p.scenario,
    n: p.n,
    perSecond: median(results[i]!.perSecond),
    p99Ns: b[Math.min(b.length - 1, Math.floor(b.length * 0.99))]!,
    setupMs: p.setupMs,
  };
  console.error(
    `${p.scenario} ${p.n}: ${fmt(row.perSecond)} decisions/s (median of ${ROUNDS}), p99 ${fmt(row.p99Ns)} ns`,
  );
  return row;
});

console.log(
  `\nbench:policy — one L4 decision at a node's inbound listener (median of ${ROUNDS} interleaved rounds of ${fmt(DECISIONS)} decisions; the linear-scan rows ${fmt(DECISIONS / 50)})\n`,
);
console.log(
  '| scenario | policies in force | decisions/s | p99 per decision | cost ÷ 10 policies | config -> evaluator |',
);
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  const anchor = rows.find((x) => x.scenario === r.scenario && x.n === 10)!;
  const ratio = anchor.perSecond / r.perSecond;
  console.log(
    `| ${r.scenario} | ${fmt(r.n)} | ${fmt(r.perSecond)} | ${fmt(r.p99Ns)} ns | ${ratio.toFixed(2)}x${ratio > 2 ? ' (over 2x)' : ''} | ${fmt(r.setupMs)} ms |`,
  );
}
