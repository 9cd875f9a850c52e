// The HTTP/1.1 upstream client: the response parser on its own (every framing, any split of
// the bytes), then the pool against scripted raw TCP backends: chunked bodies and trailers,
// 1xx, read-until-close, Connection: close, the keep-alive close race, resets, bad responses,
// chunked uploads and HEAD.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { ParseError, ResponseParser, type ResponseSink } from '../../../src/proxy/l7/h1-parser.js';
import type { HeaderMap } from '../../../src/proxy/l7/headers.js';
import { cla, edsCluster, get, h2get, l7Config, routeConfig, startEngine, toCluster, vhost } from './helpers.js';

interface Parsed {
  status: number;
  headers: HeaderMap;
  bodyless: boolean;
  body: string;
  trailers: HeaderMap | undefined;
  keepAlive: boolean;
  completes: number;
}

function parse(raw: string, method = 'GET', split = 0, finished = false): Parsed {
  const out: Parsed = {
    status: 0,
    headers: {},
    bodyless: false,
    body: '',
    trailers: undefined,
    keepAlive: false,
    completes: 0,
  };
  const sink: ResponseSink = {
    onHead(status, headers, bodyless) {
      Object.assign(out, { status, headers: { ...headers }, bodyless });
    },
    onBody: (c) => (out.body += c.toString('latin1')),
    onComplete(trailers, keepAlive) {
      out.trailers = trailers && { ...trailers };
      out.keepAlive = keepAlive;
      out.completes++;
    },
  };
  const p = new ResponseParser();
  p.start(sink, method);
  const bytes = Buffer.from(raw, 'latin1');
  if (split <= 0) p.execute(bytes);
  else for (let i = 0; i < bytes.length; i += split) p.execute(bytes.subarray(i, i + split));
  if (finished) p.end();
  return out;
}

const CHUNKED =
  'HTTP/1.1 100 Continue\r\n\r\n' +
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n' +
  'X-Dup: 1\r\nX-Dup: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: gone\r\nKeep-Alive: timeout=5\r\n\r\n' +
  '5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nGrpc-Status: 0\r\nX-T: t\r\n\r\n';

test('response parser: chunked with extensions and trailers, 1xx skipped, hop-by-hop removed; any split', () => {
  for (const split of [0, 1, 2, 3, 7, 13]) {
    const r = parse(CHUNKED, 'GET', split);
    assert.equal(r.status, 200, `split ${split}`);
    assert.equal(r.body, 'hello world');
    assert.deepEqual(r.headers, {
      'content-type': 'text/plain',
      'set-cookie': ['a=1', 'b=2'],
      'x-dup': '1, 2',
    });
    assert.deepEqual(r.trailers, { 'grpc-status': '0', 'x-t': 't' });
    assert.equal(r.keepAlive, true);
    assert.equal(r.completes, 1);
  }
});

test('response parser: content-length, no-body statuses, HEAD, HTTP/1.0, until-close, errors', () => {
  const fixed = parse('HTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\nabc');
  assert.deepEqual([fixed.status, fixed.body, fixed.keepAlive, fixed.bodyless], [201, 'abc', true, false]);
  assert.equal(parse('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n').bodyless, true);
  assert.equal(parse('HTTP/1.1 204 No Content\r\n\r\n').completes, 1);
  assert.equal(parse('HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n').completes, 1);
  const head = parse('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n', 'HEAD');
  assert.deepEqual([head.completes, head.headers['content-length'], head.bodyless], [1, '100', true]);
  assert.equal(parse('HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx').keepAlive, false);
  assert.equal(parse('HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\nx').keepAlive, true);
  assert.equal(parse('HTTP/1.1 200 OK\r\ncontent-length: 1\r\nConnection: close\r\n\r\nx').keepAlive, false);
  const untilClose = parse('HTTP/1.1 200 OK\r\n\r\nstreamed until close', 'GET', 4, true);
  assert.deepEqual([untilClose.body, untilClose.completes, untilClose.keepAlive], ['streamed until close', 1, false]);
  // Transfer-Encoding wins over Content-Length, which is dropped.
  const both = parse('HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n');
  assert.deepEqual([both.body, both.headers['content-length']], ['x', undefined]);
  for (const bad of [
    'HTTP/2 200 OK\r\n\r\n',
    'HTTP/1.1 2000 OK\r\n\r\n',
    'HTTP/1.1 200 OK\r\nno-colon\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxy',
    'HTTP/1.1 101 Switching Protocols\r\n\r\n',
  ])
    assert.throws(() => parse(bad), ParseError, JSON.stringify(bad));
});

/** A raw TCP backend answering each request (after its head, and body when sized) with the script's bytes. */
async function rawBackend(script: (req: string, n: number, sock: net.Socket) => string | undefined) {
  let n = 0;
  const conns = new Set<net.Socket>();
  let connections = 0;
  const seen: string[] = [];
  const server = net.createServer((sock) => {
    connections++;
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end + 4);
        let total = head.length;
        const cl = /content-length: (\d+)/i.exec(head);
        if (cl) total += Number(cl[1]);
        else if (/transfer-encoding: chunked/i.test(head)) {
          const last = buf.indexOf('0\r\n\r\n', end);
          if (last < 0) return;
          total = last + 5;
        }
        if (buf.length < total) return;
        const req = buf.slice(0, total);
        buf = buf.slice(total);
        seen.push(req);
        const out = script(req, n++, sock);
        if (out !== undefined) sock.write(out, 'latin1');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const c of conns) c.destroy();
        server.close(() => r());
      }),
  };
}

function config(port: number) {
  return l7Config(
    [routeConfig('rc', [vhost('all', ['*'], [toCluster('b')])])],
    [edsCluster('b')],
    [cla('b', [{ port }])],
  );
}

