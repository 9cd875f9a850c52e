// trellis controlplane serving real @grpc/grpc-js-xds clients: VirtualService timeouts, retries
// and fault injection, DestinationRule circuit breaking and outlier detection, end to end.
// One control plane for the file; each case has its own service (and VirtualService /
// DestinationRule), so the cases share one config and never wait for a push.
import { echoService, startControlPlane, type ControlPlane } from '../helpers/controlplane.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';

interface Req {
  id?: string;
  sleepMs?: number;
  /** Fail the first call of this id with UNAVAILABLE. */
  failFirst?: boolean;
}

interface Backend {
  port: number;
  server: grpc.Server;
  calls: number;
}

/** A backend that sleeps / fails as the request asks, or (alwaysFail) answers every call UNAVAILABLE. */
async function backend(name: string, alwaysFail = false): Promise<Backend> {
  const server = new grpc.Server();
  const seen = new Set<string>();
  const b: Backend = { port: 0, server, calls: 0 };
  server.addService(echoService, {
    who: (call: grpc.ServerUnaryCall<Req, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      b.calls++;
      const req = call.request;
      if (alwaysFail) return cb({ code: grpc.status.UNAVAILABLE, details: `${name} is broken` });
      if (req.failFirst && req.id && !seen.has(req.id)) {
        seen.add(req.id);
        return cb({ code: grpc.status.UNAVAILABLE, details: 'first attempt fails' });
      }
      const done = () => cb(null, { name });
      if (req.sleepMs) setTimeout(done, req.sleepMs).unref();
      else done();
    },
  });
  b.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return b;
}

const HOST = (svc: string) => `${svc}.demo.svc.cluster.local`;

function config(echo: number, bad: number): string {
  const we = (name: string, app: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: demo }
spec: { address: 127.0.0.1, labels: { app: ${app} }, ports: { grpc: ${port} } }
`;
  const svc = (name: string) => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: demo }
spec:
  selector: { app: ${name} }
  ports: [{ name: grpc, port: 8080, targetPort: grpc }]
`;
  const names = ['timeout', 'retry', 'noretry', 'fault', 'limited', 'outlier', 'dup'];
  return `apiVersion: v1
kind: Namespace
metadata: { name: demo }
${names.map((n) => we(`${n}-echo`, n, echo) + svc(n)).join('')}${we('outlier-bad', 'outlier', bad)}${we('dup-echo-2', 'dup', echo)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: timeout, namespace: demo }
spec:
  hosts: [${HOST('timeout')}]
  http: [{ timeout: 300ms, route: [{ destination: { host: ${HOST('timeout')} } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: retry, namespace: demo }
spec:
  hosts: [${HOST('retry')}]
  http:
    - retries: { attempts: 2, retryOn: unavailable }
      route: [{ destination: { host: ${HOST('retry')} } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: fault, namespace: demo }
spec:
  hosts: [${HOST('fault')}]
  http:
    - match: [{ headers: { x-fault: { exact: abort } } }]
      fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 100 } } }
      route: [{ destination: { host: ${HOST('fault')} } }]
    - match: [{ headers: { x-fault: { exact: delay } } }]
      fault: { delay: { fixedDelay: 500ms, percentage: { value: 100 } } }
      route: [{ destination: { host: ${HOST('fault')} } }]
    - route: [{ destination: { host: ${HOST('fault')} } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: limited, namespace: demo }
spec:
  host: ${HOST('limited')}
  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 1 } } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: outlier, namespace: demo }
spec:
  host: ${HOST('outlier')}
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100 }
`;
}

type EchoClient = grpc.Client & {
  who: (
    req: Req,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r?: { name: string }) => void,
  ) => void;
};

interface Outcome {
  ok: boolean;
  name?: string;
  code?: grpc.status;
  details?: string;
  ms: number;
}

function call(client: EchoClient, req: Req = {}, headers: Record<string, string> = {}, deadlineMs = 5000) {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  const start = Date.now();
  return new Promise<Outcome>((resolve) =>
    client.who(req, md, { deadline: Date.now() + deadlineMs }, (e, r) =>
      resolve(
        e
          ? { ok: false, code: e.code, details: e.details, ms: Date.now() - start }
          : { ok: true, name: r!.name, ms: Date.now() - start },
      ),
    ),
  );
}

