// Downstream and upstream protocols: HTTP/1.1 keep-alive and pipelining, h2c prior knowledge,
// TLS with ALPN (h2 and http/1.1), HTTP/2 upstreams (explicit and use_downstream_protocol),
// 20 MB bodies both ways with backpressure, the connector hook (including a tunnel stream that
// is not a socket), and serveConnection on a stream that is not a socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { Duplex, Readable } from 'node:stream';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { tlsPem } from '../../../src/identity/tls-credentials.js';
import { L7Engine } from '../../../src/proxy/l7/engine.js';
import type { UpstreamTarget } from '../../../src/proxy/l7/upstream.js';
import {
  cla,
  closable,
  edsCluster,
  get,
  H2_OPTIONS,
  h2get,
  json,
  l7Config,
  routeConfig,
  startEcho,
  startEngine,
  toCluster,
  vhost,
} from './helpers.js';

const HOUR = 3_600_000;

function simpleConfig(port: number, clusterExtra: Record<string, unknown> = {}) {
  return l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster('b')])])],
    [edsCluster('b', clusterExtra)],
    [cla('b', [{ port }])],
  );
}

test('HTTP/1.1: keep-alive reuses the downstream and upstream connections; pipelined requests answer in order', async () => {
  const b = await startEcho('b');
  let upstreamConnections = 0;
  const proxy = await startEngine(simpleConfig(b.port), 'rc', {
    connector: (t) => {
      upstreamConnections++;
      return net.connect(t.port, t.address);
    },
  });
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 20; i++) assert.equal((await get(proxy.port, `/k${i}`, { agent })).status, 200);
    assert.equal(upstreamConnections, 1, 'one upstream connection for sequential requests');
    agent.destroy();
    // Three requests in one write.
    const sock = net.connect(proxy.port, '127.0.0.1');
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString()));
    sock.write(['/p1', '/p2', '/p3'].map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''));
    const deadline = Date.now() + 5000;
    while ((out.match(/"url":"\/p\d"/g) ?? []).length < 3 && Date.now() < deadline) await sleep(10);
    assert.deepEqual(out.match(/"url":"\/p\d"/g), ['"url":"/p1"', '"url":"/p2"', '"url":"/p3"']);
    sock.destroy();
  } finally {
    await proxy.close();
    await b.close();
  }
});

test('h2c with prior knowledge downstream; HTTP/1.1 and HTTP/2 upstreams', async () => {
  const h1 = await startEcho('h1');
  const h2 = await startEcho('h2', { h2: true });
  const config = l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster('h2', { prefix: '/two' }), toCluster('h1', { prefix: '/' })])])],
    [edsCluster('h1'), edsCluster('h2', H2_OPTIONS)],
    [cla('h1', [{ port: h1.port }]), cla('h2', [{ port: h2.port }])],
  );
  const proxy = await startEngine(config, 'rc');
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const a = await h2get(session, '/one', { 'x-test': 'a' });
    assert.equal(Number(a.headers[':status']), 200);
    const ea = JSON.parse(a.body) as { name: string; headers: Record<string, string>; url: string };
    assert.equal(ea.name, 'h1');
    assert.equal(ea.headers['x-test'], 'a');
    assert.equal(ea.headers.host, `127.0.0.1:${proxy.port}`, ':authority becomes Host for HTTP/1.1');
    const b = await h2get(session, '/two', { 'x-test': 'b' });
    const eb = JSON.parse(b.body) as { name: string; headers: Record<string, string> };
    assert.equal(eb.name, 'h2');
    assert.equal(eb.headers['x-test'], 'b');
    // Many concurrent streams on one connection.
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => h2get(session, `/two/${i}`)));
    assert.ok(many.every((r) => Number(r.headers[':status']) === 200));
    // An h2 upload to an HTTP/1.1 upstream (no content-length: sent chunked) and a HEAD.
    const up = await h2get(session, '/one/upload', {}, 'y'.repeat(70_000));
    assert.equal((JSON.parse(up.body) as { bodyLength: number }).bodyLength, 70_000);
    const head = await h2get(session, '/one/head', { ':method': 'HEAD' });
    assert.deepEqual([Number(head.headers[':status']), head.body], [200, '']);
    // Expect: 100-continue from an HTTP/1.1 client is answered by the engine, not forwarded.
    const cont = json(
      await get(proxy.port, '/one/continue', { method: 'PUT', headers: { expect: '100-continue' }, body: 'abc' }),
    );
    assert.equal(cont.bodyLength, 3);
    assert.equal(cont.headers.expect, undefined);
    // HTTP/1.1 client to an HTTP/2 upstream: no connection headers may reach h2.
    const viaH1 = await get(proxy.port, '/two/x', { headers: { connection: 'keep-alive', 'x-k': '1' } });
    assert.equal(viaH1.status, 200);
    assert.equal(json(viaH1).name, 'h2');
    assert.equal(proxy.logs.find((l) => l.path === '/one')?.protocol, 'HTTP/2');
  } finally {
    session.close();
    await proxy.close();
    await h1.close();
    await h2.close();
  }
});

