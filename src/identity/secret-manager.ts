// Holds the X.509-SVIDs of the identities a node serves and keeps them fresh.
//
// One owner per identity entry, with explicit states (Initializing -> Available, or
// Unavailable with the error); each SVID is renewed at half its lifetime minus jitter,
// swapped atomically (readers see either the old or the new credential, never a mix),
// and on failure the last good SVID keeps serving while retries back off (capped at
// 150 s, like ztunnel). Watchers hear about every new SVID and every bundle change, which
// is how TLS servers, SDS and the Workload API stay current.
import { generateKeyPairSync, type KeyObject, createPublicKey } from 'node:crypto';
import type { IssuedChain, X509Svid } from './ca.js';

/** What signs SVIDs: the local CA, or (later) the control plane's CA service. */
export interface CaClient {
  sign(req: { spiffeId: string; publicKey: KeyObject; ttlMs: number }): Promise<IssuedChain> | IssuedChain;
  /** Current trust bundle (roots, DER); may hold old and new roots during a rollover. */
  bundle(): readonly Buffer[];
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

export interface SvidSnapshot {
  readonly svid: X509Svid;
  readonly bundle: readonly Buffer[];
}

export type CertState =
  | { readonly state: 'Initializing' }
  | { readonly state: 'Available'; readonly snapshot: SvidSnapshot }
  | { readonly state: 'Unavailable'; readonly error: Error; readonly snapshot?: SvidSnapshot };

export interface SecretManagerOptions {
  readonly ca: CaClient;
  readonly ttlMs: number;
  readonly clock?: Clock;
  /** Fraction of the lifetime after which to renew (SPIFFE/Istio: one half). */
  readonly refreshFraction?: number;
  /** Up to this fraction of the lifetime is taken off the refresh time at random. */
  readonly jitter?: number;
  readonly maxBackoffMs?: number;
  /** Called with each renewal failure (the old SVID keeps serving). */
  readonly onError?: (spiffeId: string, error: Error) => void;
}

type Listener = (snapshot: SvidSnapshot) => void;

interface Entry {
  state: CertState;
  ready: Promise<SvidSnapshot>;
  resolveReady?: (s: SvidSnapshot) => void;
  listeners: Set<Listener>;
  timer?: { cancel(): void };
  failures: number;
}

export class SecretManager {
  readonly #opts: Required<Omit<SecretManagerOptions, 'onError'>> & Pick<SecretManagerOptions, 'onError'>;
  readonly #entries = new Map<string, Entry>();
  #bundle: readonly Buffer[];
  #closed = false;

  constructor(opts: SecretManagerOptions) {
    this.#opts = {
      clock: systemClock,
      refreshFraction: 0.5,
      jitter: 0.1,
      maxBackoffMs: 150_000,
      ...opts,
    };
    this.#bundle = opts.ca.bundle();
  }

  /** The current SVID of `spiffeId`, fetching it the first time (prefetch: call early). */
  get(spiffeId: string): Promise<SvidSnapshot> {
    const e = this.#entry(spiffeId);
    return e.state.state === 'Available' ? Promise.resolve(e.state.snapshot) : e.ready;
  }

  state(spiffeId: string): CertState {
    return this.#entries.get(spiffeId)?.state ?? { state: 'Initializing' };
  }

  /** Calls `listener` with every new SVID or bundle of `spiffeId` (and with the current one, once available). */
  watch(spiffeId: string, listener: Listener): () => void {
    const e = this.#entry(spiffeId);
    e.listeners.add(listener);
    if (e.state.state === 'Available') listener(e.state.snapshot);
    return () => {
      e.listeners.delete(listener);
    };
  }

  /** Stops renewing `spiffeId` (its workload left the node). */
  forget(spiffeId: string): void {
    const e = this.#entries.get(spiffeId);
    e?.timer?.cancel();
    this.#entries.delete(spiffeId);
  }

  identities(): string[] {
    return [...this.#entries.keys()].sort();
  }

  /** Re-reads the CA's bundle (root rollover) and tells every watcher. */
  refreshBundle(): void {
    this.#bundle = this.#opts.ca.bundle();
    for (const e of this.#entries.values()) {
      if (e.state.state !== 'Available') continue;
      const snapshot = { svid: e.state.snapshot.svid, bundle: this.#bundle };
      e.state = { state: 'Available', snapshot };
      for (const l of e.listeners) l(snapshot);
    }
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) e.timer?.cancel();
    this.#entries.clear();
  }

  #entry(spiffeId: string): Entry {
    let e = this.#entries.get(spiffeId);
    if (e) return e;
    let resolveReady: ((s: SvidSnapshot) => void) | undefined;
    const ready = new Promise<SvidSnapshot>((resolve) => (resolveReady = resolve));
    e = { state: { state: 'Initializing' }, ready, listeners: new Set(), failures: 0 };
    if (resolveReady) e.resolveReady = resolveReady;
    this.#entries.set(spiffeId, e);
    void this.#renew(spiffeId, e);
    return e;
  }

  async #renew(spiffeId: string, e: Entry): Promise<void> {
    if (this.#closed || this.#entries.get(spiffeId) !== e) return;
    const clock = this.#opts.clock;
    try {
      const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const issued = await this.#opts.ca.sign({
        spiffeId,
        publicKey: createPublicKey(privateKey),
        ttlMs: this.#opts.ttlMs,
      });
      if (this.#closed || this.#entries.get(spiffeId) !== e) return;
      const snapshot: SvidSnapshot = { svid: { ...issued, privateKey }, bundle: this.#bundle };
      e.state = { state: 'Available', snapshot }; // the atomic swap: one assignment
      e.failures = 0;
      e.resolveReady?.(snapshot);
      delete e.resolveReady;
      for (const l of e.listeners) l(snapshot);
      const lifetime = issued.notAfter.getTime() - issued.notBefore.getTime();
      const refreshAt =
        issued.notBefore.getTime() +
        lifetime * this.#opts.refreshFraction -
        lifetime * this.#opts.jitter * Math.random();
      e.timer = clock.setTimeout(() => void this.#renew(spiffeId, e), Math.max(0, refreshAt - clock.now()));
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      e.failures++;
      const last =
        e.state.state === 'Available'
          ? e.state.snapshot
          : e.state.state === 'Unavailable'
            ? e.state.snapshot
            : undefined;
      const stillValid = last !== undefined && last.svid.notAfter.getTime() > clock.now();
      // Keep serving the last good SVID while it is valid; report the failure either way.
      e.state = stillValid
        ? { state: 'Available', snapshot: last }
        : last
          ? { state: 'Unavailable', error, snapshot: last }
          : { state: 'Unavailable', error };
      this.#opts.onError?.(spiffeId, error);
      const backoff = Math.min(this.#opts.maxBackoffMs, 500 * 2 ** (e.failures - 1)) * (0.8 + 0.4 * Math.random());
      e.timer = clock.setTimeout(() => void this.#renew(spiffeId, e), backoff);
    }
  }
}

/** The local CA as a CaClient. */
export function localCaClient(ca: {
  sign(req: { spiffeId: string; publicKey: KeyObject; ttlMs: number }): IssuedChain;
  readonly roots: readonly Buffer[];
}): CaClient {
  return { sign: (req) => ca.sign(req), bundle: () => ca.roots };
}
