// The config directory watch sees every kind of save: in place, atomic (temp + rename, as
// editors and `sed -i` do) again and again, in new subdirectories; and not the state dir.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigWatcher } from '../../src/controlplane/config-watcher.js';
import { TreeWatch } from '../../src/controlplane/tree-watch.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not seen in time: ${what}`);
    await sleep(20);
  }
}

function service(name: string, port: number): string {
  return `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: ns\nspec:\n  ports:\n    - port: ${port}\n`;
}

function atomicWrite(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

test('ConfigWatcher reloads on every atomic save of the same file, not just the first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-watch-'));
  const file = join(dir, 'svc.yaml');
  writeFileSync(file, service('a', 80));
  const ports: number[] = [];
  const w = new ConfigWatcher({
    paths: () => [dir],
    watch: [dir],
    debounceMs: 20,
    onChange: (s) => {
      const spec = (s.resources[0] as unknown as { spec: { ports: { port: number }[] } }).spec;
      ports.push(spec.ports[0]!.port);
    },
  });
  w.start();
  try {
    for (const port of [81, 82, 83]) {
      atomicWrite(file, service('a', port));
      await until(() => ports.at(-1) === port, `port ${port} after an atomic save`);
    }
    writeFileSync(file, service('a', 84));
    await until(() => ports.at(-1) === 84, 'an in-place save');
    assert.equal(w.state.generation, 5);
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TreeWatch follows new subdirectories and ignores dot-directories (the state dir)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-watch-'));
  let changes = 0;
  const w = new TreeWatch([dir], () => changes++);
  w.start();
  try {
    mkdirSync(join(dir, '.trellis', 'logs'), { recursive: true });
    await sleep(100);
    const base = changes;
    writeFileSync(join(dir, '.trellis', 'logs', 'node.log'), 'x');
    await sleep(150);
    assert.equal(changes, base, 'a write under .trellis is not a config change');
    mkdirSync(join(dir, 'team-a'));
    await until(() => changes > base, 'the new directory');
    const after = changes;
    await sleep(50);
    atomicWrite(join(dir, 'team-a', 'r.yaml'), service('b', 80));
    await until(() => changes > after, 'a file saved in the new directory');
    const again = changes;
    atomicWrite(join(dir, 'team-a', 'r.yaml'), service('b', 81));
    await until(() => changes > again, 'the second atomic save in the new directory');
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TreeWatch on a single file sees its atomic saves and nothing else in the directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-watch-'));
  const file = join(dir, 'one.yaml');
  writeFileSync(file, service('a', 80));
  let changes = 0;
  const w = new TreeWatch([file], () => changes++);
  w.start();
  try {
    writeFileSync(join(dir, 'other.txt'), 'x');
    await sleep(150);
    assert.equal(changes, 0);
    for (let i = 0; i < 3; i++) {
      const base = changes;
      atomicWrite(file, service('a', 81 + i));
      await until(() => changes > base, `atomic save ${i + 1}`);
    }
  } finally {
    w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