test('HTTP/1.1 upstream: chunked + trailers to h2 and h1 clients, 1xx, read until close', async () => {
  const backend = await rawBackend((req) => {
    const path = req.split(' ')[1];
    if (path === '/chunked') return CHUNKED;
    if (path === '/until-close') return 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it';
    return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
  });
  const proxy = await startEngine(config(backend.port), 'rc');
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const h2 = await h2get(session, '/chunked');
    assert.equal(h2.body, 'hello world');
    assert.deepEqual(h2.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(h2.headers['x-hop'], undefined);
    assert.equal(h2.trailers?.['grpc-status'], '0');
    const h1 = await get(proxy.port, '/chunked');
    assert.equal(h1.body, 'hello world');
    assert.equal(h1.headers['x-dup'], '1, 2');
    const before = backend.connections;
    assert.equal((await get(proxy.port, '/plain')).body, 'ok');
    assert.equal(backend.connections, before, 'kept alive');
    // Read until close: the response completes when the backend closes the connection.
    const uc = get(proxy.port, '/until-close');
    await sleep(50);
    await backend.close();
    assert.equal((await uc).body, 'all of it');
  } finally {
    session.close();
    await proxy.close();
    await backend.close();
  }
});

test('HTTP/1.1 upstream: keep-alive close race retried, Connection: close honoured, resets and bad responses', async () => {
  const armed = new WeakSet<net.Socket>();
  const backend = await rawBackend((req, _n, sock) => {
    const path = req.split(' ')[1]!;
    if (armed.has(sock)) {
      // The keep-alive race, made deterministic: the server drops the connection just as a
      // reused request arrives on it, without answering.
      sock.destroy();
      return undefined;
    }
    if (path === '/arm') {
      armed.add(sock);
      return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
    }
    if (path === '/then-close') {
      // Answer, then close the kept-alive connection a moment later (as an idle timeout would).
      setTimeout(() => sock.destroy(), 30);
      return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
    }
    if (path === '/close') return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok';
    if (path === '/reset-before') {
      sock.destroy();
      return undefined;
    }
    if (path === '/reset-mid') {
      sock.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
      setTimeout(() => sock.destroy(), 20);
      return undefined;
    }
    if (path === '/bad-status') return 'HTTTP/1.1 200 OK\r\n\r\n';
    if (path === '/bad-header') return 'HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 0\r\n\r\n';
    if (path === '/head') return 'HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n';
    if (path === '/upload') {
      const chunked = /transfer-encoding: chunked/i.test(req);
      const body = req.slice(req.indexOf('\r\n\r\n') + 4);
      return `HTTP/1.1 200 OK\r\ncontent-length: ${JSON.stringify({ chunked, body }).length}\r\n\r\n${JSON.stringify({ chunked, body })}`;
    }
    return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
  });
  const proxy = await startEngine(config(backend.port), 'rc');
  try {
    // The pooled connection is closed by the server while idle; the next request either sees
    // the close first or races it: both succeed (a request without body is replayed once).
    for (let i = 0; i < 5; i++) {
      assert.equal((await get(proxy.port, '/then-close')).status, 200);
      await sleep(i % 2 ? 30 : 29);
    }
    assert.equal((await get(proxy.port, '/arm')).status, 200);
    const replayed = await get(proxy.port, '/after-arm');
    assert.equal(replayed.status, 200, 'replayed on a new connection');
    assert.equal(backend.seen.filter((r) => r.startsWith('GET /after-arm')).length, 2);
    // With a body, no replay: the client gets the failure.
    assert.equal((await get(proxy.port, '/arm')).status, 200);
    assert.equal((await get(proxy.port, '/after-arm-post', { method: 'POST', body: 'x' })).status, 503);
    await sleep(60);
    const conns = backend.connections;
    assert.equal((await get(proxy.port, '/close')).status, 200);
    assert.equal((await get(proxy.port, '/x')).status, 200);
    assert.equal((await get(proxy.port, '/x')).status, 200);
    assert.equal(backend.connections, conns + 2, 'a Connection: close connection is not reused');
    const before = await get(proxy.port, '/reset-before');
    assert.equal(before.status, 503);
    assert.match(before.body, /connection termination/);
    await assert.rejects(get(proxy.port, '/reset-mid'), 'a reset after the headers reaches the client as a reset');
    assert.equal((await get(proxy.port, '/bad-status')).status, 502);
    const badHeader = await get(proxy.port, '/bad-header');
    assert.equal(badHeader.status, 502);
    const head = await get(proxy.port, '/head', { method: 'HEAD' });
    assert.deepEqual([head.status, head.headers['content-length'], head.body], [200, '50', '']);
    assert.equal((await get(proxy.port, '/x')).status, 200, 'the connection after HEAD is still in sync');
    // Uploads: without content-length the engine sends chunked; with it, as is.
    const up = JSON.parse(
      (await get(proxy.port, '/upload', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: 'abc' }))
        .body,
    ) as { chunked: boolean; body: string };
    assert.deepEqual(up, { chunked: true, body: '3\r\nabc\r\n0\r\n\r\n' });
    const sized = JSON.parse(
      (await get(proxy.port, '/upload', { method: 'POST', headers: { 'content-length': '3' }, body: 'xyz' })).body,
    ) as { chunked: boolean; body: string };
    assert.deepEqual(sized, { chunked: false, body: 'xyz' });
    await sleep(20);
    const flags = (p: string) => proxy.logs.find((l) => l.path === p)?.responseFlags;
    assert.deepEqual(flags('/reset-before'), ['UC']);
    assert.deepEqual(flags('/bad-status'), ['UPE']);
    assert.deepEqual(flags('/bad-header'), ['UPE']);
  } finally {
    await proxy.close();
    await backend.close();
  }
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
