// The state-of-the-world ADS server against a raw grpc-js ADS client (the protocol step by
// step) and against the real proxyless client, @grpc/grpc-js-xds, making a call through xDS.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { Snapshot, TYPE_URLS, xdsResource, type XdsResource } from '../../src/xds/snapshot.js';
import { AdsServer, type AdsClientInfo } from '../../src/xds/server/ads-server.js';
import { DISCOVERY_REQUEST, DISCOVERY_RESPONSE, loadXdsProtos } from '../../src/xds/server/protos.js';
import { FakeSource, startServer, typeOf, until } from '../helpers/ads.js';

const LDS = TYPE_URLS.listener;
const RDS = TYPE_URLS.route;
const CDS = TYPE_URLS.cluster;
const EDS = TYPE_URLS.endpoint;
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

// ---------------------------------------------------------------------------------------
// Fixtures.

function listener(name: string, routeName = `${name}-route`, statPrefix = 'v1'): XdsResource {
  return xdsResource(LDS, name, {
    name,
    api_listener: {
      api_listener: {
        '@type': HCM,
        stat_prefix: statPrefix,
        rds: { route_config_name: routeName, config_source: { ads: {}, resource_api_version: 'V3' } },
        http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
      },
    },
  });
}

function greeterResources(backendPort: number): XdsResource[] {
  return [
    listener('greeter', 'greeter-route'),
    xdsResource(RDS, 'greeter-route', {
      name: 'greeter-route',
      virtual_hosts: [
        { name: 'vh', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: 'greeter-cluster' } }] },
      ],
    }),
    xdsResource(CDS, 'greeter-cluster', {
      name: 'greeter-cluster',
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: 'greeter-eds' },
      lb_policy: 'ROUND_ROBIN',
    }),
    xdsResource(EDS, 'greeter-eds', {
      cluster_name: 'greeter-eds',
      endpoints: [
        {
          locality: { region: 'r1', zone: 'z1' },
          load_balancing_weight: { value: 1 },
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: backendPort } } } },
          ],
        },
      ],
    }),
  ];
}

interface AnyMessage {
  type_url: string;
  value: Buffer;
}
interface Response {
  version_info?: string;
  type_url?: string;
  nonce?: string;
  resources?: AnyMessage[];
}
interface Request {
  node?: Record<string, unknown> | null;
  type_url: string;
  resource_names?: string[];
  version_info?: string;
  response_nonce?: string;
  error_detail?: { code: number; message: string } | null;
}

/** A raw ADS client: sends what it is told, queues what it gets. */
class RawAds {
  readonly client: grpc.Client;
  readonly stream: grpc.ClientDuplexStream<Request, Response>;
  readonly received: Response[] = [];
  #queue: Response[] = [];
  #waiter: ((r: Response) => void) | undefined;
  error: grpc.ServiceError | undefined;
  ended = false;

  constructor(
    port: number,
    readonly nodeId: string,
    readonly autoAck = false,
  ) {
    const { AdsClient } = loadXdsProtos();
    this.client = new AdsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const method = (this.client as unknown as Record<string, () => grpc.ClientDuplexStream<Request, Response>>)[
      'StreamAggregatedResources'
    ]!;
    this.stream = method.call(this.client);
    this.stream.on('data', (r: Response) => {
      this.received.push(r);
      if (this.autoAck) this.ack(r);
      if (this.#waiter) {
        const w = this.#waiter;
        this.#waiter = undefined;
        w(r);
      } else this.#queue.push(r);
    });
    this.stream.on('error', (e: grpc.ServiceError) => (this.error = e));
    this.stream.on('end', () => (this.ended = true));
  }

  #first = true;
  send(req: Request): void {
    const node = this.#first ? { id: this.nodeId, cluster: 'raw-cluster', locality: { zone: 'z1' } } : null;
    this.#first = false;
    this.stream.write({ node, ...req });
  }

