// Incremental (delta) ADS, DeltaAggregatedResources, against a raw grpc-js client using the
// same protos: wildcard and explicit subscriptions, only changed resources on a snapshot
// change, removed_resources, resume with initial_resource_versions, ACK/NACK, slow clients.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { Snapshot, TYPE_URLS, xdsResource, type XdsResource } from '../../src/xds/snapshot.js';

import { loadXdsProtos } from '../../src/xds/server/protos.js';
import { FakeSource, startServer, typeOf, until } from '../helpers/ads.js';

const LDS = TYPE_URLS.listener;
const RDS = TYPE_URLS.route;
const CDS = TYPE_URLS.cluster;
const EDS = TYPE_URLS.endpoint;
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

function cluster(name: string, tag = 'v1'): XdsResource {
  return xdsResource(CDS, name, {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
    lb_policy: 'ROUND_ROBIN',
    metadata: { filter_metadata: { trellis: { fields: { tag: { string_value: tag } } } } },
  });
}

function endpoints(name: string, port: number): XdsResource {
  return xdsResource(EDS, name, {
    cluster_name: name,
    endpoints: [
      {
        locality: { region: 'r1', zone: 'z1' },
        load_balancing_weight: { value: 1 },
        lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }],
      },
    ],
  });
}

/** One service: listener -> route -> cluster -> endpoints, all named after it. */
function service(name: string, port = 19000): XdsResource[] {
  return [
    xdsResource(LDS, name, {
      name,
      api_listener: {
        api_listener: {
          '@type': HCM,
          stat_prefix: name,
          rds: { route_config_name: `${name}-route`, config_source: { ads: {}, resource_api_version: 'V3' } },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
        },
      },
    }),
    xdsResource(RDS, `${name}-route`, {
      name: `${name}-route`,
      virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: name } }] }],
    }),
    cluster(name),
    endpoints(name, port),
  ];
}

interface DeltaResource {
  name?: string;
  version?: string;
  resource?: { type_url: string; value: Buffer };
}
interface DeltaResponse {
  system_version_info?: string;
  type_url?: string;
  nonce?: string;
  resources?: DeltaResource[];
  removed_resources?: string[];
}
interface DeltaRequest {
  node?: Record<string, unknown> | null;
  type_url: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code: number; message: string } | null;
}

/** A raw incremental ADS client: sends what it is told, queues what it gets. */
class RawDelta {
  readonly client: grpc.Client;
  readonly stream: grpc.ClientDuplexStream<DeltaRequest, DeltaResponse>;
  readonly received: DeltaResponse[] = [];
  #queue: DeltaResponse[] = [];
  #waiter: ((r: DeltaResponse) => void) | undefined;
  error: grpc.ServiceError | undefined;
  ended = false;

