// Config change under load: `trellis up` on a copy of examples/shop, wrk through the gateway
// (gateway -> frontend -> waypoint -> api v1/v2 -> orders), and while it runs the api-canary
// HTTPRoute weights are rewritten in place on disk (atomically: temp file + rename), once with
// an invalid weight. No request may fail, the invalid file must be rejected (and logged) while
// the previous routing keeps serving, and the last weights (0/100) must be the ones in force.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { configStatus, httpGet, meshUp, proxyProblems, writeAtomic, type MeshUp } from '../helpers/mesh-up.js';
import { runWrk, WRK, type WrkRun } from '../helpers/wrk-run.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const GATEWAY = 'http://127.0.0.1:8000/call';
const HOST = 'shop.localhost';
const WRK_SECONDS = 10;

interface Step {
  readonly label: string;
  readonly v1: number;
  readonly v2: number;
}

// About 1.5 s apart, the first 1 s into the run; the last one is what must be in force after it.
const STEPS: readonly Step[] = [
  { label: '50/50', v1: 50, v2: 50 },
  { label: 'invalid (api-v1 weight -1)', v1: -1, v2: 50 },
  { label: '100/0', v1: 100, v2: 0 },
  { label: '90/10', v1: 90, v2: 10 },
  { label: '0/100', v1: 0, v2: 100 },
];
const INVALID = 1;

/** The api-canary split rule's weights replaced (the x-canary rule has no weight). */
function withWeights(yaml: string, v1: number, v2: number): string {
  let hits = 0;
  const set = (name: string, w: number) => (s: string) =>
    s.replace(new RegExp(`(- name: ${name}\\n\\s+port: 8080\\n\\s+weight: )-?\\d+`), (_m, head: string) => {
      hits++;
      return `${head}${w}`;
    });
  const out = set('api-v2', v2)(set('api-v1', v1)(yaml));
  assert.equal(hits, 2, 'api.yaml no longer has the api-v1/api-v2 weights this test rewrites');
  return out;
}

/** Which api version answered a /call through the gateway (the frontend relays api's answer). */
async function callVersion(): Promise<{ status: number; version: string | undefined }> {
  const r = await httpGet(GATEWAY, { host: HOST });
  if (r.status !== 200) return { status: r.status, version: undefined };
  return { status: r.status, version: (JSON.parse(r.body) as { upstream?: { name?: string } }).upstream?.name };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  'config change under load: route weights changed while wrk runs, no failed requests',
  { timeout: 180_000 },
  async (t) => {
    if (!WRK) {
      t.skip('needs wrk (apt-get install wrk) to put the gateway under load');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'trellis-shop-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    const apiYaml = join(dir, 'api.yaml');
    const original = readFileSync(apiYaml, 'utf8');
    let mesh: MeshUp | undefined;
    let wrk: WrkRun | undefined;
    try {
      mesh = await meshUp(dir);
      const warm = await callVersion();
      assert.equal(warm.status, 200, 'the mesh answers through the gateway before the load starts');
      const initial = await configStatus();

      wrk = runWrk({ url: GATEWAY, host: HOST, seconds: WRK_SECONDS });
      const started = Date.now();
      // Steps the control plane did not take up (no new generation, no rejection) within 1.2 s.
      const missed: string[] = [];
      let whileInvalid: { status: number; version: string | undefined }[] = [];
      let rejectedAt = initial.rejected?.at;
      let generation = initial.generation;
      for (const [i, step] of STEPS.entries()) {
        await sleep(Math.max(0, started + 1000 + i * 1500 - Date.now()));
        writeAtomic(apiYaml, withWeights(original, step.v1, step.v2));
        const writtenAt = ((Date.now() - started) / 1000).toFixed(1);
        const deadline = Date.now() + 1200;
        let taken = false;
        while (!taken && Date.now() < deadline) {
          await sleep(50);
          const s = await configStatus();
          taken = i === INVALID ? s.rejected !== null && s.rejected.at !== rejectedAt : s.generation > generation;
          if (taken && i === INVALID) rejectedAt = s.rejected!.at;
          if (taken) generation = s.generation;
        }
        if (!taken) missed.push(`${step.label}, written ${writtenAt} s into the run`);
        if (i === INVALID) {
          // The 50/50 split must keep serving: both versions answer, every request succeeds.
          whileInvalid = await Promise.all(Array.from({ length: 40 }, () => callVersion()));
        }
      }
      const result = await wrk.done;
      wrk = undefined;

      // 1. No failed request under load.
      t.diagnostic(
        `wrk: ${result.requests ?? '?'} requests, ${result.rps ?? '?'} req/s; ` +
          (result.failures.length ? result.failures.join('; ') : 'no errors'),
      );
      assert.equal(result.code, 0, `wrk exited with ${result.code}:\n${result.out}`);
      assert.ok(result.requests !== undefined, `no summary in wrk's output:\n${result.out}`);
      assert.deepEqual(
        result.failures,
        [],
        `requests failed while the routes changed:\n${result.out}\n${proxyProblems(mesh)}`,
      );
      assert.ok(result.requests > 500, `only ${result.requests} requests completed:\n${result.out}`);

      // 2. The control plane took up every change: each valid write as a new generation, the invalid one as a rejection.
      assert.deepEqual(missed, [], `the control plane did not notice these rewrites of ${apiYaml}`);

      // 3. While the invalid file was on disk, traffic kept flowing on the previous (50/50) routing...
      assert.deepEqual(
        whileInvalid.filter((r) => r.status !== 200),
        [],
        'requests failed while the invalid HTTPRoute was on disk',
      );
      const versions = new Set(whileInvalid.map((r) => r.version));
      assert.deepEqual([...versions].sort(), ['api-v1', 'api-v2'], 'the 50/50 split kept serving while invalid');
      // ...and the rejection, with the file and the field, is in the control plane's log.
      const rejections = readFileSync(join(mesh.stateDir, 'logs', 'controlplane.log'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; first?: string[] })
        .filter((l) => l.msg.startsWith('configuration rejected'));
      assert.ok(
        rejections.some((l) =>
          l.first?.some((d) => d.includes(apiYaml) && d.includes('spec.rules[1].backendRefs[0].weight')),
        ),
        `no rejection naming ${apiYaml} and spec.rules[1].backendRefs[0].weight: ${JSON.stringify(rejections)}`,
      );

      // 4. The last weights (0/100) are in force: every answer comes from api-v2.
      const after: Record<string, number> = {};
      for (let i = 0; i < 200; i++) {
        const r = await callVersion();
        assert.equal(r.status, 200, 'a request after the load failed');
        after[r.version ?? '?'] = (after[r.version ?? '?'] ?? 0) + 1;
      }
      assert.deepEqual(after, { 'api-v2': 200 }, 'after 0/100 every request goes to api-v2');
    } finally {
      wrk?.kill();
      await wrk?.done;
      await mesh?.stop();
      if (!process.env.TRELLIS_KEEP_STATE) rmSync(dir, { recursive: true, force: true });
    }
  },
);
