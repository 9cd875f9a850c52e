#!/usr/bin/env node
// A demo workload: an HTTP server that answers with who it is (and, with --upstream,
// what its upstream answered), or with --tcp a line-echo TCP server.
import { createServer } from 'node:http';
import { createServer as createTcpServer, connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'echo' },
    host: { type: 'string', default: '127.0.0.1' },
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
    if (values.upstream && req.url?.startsWith('/call'))
      upstream = await callUpstream(values.upstream).catch((e) => `error: ${e.message}`);
    const body = JSON.stringify({
      name: values.name,
      path: req.url,
      peer: req.headers['x-forwarded-client-cert'] ?? null,
      upstream,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }).listen(port, values.host, () => console.log(`${values.name} http on ${values.host}:${port}`));
}

async function callUpstream(target) {
  const url = new URL(target);
  if (url.protocol === 'tcp:') {
    return new Promise((resolve, reject) => {
      const s = connect(Number(url.port), url.hostname, () => s.write('ping\n'));
      s.setTimeout(2000, () => s.destroy(new Error('timeout')));
      s.once('data', (d) => {
        resolve(String(d).trim());
        s.end();
      });
      s.once('error', reject);
    });
  }
  const r = await fetch(target, { signal: AbortSignal.timeout(2000) });
  return r.json();
}
