// WebSocket upgrades through the L7 engine over real sockets: the handshake goes upstream on a
// connection of its own, the 101 comes back, and frames flow both ways for longer than the
// route timeout; a refused upgrade is relayed as a plain response.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { cla, closable, edsCluster, l7Config, routeConfig, startEngine, vhost } from './helpers.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const accept = (key: string) =>
  createHash('sha1')
    .update(key + GUID)
    .digest('base64');

/** A text frame (RFC 6455), masked when sent by a client; payloads under 126 bytes. */
function frame(text: string, mask: boolean): Buffer {
  const payload = Buffer.from(text);
  assert.ok(payload.length < 126);
  if (!mask) return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), key, masked]);
}

/** Splits complete frames off `buf`; returns [texts, rest]. */
function unframe(buf: Buffer): [string[], Buffer] {
  const out: string[] = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const masked = (buf[off + 1]! & 0x80) !== 0;
    const len = buf[off + 1]! & 0x7f;
    const need = 2 + (masked ? 4 : 0) + len;
    if (buf.length - off < need) break;
    let payload = buf.subarray(off + 2 + (masked ? 4 : 0), off + need);
    if (masked) {
      const key = buf.subarray(off + 2, off + 6);
      payload = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
    }
    out.push(payload.toString());
    off += need;
  }
  return [out, buf.subarray(off)];
}

/** A WebSocket echo server (upgrade handshake, then every text frame echoed back with a prefix). */
async function startWsEcho(): Promise<{ port: number; upgrades: number; close(): Promise<void> }> {
  const state = { port: 0, upgrades: 0, close: async () => {} };
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('upgrade required');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    state.upgrades++;
    if (req.url === '/forbidden') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno');
      return;
    }
    const key = String(req.headers['sec-websocket-key']);
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
        `sec-websocket-accept: ${accept(key)}\r\n\r\n`,
    );
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      const [texts, rest] = unframe(Buffer.concat([buf, d]));
      buf = rest;
      for (const t of texts) socket.write(frame(`echo:${t}`, false));
    });
    socket.on('error', () => {});
  });
  const close = closable(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as AddressInfo).port;
  state.close = close;
  return state;
}

interface WsClient {
  readonly status: number;
  readonly headers: string;
  send(text: string): Promise<string>;
  close(): void;
}

/** Opens a WebSocket through the proxy (raw socket: Node 20 has no WebSocket client). */
function connectWs(port: number, path: string): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    let buf: Buffer = Buffer.alloc(0);
    let waiting: ((t: string) => void) | undefined;
    const queue: string[] = [];
    let opened = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('websocket handshake timeout'));
    }, 5000);
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!opened) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        opened = true;
        clearTimeout(timer);
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
        resolve({
          status,
          headers: head,
          send(text) {
            sock.write(frame(text, true));
            return new Promise<string>((res, rej) => {
              const t = setTimeout(() => rej(new Error(`no echo for ${text}`)), 5000);
              const take = (m: string) => {
                clearTimeout(t);
                res(m);
              };
              const queued = queue.shift();
              if (queued !== undefined) take(queued);
              else waiting = take;
            });
          },
          close: () => sock.destroy(),
        });
      }
      const [texts, rest] = unframe(buf);
      buf = rest;
      for (const t of texts) {
        if (waiting) {
          const w = waiting;
          waiting = undefined;
          w(t);
        } else queue.push(t);
      }
    });
    sock.write(
      `GET ${path} HTTP/1.1\r\nhost: ws.example\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
        `sec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`,
    );
  });
}

function wsConfig(port: number) {
  return l7Config(
    [
      routeConfig('rc', [
        vhost(
          'all',
          ['*'],
          [
            { match: { prefix: '/none' }, direct_response: { status: 404 } },
            // The route timeout bounds the handshake only.
            { match: { prefix: '/' }, route: { cluster: 'ws', timeout: { seconds: 0, nanos: 300_000_000 } } },
          ],
        ),
      ]),
    ],
    [edsCluster('ws')],
    [cla('ws', [{ port }])],
  );
}

test('proof: websocket echo through the engine keeps working past the route timeout', async () => {
  const ws = await startWsEcho();
  const proxy = await startEngine(wsConfig(ws.port), 'rc');
  try {
    const c = await connectWs(proxy.port, '/chat');
    assert.equal(c.status, 101, c.headers);
    assert.match(c.headers, /upgrade: websocket/i);
    assert.match(c.headers, /sec-websocket-accept: /i);
    const t0 = Date.now();
    // 10 messages 100 ms apart: ~1 s, over three times the 300 ms route timeout.
    for (let i = 0; i < 10; i++) {
      assert.equal(await c.send(`m${i}`), `echo:m${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const elapsed = Date.now() - t0;
    console.log(`# websocket: 10 echoes over ${elapsed} ms through a route with a 300 ms timeout`);
    assert.ok(elapsed > 300);
    c.close();
    // Bounded wait for the access record.
    for (let i = 0; i < 100 && !proxy.logs.some((l) => l.path === '/chat'); i++)
      await new Promise((r) => setTimeout(r, 10));
    const log = proxy.logs.find((l) => l.path === '/chat');
    assert.equal(log?.status, 101);
    assert.ok(!log?.responseFlags.includes('UT'), String(log?.responseFlags));
    assert.ok((log?.bytesSent ?? 0) > 0 && (log?.bytesReceived ?? 0) > 0);
    assert.equal(proxy.engine.inflight, 0);
  } finally {
    await proxy.close();
    await ws.close();
  }
});

test('websocket: a refused upgrade is relayed as a response; a non-cluster route answers locally', async () => {
  const ws = await startWsEcho();
  const proxy = await startEngine(wsConfig(ws.port), 'rc');
  try {
    const refused = await connectWs(proxy.port, '/forbidden');
    assert.equal(refused.status, 403);
    refused.close();
    const none = await connectWs(proxy.port, '/none');
    assert.equal(none.status, 404);
    none.close();
    // An ordinary request on the same listener still works (no upgrade).
    const plain = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: proxy.port, path: '/plain', agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
    assert.equal(plain, 426);
  } finally {
    await proxy.close();
    await ws.close();
  }
});