  constructor(
    port: number,
    readonly nodeId: string,
    readonly autoAck = false,
  ) {
    const { AdsClient } = loadXdsProtos();
    this.client = new AdsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const method = (
      this.client as unknown as Record<string, () => grpc.ClientDuplexStream<DeltaRequest, DeltaResponse>>
    )['DeltaAggregatedResources']!;
    this.stream = method.call(this.client);
    this.stream.on('data', (r: DeltaResponse) => {
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
  send(req: DeltaRequest): void {
    const node = this.#first ? { id: this.nodeId, cluster: 'delta-cluster', locality: { zone: 'z1' } } : null;
    this.#first = false;
    this.stream.write({ node, ...req });
  }
  subscribe(typeUrl: string, names: string[], initial?: Record<string, string>): void {
    this.send({ type_url: typeUrl, resource_names_subscribe: names, initial_resource_versions: initial ?? {} });
  }
  unsubscribe(typeUrl: string, names: string[]): void {
    this.send({ type_url: typeUrl, resource_names_unsubscribe: names });
  }
  ack(r: DeltaResponse): void {
    this.send({ type_url: r.type_url!, response_nonce: r.nonce! });
  }
  nack(r: DeltaResponse, message: string): void {
    this.send({ type_url: r.type_url!, response_nonce: r.nonce!, error_detail: { code: 14, message } });
  }

  async next(timeoutMs = 2000): Promise<DeltaResponse> {
    const queued = this.#queue.shift();
    if (queued) return queued;
    return await new Promise<DeltaResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`no DeltaDiscoveryResponse within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
  }

  async expectNone(ms = 250): Promise<void> {
    await sleep(ms);
    assert.deepEqual(
      this.#queue.map((r) => [r.type_url, names(r), r.removed_resources ?? []]),
      [],
      'expected no DeltaDiscoveryResponse',
    );
  }

  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}

/** The names in a response, after checking every Resource's Any against its name. */
function names(r: DeltaResponse): string[] {
  const protos = loadXdsProtos();
  return (r.resources ?? []).map((res) => {
    assert.ok(res.resource, `resource ${res.name} has a body`);
    assert.equal(res.resource.type_url, r.type_url, 'Any.type_url equals the response type_url');
    const m = protos.unpackAny(res.resource);
    assert.equal(String(m['name'] ?? m['cluster_name']), res.name, 'Resource.name is the resource name');
    return res.name!;
  });
}

function versions(r: DeltaResponse): Record<string, string> {
  return Object.fromEntries((r.resources ?? []).map((x) => [x.name!, x.version!]));
}

function versionsOf(snap: Snapshot, typeUrl: string): Record<string, string> {
  return Object.fromEntries([...snap.resources(typeUrl).values()].map((x) => [x.name, x.version]));
}

function deltaClient(t: TestContext, port: number, nodeId: string, autoAck = false): RawDelta {
  const c = new RawDelta(port, nodeId, autoAck);
  t.after(() => c.close());
  return c;
}

// ---------------------------------------------------------------------------------------

test('delta wildcard: all resources with their versions; ACK -> SYNCED; clients() says delta', async (t) => {
  const source = new FakeSource();
  const snap = source.set('n1', new Snapshot([cluster('a'), cluster('b'), cluster('c')]));
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1');

  c.subscribe(CDS, ['*']);
  const r = await c.next();
  assert.equal(r.type_url, CDS);
  assert.ok(r.nonce, 'nonce set');
  assert.equal(r.system_version_info, snap.version(CDS));
  assert.deepEqual(names(r), ['a', 'b', 'c']);
  assert.deepEqual(versions(r), versionsOf(snap, CDS));
  assert.deepEqual(r.removed_resources ?? [], []);
  assert.equal(typeOf(server, 'n1', CDS).status, 'STALE', 'sent, not yet ACKed');

  c.ack(r);
  await c.expectNone();
  const info = server.clients()[0]!;
  assert.equal(info.protocol, 'delta');
  assert.equal(info.cluster, 'delta-cluster');
  const ti = typeOf(server, 'n1', CDS);
  assert.equal(ti.status, 'SYNCED');
  assert.equal(ti.subscribed, '*');
  assert.equal(ti.ackedVersion, snap.version(CDS));
  assert.deepEqual(ti.sentResources, ['a', 'b', 'c']);
  assert.equal(info.counters.resourcesSent, 3);
  assert.equal(info.counters.acks, 1);
  assert.equal(server.stats().resourcesSent, 3);
});

test('an empty first request is a legacy wildcard; "*" unsubscribed stops it', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([cluster('a'), cluster('b')]));
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1', true);
  c.subscribe(CDS, []);
  assert.deepEqual(names(await c.next()), ['a', 'b']);
  assert.equal(typeOf(server, 'n1', CDS).subscribed, '*');

  c.unsubscribe(CDS, ['*']);
  await c.expectNone(100);
  assert.deepEqual(typeOf(server, 'n1', CDS).subscribed, []);
  source.set('n1', new Snapshot([cluster('a', 'v2'), cluster('b'), cluster('new')]));
  await c.expectNone(150);
});

test('specific names end a legacy wildcard; "*" with names stays wildcard and keeps unsubscribed names', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([cluster('a'), cluster('b')]));
  source.set('n2', new Snapshot([cluster('a'), cluster('b')]));
  const { server, port } = await startServer(t, source);
  const legacy = deltaClient(t, port, 'n1', true);
  legacy.subscribe(CDS, []);
  assert.deepEqual(names(await legacy.next()), ['a', 'b']);
  legacy.subscribe(CDS, ['a']);
  assert.deepEqual(names(await legacy.next()), ['a'], 'a subscribed name is sent again');
  await until('SYNCED', () => typeOf(server, 'n1', CDS).status === 'SYNCED');
  assert.deepEqual(typeOf(server, 'n1', CDS).subscribed, ['a'], 'no longer a wildcard');
  source.set('n1', new Snapshot([cluster('a'), cluster('b', 'v2'), cluster('c')]));
  await legacy.expectNone(150);

  const explicit = deltaClient(t, port, 'n2', true);
  explicit.subscribe(CDS, ['*', 'a']);
  assert.deepEqual(names(await explicit.next()), ['a', 'b']);
  explicit.unsubscribe(CDS, ['a']);
  await explicit.expectNone(100);
  assert.equal(typeOf(server, 'n2', CDS).subscribed, '*');
  source.set('n2', new Snapshot([cluster('a', 'v2'), cluster('b')]));
  assert.deepEqual(names(await explicit.next()), ['a'], 'still covered by the wildcard');
});

test('a change to one resource sends exactly that resource; a removal names it in removed_resources', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([cluster('a'), cluster('b'), cluster('c')]));
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1', true);
  c.subscribe(CDS, ['*']);
  const r1 = await c.next();
  await until('SYNCED', () => typeOf(server, 'n1', CDS).status === 'SYNCED');

  const v2 = source.set('n1', new Snapshot([cluster('a'), cluster('b', 'v2'), cluster('c')]));
  const r2 = await c.next();
  assert.deepEqual(names(r2), ['b'], 'only the changed resource');
  assert.equal(versions(r2)['b'], v2.resources(CDS).get('b')!.version);
  assert.notEqual(versions(r2)['b'], versions(r1)['b']);
  assert.equal(r2.system_version_info, v2.version(CDS));
  assert.deepEqual(r2.removed_resources ?? [], []);
  assert.notEqual(r2.nonce, r1.nonce);

  source.set('n1', new Snapshot([cluster('b', 'v2'), cluster('c'), cluster('d')]));
  const r3 = await c.next();
  assert.deepEqual(names(r3), ['d'], 'the new resource only');
  assert.deepEqual(r3.removed_resources, ['a']);
  await c.expectNone();
  await until('SYNCED', () => typeOf(server, 'n1', CDS).status === 'SYNCED');
  const ti = typeOf(server, 'n1', CDS);
  assert.deepEqual(ti.removedResources, ['a']);
  assert.equal(server.stats().resourcesRemoved, 1);
  assert.equal(server.stats().pushes, 2);
  assert.equal(server.clients()[0]!.counters.resourcesSent, 3 + 1 + 1);
});

test("a one-service change in delta mode sends only that service's resources (the benchmark's check)", async (t) => {
  const source = new FakeSource();
  const all = (portOf5: number) =>
    new Snapshot(Array.from({ length: 10 }, (_, i) => service(`svc${i}`, i === 5 ? portOf5 : 19000 + i)).flat());
  source.set('n1', all(19005));
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1', true);
  for (const u of [CDS, EDS, LDS, RDS]) c.subscribe(u, ['*']);
  for (let i = 0; i < 4; i++) assert.equal(names(await c.next()).length, 10);
  await until('all SYNCED', () => server.clients()[0]!.types.every((x) => x.status === 'SYNCED'));
  const before = server.clients()[0]!.counters;

  source.set('n1', all(29005)); // svc5's endpoints moved
  const r = await c.next();
  assert.equal(r.type_url, EDS);
  assert.deepEqual(names(r), ['svc5']);
  await c.expectNone(150);
  const after = server.clients()[0]!.counters;
  assert.equal(after.resourcesSent - before.resourcesSent, 1);
  assert.equal(after.responses - before.responses, 1);
  assert.equal(after.pushes - before.pushes, 1);
});

test('explicit subscriptions: only those names; a missing name is in removed_resources; unsubscribed names are not pushed', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([cluster('a'), cluster('b'), cluster('c')]));
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1', true);
  c.subscribe(CDS, ['a']);
  const r1 = await c.next();
  assert.deepEqual(names(r1), ['a']);
  assert.deepEqual(r1.removed_resources ?? [], []);

  // Adding names: only the new ones; a name that does not exist is reported as removed.
  c.subscribe(CDS, ['b', 'missing']);
  const r2 = await c.next();
  assert.deepEqual(names(r2), ['b']);
  assert.deepEqual(r2.removed_resources, ['missing']);
  await until('SYNCED', () => typeOf(server, 'n1', CDS).status === 'SYNCED');
  assert.deepEqual(typeOf(server, 'n1', CDS).subscribed, ['a', 'b', 'missing']);

  c.unsubscribe(CDS, ['a']);
  await c.expectNone(100);
  assert.deepEqual(typeOf(server, 'n1', CDS).subscribed, ['b', 'missing']);
  // a (unsubscribed) and c (never subscribed) change: nothing. b changes: only b.
  source.set('n1', new Snapshot([cluster('a', 'v2'), cluster('b'), cluster('c', 'v2')]));
  await c.expectNone(150);
  source.set('n1', new Snapshot([cluster('a', 'v2'), cluster('b', 'v3'), cluster('c', 'v2')]));
  assert.deepEqual(names(await c.next()), ['b']);
  // The missing one appears: it is sent; b is removed: named.
  source.set('n1', new Snapshot([cluster('a', 'v2'), cluster('c', 'v2'), cluster('missing')]));
  const r5 = await c.next();
  assert.deepEqual(names(r5), ['missing']);
  assert.deepEqual(r5.removed_resources, ['b']);
  // Subscribing again to a name the client holds: sent again (it may have forgotten it).
  c.subscribe(CDS, ['missing']);
  assert.deepEqual(names(await c.next()), ['missing']);
  await c.expectNone(100);
});

test('resume: initial_resource_versions equal to the current ones -> nothing resent; one stale -> only that one', async (t) => {
  const source = new FakeSource();
  const snap = source.set('n1', new Snapshot([cluster('a'), cluster('b'), cluster('c')]));
  const { server, port } = await startServer(t, source);
  const current = versionsOf(snap, CDS);

  const c1 = deltaClient(t, port, 'n1', true);
  c1.subscribe(CDS, ['*'], current);
  await c1.expectNone();
  assert.equal(typeOf(server, 'n1', CDS).status, 'SYNCED', 'nothing owed');
  assert.equal(server.stats().responses, 0);
  // Still tracked: a later change sends only the changed resource.
  source.set('n1', new Snapshot([cluster('a', 'v2'), cluster('b'), cluster('c')]));
  assert.deepEqual(names(await c1.next()), ['a']);
  c1.close();
  await until('c1 gone', () => server.clients().length === 0);

  source.set('n1', snap);
  await sleep(50);
  const c2 = deltaClient(t, port, 'n1', true);
  c2.subscribe(CDS, ['*'], { ...current, b: 'an-old-version', gone: 'x' });
  const r = await c2.next();
  assert.deepEqual(names(r), ['b'], 'only the stale one');
  assert.deepEqual(r.removed_resources, ['gone'], 'a resource the client holds that no longer exists');
  await c2.expectNone();

  // Explicit names resume too.
  const c3 = deltaClient(t, port, 'n2', true);
  source.set('n2', snap);
  c3.subscribe(CDS, ['a', 'c'], { a: current['a']!, c: 'old' });
  assert.deepEqual(names(await c3.next()), ['c']);
  await c3.expectNone();
});

test('a NACK is recorded (NACKED, with the message) and that version is not resent; the next change is', async (t) => {
  const source = new FakeSource();
  const snap = source.set('n1', new Snapshot([cluster('a'), cluster('b')]));
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1');
  c.subscribe(CDS, ['*']);
  const r1 = await c.next();
  c.nack(r1, 'xDS response validation errors: [resource index 0: bad]');
  await c.expectNone();
  const ti = typeOf(server, 'n1', CDS);
  assert.equal(ti.status, 'NACKED');
  assert.equal(ti.nack?.message, 'xDS response validation errors: [resource index 0: bad]');
  assert.equal(ti.nack?.code, 14);
  assert.equal(ti.nack?.nonce, r1.nonce);
  assert.equal(ti.nack?.version, snap.version(CDS));
  assert.equal(ti.ackedVersion, undefined);
  assert.equal(server.stats().nacks, 1);
  assert.equal(server.clients()[0]!.counters.nacks, 1);

  const fixed = source.set('n1', new Snapshot([cluster('a', 'fixed'), cluster('b')]));
  const r2 = await c.next();
  assert.deepEqual(names(r2), ['a']);
  c.ack(r2);
  await until('SYNCED after the fix', () => typeOf(server, 'n1', CDS).status === 'SYNCED');
  const after = typeOf(server, 'n1', CDS);
  assert.equal(after.nack, undefined);
  assert.equal(after.lastNack?.nonce, r1.nonce);
  assert.equal(after.ackedVersion, fixed.version(CDS));
});

test('a client that never ACKs gets one response per type; its ACK then brings only the latest changes, coalesced', async (t) => {
  const source = new FakeSource();
  const mk = (i: number) =>
    new Snapshot([cluster('a', `v${i}`), cluster('b'), ...(i >= 50 ? [] : [cluster('c')]), cluster('d')]);
  source.set('slow', mk(0));
  const { server, port } = await startServer(t, source, 5);
  const slow = deltaClient(t, port, 'slow');
  slow.subscribe(CDS, ['*']);
  const first = await slow.next();
  assert.deepEqual(names(first), ['a', 'b', 'c', 'd']);
  let last!: Snapshot;
  for (let i = 1; i <= 100; i++) {
    last = source.set('slow', mk(i));
    if (i % 10 === 0) await sleep(15);
  }
  await slow.expectNone(100);
  assert.equal(slow.received.length, 1, 'one unacknowledged response per type');
  assert.equal(typeOf(server, 'slow', CDS).status, 'STALE');

  slow.ack(first);
  const latest = await slow.next();
  assert.deepEqual(names(latest), ['a']);
  assert.equal(versions(latest)['a'], last.resources(CDS).get('a')!.version, 'straight to the latest version');
  assert.deepEqual(latest.removed_resources, ['c']);
  await slow.expectNone(100);
  slow.ack(latest);
  await until('SYNCED', () => typeOf(server, 'slow', CDS).status === 'SYNCED');
});

test('delta and state-of-the-world streams side by side in clients(); stream end and cancel clean up', async (t) => {
  const source = new FakeSource();
  source.set('n1', new Snapshot([cluster('a')]));
  source.set('n2', new Snapshot([cluster('a')]));
  const { server, port } = await startServer(t, source);
  const d = deltaClient(t, port, 'n1');
  d.subscribe(CDS, ['a']);
  await d.next();

  const { AdsClient } = loadXdsProtos();
  const sotwClient = new AdsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => sotwClient.close());
  const sotw = (sotwClient as unknown as Record<string, () => grpc.ClientDuplexStream<object, object>>)[
    'StreamAggregatedResources'
  ]!.call(sotwClient);
  sotw.on('error', () => {});
  sotw.write({ node: { id: 'n2' }, type_url: CDS, resource_names: ['a'] });
  await until('both connected', () => server.clients().length === 2);
  assert.deepEqual(
    server.clients().map((x) => [x.nodeId, x.protocol]),
    [
      ['n1', 'delta'],
      ['n2', 'sotw'],
    ],
  );

  d.stream.end();
  await until('delta stream gone', () => !server.clients().some((x) => x.nodeId === 'n1'));
  await until('delta stream ended by the server', () => d.ended);
  sotw.cancel();
  await until('all gone', () => server.clients().length === 0);
  assert.equal(server.stats().streamsClosed, 2);

  const d2 = deltaClient(t, port, 'n1');
  d2.subscribe(CDS, ['a']);
  await d2.next();
  d2.stream.cancel();
  await until('cancelled delta stream gone', () => server.clients().length === 0);
  assert.equal(server.stats().connectedStreams, 0);
});

test('a delta stream whose first request has no node is rejected with INVALID_ARGUMENT', async (t) => {
  const source = new FakeSource();
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'n1');
  c.stream.write({ type_url: CDS, resource_names_subscribe: ['a'] });
  await until('stream error', () => c.error !== undefined);
  assert.equal(c.error?.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(server.clients().length, 0);
});

test('a node without a snapshot is NOT_SENT until its snapshot appears; an unencodable resource is left out', async (t) => {
  const source = new FakeSource();
  const { server, port } = await startServer(t, source);
  const c = deltaClient(t, port, 'late', true);
  c.subscribe(LDS, ['*']);
  await c.expectNone(100);
  assert.equal(typeOf(server, 'late', LDS).status, 'NOT_SENT');
  const bad = xdsResource(LDS, 'bad', {
    name: 'bad',
    api_listener: { api_listener: { '@type': 'type.googleapis.com/no.such.Message' } },
  });
  source.set('late', new Snapshot([bad, ...service('good').filter((r) => r.typeUrl === LDS)]));
  const r = await c.next();
  assert.deepEqual(names(r), ['good']);
  await c.expectNone(100);
  assert.equal(server.stats().encodeErrors, 1);
  assert.match(server.stats().lastEncodeError ?? '', /no\.such\.Message/);
});