  /** ACK with the names we last asked for (what grpc-js-xds does). */
  names = new Map<string, string[]>();
  subscribe(typeUrl: string, names: string[], nonce = '', version = ''): void {
    this.names.set(typeUrl, names);
    this.send({ type_url: typeUrl, resource_names: names, response_nonce: nonce, version_info: version });
  }
  ack(r: Response): void {
    const t = r.type_url!;
    this.send({
      type_url: t,
      resource_names: this.names.get(t) ?? [],
      response_nonce: r.nonce!,
      version_info: r.version_info!,
    });
  }

  async next(timeoutMs = 2000): Promise<Response> {
    const queued = this.#queue.shift();
    if (queued) return queued;
    return await new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`no DiscoveryResponse within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
  }

  /** Asserts that nothing arrives within `ms`. */
  async expectNone(ms = 250): Promise<void> {
    await sleep(ms);
    assert.deepEqual(
      this.#queue.map((r) => [r.type_url, r.version_info, names(r)]),
      [],
      'expected no DiscoveryResponse',
    );
  }

  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}

function names(r: Response): string[] {
  const protos = loadXdsProtos();
  return (r.resources ?? []).map((a) => {
    const m = protos.unpackAny(a);
    return String(m['name'] ?? m['cluster_name']);
  });
}

function rawClient(t: TestContext, port: number, nodeId: string, autoAck = false): RawAds {
  const c = new RawAds(port, nodeId, autoAck);
  t.after(() => c.close());
  return c;
}

// ---------------------------------------------------------------------------------------
// The protocol, with a raw client.

test('LDS request -> the listener with the snapshot version and a fresh nonce; an ACK gets nothing', async (t) => {
  const source = new FakeSource();
  const snap = source.set('n1', new Snapshot([listener('greeter'), listener('other')]));
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');

  c.subscribe(LDS, ['greeter']);
  const r = await c.next();
  assert.equal(r.type_url, LDS);
  assert.equal(r.version_info, snap.version(LDS));
  assert.ok(r.nonce, 'nonce set');
  assert.equal(r.resources?.length, 1);
  assert.equal(r.resources![0]!.type_url, LDS, 'Any.type_url equals the response type_url');
  const l = loadXdsProtos().unpackAny(r.resources![0]!);
  assert.equal(l['name'], 'greeter');
  const inner = (l['api_listener'] as { api_listener: AnyMessage }).api_listener;
  assert.equal(inner.type_url, HCM, 'nested Any packed from @type');
  const hcm = loadXdsProtos().unpackAny(inner);
  assert.equal((hcm['rds'] as { route_config_name: string }).route_config_name, 'greeter-route');

  assert.equal(typeOf(server, 'n1', LDS).status, 'STALE', 'sent, not yet ACKed');
  c.ack(r);
  await c.expectNone();
  const ti = typeOf(server, 'n1', LDS);
  assert.equal(ti.status, 'SYNCED');
  assert.equal(ti.ackedVersion, snap.version(LDS));
  assert.deepEqual(ti.subscribed, ['greeter']);
  assert.equal(ti.sentNonce, r.nonce);
  const info = server.clients()[0]!;
  assert.equal(info.cluster, 'raw-cluster');
  assert.equal(info.locality.zone, 'z1');
  assert.equal(info.counters.responses, 1);
  assert.equal(info.counters.acks, 1);
  assert.ok(info.counters.bytesSent > 50, 'serialized bytes counted');
  assert.equal(server.stats().responses, 1);
});

test('snapshot changes are pushed; a burst of 5 changes is one push with the last version', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a')]));
  const { server, port } = await startServer(t, source, 50);
  const c = rawClient(t, port, 'n1', true);
  c.subscribe(LDS, ['a']);
  const r1 = await c.next();

  const v2 = source.set('n1', new Snapshot([listener('a', 'a-route', 'v2')]));
  const r2 = await c.next();
  assert.equal(r2.version_info, v2.version(LDS));
  assert.notEqual(r2.version_info, r1.version_info);
  assert.notEqual(r2.nonce, r1.nonce);
  await until('ACK of the push', () => typeOf(server, 'n1', LDS).status === 'SYNCED');

  const rounds = server.stats().pushRounds;
  let last!: Snapshot;
  for (let i = 3; i <= 7; i++) last = source.set('n1', new Snapshot([listener('a', 'a-route', `v${i}`)]));
  const r3 = await c.next();
  assert.equal(r3.version_info, last.version(LDS));
  await c.expectNone(200);
  assert.equal(server.stats().pushRounds, rounds + 1, 'one debounced push round');
  assert.equal(c.received.length, 3);
  assert.equal(server.stats().pushes, 2);
});

test('a NACK is recorded, the client shows NACKED with the message, and nothing is resent until the snapshot changes', async (t) => {
  const source = new FakeSource();
  const snap = source.set('n1', new Snapshot([listener('a')]));
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, ['a']);
  const r = await c.next();
  c.send({
    type_url: LDS,
    resource_names: ['a'],
    response_nonce: r.nonce!,
    version_info: '',
    error_detail: { code: 14, message: 'xDS response validation errors: [resource index 0: bad]' },
  });
  await c.expectNone();
  const ti = typeOf(server, 'n1', LDS);
  assert.equal(ti.status, 'NACKED');
  assert.equal(ti.nack?.message, 'xDS response validation errors: [resource index 0: bad]');
  assert.equal(ti.nack?.version, snap.version(LDS));
  assert.equal(ti.nack?.nonce, r.nonce);
  assert.equal(ti.ackedVersion, undefined);
  assert.equal(server.stats().nacks, 1);

  // grpc-js-xds repeats error_detail on later requests of the type: not a second NACK, no resend.
  c.send({
    type_url: LDS,
    resource_names: ['a'],
    response_nonce: r.nonce!,
    version_info: '',
    error_detail: { code: 14, message: 'again' },
  });
  await c.expectNone();
  assert.equal(server.stats().nacks, 1);

  const fixed = source.set('n1', new Snapshot([listener('a', 'a-route', 'fixed')]));
  const r2 = await c.next();
  assert.equal(r2.version_info, fixed.version(LDS));
  c.ack(r2);
  await until('SYNCED after the fix', () => typeOf(server, 'n1', LDS).status === 'SYNCED');
  const after = typeOf(server, 'n1', LDS);
  assert.equal(after.nack, undefined);
  assert.equal(after.lastNack?.version, snap.version(LDS));
});

test('subscription changes: an added name is answered; a listener removed from the snapshot is omitted', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a'), listener('b'), listener('c')]));
  const { port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, ['a']);
  const r1 = await c.next();
  assert.deepEqual(names(r1), ['a']);
  // ACK carrying a new name list (what grpc-js-xds sends after a watch is added).
  c.subscribe(LDS, ['a', 'b', 'missing'], r1.nonce, r1.version_info);
  const r2 = await c.next();
  assert.deepEqual(names(r2), ['a', 'b'], 'subscribed but missing names are simply absent');
  assert.equal(r2.version_info, r1.version_info, 'same snapshot version');
  c.ack(r2);
  await c.expectNone();

  const removed = source.set('n1', new Snapshot([listener('a'), listener('c')]));
  const r3 = await c.next();
  assert.equal(r3.version_info, removed.version(LDS));
  assert.deepEqual(names(r3), ['a'], 'the next LDS response omits the removed listener');
});

test('empty resource_names after explicit names unsubscribes: no resources come back, not even on changes', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a'), listener('b')]));
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, ['a']);
  const r1 = await c.next();
  c.subscribe(LDS, [], r1.nonce, r1.version_info);
  await c.expectNone();
  assert.deepEqual(typeOf(server, 'n1', LDS).subscribed, []);
  source.set('n1', new Snapshot([listener('a', 'x', 'v2'), listener('b')]));
  await c.expectNone(200);

  // Subscribing again is answered, even with the names of before.
  c.subscribe(LDS, ['a'], r1.nonce, r1.version_info);
  const r2 = await c.next();
  assert.deepEqual(names(r2), ['a']);
});

test('an empty list on the first request of a type is a wildcard (Envoy); "*" too', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a'), listener('b')]));
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, []);
  const r1 = await c.next();
  assert.deepEqual(names(r1), ['a', 'b']);
  assert.equal(typeOf(server, 'n1', LDS).subscribed, '*');
  c.ack(r1);
  source.set('n1', new Snapshot([listener('a'), listener('b'), listener('c')]));
  const r2 = await c.next();
  assert.deepEqual(names(r2), ['a', 'b', 'c'], 'legacy wildcard stays wildcard');
  c.subscribe(CDS, ['*']);
  const r3 = await c.next();
  assert.equal(r3.type_url, CDS);
  assert.deepEqual(r3.resources ?? [], []);
});

test('a node without a snapshot gets nothing until its snapshot appears, then it is pushed', async (t) => {
  const source = new FakeSource();
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'late');
  c.subscribe(LDS, ['a']);
  await c.expectNone(150);
  assert.equal(typeOf(server, 'late', LDS).status, 'NOT_SENT');
  assert.equal(typeOf(server, 'late', LDS).currentVersion, undefined);
  const snap = source.set('late', new Snapshot([listener('a')]));
  const r = await c.next();
  assert.equal(r.version_info, snap.version(LDS));
  assert.deepEqual(names(r), ['a']);
});

test('a request quoting a stale nonce is ignored', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a'), listener('b')]));
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, ['a']);
  const r1 = await c.next();
  c.ack(r1);
  source.set('n1', new Snapshot([listener('a', 'a-route', 'v2'), listener('b')]));
  const r2 = await c.next();
  // A request still quoting r1's nonce (sent before r2 arrived) changes nothing.
  c.subscribe(LDS, ['a', 'b'], r1.nonce, r1.version_info);
  c.subscribe(LDS, ['a', 'b'], 'no-such-nonce', r1.version_info);
  await c.expectNone();
  assert.deepEqual(typeOf(server, 'n1', LDS).subscribed, ['a']);
  assert.equal(typeOf(server, 'n1', LDS).status, 'STALE');
  assert.equal(server.stats().staleRequests, 2);
  // The ACK of r2 carries the new names: now they are answered.
  c.subscribe(LDS, ['a', 'b'], r2.nonce, r2.version_info);
  const r3 = await c.next();
  assert.deepEqual(names(r3), ['a', 'b']);
  // Nothing sent yet for CDS on this stream: a nonce from an earlier stream is not "stale".
  c.subscribe(CDS, ['*'], 'nonce-of-an-earlier-stream');
  const r4 = await c.next();
  assert.equal(r4.type_url, CDS);
});

test('register() adds ADS to an existing grpc-js server (shared port)', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a')]));
  const shared = new grpc.Server();
  const ads = new AdsServer();
  ads.register(shared, { source, debounceMs: 5 });
  const port = await new Promise<number>((res, rej) =>
    shared.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  t.after(() => shared.forceShutdown());
  t.after(() => ads.close());
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, ['a']);
  assert.deepEqual(names(await c.next()), ['a']);
  await ads.close();
  await until('stream ended by close()', () => c.ended || c.error !== undefined);
  assert.equal(ads.clients().length, 0);
});

test('a client that never ACKs gets one unacknowledged response per type, then only the latest; others keep up', async (t) => {
  const source = new FakeSource();
  const mk = (i: number) => new Snapshot([listener('a', 'a-route', `v${i}`)]);
  source.set('slow', mk(0));
  source.set('fast', mk(0));
  const { server, port } = await startServer(t, source, 5);
  const slow = rawClient(t, port, 'slow');
  const fast = rawClient(t, port, 'fast', true);
  slow.subscribe(LDS, ['a']);
  slow.subscribe(CDS, ['c']);
  fast.subscribe(LDS, ['a']);
  const first = await slow.next();
  const firstCds = await slow.next();
  assert.deepEqual([first.type_url, firstCds.type_url].sort(), [CDS, LDS].sort());
  const firstLds = first.type_url === LDS ? first : firstCds;
  await fast.next();

  let last!: Snapshot;
  for (let i = 1; i <= 100; i++) {
    last = mk(i);
    source.set('slow', last);
    source.set('fast', last);
    if (i % 10 === 0) await sleep(15); // several debounced push rounds
  }
  await until('the fast client has the last version', () => fast.received.at(-1)?.version_info === last.version(LDS));
  assert.ok(fast.received.length >= 2, `fast client got pushes (${fast.received.length})`);
  await slow.expectNone(100);
  assert.equal(slow.received.length, 2, 'one unacknowledged response per type');
  assert.equal(typeOf(server, 'slow', LDS).status, 'STALE');

  slow.ack(firstLds);
  const latest = await slow.next();
  assert.equal(latest.type_url, LDS);
  assert.equal(latest.version_info, last.version(LDS), 'straight to the latest version');
  await slow.expectNone(100);
  assert.equal(slow.received.length, 3);
});

test('a client that does not read (HTTP/2 flow control) holds back further responses, then gets them', async (t) => {
  const source = new FakeSource();
  const big = 'x'.repeat(1024 * 1024); // far beyond the 64 KiB HTTP/2 stream window
  source.set('n1', new Snapshot([listener('a', 'a-route', big), xdsResource(CDS, 'c', { name: 'c', type: 'EDS' })]));
  const server = new AdsServer();
  const port = await server.start({ source, address: '127.0.0.1:0', debounceMs: 5, maxQueue: 1 });
  t.after(() => server.close());

  // A bare HTTP/2 gRPC client: grpc-js clients read ahead, this one reads nothing until told.
  const protos = loadXdsProtos();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => session.destroy());
  const stream = session.request({
    ':method': 'POST',
    ':path': '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.pause();
  const frame = (req: Request) => {
    const body = protos.serialize(DISCOVERY_REQUEST, req);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };
  stream.write(frame({ node: { id: 'n1' }, type_url: LDS, resource_names: ['a'] }));
  stream.write(frame({ type_url: CDS, resource_names: ['c'] }));
  await until('both requests seen', () => server.stats().requests === 2);
  await sleep(200);
  assert.equal(server.stats().responses, 1, 'the second response waits until the first is flushed');
  assert.equal(typeOf(server, 'n1', CDS).status, 'NOT_SENT');

  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  stream.resume();
  const messages = (): Response[] => {
    const all = Buffer.concat(chunks);
    const out: Response[] = [];
    for (let off = 0; off + 5 <= all.length;) {
      const len = all.readUInt32BE(off + 1);
      if (off + 5 + len > all.length) break;
      out.push(protos.deserialize(DISCOVERY_RESPONSE, all.subarray(off + 5, off + 5 + len)) as Response);
      off += 5 + len;
    }
    return out;
  };
  await until('both responses', () => messages().length === 2, 5000);
  assert.deepEqual(
    messages().map((m) => m.type_url),
    [LDS, CDS],
  );
  assert.ok(server.stats().bytesSent > big.length);
  stream.close();
});

test('stream end and cancel clean up clients()', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([listener('a')]));
  source.set('n2', new Snapshot([listener('a')]));
  const { server, port } = await startServer(t, source);
  const a = rawClient(t, port, 'n1');
  const b = rawClient(t, port, 'n2');
  a.subscribe(LDS, ['a']);
  b.subscribe(LDS, ['a']);
  await a.next();
  await b.next();
  assert.deepEqual(
    server.clients().map((c: AdsClientInfo) => c.nodeId),
    ['n1', 'n2'],
  );
  a.stream.end();
  await until('n1 gone', () => !server.clients().some((c) => c.nodeId === 'n1'));
  await until('n1 stream ended by the server', () => a.ended);
  b.stream.cancel();
  await until('n2 gone', () => server.clients().length === 0);
  assert.equal(server.stats().streamsClosed, 2);
  assert.equal(server.stats().connectedStreams, 0);
});

test('a stream whose first request has no node is rejected with INVALID_ARGUMENT', async (t) => {
  const source = new FakeSource();
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.stream.write({ type_url: LDS, resource_names: ['a'] });
  await until('stream error', () => c.error !== undefined);
  assert.equal(c.error?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(c.error?.details ?? '', /node\.id/);
  assert.equal(server.clients().length, 0);
});

test('a resource whose @type is not a loaded message is never sent (no silently empty Any)', async (t) => {
  const source = new FakeSource();
  const bad = xdsResource(LDS, 'a', {
    name: 'a',
    api_listener: { api_listener: { '@type': 'type.googleapis.com/no.such.Message' } },
  });
  source.set('n1', new Snapshot([bad]));
  const { server, port } = await startServer(t, source);
  const c = rawClient(t, port, 'n1');
  c.subscribe(LDS, ['a']);
  await c.expectNone();
  assert.equal(server.stats().encodeErrors, 1);
  assert.match(server.stats().lastEncodeError ?? '', /no\.such\.Message/);
  assert.equal(typeOf(server, 'n1', LDS).status, 'NOT_SENT');
});

// ---------------------------------------------------------------------------------------
// The real proxyless client.

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};
const ECHO: grpc.ServiceDefinition = {
  Echo: {
    path: '/trellis.test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

test('@grpc/grpc-js-xds resolves xds:///greeter through our server, calls the backend, and shows SYNCED', async (t) => {
  const backend = new grpc.Server();
  backend.addService(ECHO, {
    Echo: (call: grpc.ServerUnaryCall<{ msg: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { echo: call.request.msg, via: 'backend' }),
  });
  const backendPort = await new Promise<number>((res, rej) =>
    backend.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  t.after(() => backend.forceShutdown());

  const source = new FakeSource();
  const nodeId = 'grpc-xds-test-node';
  const snap = source.set(nodeId, new Snapshot(greeterResources(backendPort)));
  assert.deepEqual(snap.consistent(), []);
  const { server, port } = await startServer(t, source);

  (await import('@grpc/grpc-js-xds')).register();
  const bootstrap = {
    xds_servers: [
      { server_uri: `127.0.0.1:${port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: { id: nodeId, cluster: 'test-cluster', locality: {} },
  };
  const Echo = grpc.makeGenericClientConstructor(ECHO, 'Echo');
  const client = new Echo('xds:///greeter', grpc.credentials.createInsecure(), {
    'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
  });
  let closed = false;
  t.after(() => {
    if (!closed) client.close();
  });

  type EchoFn = (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;
  const echo = (client as unknown as { Echo: EchoFn }).Echo.bind(client);
  const reply = await new Promise<unknown>((resolve, reject) =>
    echo({ msg: 'hi' }, { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r))),
  );
  assert.deepEqual(reply, { echo: 'hi', via: 'backend' });

  await until('LDS/RDS/CDS/EDS SYNCED', () => {
    const c = server.clients().find((x) => x.nodeId === nodeId);
    return [LDS, RDS, CDS, EDS].every((u) => c?.types.find((x) => x.typeUrl === u)?.status === 'SYNCED');
  });
  const info = server.clients().find((x) => x.nodeId === nodeId)!;
  assert.equal(info.cluster, 'test-cluster');
  assert.equal(info.userAgentName, 'gRPC Node Pure JS');
  assert.deepEqual(
    info.types.map((x) => [x.typeUrl, x.subscribed]),
    [
      [CDS, ['greeter-cluster']],
      [EDS, ['greeter-eds']],
      [LDS, ['greeter']],
      [RDS, ['greeter-route']],
    ],
  );
  assert.equal(info.counters.nacks, 0);

  // Closing the channel: grpc-js-xds unsubscribes (empty resource_names) and half-closes.
  // Nothing may be sent back.
  const before = server.stats();
  client.close();
  closed = true;
  await until('the grpc-js-xds stream ended', () => server.clients().length === 0, 5000);
  await sleep(100);
  const after = server.stats();
  assert.equal(after.requests - before.requests, 4, 'one unsubscribe (empty resource_names) per type');
  assert.equal(after.responses, before.responses, 'no response to the unsubscribes');
  assert.equal(after.resourcesSent, before.resourcesSent);
});

