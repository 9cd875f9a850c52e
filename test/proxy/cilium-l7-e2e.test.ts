// Cilium's L7 policy ("allow GET /call from app=frontend") on the running shop: `trellis up` on a
// copy of examples/shop plus the CiliumNetworkPolicy. The api Service's waypoint enforces the
// HTTP rule with the real caller; api's nodes admit the waypoint. So the shop still answers
// (gateway -> frontend -> waypoint -> api), while frontend's other requests get the waypoint's 403.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { httpGet, meshUp, type HttpResult, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const API = 'http://api.shop.svc.cluster.local:8080';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-l7
  namespace: shop
spec:
  endpointSelector:
    matchLabels:
      app: api
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: frontend
      toPorts:
        - ports:
            - port: http
              protocol: TCP
          rules:
            http:
              - method: GET
                path: /call
`;

/** One request with any method through an HTTP proxy (absolute-form), bounded in time. */
function viaProxy(proxy: string, method: string, url: string): Promise<HttpResult> {
  const [host, port] = proxy.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method, path: url, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

test(
  'Cilium HTTP rules are enforced by the waypoint; the node lets the waypoint through',
  { timeout: 60_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cilium-l7-'));
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    writeFileSync(join(dir, 'cilium-l7.yaml'), POLICY);
    let mesh: MeshUp | undefined;
    try {
      mesh = await meshUp(dir);
      const proxy = /shop\/frontend\s.*HTTP_PROXY=([^\s,]+)/.exec(mesh.stdout())?.[1];
      assert.ok(proxy, mesh.stdout());

      // The shop path: frontend's GET /call to api is what the policy allows.
      const shop = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
      assert.equal(shop.status, 200, shop.body);
      assert.match(shop.body, /api-v[12]/);

      // Same caller, same port, outside the HTTP rule: the waypoint refuses it (Envoy's RBAC reply).
      const path = await httpGet(`${API}/admin`, { proxy });
      assert.equal(path.status, 403, path.body);
      assert.match(path.body, /RBAC: access denied/);
      const post = await viaProxy(proxy, 'POST', `${API}/call`);
      assert.equal(post.status, 403, post.body);
      assert.match(post.body, /RBAC: access denied/);

      // And the allowed request straight from frontend's proxy.
      const get = await httpGet(`${API}/call`, { proxy });
      assert.equal(get.status, 200, get.body);
    } finally {
      await mesh?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
