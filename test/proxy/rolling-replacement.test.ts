// Rolling replacement under load: `trellis up` on a copy of examples/shop whose api Service has
// three replicas the test runs itself (so it can start and kill them). While wrk runs through the
// gateway (gateway -> frontend -> waypoint -> api), every replica is replaced the way a rollout
// does it: the new one starts and joins the Service, the old one leaves the Service, and after a
// grace period its process is killed. Endpoints that leave must get no new requests and finish
// the ones in flight (draining); no request may fail.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitForPort } from '../../src/cli/supervisor.js';
import {
  configStatus,
  httpGet,
  meshUp,
  nextGeneration,
  proxyProblems,
  writeAtomic,
  type MeshUp,
} from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';
import { runWrk, WRK, type WrkRun } from '../helpers/wrk-run.js';

const GATEWAY = 'http://127.0.0.1:8000/call';
const HOST = 'shop.localhost';
const WRK_SECONDS = 14;
// How long a replica that left the Service keeps running before it is killed (a pod's grace period).
const GRACE_MS = 1500;

interface Replica {
  readonly n: number;
  readonly node: 'node-a' | 'node-b';
  readonly address: string;
  readonly port: number;
}

function replica(n: number): Replica {
  const onA = n % 2 === 1;
  return { n, node: onA ? 'node-a' : 'node-b', address: onA ? '127.0.0.1' : '127.0.0.2', port: 9100 + n };
}

/** api.yaml for a set of replicas: WorkloadEntry + node placement each (no command: the test runs them). */
function apiYaml(replicas: readonly Replica[]): string {
  const docs = replicas.flatMap((r) => [
    `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: api-r${r.n}, namespace: shop }
spec:
  address: ${r.address}
  labels: { app: api, version: r${r.n} }
  serviceAccount: api
  ports: { http: ${r.port} }`,
    `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: { name: api-r${r.n}, namespace: shop }
spec: { node: ${r.node} }`,
  ]);
  docs.push(`apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
  labels: { istio.io/use-waypoint: waypoint }
spec:
  selector: { app: api }
  ports: [{ name: http, port: 8080, targetPort: http }]`);
  return `${docs.join('\n---\n')}\n`;
}

/** The api replica's process: the example's echo server (no upstream, so it answers itself). */
async function startReplica(dir: string, r: Replica): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['apps/echo.js', '--name', `api-r${r.n}`, '--host', r.address, '--port', String(r.port)],
    { cwd: dir, stdio: 'ignore' },
  );
  await waitForPort(r.address, r.port, 10_000, () => child.exitCode === null);
  return child;
}

async function stopReplica(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/** Which api replica answered a /call through the gateway (the frontend relays api's answer). */
async function who(): Promise<string> {
  const r = await httpGet(GATEWAY, { host: HOST });
  assert.equal(r.status, 200, r.body);
  return (JSON.parse(r.body) as { upstream?: { name?: string } }).upstream?.name ?? '?';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('rolling replacement of every api endpoint under wrk load: no failed request', { timeout: 180_000 }, async (t) => {
  if (!WRK) {
    t.skip('needs wrk (apt-get install wrk) to put the gateway under load');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'trellis-rolling-'));
  cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
  const file = join(dir, 'api.yaml');
  const running = new Map<number, ChildProcess>();
  let set = [1, 2, 3].map(replica);
  writeAtomic(file, apiYaml(set));
  let mesh: MeshUp | undefined;
  let wrk: WrkRun | undefined;
  try {
    for (const r of set) running.set(r.n, await startReplica(dir, r));
    mesh = await meshUp(dir);
    const before = new Set<string>();
    for (let i = 0; i < 30; i++) before.add(await who());
    assert.deepEqual([...before].sort(), ['api-r1', 'api-r2', 'api-r3'], 'all three replicas serve before the rollout');

    wrk = runWrk({ url: GATEWAY, host: HOST, seconds: WRK_SECONDS });
    await sleep(1000);
    let generation = (await configStatus()).generation;
    const steps: string[] = [];
    for (const [old, next] of [
      [1, 4],
      [2, 5],
      [3, 6],
    ] as const) {
      // Surge: the new replica starts and joins the Service.
      const fresh = replica(next);
      running.set(next, await startReplica(dir, fresh));
      set = [...set, fresh];
      writeAtomic(file, apiYaml(set));
      generation = await nextGeneration(generation);
      await sleep(500);
      // The old one leaves the Service, keeps running for its grace period, then is killed.
      set = set.filter((r) => r.n !== old);
      writeAtomic(file, apiYaml(set));
      generation = await nextGeneration(generation);
      await sleep(GRACE_MS);
      await stopReplica(running.get(old)!);
      running.delete(old);
      steps.push(`r${old} -> r${next}`);
    }
    const result = await wrk.done;
    wrk = undefined;
    t.diagnostic(
      `wrk: ${result.requests ?? '?'} requests, ${result.rps ?? '?'} req/s during ${steps.join(', ')}; ` +
        (result.failures.length ? result.failures.join('; ') : 'no errors'),
    );
    assert.equal(steps.length, 3, 'the rollout finished within the load run');
    assert.equal(result.code, 0, `wrk exited with ${result.code}:\n${result.out}`);
    assert.ok(result.requests !== undefined && result.requests > 500, `too few requests:\n${result.out}`);
    assert.deepEqual(result.failures, [], `requests failed during the rollout:\n${result.out}\n${proxyProblems(mesh)}`);

    // Only the new replicas answer now.
    const after = new Set<string>();
    for (let i = 0; i < 60; i++) after.add(await who());
    assert.deepEqual(
      [...after].sort(),
      ['api-r4', 'api-r5', 'api-r6'],
      'after the rollout only the new replicas serve',
    );
  } finally {
    wrk?.kill();
    await wrk?.done;
    await mesh?.stop();
    for (const c of running.values()) await stopReplica(c);
    if (!process.env.TRELLIS_KEEP_STATE) rmSync(dir, { recursive: true, force: true });
  }
});
