// The SPIFFE Workload API server (X.509-SVID and JWT-SVID profiles) on a Unix domain socket.
//
// Attestation is by the socket itself: one server (one socket) per workload identity, the
// socket chowned to the workload's uid with mode 0600 inside a directory of mode 0700, so
// the kernel lets only that uid (and root) connect, and whoever connects only ever gets
// that one identity. See docs/workload-api.md for the threat model.
import { WorkloadApiConfigError } from '../../errors.js';
import { lstat, mkdir, chmod, chown, rmdir, stat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { JwtSvidAuthority } from '../jwt-svid.js';
import { validateJwtSvid } from '../jwt-svid.js';
import type { SecretManager, SvidSnapshot } from '../secret-manager.js';
import { parseSpiffeId, trustDomainId } from '../spiffe-id.js';
import {
  loadWorkloadApi,
  SECURITY_HEADER,
  SECURITY_HEADER_MISSING,
  SECURITY_HEADER_VALUE,
  toProtoStruct,
  type JwtBundlesResponseMessage,
  type JwtSvidRequestMessage,
  type JwtSvidResponseMessage,
  type ValidateJwtSvidRequestMessage,
  type ValidateJwtSvidResponseMessage,
  type X509BundlesResponseMessage,
  type X509SvidResponseMessage,
} from './client.js';

export interface WorkloadApiServerOptions {
  /** Absolute path of the socket, e.g. `<dir>/<namespace>/<serviceAccount>/agent.sock`. */
  readonly socketPath: string;
  /** The one identity this socket serves. */
  readonly spiffeId: string;
  readonly svids: SecretManager;
  readonly jwt: JwtSvidAuthority;
  readonly trustDomain: string;
  /** Lifetime of the JWT-SVIDs FetchJWTSVID issues. */
  readonly jwtTtlMs: number;
  /** Mode of the socket file (default 0o600: only its owner may connect). */
  readonly socketMode?: number;
  /** Owner of the socket (and of its directory, when the server creates it): the workload's uid. */
  readonly uid?: number;
  readonly gid?: number;
}

/** The longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

type Fail = { code: grpc.status; details: string };

export class WorkloadApiServer {
  readonly socketPath: string;
  readonly spiffeId: string;
  readonly #opts: WorkloadApiServerOptions;
  readonly #server: grpc.Server;
  /** Ends every open stream (with UNAVAILABLE) on close. */
  readonly #streams = new Set<(status: Fail) => void>();
  /** Re-checks the bundles of open bundle streams (see bundlesChanged). */
  readonly #bundleRefreshers = new Set<() => void>();
  /** Directories this server created, deepest last, removed again on close if empty. */
  readonly #createdDirs: string[];
  #socketIno: number | undefined;
  #closed = false;

  private constructor(opts: WorkloadApiServerOptions, server: grpc.Server, createdDirs: string[]) {
    this.#opts = opts;
    this.socketPath = opts.socketPath;
    this.spiffeId = opts.spiffeId;
    this.#server = server;
    this.#createdDirs = createdDirs;
  }

  /** Binds `unix://socketPath`, sets its owner and mode, and starts serving. */
  static async start(opts: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
    checkOptions(opts);
    const socketPath = resolve(opts.socketPath);
    const o = { ...opts, socketPath };
    const createdDirs = await prepareDirectory(dirname(socketPath));
    await removeStaleSocket(socketPath);
    const server = new grpc.Server({
      'grpc.max_receive_message_length': 1 << 20,
      'grpc.max_concurrent_streams': 256,
    });
    const self = new WorkloadApiServer(o, server, createdDirs);
    server.addService(loadWorkloadApi().SpiffeWorkloadAPI.service, self.#handlers());
    try {
      await new Promise<void>((resolveBind, reject) =>
        server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
          err ? reject(err) : resolveBind(),
        ),
      );
      // The directory is still 0700 root's (if we made it): nobody else can reach the socket
      // before its own mode and owner are set.
      await chmod(socketPath, opts.socketMode ?? 0o600);
      if (opts.uid !== undefined || opts.gid !== undefined) await chown(socketPath, opts.uid ?? -1, opts.gid ?? -1);
      self.#socketIno = (await stat(socketPath)).ino;
      const own = createdDirs[createdDirs.length - 1];
      if (own !== undefined && (opts.uid !== undefined || opts.gid !== undefined)) {
        await chown(own, opts.uid ?? -1, opts.gid ?? -1);
      }
    } catch (e) {
      server.forceShutdown();
      await self.#cleanup();
      throw new WorkloadApiConfigError(`cannot serve the Workload API on ${socketPath}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    void opts.svids.get(opts.spiffeId); // prefetch: the first FetchX509SVID should not wait for signing
    return self;
  }

  /**
   * Tells open FetchX509Bundles / FetchJWTBundles streams to re-check their bundles: call it
   * after a JWT key rotation (`JwtSvidAuthority.rotate/retire`). X.509 bundle changes arrive
   * by themselves through `SecretManager.refreshBundle()`.
   */
  bundlesChanged(): void {
    for (const r of this.#bundleRefreshers) r();
  }

  /** Ends open streams with UNAVAILABLE (clients reconnect with backoff), stops, and removes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const end of [...this.#streams])
      end({ code: grpc.status.UNAVAILABLE, details: 'Workload API server stopping' });
    await new Promise<void>((done) => {
      const t = setTimeout(() => {
        this.#server.forceShutdown();
        done();
      }, 2000);
      this.#server.tryShutdown(() => {
        clearTimeout(t);
        done();
      });
    });
    await this.#cleanup();
  }

  async #cleanup(): Promise<void> {
    try {
      const st = await lstat(this.socketPath);
      // Only remove our own socket, never one another server put there since.
      if (st.isSocket() && (this.#socketIno === undefined || st.ino === this.#socketIno)) await unlink(this.socketPath);
    } catch {
      // already gone
    }
    for (const d of [...this.#createdDirs].reverse()) {
      try {
        await rmdir(d);
      } catch {
        break; // not empty: something else lives there now
      }
    }
  }

  // -------------------------------------------------------------------------------------

  #handlers(): grpc.UntypedServiceImplementation {
    return {
      FetchX509SVID: (call: grpc.ServerWritableStream<unknown, X509SvidResponseMessage>) =>
        this.#stream(call, (send, fail) => this.#fetchX509Svid(send, fail)),
      FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, X509BundlesResponseMessage>) =>
        this.#stream(call, (send, fail) => this.#fetchX509Bundles(send, fail)),
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, JwtBundlesResponseMessage>) =>
        this.#stream(call, (send) => this.#fetchJwtBundles(send)),
      FetchJWTSVID: (
        call: grpc.ServerUnaryCall<JwtSvidRequestMessage, JwtSvidResponseMessage>,
        cb: grpc.sendUnaryData<JwtSvidResponseMessage>,
      ) => this.#unary(call, cb, (req) => this.#fetchJwtSvid(req)),
      ValidateJWTSVID: (
        call: grpc.ServerUnaryCall<ValidateJwtSvidRequestMessage, ValidateJwtSvidResponseMessage>,
        cb: grpc.sendUnaryData<ValidateJwtSvidResponseMessage>,
      ) => this.#unary(call, cb, (req) => this.#validateJwtSvid(req)),
    };
  }

  /** Runs a server-streaming handler: header check, then `run` until the client cancels. */
  #stream<T>(
    call: grpc.ServerWritableStream<unknown, T>,
    run: (send: (m: T) => void, fail: (f: Fail) => void) => () => void,
  ): void {
    let stopped = false;
    const sub: { stop?: () => void } = {}; // set once `run` has subscribed
    const end = (f?: Fail): void => {
      if (stopped) return;
      stopped = true;
      this.#streams.delete(end);
      sub.stop?.();
      if (f && !call.cancelled) call.emit('error', { code: f.code, details: f.details });
    };
    if (!hasSecurityHeader(call.metadata)) {
      end({ code: grpc.status.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING });
      return;
    }
    if (this.#closed) {
      end({ code: grpc.status.UNAVAILABLE, details: 'Workload API server stopping' });
      return;
    }
    this.#streams.add(end);
    call.on('cancelled', () => end());
    call.on('error', () => end());
    call.on('close', () => end());
    const send = (m: T): void => {
      if (stopped || call.cancelled) return;
      try {
        call.write(m);
      } catch {
        end(); // never let one broken stream disturb the SecretManager's other watchers
      }
    };
    sub.stop = run(send, end);
    if (stopped) sub.stop(); // `run` failed the stream synchronously
  }

  #unary<Req, Res>(
    call: grpc.ServerUnaryCall<Req, Res>,
    cb: grpc.sendUnaryData<Res>,
    run: (req: Req) => Promise<Res | Fail>,
  ): void {
    if (!hasSecurityHeader(call.metadata)) {
      cb({ code: grpc.status.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING });
      return;
    }
    run(call.request).then(
      (r) => (isFail(r) ? cb({ code: r.code, details: r.details }) : cb(null, r)),
      (e: unknown) => cb({ code: grpc.status.INTERNAL, details: (e as Error).message ?? String(e) }),
    );
  }

  #fetchX509Svid(send: (m: X509SvidResponseMessage) => void, fail: (f: Fail) => void): () => void {
    const { svids, spiffeId } = this.#opts;
    const st = svids.state(spiffeId);
    if (st.state === 'Unavailable' && (!st.snapshot || st.snapshot.svid.notAfter.getTime() <= Date.now())) {
      fail({ code: grpc.status.UNAVAILABLE, details: `no valid X.509-SVID for ${spiffeId}: ${st.error.message}` });
      return () => {};
    }
    // watch() calls back at once when the SVID is available, then on every rotation or bundle change.
    return svids.watch(spiffeId, (snap) => send(this.#x509Response(snap)));
  }

  #x509Response(snap: SvidSnapshot): X509SvidResponseMessage {
    const { svid, bundle } = snap;
    return {
      svids: [
        {
          spiffe_id: svid.spiffeId,
          x509_svid: Buffer.concat(svid.chain),
          x509_svid_key: svid.privateKey.export({ type: 'pkcs8', format: 'der' }),
          bundle: Buffer.concat(bundle),
          hint: '',
        },
      ],
      crl: [],
      federated_bundles: {},
    };
  }

  #fetchX509Bundles(send: (m: X509BundlesResponseMessage) => void, fail: (f: Fail) => void): () => void {
    const { svids, spiffeId, trustDomain } = this.#opts;
    const st = svids.state(spiffeId);
    if (st.state === 'Unavailable' && !st.snapshot) {
      fail({ code: grpc.status.UNAVAILABLE, details: `no trust bundle yet: ${st.error.message}` });
      return () => {};
    }
    let last: Buffer | undefined;
    let current: readonly Buffer[] | undefined;
    const push = (): void => {
      if (!current) return;
      const der = Buffer.concat(current);
      if (last && last.equals(der)) return; // an SVID rotation alone does not change the bundle
      last = der;
      send({ crl: [], bundles: { [trustDomainId(trustDomain)]: der } });
    };
    const unwatch = svids.watch(spiffeId, (snap) => {
      current = snap.bundle;
      push();
    });
    this.#bundleRefreshers.add(push);
    return () => {
      unwatch();
      this.#bundleRefreshers.delete(push);
    };
  }

  #jwtBundleJson(): Buffer {
    return Buffer.from(JSON.stringify(this.#opts.jwt.jwks()), 'utf8');
  }

  #fetchJwtBundles(send: (m: JwtBundlesResponseMessage) => void): () => void {
    const { svids, spiffeId, trustDomain } = this.#opts;
    let last: Buffer | undefined;
    const push = (): void => {
      const json = this.#jwtBundleJson();
      if (last && last.equals(json)) return;
      last = json;
      send({ bundles: { [trustDomainId(trustDomain)]: json } });
    };
    push();
    this.#bundleRefreshers.add(push);
    // Also re-check on every SVID event, a cheap poll that catches JWT key rotations nobody announced.
    const unwatch = svids.watch(spiffeId, () => push());
    return () => {
      unwatch();
      this.#bundleRefreshers.delete(push);
    };
  }

  async #fetchJwtSvid(req: JwtSvidRequestMessage): Promise<JwtSvidResponseMessage | Fail> {
    const audience = req.audience ?? [];
    if (audience.length === 0 || audience.some((a) => a === '')) {
      return { code: grpc.status.INVALID_ARGUMENT, details: 'audience must be specified' };
    }
    const { spiffeId, jwt, jwtTtlMs } = this.#opts;
    if (req.spiffe_id !== '' && req.spiffe_id !== spiffeId) {
      // The same answer whether or not the ID exists elsewhere on the node: nothing to learn here.
      return { code: grpc.status.PERMISSION_DENIED, details: `no identity issued for ${req.spiffe_id}` };
    }
    const svid = await jwt.issue(spiffeId, audience, jwtTtlMs);
    return { svids: [{ spiffe_id: spiffeId, svid: svid.token, hint: '' }] };
  }

  async #validateJwtSvid(req: ValidateJwtSvidRequestMessage): Promise<ValidateJwtSvidResponseMessage | Fail> {
    if (!req.audience) return { code: grpc.status.INVALID_ARGUMENT, details: 'audience must be specified' };
    if (!req.svid) return { code: grpc.status.INVALID_ARGUMENT, details: 'svid must be specified' };
    const { jwt, trustDomain } = this.#opts;
    const r = await validateJwtSvid(req.svid, req.audience, new Map([[trustDomain, jwt.jwks()]]));
    if (!r.ok) return { code: grpc.status.INVALID_ARGUMENT, details: r.reason };
    return { spiffe_id: r.spiffeId, claims: toProtoStruct(r.claims) };
  }
}

function isFail(v: unknown): v is Fail {
  return typeof v === 'object' && v !== null && 'code' in v && 'details' in v && !('svids' in v);
}

function hasSecurityHeader(md: grpc.Metadata): boolean {
  const v = md.get(SECURITY_HEADER);
  return v.length === 1 && v[0] === SECURITY_HEADER_VALUE;
}

function checkOptions(opts: WorkloadApiServerOptions): void {
  if (!isAbsolute(opts.socketPath))
    throw new WorkloadApiConfigError(`the socket path must be absolute: ${opts.socketPath}`);
  if (Buffer.byteLength(opts.socketPath) > MAX_SOCKET_PATH) {
    throw new WorkloadApiConfigError(
      `the socket path is ${Buffer.byteLength(opts.socketPath)} bytes; Unix sockets allow at most ${MAX_SOCKET_PATH}: ${opts.socketPath}`,
    );
  }
  const id = parseSpiffeId(opts.spiffeId);
  if (typeof id === 'string')
    throw new WorkloadApiConfigError(`invalid SPIFFE ID ${JSON.stringify(opts.spiffeId)}: ${id}`);
  if (id.trustDomain !== opts.trustDomain) {
    throw new WorkloadApiConfigError(`${opts.spiffeId} is not in the trust domain ${opts.trustDomain}`);
  }
  if (opts.jwt.trustDomain !== opts.trustDomain) {
    throw new WorkloadApiConfigError(`the JWT authority signs for ${opts.jwt.trustDomain}, not ${opts.trustDomain}`);
  }
  if (!(opts.jwtTtlMs >= 1000))
    throw new WorkloadApiConfigError(`jwtTtlMs must be at least 1000 (got ${opts.jwtTtlMs})`);
  for (const [k, v] of [
    ['uid', opts.uid],
    ['gid', opts.gid],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0))
      throw new WorkloadApiConfigError(`${k} must be a non-negative integer`);
  }
  if (opts.socketMode !== undefined && (!Number.isInteger(opts.socketMode) || opts.socketMode & ~0o777)) {
    throw new WorkloadApiConfigError(`socketMode must be permission bits (0o000..0o777), got ${opts.socketMode}`);
  }
}

/**
 * Creates the socket's directory if missing: ancestors 0o711 (traversable, not listable),
 * the directory itself 0o700. An existing directory is used as it is. Returns what it made.
 */
async function prepareDirectory(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      const st = await stat(d);
      if (!st.isDirectory()) throw new WorkloadApiConfigError(`${d} is not a directory`);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      missing.unshift(d);
      if (dirname(d) === d) break;
    }
  }
  const created: string[] = [];
  for (const d of missing) {
    const mode = d === dir ? 0o700 : 0o711;
    try {
      await mkdir(d, { mode });
      await chmod(d, mode); // mkdir's mode is filtered by the umask
      created.push(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return created;
}

/** Removes a socket file left by a dead server; refuses to touch anything else or a live socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new WorkloadApiConfigError(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((done) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      done(true);
    });
    s.once('error', () => done(false));
  });
  if (live) throw new WorkloadApiConfigError(`${path} is in use by another server`);
  await unlink(path);
}
