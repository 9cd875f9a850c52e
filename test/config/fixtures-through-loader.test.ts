// Every kind fixture, through the real loader: valid ones load clean; invalid ones produce
// exactly the expected problems, each positioned at a file:line:col.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const ROOT = join(REPO_ROOT, 'test/fixtures/kinds');

function files(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

const kinds = readdirSync(ROOT).filter((k) => statSync(join(ROOT, k)).isDirectory());

test('fixtures exist for every kind directory, valid and invalid', () => {
  assert.ok(kinds.length >= 20, `only ${kinds.length} kind fixture directories`);
  for (const k of kinds) {
    assert.ok(files(join(ROOT, k, 'valid')).length > 0, `${k} has no valid fixtures`);
    assert.ok(files(join(ROOT, k, 'invalid')).length > 0, `${k} has no invalid fixtures`);
  }
});

for (const kind of kinds) {
  test(`${kind}: valid fixtures load with no errors`, () => {
    for (const f of files(join(ROOT, kind, 'valid'))) {
      const r = loadPaths([f]);
      const errs = r.diagnostics.filter((d) => d.severity === 'error');
      assert.deepEqual(errs, [], f);
      assert.ok(r.resources.length > 0, f);
    }
  });

  test(`${kind}: invalid fixtures give exactly their expected problems, with positions`, () => {
    for (const f of files(join(ROOT, kind, 'invalid'))) {
      const expects = [...readFileSync(f, 'utf8').matchAll(/^# expect: ((?:[^\s":]|"[^"]*")*): (.*)$/gm)].map((m) => ({
        field: m[1]!,
        re: new RegExp(m[2]!, 'i'),
      }));
      assert.ok(expects.length > 0, `${f} has no "# expect:" lines`);
      const errs = loadPaths([f]).diagnostics.filter((d) => d.severity === 'error');
      assert.equal(errs.length, expects.length, `${f}: ${JSON.stringify(errs.map((e) => `${e.field}: ${e.message}`))}`);
      for (const e of expects) {
        const hit = errs.find((d) => (d.field ?? '') === e.field && e.re.test(d.message));
        assert.ok(
          hit,
          `${f}: no problem at ${e.field} matching ${e.re}; got ${JSON.stringify(errs.map((x) => `${x.field}: ${x.message}`))}`,
        );
        assert.ok(
          hit.line !== undefined && hit.line > 0 && hit.column !== undefined,
          `${f}: ${e.field} has no position`,
        );
      }
    }
  });
}
