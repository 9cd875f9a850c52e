// Access logs through the whole example mesh: `trellis up --access-log FILE` on examples/shop,
// a /call through the gateway (node-a) to the frontend, which calls the api through its waypoint;
// both L7 hops append their JSON lines to the one shared file.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshUp, waitFor, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

function call(): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: 8000, path: '/call', headers: { host: 'shop.localhost' }, timeout: 10_000 },
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

describe('access log e2e (trellis up --access-log, examples/shop)', { timeout: 120_000 }, () => {
  let mesh: MeshUp | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'trellis-access-e2e-'));
  const file = join(dir, 'access.log');

  before(async () => {
    mesh = await meshUp(join(REPO_ROOT, 'examples/shop'), 60_000, ['--access-log', file]);
  });
  after(async () => {
    await mesh?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function lines(): Record<string, unknown>[] {
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('a /call through the gateway logs a 200 line from the gateway and one from the waypoint', async () => {
    // The mesh may still be settling (workloads starting): retry the call a few times.
    let r = { status: 0, body: '' };
    for (let i = 0; i < 30; i++) {
      r = await call().catch(() => r);
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    assert.equal(r.status, 200, r.body);
    const ok = (prefix: string) => (l: Record<string, unknown>) =>
      String(l.proxy).startsWith(prefix) && l.response_code === 200;
    // Lines are written in batches (100 ms).
    await waitFor(() => lines().some(ok('gateway/')) && lines().some(ok('waypoint/')), 10_000).catch(() => undefined);
    const all = lines();
    const gw = all.filter(ok('gateway/'));
    const wp = all.filter(ok('waypoint/'));
    assert.ok(gw.length > 0, `gateway line in ${JSON.stringify(all)}`);
    assert.ok(wp.length > 0, `waypoint line in ${JSON.stringify(all)}`);
    const g = gw.at(-1)!;
    assert.equal(g.method, 'GET');
    assert.equal(g.path, '/call');
    assert.equal(g.authority, 'shop.localhost');
    assert.equal(typeof g.upstream_host, 'string');
    const w = wp.at(-1)!;
    // The waypoint's caller is the frontend, known by its SPIFFE ID over HBONE.
    assert.match(String(w.downstream_peer_uri_san), /^spiffe:\/\//);
  });
});
