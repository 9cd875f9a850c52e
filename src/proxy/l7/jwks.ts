// JSON Web Key Sets for the jwt_authn filter: parsing (RFC 7517, keys imported with node:crypto)
// and remote sets fetched over HTTP(S), as Envoy's RemoteJwks:
// - cached for cache_duration (Envoy's default 10 minutes; Istio sets 5);
// - refreshed in the background while requests use the set, so a rotated key (new kid) is picked
//   up without a request ever waiting;
// - a failed fetch keeps the last good keys (retried sooner, after FAILED_REFETCH_MS);
// - before the first successful fetch a request waits for it, bounded by the fetch timeout.
import { createPublicKey, createSecretKey, type KeyObject, type JsonWebKey } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { TrellisError } from '../../errors.js';

export class JwksError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_INVALID_VALUE';
}

export interface VerificationKey {
  readonly kid: string | undefined;
  /** The key's "alg" when the set names one (a JWT with another alg does not use it). */
  readonly alg: string | undefined;
  readonly kty: 'RSA' | 'EC' | 'OKP' | 'oct';
  /** EC / OKP curve ("P-256", "Ed25519"...). */
  readonly crv: string | undefined;
  readonly key: KeyObject;
}

const MAX_JWKS_BYTES = 1 << 20;
/** Envoy's async_fetch failed_refetch_duration default: retry a failed fetch after 1s. */
export const FAILED_REFETCH_MS = 1000;
/** Envoy's RemoteJwks cache_duration default. */
export const DEFAULT_CACHE_DURATION_MS = 10 * 60_000;

/**
 * A JWKS document -> the keys it holds. Keys for encryption ("use": "enc") and keys of unknown
 * types are skipped, as Envoy does; a set with no usable key is an error naming why.
 */