test('a resource grpc-js-xds rejects is NACKed: the client keeps working on its last good config, and recovers', async (t) => {
  const backend = new grpc.Server();
  backend.addService(ECHO, {
    Echo: (call: grpc.ServerUnaryCall<{ msg: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { echo: call.request.msg, via: 'backend' }),
  });
  const backendPort = await new Promise<number>((res, rej) =>
    backend.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  t.after(() => backend.forceShutdown());
  const source = new FakeSource();
  const nodeId = 'grpc-xds-nack-node';
  const good = greeterResources(backendPort);
  source.set(nodeId, new Snapshot(good));
  const { server, port } = await startServer(t, source);
  (await import('@grpc/grpc-js-xds')).register();
  const bootstrap = {
    xds_servers: [
      { server_uri: `127.0.0.1:${port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] },
    ],
    node: { id: nodeId, cluster: 'test-cluster', locality: {} },
  };
  const Echo = grpc.makeGenericClientConstructor(ECHO, 'Echo');
  const client = new Echo('xds:///greeter', grpc.credentials.createInsecure(), {
    'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
  });
  t.after(() => client.close());
  type EchoFn = (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;
  const echo = (client as unknown as { Echo: EchoFn }).Echo.bind(client);
  const call = () =>
    new Promise<unknown>((resolve, reject) =>
      echo({ msg: 'hi' }, { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  assert.deepEqual(await call(), { echo: 'hi', via: 'backend' });

  // A wildcard in the middle of a domain: valid protobuf, rejected by gRPC's validation.
  const bad = good.map((r) =>
    r.typeUrl === RDS
      ? xdsResource(RDS, 'greeter-route', {
          name: 'greeter-route',
          virtual_hosts: [
            {
              name: 'vh',
              domains: ['gree*ter'],
              routes: [{ match: { prefix: '' }, route: { cluster: 'greeter-cluster' } }],
            },
          ],
        })
      : r,
  );
  source.set(nodeId, new Snapshot(bad));
  await until(
    'RDS NACKED',
    () =>
      server
        .clients()
        .find((x) => x.nodeId === nodeId)
        ?.types.find((x) => x.typeUrl === RDS)?.status === 'NACKED',
    5000,
  );
  const rds = server
    .clients()
    .find((x) => x.nodeId === nodeId)!
    .types.find((x) => x.typeUrl === RDS)!;
  assert.match(rds.nack?.message ?? '', /domain|wildcard|\*/i);
  for (let i = 0; i < 5; i++)
    assert.deepEqual(await call(), { echo: 'hi', via: 'backend' }, 'the last good config keeps serving');

  source.set(nodeId, new Snapshot(good));
  await until(
    'RDS SYNCED again',
    () =>
      server
        .clients()
        .find((x) => x.nodeId === nodeId)
        ?.types.find((x) => x.typeUrl === RDS)?.status === 'SYNCED',
    5000,
  );
  assert.deepEqual(await call(), { echo: 'hi', via: 'backend' });
});