test('use_downstream_protocol_config: HTTP/2 upstream iff the downstream request is HTTP/2', async () => {
  // A backend speaking both (HTTP/1.1 and h2c, sniffed): an engine with a direct response.
  const seen: string[] = [];
  const backend = new L7Engine({ log: (r) => seen.push(r.protocol) });
  backend.update(
    l7Config(
      [routeConfig('be', [vhost('all', ['*'], [{ match: { prefix: '/' }, direct_response: { status: 200 } }])])],
      [],
      [],
    ),
  );
  const be = await backend.listen({ host: '127.0.0.1', port: 0, routeConfig: 'be' });
  const proxy = await startEngine(
    simpleConfig(be.port, {
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { use_downstream_protocol_config: {} },
      },
    }),
    'rc',
  );
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    assert.equal((await get(proxy.port, '/')).status, 200);
    assert.equal(Number((await h2get(session, '/')).headers[':status']), 200);
    await sleep(20);
    assert.deepEqual(seen, ['HTTP/1.1', 'HTTP/2']);
  } finally {
    session.close();
    await proxy.close();
    await backend.close();
  }
});

test('TLS listener with ALPN: h2 and http/1.1 clients; client certificates give the peer identity (XFCC)', async () => {
  const ca = CertificateAuthority.createRoot({ trustDomain: 'cluster.local', ttlMs: HOUR });
  const server = tlsPem({
    svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/a/sa/proxy', ttlMs: HOUR, dnsNames: ['localhost'] }),
    bundle: ca.roots,
  });
  const client = tlsPem({
    svid: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/a/sa/client', ttlMs: HOUR }),
    bundle: ca.roots,
  });
  const b = await startEcho('b');
  const proxy = await startEngine(simpleConfig(b.port), 'rc', {
    tls: { cert: server.cert, key: server.key, ca: server.ca },
    identity: 'spiffe://cluster.local/ns/a/sa/proxy',
  });
  const session = http2.connect(`https://localhost:${proxy.port}`, {
    ca: server.ca,
    cert: client.cert,
    key: client.key,
  });
  try {
    const r2 = await h2get(session, '/h2', { 'x-forwarded-client-cert': 'forged' });
    assert.equal(Number(r2.headers[':status']), 200);
    const e2 = JSON.parse(r2.body) as { headers: Record<string, string> };
    assert.equal(
      e2.headers['x-forwarded-client-cert'],
      'By=spiffe://cluster.local/ns/a/sa/proxy;URI=spiffe://cluster.local/ns/a/sa/client',
    );
    assert.equal(e2.headers['x-forwarded-proto'], 'https');
    // HTTP/1.1 over TLS (ALPN http/1.1).
    const r1 = await new Promise<{ alpn: string | false; body: string }>((resolve, reject) => {
      const sock = tls.connect({
        host: '127.0.0.1',
        port: proxy.port,
        servername: 'localhost',
        ca: server.ca,
        cert: client.cert,
        key: client.key,
        ALPNProtocols: ['http/1.1'],
      });
      let out = '';
      sock.on('secureConnect', () => sock.write('GET /h1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      sock.on('data', (d: Buffer) => (out += d.toString()));
      sock.on('end', () => resolve({ alpn: sock.alpnProtocol ?? false, body: out }));
      sock.on('error', reject);
    });
    assert.equal(r1.alpn, 'http/1.1');
    assert.match(r1.body, /^HTTP\/1.1 200/);
    assert.match(r1.body, /"url":"\/h1"/);
    assert.equal(proxy.logs.find((l) => l.path === '/h2')?.peerIdentity, 'spiffe://cluster.local/ns/a/sa/client');
  } finally {
    session.close();
    await proxy.close();
    await b.close();
  }
});

test('20 MB bodies stream both ways (HTTP/1.1 and h2c), intact and with backpressure instead of buffering', async () => {
  const SIZE = 20 * 1024 * 1024;
  const BLOCK = 64 * 1024;
  // Backend: /up hashes the upload; /stall-up reads nothing for a while; /down streams SIZE
  // bytes, counting what its writes got accepted.
  const progress = { downAccepted: 0 };
  const handler = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    const path = req.url ?? '';
    if (path.endsWith('/down') || path.endsWith('/down-endless')) {
      const limit = path.endsWith('/down') ? SIZE : Infinity;
      res.writeHead(200);
      const chunk = Buffer.alloc(BLOCK, 7);
      let sent = 0;
      res.on('close', () => (sent = Infinity));
      const pump = () => {
        while (sent < limit) {
          sent += chunk.length;
          progress.downAccepted = sent;
          if (!(res as http.ServerResponse).write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    const hash = createHash('sha256');
    let n = 0;
    if (path.endsWith('/stall-up')) {
      // Reads nothing for a while. (node:http, like every Node socket user, only notices a client
      // that went away while it reads; the stall ends so the aborted request completes.)
      req.pause();
      setTimeout(() => req.resume(), 600);
    }
    req.on('data', (c: Buffer) => {
      n += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      res.writeHead(200, { 'x-received': String(n), 'x-sha': hash.digest('hex') });
      res.end();
    });
  };
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);
  const closeH1 = closable(h1);
  const closeH2 = closable(h2);
  await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
  const config = l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster('h2', { prefix: '/h2' }), toCluster('h1')])])],
    [edsCluster('h1'), edsCluster('h2', H2_OPTIONS)],
    [
      cla('h1', [{ port: (h1.address() as AddressInfo).port }]),
      cla('h2', [{ port: (h2.address() as AddressInfo).port }]),
    ],
  );
  const proxy = await startEngine(config, 'rc');
  const block = Buffer.alloc(BLOCK, 3);
  const pulled = { bytes: 0 };
  const upload = (size = SIZE) => {
    let left = size / BLOCK;
    return new Readable({
      read() {
        if (left-- > 0) {
          pulled.bytes += BLOCK;
          this.push(block);
        } else this.push(null);
      },
    });
  };
  const expectedSha = (() => {
    const h = createHash('sha256');
    for (let i = 0; i < SIZE / BLOCK; i++) h.update(block);
    return h.digest('hex');
  })();
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  type Result = { status: number; headers: Record<string, unknown>; bytes: number };
  const open = new Set<{ destroy(): void }>();
  const abortAll = () => {
    for (const r of open) r.destroy();
    open.clear();
  };
  const h1Request = (path: string, body?: Readable, readDelayMs = 0) =>
    new Promise<Result>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.port, method: body ? 'POST' : 'GET', path }, (res) => {
        let bytes = 0;
        if (readDelayMs) {
          res.pause();
          setTimeout(() => res.resume(), readDelayMs).unref();
        }
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, bytes }));
      });
      open.add(req);
      req.on('error', reject);
      req.on('close', () => reject(new Error('closed')));
      if (body) body.pipe(req);
      else req.end();
    });
  const h2Request = (path: string, body?: Readable, readDelayMs = 0) =>
    new Promise<Result>((resolve, reject) => {
      const s = session.request({ ':method': body ? 'POST' : 'GET', ':path': path }, { endStream: !body });
      let headers: Record<string, unknown> = {};
      let bytes = 0;
      s.on('response', (h) => {
        headers = h;
        if (readDelayMs) {
          s.pause();
          setTimeout(() => s.resume(), readDelayMs).unref();
        }
      });
      open.add(s);
      s.on('data', (c: Buffer) => (bytes += c.length));
      s.on('end', () => resolve({ status: Number(headers[':status']), headers, bytes }));
      s.on('error', reject);
      s.on('close', () => reject(new Error('closed')));
      if (body) body.pipe(s);
    });
  try {
    for (const [send, prefix] of [
      [h1Request, ''],
      [h2Request, '/h2'],
    ] as const) {
      // Integrity both ways.
      const up = await send(`${prefix}/up`, upload());
      assert.equal(up.status, 200);
      assert.equal(Number(up.headers['x-received']), SIZE);
      assert.equal(up.headers['x-sha'], expectedSha);
      const down = await send(`${prefix}/down`);
      assert.equal(down.bytes, SIZE);
      // Backpressure, upstream: while the backend reads nothing, an endless upload stalls at what
      // socket and window buffers hold. A proxy buffering bodies would take hundreds of MB.
      pulled.bytes = 0;
      const stalled = send(`${prefix}/stall-up`, upload(Infinity)).catch(() => undefined);
      await sleep(400);
      assert.ok(
        pulled.bytes < 32 << 20,
        `${prefix || 'h1'}: client pushed ${pulled.bytes >> 20} MB into a stalled upload`,
      );
      abortAll();
      await stalled;
      // Backpressure, downstream: while the client reads nothing, an endless download stalls.
      progress.downAccepted = 0;
      const slow = send(`${prefix}/down-endless`, undefined, 10_000).catch(() => undefined);
      await sleep(400);
      assert.ok(
        progress.downAccepted < 32 << 20,
        `${prefix || 'h1'}: backend wrote ${progress.downAccepted >> 20} MB to a client that reads nothing`,
      );
      abortAll();
      await slow;
    }
    await sleep(20);
    const log = proxy.logs.find((l) => l.path === '/up')!;
    assert.equal(log.bytesReceived, SIZE);
    assert.equal(proxy.logs.find((l) => l.path === '/down')!.bytesSent, SIZE);
    // The aborted ones are logged as such (DC: downstream connection termination).
    console.log(
      JSON.stringify(
        proxy.logs.map((l) => [l.path, l.status, l.responseFlags, l.durationMs, l.bytesSent, l.bytesReceived]),
      ),
    );
    const aborted = () => proxy.logs.filter((l) => l.responseFlags.includes('DC')).map((l) => l.path);
    for (let i = 0; i < 100 && aborted().length < 4; i++) await sleep(20);
    assert.deepEqual(aborted().sort(), ['/down-endless', '/h2/down-endless', '/h2/stall-up', '/stall-up']);
  } finally {
    session.close();
    await proxy.close();
    await closeH1();
    await closeH2();
  }
});

