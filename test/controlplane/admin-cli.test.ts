// trellis apply | get | delete against a running control plane.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, runCliAsync } from '../helpers/run-cli.js';

test('apply, get and delete through the admin API; bad applies change nothing', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-admin-'));
  cpSync(join(REPO_ROOT, 'examples/shop'), join(dir, 'config'), { recursive: true });
  const proc = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'bin/trellis.js'),
      'controlplane',
      '--config',
      join(dir, 'config'),
      '--xds-listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
    ],
    {
      stdio: ['ignore', 'pipe', 'ignore'], // stderr (JSON logs) left unread would keep this process alive
    },
  );
  try {
    const admin = await new Promise<string>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`no start: ${out}`)), 15_000);
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /admin on (\S+),/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    const s = ['--server', admin];
    writeFileSync(
      join(dir, 'search.yaml'),
      'apiVersion: v1\nkind: Service\nmetadata: { name: search, namespace: shop }\nspec: { selector: { app: search }, ports: [{ name: http, port: 8080 }] }\n',
    );
    let r = await runCliAsync(['apply', '-f', join(dir, 'search.yaml'), ...s]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Service\/shop\/search configured/);
    assert.ok(existsSync(join(dir, 'config', '.trellis', 'applied.yaml')));

    r = await runCliAsync(['get', 'services', '-n', 'shop', ...s]);
    assert.match(r.stdout, /shop\s+search\s+.*applied\.yaml/);
    r = await runCliAsync(['get', 'service', 'search', '-n', 'shop', '-o', 'json', ...s]);
    const obj = JSON.parse(r.stdout) as { kind: string; spec: { type: string } };
    assert.equal(obj.kind, 'Service');
    assert.equal(obj.spec.type, 'ClusterIP', 'defaults are applied');

    writeFileSync(
      join(dir, 'bad.yaml'),
      'apiVersion: v1\nkind: Service\nmetadata: { name: search, namespace: shop }\nspec: { ports: [{ name: http, port: 80800 }] }\n',
    );
    r = await runCliAsync(['apply', '-f', join(dir, 'bad.yaml'), ...s]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /spec\.ports\[0\]\.port: 80800 is out of range/);
    r = await runCliAsync(['get', 'service', 'search', '-n', 'shop', '-o', 'json', ...s]);
    assert.equal(
      (JSON.parse(r.stdout) as { spec: { ports: { port: number }[] } }).spec.ports[0]!.port,
      8080,
      'the bad apply changed nothing',
    );

    r = await runCliAsync(['delete', 'service', 'frontend', '-n', 'shop', ...s]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /defined in .*frontend\.yaml; edit or remove it there/);
    r = await runCliAsync(['delete', 'svc', 'search', '-n', 'shop', ...s]);
    assert.equal(r.code, 2, 'svc is not a kind name: a usage error');
    r = await runCliAsync(['delete', 'services', 'search', '-n', 'shop', ...s]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCliAsync(['get', 'service', 'search', '-n', 'shop', ...s]);
    assert.equal(r.code, 1);
    r = await runCliAsync(['proxy-status', ...s]);
    assert.match(r.stdout, /no xDS clients are connected/);
  } finally {
    proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a client command with no control plane says how to fix it', async () => {
  const r = await runCliAsync(['get', 'services', '--server', 'http://127.0.0.1:1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach the control plane at http:\/\/127\.0\.0\.1:1.*trellis controlplane/);
});
