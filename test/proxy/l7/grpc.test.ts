// gRPC end to end through the engine with @grpc/grpc-js on both sides: unary and server
// streaming calls, status and trailing metadata forwarded in HTTP/2 trailers, a trailers-only
// error, and locally generated errors as trailers-only gRPC responses (UNIMPLEMENTED for no
// route, UNAVAILABLE for no endpoints, DEADLINE_EXCEEDED for the route timeout).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { cla, edsCluster, H2_OPTIONS, l7Config, routeConfig, startEngine, vhost } from './helpers.js';

const PROTO = `syntax = "proto3";
package demo;
service Echo {
  rpc Say (Msg) returns (Msg);
  rpc Fail (Msg) returns (Msg);
  rpc Slow (Msg) returns (Msg);
  rpc Count (Msg) returns (stream Msg);
}
service Other {
  rpc Say (Msg) returns (Msg);
}
message Msg { string text = 1; int32 n = 2; }
`;

interface Msg {
  text: string;
  n?: number;
}

type Unary = (
  req: Msg,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Msg) => void,
) => grpc.ClientUnaryCall;

type EchoClient = grpc.Client & {
  Say: Unary;
  Fail: Unary;
  Slow: Unary;
  Count: (req: Msg) => grpc.ClientReadableStream<Msg>;
};

function load(): { Echo: grpc.ServiceClientConstructor; Other: grpc.ServiceClientConstructor } {
  const dir = mkdtempSync(join(tmpdir(), 'l7-grpc-'));
  try {
    writeFileSync(join(dir, 'demo.proto'), PROTO);
    const def = protoLoader.loadSync(join(dir, 'demo.proto'), { keepCase: true });
    const pkg = grpc.loadPackageDefinition(def).demo as grpc.GrpcObject;
    return { Echo: pkg.Echo as grpc.ServiceClientConstructor, Other: pkg.Other as grpc.ServiceClientConstructor };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function call(
  fn: Unary,
  client: grpc.Client,
  req: Msg,
  deadlineMs = 5000,
): Promise<{ res?: Msg; err?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      resolve(err ? { err } : { res }),
    );
  });
}

test('gRPC through the engine: unary, streaming, trailers, and local errors as gRPC statuses', async () => {
  const { Echo, Other } = load();
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Say: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'from-backend');
      cb(
        null,
        { text: `hello ${call.request.text} via ${String(call.metadata.get('x-forwarded-proto')[0])}` },
        trailer,
      );
    },
    Fail: (_call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      const md = new grpc.Metadata();
      md.set('x-why', 'because');
      cb({ code: grpc.status.NOT_FOUND, details: 'no such thing', metadata: md });
    },
    Slow: (_call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      setTimeout(() => cb(null, { text: 'late' }), 1000);
    },
    Count: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      const n = call.request.n ?? 0;
      for (let i = 0; i < n; i++) call.write({ text: `item ${i}`, n: i });
      const md = new grpc.Metadata();
      md.set('x-count', String(n));
      call.end(md);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const config = l7Config(
    [
      routeConfig('rc', [
        vhost(
          'all',
          ['*'],
          [
            {
              match: { path: '/demo.Echo/Slow' },
              route: { cluster: 'echo', timeout: { seconds: 0, nanos: 200_000_000 } },
            },
            { match: { prefix: '/demo.Echo/' }, route: { cluster: 'echo' } },
            { match: { prefix: '/demo.Other/' }, route: { cluster: 'empty' } },
          ],
        ),
      ]),
    ],
    [edsCluster('echo', H2_OPTIONS), edsCluster('empty', H2_OPTIONS)],
    [cla('echo', [{ port }]), cla('empty', [])],
  );
  const proxy = await startEngine(config, 'rc');
  const target = `127.0.0.1:${proxy.port}`;
  const client = new Echo(target, grpc.credentials.createInsecure()) as unknown as EchoClient;
  const other = new Other(target, grpc.credentials.createInsecure()) as unknown as { Say: Unary } & grpc.Client;
  try {
    // Unary with trailing metadata.
    const trailers = await new Promise<{ res: Msg; md: grpc.Metadata }>((resolve, reject) => {
      let md: grpc.Metadata | undefined;
      const c = client.Say({ text: 'mesh' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) =>
        err ? reject(err) : setImmediate(() => resolve({ res: res!, md: md! })),
      );
      c.on('status', (s: grpc.StatusObject) => (md = s.metadata));
    });
    assert.equal(trailers.res.text, 'hello mesh via http');
    assert.deepEqual(trailers.md.get('x-trailer'), ['from-backend']);
    // Error status and its metadata (trailers-only from the backend).
    const fail = await call(client.Fail, client, { text: 'x' });
    assert.equal(fail.err?.code, grpc.status.NOT_FOUND);
    assert.equal(fail.err?.details, 'no such thing');
    assert.deepEqual(fail.err?.metadata.get('x-why'), ['because']);
    // Server streaming, then trailers.
    const items = await new Promise<{ texts: string[]; count: string }>((resolve, reject) => {
      const texts: string[] = [];
      let count = '';
      const s = client.Count({ text: '', n: 100 });
      s.on('data', (m: Msg) => texts.push(m.text));
      s.on('status', (st: grpc.StatusObject) => (count = String(st.metadata.get('x-count')[0])));
      s.on('error', reject);
      s.on('end', () => setImmediate(() => resolve({ texts, count })));
    });
    assert.equal(items.texts.length, 100);
    assert.equal(items.texts[99], 'item 99');
    assert.equal(items.count, '100');
    // Local errors.
    const unknownMethod = await new Promise<grpc.ServiceError>((resolve) => {
      // A path no route matches: /demo.Nope/Say.
      const c = new grpc.Client(target, grpc.credentials.createInsecure());
      c.makeUnaryRequest(
        '/demo.Nope/Say',
        (m: Msg) => Buffer.from(JSON.stringify(m)),
        (b: Buffer) => JSON.parse(b.toString()) as Msg,
        { text: '' },
        (err) => {
          c.close();
          resolve(err!);
        },
      );
    });
    assert.equal(unknownMethod.code, grpc.status.UNIMPLEMENTED);
    assert.equal(unknownMethod.details, 'route not found');
    const noEndpoints = await call(other.Say, other, { text: '' });
    assert.equal(noEndpoints.err?.code, grpc.status.UNAVAILABLE);
    assert.equal(noEndpoints.err?.details, 'no healthy upstream');
    const slow = await call(client.Slow, client, { text: '' });
    assert.equal(slow.err?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(slow.err?.details, 'upstream request timeout');
    await new Promise((r) => setTimeout(r, 20));
    const byPath = (p: string) => proxy.logs.find((l) => l.path === p);
    assert.equal(byPath('/demo.Echo/Say')?.grpcStatus, 0);
    assert.equal(byPath('/demo.Echo/Fail')?.grpcStatus, 5);
    assert.equal(byPath('/demo.Nope/Say')?.grpcStatus, 12);
    assert.deepEqual(byPath('/demo.Nope/Say')?.responseFlags, ['NR']);
    assert.equal(byPath('/demo.Echo/Slow')?.grpcStatus, 4);
  } finally {
    client.close();
    other.close();
    await proxy.close();
    server.forceShutdown();
  }
});
