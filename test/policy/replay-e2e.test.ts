// trellis policy replay on real flow records: `trellis up` on a copy of the shop, traffic that
// the policies allow (gateway -> frontend -> api -> orders) and deny (frontend -> orders), then a
// proposed policy that swaps who may call orders. The replay must list exactly the flows whose
// verdict changes; then the proposed policy is applied to the running mesh, the same traffic is
// sent again, and the nodes' new flow records must show exactly the verdicts the replay predicted.
// `trellis policy check` against the running control plane (no -f) is checked on the way.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ReplayResult } from '../../src/policy/replay.js';
import {
  configStatus,
  httpGet,
  meshUp,
  nextGeneration,
  tcpExchangeVia,
  waitFor,
  writeAtomic,
  type MeshUp,
} from '../helpers/mesh-up.js';
import { REPO_ROOT, runCliAsync } from '../helpers/run-cli.js';

const ORDERS = 'orders.shop.svc.cluster.local:7000';
const CALLS = 5;
const DIRECT = 3;

type Flow = Record<string, unknown> & {
  direction?: string;
  verdict?: string;
  source?: { identity?: string };
  destination?: { workload?: string };
};

/** Inbound records at orders, as [caller service account, verdict]. */
function atOrders(flows: readonly Flow[]): string[] {
  return flows
    .filter((f) => f.direction === 'inbound' && f.destination?.workload === 'WorkloadEntry/shop/orders')
    .map((f) => `${(f.source?.identity ?? '').replace(/.*\/sa\//, '')} ${f.verdict}`)
    .sort();
}

async function traffic(frontendProxy: string): Promise<void> {
  for (let i = 0; i < CALLS; i++) await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
  for (let i = 0; i < DIRECT; i++) await tcpExchangeVia(frontendProxy, ORDERS, 'ping\n').catch(() => undefined);
}