describe('proxyless resilience through trellis controlplane', { timeout: 60_000 }, () => {
  let dir = '';
  let cp: ControlPlane | undefined;
  let echo: Backend;
  let bad: Backend;
  const clients = new Map<string, EchoClient>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-res-'));
    echo = await backend('echo');
    bad = await backend('bad', true);
    writeFileSync(join(dir, 'mesh.yaml'), config(echo.port, bad.port));
    cp = await startControlPlane(dir);
    const { register } = (await import('@grpc/grpc-js-xds')) as { register: () => void };
    register();
    const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
    for (const svc of ['timeout', 'retry', 'noretry', 'fault', 'limited', 'outlier', 'dup']) {
      const bootstrap = {
        xds_servers: [{ server_uri: cp.xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
        node: { id: `resilience-${svc}`, cluster: 'test', locality: {} },
      };
      clients.set(
        svc,
        new Client(`xds:///${HOST(svc)}:8080`, grpc.credentials.createInsecure(), {
          'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
        }) as unknown as EchoClient,
      );
    }
    // Every client has its config and reaches the echo backend (the outlier one may hit "bad" first).
    for (const [svc, c] of clients) {
      let r = await call(c);
      for (let i = 0; svc === 'outlier' && !r.ok && r.details === 'bad is broken' && i < 10; i++) r = await call(c);
      assert.ok(r.ok, `${svc}: ${JSON.stringify(r)}`);
    }
  });

  after(() => {
    for (const c of clients.values()) c.close();
    cp?.proc.kill('SIGTERM');
    echo?.server.forceShutdown();
    bad?.server.forceShutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'route timeout: VirtualService timeout 300ms ends a 2 s call with DEADLINE_EXCEEDED at ~0.3 s',
    { timeout: 20_000 },
    async () => {
      const r = await call(clients.get('timeout')!, { sleepMs: 2000 });
      assert.equal(r.code, grpc.status.DEADLINE_EXCEEDED, JSON.stringify(r));
      assert.ok(r.ms >= 250 && r.ms < 1000, `took ${r.ms} ms`);
      // A fast call on the same route is unaffected.
      assert.ok((await call(clients.get('timeout')!)).ok);
    },
  );

  it(
    'retries: attempts 2, retryOn unavailable turn a first-attempt UNAVAILABLE into success',
    { timeout: 20_000 },
    async () => {
      // Without a retry policy, the first attempt's UNAVAILABLE reaches the caller.
      const plain = await call(clients.get('noretry')!, { id: 'plain-1', failFirst: true });
      assert.equal(plain.code, grpc.status.UNAVAILABLE, JSON.stringify(plain));
      const before = echo.calls;
      for (let i = 0; i < 10; i++) {
        const r = await call(clients.get('retry')!, { id: `retry-${i}`, failFirst: true });
        assert.ok(r.ok, `call ${i}: ${JSON.stringify(r)}`);
      }
      assert.equal(echo.calls - before, 20, 'each call took exactly two attempts');
    },
  );

  it(
    'fault injection: abort UNAVAILABLE on a header match never reaches the backend; delay adds >= 500 ms',
    { timeout: 20_000 },
    async () => {
      const c = clients.get('fault')!;
      const before = echo.calls;
      for (let i = 0; i < 10; i++) {
        const r = await call(c, {}, { 'x-fault': 'abort' });
        assert.equal(r.code, grpc.status.UNAVAILABLE, JSON.stringify(r));
      }
      assert.equal(echo.calls, before, 'aborted calls reached the backend');
      const delayed = await call(c, {}, { 'x-fault': 'delay' });
      assert.ok(delayed.ok && delayed.ms >= 500, JSON.stringify(delayed));
      const plain = await call(c);
      assert.ok(plain.ok && plain.ms < 400, JSON.stringify(plain));
    },
  );

  it(
    'circuit breaking: http2MaxRequests 1 fails concurrent excess calls UNAVAILABLE at once',
    { timeout: 20_000 },
    async () => {
      const c = clients.get('limited')!;
      // grpc-js counts a request when the call starts on a subchannel, not at pick time, so calls
      // picked in the same tick all pass; one call in flight first, then the excess.
      const first = call(c, { sleepMs: 1000 });
      await new Promise((r) => setTimeout(r, 150));
      const excess = await Promise.all(Array.from({ length: 4 }, () => call(c, { sleepMs: 1000 })));
      const results = [await first, ...excess];
      const ok = results.filter((r) => r.ok);
      const dropped = results.filter((r) => !r.ok);
      assert.equal(ok.length, 1, JSON.stringify(results));
      assert.ok(results[0]!.ok, 'the call in flight completes');
      for (const r of dropped) {
        assert.equal(r.code, grpc.status.UNAVAILABLE, JSON.stringify(r));
        assert.match(r.details ?? '', /dropped by load balancing policy/);
        assert.ok(r.ms < 500, `dropped after ${r.ms} ms`);
      }
      // Once the slot is free, calls go through again.
      assert.ok((await call(c)).ok);
    },
  );

  it(
    'outlier detection: grpc-js-xds ignores consecutive5xxErrors (A50 has no consecutive-error ejection), so the failing endpoint keeps its share',
    { timeout: 20_000 },
    async () => {
      // istiod-compatible translation: consecutive_5xx plus enforcing_success_rate 0. gRPC clients
      // only eject on success rate / failure percentage, which the Istio API cannot express, so
      // round robin keeps sending half the calls to the broken endpoint well past interval (1 s).
      // If this starts failing because the bad endpoint got ejected, grpc-js grew consecutive-error
      // ejection: turn this into the positive assertion.
      const c = clients.get('outlier')!;
      const start = Date.now();
      let late = 0;
      let lateFailures = 0;
      while (Date.now() - start < 2500) {
        const r = await call(c);
        if (Date.now() - start > 1500) {
          late++;
          if (!r.ok) {
            assert.equal(r.code, grpc.status.UNAVAILABLE, JSON.stringify(r));
            lateFailures++;
          }
        }
      }
      assert.ok(late >= 20, `only ${late} calls in the last second`);
      const share = lateFailures / late;
      assert.ok(share > 0.3 && share < 0.7, `failing endpoint share ${share.toFixed(2)} over ${late} calls`);
    },
  );

  it(
    'valid config grpc-js-xds would NACK: two WorkloadEntries on one address:port become one endpoint, EDS ACKed',
    { timeout: 20_000 },
    async () => {
      // grpc-js-xds rejects a ClusterLoadAssignment with a duplicate address (Istio accepts two
      // WorkloadEntries for one VM); the translation merges them, so the client ACKs and calls work.
      for (let i = 0; i < 5; i++) assert.ok((await call(clients.get('dup')!)).ok);
      const list = (await (await fetch(`${cp!.admin}/debug/clients`)).json()) as {
        nodeId: string;
        types: { status: string }[];
      }[];
      const me = list.find((c) => c.nodeId === 'resilience-dup')!;
      assert.ok(me.types.length >= 4 && me.types.every((t) => t.status === 'SYNCED'), JSON.stringify(me.types));
    },
  );
});