export function parseJwks(text: string): VerificationKey[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new JwksError(`JWKS is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new JwksError('JWKS has no "keys" list');
  const out: VerificationKey[] = [];
  const skipped: string[] = [];
  keys.forEach((k: unknown, i) => {
    const jwk = k as Record<string, unknown> | null;
    if (typeof jwk !== 'object' || jwk === null) return void skipped.push(`keys[${i}] is not an object`);
    if (jwk.use === 'enc') return;
    const kty = jwk.kty;
    const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
    const alg = typeof jwk.alg === 'string' ? jwk.alg : undefined;
    const crv = typeof jwk.crv === 'string' ? jwk.crv : undefined;
    try {
      if (kty === 'RSA' || kty === 'EC' || kty === 'OKP') {
        // Only the public members: a set that (wrongly) carries private parts still yields public keys.
        const pub: Record<string, unknown> = { kty };
        for (const f of ['n', 'e', 'crv', 'x', 'y']) if (jwk[f] !== undefined) pub[f] = jwk[f];
        out.push({ kid, alg, kty, crv, key: createPublicKey({ key: pub as JsonWebKey, format: 'jwk' }) });
      } else if (kty === 'oct') {
        if (typeof jwk.k !== 'string') throw new Error('"k" is missing');
        out.push({ kid, alg, kty, crv, key: createSecretKey(Buffer.from(jwk.k, 'base64url')) });
      } else {
        skipped.push(`keys[${i}] has unsupported kty ${JSON.stringify(kty)}`);
      }
    } catch (e) {
      skipped.push(`keys[${i}]${kid ? ` (kid ${kid})` : ''}: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  if (out.length === 0) {
    throw new JwksError(`JWKS has no usable key${skipped.length ? `: ${skipped.join('; ')}` : ''}`);
  }
  return out;
}

export interface RemoteJwksOptions {
  readonly uri: string;
  readonly cacheDurationMs: number;
  readonly timeoutMs: number;
  /** Extra trusted CA certificates (PEM) for https:// URIs; default the system store. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
}

/** Fetches a JWKS document; rejects with an error naming the URI and what went wrong. */
export function fetchJwks(opts: RemoteJwksOptions): Promise<VerificationKey[]> {
  return new Promise((resolve, reject) => {
    let url: URL;
    try {
      url = new URL(opts.uri);
    } catch {
      reject(new JwksError(`JWKS URI ${JSON.stringify(opts.uri)} is not a URL`));
      return;
    }
    const fail = (why: string) => reject(new JwksError(`fetching JWKS from ${opts.uri}: ${why}`));
    const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
    if (!client) return fail(`unsupported scheme ${url.protocol}`);
    const req = client.get(
      url,
      {
        headers: { accept: 'application/json' },
        timeout: opts.timeoutMs,
        agent: false,
        ...(opts.ca !== undefined ? { ca: opts.ca as string | Buffer | (string | Buffer)[] } : {}),
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return fail(`HTTP status ${res.statusCode ?? 'unknown'}`);
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_JWKS_BYTES) {
            req.destroy();
            fail(`document larger than ${MAX_JWKS_BYTES} bytes`);
          } else chunks.push(c);
        });
        res.on('error', (e) => fail(e.message));
        res.on('end', () => {
          try {
            resolve(parseJwks(Buffer.concat(chunks).toString('utf8')));
          } catch (e) {
            fail(e instanceof Error ? e.message : String(e));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${opts.timeoutMs}ms`)));
    req.on('error', (e) => fail(e.message));
  });
}

/** One remote key set, shared by every config version that names the same URI and settings. */
export class RemoteJwks {
  readonly options: RemoteJwksOptions;
  #keys: VerificationKey[] | undefined;
  #fetching: Promise<VerificationKey[]> | undefined;
  #fetchedAt = 0;
  /** A request asked for the keys since the last fetch started. */
  #used = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Why the last fetch failed (undefined after a success). */
  lastError: Error | undefined;
  /** Successful fetches so far. */
  fetches = 0;

  constructor(options: RemoteJwksOptions) {
    this.options = options;
  }

  /** The keys now, or (before the first successful fetch) a promise of them. */
  keys(): VerificationKey[] | Promise<VerificationKey[]> {
    this.#used = true;
    if (this.#keys) {
      if (Date.now() - this.#fetchedAt >= this.options.cacheDurationMs) void this.#refresh().catch(() => {});
      return this.#keys;
    }
    return this.#refresh();
  }

  #refresh(): Promise<VerificationKey[]> {
    if (this.#fetching) return this.#fetching;
    this.#used = false;
    const p = fetchJwks(this.options).then(
      (keys) => {
        this.#keys = keys;
        this.#fetchedAt = Date.now();
        this.lastError = undefined;
        this.fetches++;
        this.#schedule(this.options.cacheDurationMs);
        return keys;
      },
      (e: unknown) => {
        this.lastError = e instanceof Error ? e : new Error(String(e));
        // Keep the last good keys; try again sooner than the cache duration.
        this.#schedule(Math.min(FAILED_REFETCH_MS, this.options.cacheDurationMs));
        throw this.lastError;
      },
    );
    this.#fetching = p.finally(() => {
      if (this.#fetching === tracked) this.#fetching = undefined;
    });
    const tracked = this.#fetching;
    return tracked;
  }

  /** Refresh again after `ms`, but only while requests use the set (an idle set goes quiet). */
  #schedule(ms: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#used) void this.#refresh().catch(() => {});
    }, ms);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Remote key sets by URI and settings, kept across config versions (a new version reuses the cache). */
export class JwksCache {
  readonly #sets = new Map<string, RemoteJwks>();
  readonly #ca: RemoteJwksOptions['ca'];

  constructor(ca?: RemoteJwksOptions['ca']) {
    this.#ca = ca;
  }

  get(uri: string, cacheDurationMs: number, timeoutMs: number): RemoteJwks {
    const key = `${uri} ${cacheDurationMs} ${timeoutMs}`;
    let set = this.#sets.get(key);
    if (!set) {
      set = new RemoteJwks({ uri, cacheDurationMs, timeoutMs, ...(this.#ca !== undefined ? { ca: this.#ca } : {}) });
      this.#sets.set(key, set);
    }
    return set;
  }

  /** The sets in use, for diagnostics and tests. */
  get sets(): readonly RemoteJwks[] {
    return [...this.#sets.values()];
  }

  close(): void {
    for (const s of this.#sets.values()) s.close();
    this.#sets.clear();
  }
}