test('the connector opens every upstream connection; a tunnel stream (not a socket) works as the connection', async () => {
  const b = await startEcho('b');
  const b2 = await startEcho('b2', { h2: true });
  // A stand-in for HBONE: an HTTP/2 server accepting CONNECT and piping to the target.
  const tunnel = http2.createServer();
  const closeTunnel = closable(tunnel);
  const tunnelSockets = new Set<net.Socket>();
  const connects: string[] = [];
  tunnel.on('stream', (stream, headers) => {
    const authority = headers[':authority']!;
    connects.push(authority);
    const [host, port] = authority.split(':');
    const sock = net.connect(Number(port), host!, () => {
      tunnelSockets.add(sock);
      stream.respond({ ':status': 200 });
      stream.pipe(sock).pipe(stream);
    });
    sock.on('error', () => stream.close(http2.constants.NGHTTP2_CONNECT_ERROR));
    stream.on('error', () => sock.destroy());
  });
  await new Promise<void>((r) => tunnel.listen(0, '127.0.0.1', r));
  const tunnelSession = http2.connect(`http://127.0.0.1:${(tunnel.address() as AddressInfo).port}`);
  const targets: UpstreamTarget[] = [];
  const connector = (t: UpstreamTarget): Promise<Duplex> => {
    targets.push(t);
    return new Promise((resolve, reject) => {
      const s = tunnelSession.request({ ':method': 'CONNECT', ':authority': `${t.address}:${t.port}` });
      s.once('response', (h) => (h[':status'] === 200 ? resolve(s) : reject(new Error(`CONNECT ${h[':status']}`))));
      s.once('error', reject);
    });
  };
  const config = l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster('b2', { prefix: '/h2' }), toCluster('b')])])],
    [edsCluster('b'), edsCluster('b2', H2_OPTIONS)],
    [cla('b', [{ port: b.port }]), cla('b2', [{ port: b2.port }])],
  );
  const proxy = await startEngine(config, 'rc', { connector });
  try {
    for (let i = 0; i < 5; i++) assert.equal(json(await get(proxy.port, `/x${i}`)).name, 'b');
    for (let i = 0; i < 5; i++) assert.equal(json(await get(proxy.port, `/h2/${i}`)).name, 'b2');
    // A chunked upload with a latin1 header value: bytes intact through the tunnel stream.
    const body = 'x'.repeat(100_000);
    for (const prefix of ['', '/h2']) {
      const up = json(
        await get(proxy.port, `${prefix}/upload`, {
          method: 'POST',
          headers: {
            'transfer-encoding': 'chunked',
            'x-latin': Buffer.from([0x63, 0x61, 0x66, 0xe9]).toString('latin1'),
          },
          body,
        }),
      );
      assert.equal(up.bodyLength, body.length);
      assert.equal(up.headers['x-latin'], 'caf\u00e9');
    }
    assert.deepEqual(
      targets.map((t) => `${t.clusterName} ${t.address}:${t.port}`),
      [`b 127.0.0.1:${b.port}`, `b2 127.0.0.1:${b2.port}`],
      'one pooled tunnel stream per endpoint and protocol',
    );
    assert.equal(connects.length, 2);
    assert.equal((targets[0]!.cluster as { name: string }).name, 'b');
    assert.ok(targets[0]!.endpoint.endpoint);
  } finally {
    await proxy.close();
    tunnelSession.close();
    for (const s of tunnelSockets) s.destroy();
    await closeTunnel();
    await b.close();
    await b2.close();
  }
});

