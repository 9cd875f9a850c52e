// Distributed tracing through the whole example mesh: `trellis up --otlp-endpoint` on
// examples/shop, one request with a client traceparent through the gateway (node-a), the
// frontend app (which copies the trace headers to its upstream call, as Istio asks of apps) and
// the api's waypoint. A loopback OTLP/HTTP receiver decodes what the node exports (protobufjs with
// the opentelemetry-proto files vendored in test/fixtures/otlp).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { meshUp, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';
import { startOtlpReceiver, type OtlpReceiver } from '../fixtures/otlp/receiver.js';

const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_SPAN = 'b7ad6b7169203331';

function call(headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: 8000,
        path: '/call',
        headers: { host: 'shop.localhost', ...headers },
        timeout: 10_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout: GET /call')));
    req.on('error', reject);
    req.end();
  });
}

describe('tracing e2e (trellis up --otlp-endpoint, examples/shop)', { timeout: 120_000 }, () => {
  let receiver: OtlpReceiver;
  let mesh: MeshUp | undefined;

  before(async () => {
    receiver = await startOtlpReceiver();
    mesh = await meshUp(join(REPO_ROOT, 'examples/shop'), 60_000, [
      '--otlp-endpoint',
      receiver.endpoint,
      '--trace-sampling',
      '100',
    ]);
  });
  after(async () => {
    await mesh?.stop();
    await receiver.close();
  });

  it('the gateway and the waypoint export spans of the client trace, linked hop by hop', async () => {
    // The mesh may still be settling (workloads starting): retry the call a few times.
    let r = { status: 0, body: '' };
    for (let i = 0; i < 30; i++) {
      r = await call({ traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: 'client=1' }).catch(() => r);
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    assert.equal(r.status, 200, r.body);
    const reply = JSON.parse(r.body) as { name: string; upstream: { name: string } };
    assert.equal(reply.name, 'frontend');
    assert.match(reply.upstream.name, /^api/);

    // The last (successful) call's spans: a gateway span whose parent is the client's span, and a
    // waypoint span whose parent is that gateway span (the frontend forwarded its traceparent).
    const ofTrace = (spans: typeof receiver.spans) => spans.filter((s) => s.traceId === CLIENT_TRACE);
    const spans = await receiver.waitFor((all) => {
      const t = ofTrace(all);
      const gw = t.filter((s) => String(s.attributes['trellis.proxy']).startsWith('gateway/'));
      return gw.some((g) => t.some((w) => w.parentSpanId === g.spanId));
    }, 15_000);
    const trace = ofTrace(spans);
    for (const s of trace) assert.equal(s.traceId, CLIENT_TRACE);
    const gateways = trace.filter((s) => String(s.attributes['trellis.proxy']).startsWith('gateway/'));
    const waypoints = trace.filter((s) => String(s.attributes['trellis.proxy']).startsWith('waypoint/'));
    assert.ok(gateways.length >= 1, JSON.stringify(trace.map((s) => s.attributes['trellis.proxy'])));
    assert.ok(waypoints.length >= 1, JSON.stringify(trace.map((s) => s.attributes['trellis.proxy'])));
    const gw = gateways.find((g) => waypoints.some((w) => w.parentSpanId === g.spanId));
    assert.ok(gw, 'a waypoint span is the child of a gateway span');
    const wp = waypoints.find((w) => w.parentSpanId === gw.spanId)!;

    assert.equal(gw.parentSpanId, CLIENT_SPAN);
    assert.notEqual(gw.spanId, CLIENT_SPAN);
    assert.notEqual(wp.spanId, gw.spanId);
    for (const s of [gw, wp]) {
      assert.equal(s.kind, 'SPAN_KIND_SERVER');
      assert.equal(s.flags & 0xff, 1);
      assert.equal(s.traceState, 'client=1');
      assert.equal(s.attributes['http.request.method'], 'GET');
      assert.equal(s.attributes['url.path'], '/call');
      assert.equal(s.attributes['http.response.status_code'], 200);
      assert.equal(s.resource['service.name'], 'trellis-node.node-a');
      assert.ok(s.endNs >= s.startNs);
    }
    assert.equal(gw.attributes['server.address'], 'shop.localhost');
    // The waypoint's caller is the frontend's own identity (HBONE), the gateway's is not in the mesh.
    assert.match(String(wp.attributes['trellis.peer.identity']), /^spiffe:\/\/.*\/sa\/frontend$/);
    assert.ok(String(wp.attributes['upstream_cluster']).length > 0);
    // The waypoint's span lies within the gateway's.
    assert.ok(wp.startNs >= gw.startNs - 1_000_000n && wp.endNs <= gw.endNs + 1_000_000n);
  });
});