test(
  'policy replay lists exactly the flows a proposed policy changes, and the mesh then decides them so',
  { timeout: 180_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-replay-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    const proposedDir = mkdtempSync(join(tmpdir(), 'trellis-replay-proposed-'));
    let mesh: MeshUp | undefined;
    try {
      mesh = await meshUp(dir);
      const frontendProxy = /shop\/frontend\s.*HTTP_PROXY=([^\s,]+)/.exec(mesh.stdout())![1]!;

      // policy check against the running control plane.
      const check = await runCliAsync(['policy', 'check', '--from', 'shop/api-v1', '--to', ORDERS, '-o', 'json']);
      assert.equal(check.code, 0, check.stderr);
      assert.equal(
        (JSON.parse(check.stdout) as { policy: string }).policy,
        'AuthorizationPolicy/shop/orders-allow-api',
      );

      // 1. Traffic under today's policies.
      await traffic(frontendProxy);
      const all = (): Flow[] => [...mesh!.flows('node-a'), ...mesh!.flows('node-b')] as Flow[];
      await waitFor(() => atOrders(all()).length >= CALLS + DIRECT, 10_000);
      const before = all();
      const recorded = atOrders(before);
      const apiCalls = recorded.filter((r) => r === 'api FORWARDED').length;
      assert.ok(apiCalls >= CALLS, `api -> orders forwarded ${apiCalls} times: ${recorded.join(', ')}`);
      assert.equal(recorded.filter((r) => r === 'frontend DENIED').length, DIRECT, recorded.join(', '));
      const flowsFile = join(proposedDir, '..', `${proposedDir.split('/').pop()}.flows.jsonl`);
      writeFileSync(flowsFile, before.map((f) => JSON.stringify(f)).join('\n'));

      // 2. The proposal: orders accepts frontend instead of api.
      cpSync(dir, proposedDir, { recursive: true });
      rmSync(join(proposedDir, '.trellis'), { recursive: true, force: true });
      const policy = readFileSync(join(dir, 'policy.yaml'), 'utf8');
      const proposed = policy.replace(
        /(name: orders-allow-api[\s\S]*?principals: \[)'cluster\.local\/ns\/shop\/sa\/api'\]/,
        "$1'cluster.local/ns/shop/sa/frontend']",
      );
      assert.notEqual(proposed, policy, 'policy.yaml no longer has the orders-allow-api rule this test rewrites');
      writeFileSync(join(proposedDir, 'policy.yaml'), proposed);

      const replay = await runCliAsync(['policy', 'replay', '--flows', flowsFile, '--with', proposedDir, '-o', 'json']);
      assert.equal(replay.code, 0, replay.stderr);
      const r = JSON.parse(replay.stdout) as ReplayResult;
      assert.deepEqual(
        r.groups.map((g) => [
          g.source.replace(/.*\/sa\//, ''),
          g.destination,
          g.flows,
          g.before,
          g.after,
          g.policy ?? null,
          g.rule ?? null,
        ]),
        [
          ['api', 'shop/orders 127.0.0.2:9090', apiCalls, 'ALLOW', 'DENY', null, null],
          [
            'frontend',
            'shop/orders 127.0.0.2:9090',
            DIRECT,
            'DENY',
            'ALLOW',
            'AuthorizationPolicy/shop/orders-allow-api',
            'spec.rules[0]',
          ],
        ],
        replay.stdout,
      );
      assert.equal(r.changed, apiCalls + DIRECT);
      const human = await runCliAsync(['policy', 'replay', '--flows', flowsFile, '--with', proposedDir]);
      assert.match(human.stdout, /flows would change/);
      assert.match(
        human.stdout,
        /sa\/api -> shop\/orders 127\.0\.0\.2:9090: no ALLOW policy matched; the ALLOW policies in force there: AuthorizationPolicy\/shop\/orders-allow-api/,
      );

      // 3. Apply it to the running mesh: the same traffic now gets exactly the predicted verdicts.
      const generation = (await configStatus()).generation;
      writeAtomic(join(dir, 'policy.yaml'), proposed);
      await nextGeneration(generation);
      await new Promise((res) => setTimeout(res, 1000)); // the nodes take the push
      const seenA = mesh.flows('node-a').length;
      const seenB = mesh.flows('node-b').length;
      const fresh = (): Flow[] =>
        [...mesh!.flows('node-a').slice(seenA), ...mesh!.flows('node-b').slice(seenB)] as Flow[];
      await traffic(frontendProxy);
      await waitFor(() => atOrders(fresh()).length >= CALLS + DIRECT, 10_000);
      const after = atOrders(fresh());
      const dump = fresh()
        .filter((f) => f.direction === 'inbound')
        .map((f) => JSON.stringify(f))
        .join('\n');
      assert.ok(after.filter((x) => x === 'api DENIED').length >= CALLS, `${after.join(', ')}\n${dump}`);
      assert.equal(after.filter((x) => x === 'frontend FORWARDED').length, DIRECT, `${after.join(', ')}\n${dump}`);
      assert.deepEqual(
        after.filter((x) => x === 'api FORWARDED' || x === 'frontend DENIED'),
        [],
        'only predicted verdicts',
      );
      rmSync(flowsFile, { force: true });
    } finally {
      await mesh?.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(proposedDir, { recursive: true, force: true });
    }
  },
);

test('policy replay: a PERMISSIVE -> STRICT proposal refuses the recorded plaintext flows', async () => {
  // Recorded plaintext flows (the node writes tls: "none") to orders; the shop is STRICT.
  const dir = mkdtempSync(join(tmpdir(), 'trellis-replay-strict-'));
  try {
    const flows = join(dir, 'flows.jsonl');
    const rec = (src: string, verdict: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({
        time: '2026-11-24T00:00:00Z',
        node: 'node-b',
        direction: 'inbound',
        verdict,
        source: { address: src },
        destination: { address: '127.0.0.2:9090', workload: 'WorkloadEntry/shop/orders' },
        ...extra,
      });
    writeFileSync(
      flows,
      [
        rec('127.0.0.9:40000', 'FORWARDED', { tls: 'none', via: 'plaintext' }),
        rec('127.0.0.9:40001', 'FORWARDED', { tls: 'none', via: 'plaintext' }),
        rec('10.0.0.1:1', 'FORWARDED', {
          source: { identity: 'spiffe://cluster.local/ns/shop/sa/api', address: '127.0.0.1:5' },
          via: 'hbone',
        }),
        '{"direction":"outbound","verdict":"FORWARDED"}',
        'a log line, not a record',
        '{"direction": "inbound", ',
      ].join('\n'),
    );
    const bad = await runCliAsync(['policy', 'replay', '--flows', flows, '--with', join(REPO_ROOT, 'examples/shop')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--flows .*flows\.jsonl:6: not a JSON flow record/);
    writeFileSync(flows, readFileSync(flows, 'utf8').split('\n').slice(0, 5).join('\n'));
    const r = await runCliAsync([
      'policy',
      'replay',
      '--flows',
      flows,
      '--with',
      join(REPO_ROOT, 'examples/shop'),
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as ReplayResult;
    assert.equal(out.replayed, 3);
    assert.deepEqual(
      out.groups.map((g) => [g.source, g.flows, g.before, g.after, g.policy]),
      [['plaintext 127.0.0.9', 2, 'ALLOW', 'DENY', 'PeerAuthentication']],
    );
    assert.deepEqual(out.skipped, {
      'outbound records (decided at the destination)': 1,
      'lines that are not flow records': 1,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
