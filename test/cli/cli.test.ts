import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, runCli } from '../helpers/run-cli.js';

test('trellis validate -f examples/shop: the bundled example is valid (exit 0)', () => {
  const r = runCli(['validate', '-f', 'examples/shop']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /✔ 23 resources in 7 files: valid/);
});

test('a directory with one broken HTTPRoute prints one line that says what and where', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-cli-'));
  try {
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('            type: PathPrefix', '            type: Prefix'));
    const r = runCli(['validate', '-f', dir]);
    assert.equal(r.code, 1);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    assert.equal(
      lines[0],
      `${file}:32:19: HTTPRoute/shop/storefront: spec.rules[0].matches[0].path.type: "Prefix" is not allowed (did you mean "PathPrefix"?) (expected one of Exact, PathPrefix, RegularExpression)`,
    );
    assert.match(lines[1]!, /✘ 22 resources in 7 files: 1 error/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cross-reference problems are reported with the upstream reason at the field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-cli-'));
  try {
    cpSync(join(REPO_ROOT, 'examples/shop'), dir, { recursive: true });
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('        - name: frontend\n', '        - name: frontnd\n'));
    const r = runCli(['validate', '-f', dir, '-o', 'json']);
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout) as {
      valid: boolean;
      errors: number;
      diagnostics: { code: string; field: string; line: number; file: string }[];
    };
    assert.equal(report.valid, false);
    assert.equal(report.errors, 1);
    const d = report.diagnostics.find((x) => x.code === 'BackendNotFound')!;
    assert.equal(d.field, 'spec.rules[0].backendRefs[0]');
    assert.equal(d.line, 35);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('validate reads stdin with -f -', () => {
  const r = runCli(['validate', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Bad\n');
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^<stdin>:4:9: Namespace\/Bad: metadata.name: "Bad" is not valid/m);
});

test('usage errors exit 2 with the closest match', () => {
  let r = runCli(['valdate', '-f', 'examples']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "valdate" \(did you mean "validate"\?\)/);
  r = runCli(['validate', '--filname', 'examples']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown flag --filname for "trellis validate" \(did you mean "--filename"\?\)/);
  r = runCli(['validate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /needs at least one path/);
  r = runCli(['validate', '-f', 'examples', '-o', 'jsn']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /did you mean "json"/);
  r = runCli([]);
  assert.equal(r.code, 2);
  assert.match(r.stdout, /Usage: trellis COMMAND/);
});

test('trellis version, and help', () => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  let r = runCli(['version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `trellis ${pkg.version}`);
  r = runCli(['version', '-o', 'json']);
  assert.equal((JSON.parse(r.stdout) as { version: string }).version, pkg.version);
  r = runCli(['validate', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--filename PATH/);
});

test('a missing path is a failure (exit 1) with a clear message, not a stack trace', () => {
  const r = runCli(['validate', '-f', 'no/such/dir']);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^no\/such\/dir: cannot read: no such file or directory/m);
  assert.doesNotMatch(r.stdout + r.stderr, /at .*\.js:\d+/);
});
