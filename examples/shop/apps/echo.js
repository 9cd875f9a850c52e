#!/usr/bin/env node
// A demo workload: an HTTP server that answers with who it is (and, with --upstream,
// what its upstream answered), or with --tcp a line-echo TCP server.
import { createServer, request } from 'node:http';
import { createServer as createTcpServer, connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'echo' },
    // The address the runtime gave the workload (trellis up sets it, as Kubernetes' downward API gives POD_IP).
    host: { type: 'string', default: process.env.TRELLIS_WORKLOAD_ADDRESS ?? '127.0.0.1' },
    port: { type: 'string', default: '9080' },
    upstream: { type: 'string' },
    tcp: { type: 'boolean', default: false },
  },
});
const port = Number(values.port);

if (values.tcp) {
  createTcpServer((sock) => {
    sock.on('data', (d) => sock.write(`${values.name}: ${d}`));
    sock.on('error', () => sock.destroy());
  }).listen(port, values.host, () => console.log(`${values.name} tcp on ${values.host}:${port}`));
} else {
  createServer(async (req, res) => {
    let upstream;
    let status = 200;
    if (values.upstream && req.url?.startsWith('/call')) {
      upstream = await callUpstream(values.upstream, traceHeaders(req.headers)).catch((e) => ({ error: e.message }));
      // A failed hop fails the request, so callers (and load tests) see it.
      if (upstream?.error !== undefined || upstream?.status !== undefined) status = 502;
    }
    const body = JSON.stringify({
      name: values.name,
      path: req.url,
      peer: req.headers['x-forwarded-client-cert'] ?? null,
      upstream,
    });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }).listen(port, values.host, () => console.log(`${values.name} http on ${values.host}:${port}`));
}

// Upstreams are reached through the node proxy, as any HTTP_PROXY-aware client would:
// absolute-form requests for http://, CONNECT for tcp://.
const proxy = process.env.HTTP_PROXY ? new URL(process.env.HTTP_PROXY) : undefined;

// The mesh's proxies make the spans, but only the app can tie its incoming request to its
// outgoing one: as with Istio, it copies the trace context headers.
const TRACE_HEADERS = [
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
];

function traceHeaders(incoming) {
  const out = {};
  for (const h of TRACE_HEADERS) if (incoming[h] !== undefined) out[h] = incoming[h];
  return out;
}

async function callUpstream(target, extraHeaders = {}) {
  const url = new URL(target);
  if (url.protocol === 'tcp:') return callTcp(url);
  return new Promise((resolve, reject) => {
    const opts = proxy
      ? { host: proxy.hostname, port: Number(proxy.port), path: url.href, headers: { ...extraHeaders, host: url.host } }
      : {
          host: url.hostname,
          port: Number(url.port || 80),
          path: url.pathname + url.search,
          headers: extraHeaders,
        };
    const req = request({ ...opts, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? JSON.parse(body) : { status: res.statusCode, body: body.trim() });
        } catch {
          resolve({ status: res.statusCode, body: body.trim() });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function callTcp(url) {
  const port = Number(url.port);
  const socket = await new Promise((resolve, reject) => {
    if (!proxy) {
      const s = connect(port, url.hostname, () => resolve(s));
      s.once('error', reject);
      return;
    }
    const req = request({
      host: proxy.hostname,
      port: Number(proxy.port),
      method: 'CONNECT',
      path: `${url.hostname}:${port}`,
    });
    req.on('connect', (res, s) =>
      res.statusCode === 200
        ? resolve(s)
        : reject(new Error(`proxy: ${res.statusCode} ${res.headers['trellis-reason'] ?? ''}`)),
    );
    req.on('error', reject);
    req.end();
  });
  return new Promise((resolve, reject) => {
    socket.setTimeout(2000, () => socket.destroy(new Error('timeout')));
    socket.once('data', (d) => {
      resolve(String(d).trim());
      socket.end();
    });
    socket.once('error', reject);
    socket.write('ping\n');
  });
}
