import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, TrellisError, UsageError } from '../../src/errors.js';
import { ANALYSIS_CODES } from '../../src/model/analysis.js';

const docs = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('every error code is documented in docs/errors.md, and nothing else is', () => {
  for (const code of Object.keys(ERROR_CODES))
    assert.ok(docs.includes(`\`${code}\``), `${code} missing from docs/errors.md`);
  const documented = [...docs.matchAll(/`(TRELLIS_ERR_\w+)`/g)].map((m) => m[1]);
  for (const code of documented)
    assert.ok(code! in ERROR_CODES, `docs/errors.md lists ${code}, which src/errors.ts does not define`);
});

test('every analysis code is documented', () => {
  for (const [name, { code }] of Object.entries(ANALYSIS_CODES)) {
    assert.match(
      docs,
      new RegExp(`\\|\\s*\`${code}\`\\s*\\|\\s*${name}\\s*\\|`),
      `${code} ${name} missing from docs/errors.md`,
    );
  }
});

test('instanceof works through the brand, across copies of the class', () => {
  const e = new UsageError('x');
  assert.ok(e instanceof TrellisError);
  assert.ok(e instanceof UsageError);
  assert.equal(e.code, 'TRELLIS_ERR_USAGE');
  const foreign = Object.assign(new Error('copy'), { [Symbol.for('trellis.error')]: true, code: 'TRELLIS_ERR_USAGE' });
  assert.ok(foreign instanceof TrellisError);
  assert.ok(!(new Error('plain') instanceof TrellisError));
});
