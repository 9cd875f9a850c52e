// Shared fixtures for the ADS server tests (state of the world and delta).
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Snapshot, SnapshotSource } from '../../src/xds/snapshot.js';
import { AdsServer, type AdsTypeInfo } from '../../src/xds/server/ads-server.js';

/** A SnapshotSource the test sets per node; each set notifies the server. */
export class FakeSource implements SnapshotSource {
  readonly #snaps = new Map<string, Snapshot>();
  readonly #listeners = new Set<(ids: readonly string[] | '*') => void>();
  snapshot(nodeId: string): Snapshot | undefined {
    return this.#snaps.get(nodeId);
  }
  onChange(listener: (ids: readonly string[] | '*') => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  set(nodeId: string, snapshot: Snapshot): Snapshot {
    this.#snaps.set(nodeId, snapshot);
    for (const l of this.#listeners) l([nodeId]);
    return snapshot;
  }
}

export async function startServer(t: TestContext, source: SnapshotSource, debounceMs = 20) {
  const server = new AdsServer();
  const port = await server.start({ source, address: '127.0.0.1:0', debounceMs });
  t.after(() => server.close());
  return { server, port };
}

export function typeOf(server: AdsServer, nodeId: string, typeUrl: string): AdsTypeInfo {
  const c = server.clients().find((x) => x.nodeId === nodeId);
  assert.ok(c, `client ${nodeId} connected`);
  const ti = c.types.find((x) => x.typeUrl === typeUrl);
  assert.ok(ti, `client ${nodeId} has state for ${typeUrl}`);
  return ti;
}

export async function until(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