test('serveConnection on a stream that is not a socket (HTTP/1.1 and h2c inside a tunnel)', async () => {
  const b = await startEcho('b');
  const engine = new L7Engine();
  engine.update(simpleConfig(b.port));
  const pair = (): [Duplex, Duplex] => {
    const a = new PairEnd();
    const b = new PairEnd();
    a.other = b;
    b.other = a;
    return [a, b];
  };
  try {
    const [client1, server1] = pair();
    engine.serveConnection(server1, 'rc', { identity: 'spiffe://td/ns/x/sa/y', address: '10.0.0.1' });
    let out = '';
    client1.on('data', (d: Buffer) => (out += d.toString()));
    client1.write('GET /in-tunnel HTTP/1.1\r\nHost: svc\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (!out.includes('}') && Date.now() < deadline) await sleep(10);
    assert.match(out, /^HTTP\/1.1 200/);
    assert.match(out, /"x-forwarded-client-cert":"URI=spiffe:\/\/td\/ns\/x\/sa\/y"/);
    client1.destroy();
    const [client2, server2] = pair();
    engine.serveConnection(server2, 'rc');
    const session = http2.connect('http://svc', { createConnection: () => client2 });
    const r = await h2get(session, '/h2-in-tunnel');
    assert.equal(JSON.parse(r.body).url, '/h2-in-tunnel');
    session.close();
  } finally {
    await engine.close();
    await b.close();
  }
});

/** One end of an in-memory byte stream pair (what a tunnel's stream looks like: a Duplex, not a socket). */
class PairEnd extends Duplex {
  other!: PairEnd;
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.other.push(chunk);
    cb();
  }
  override _final(cb: (e?: Error | null) => void): void {
    this.other.push(null);
    cb();
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    if (!this.other.destroyed) this.other.destroy();
    cb(err);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
