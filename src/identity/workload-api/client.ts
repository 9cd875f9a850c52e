// The SPIFFE Workload API: the protocol (the standard .proto, loaded at run time) and a
// small client. The client is what Trellis' own processes and the tests use; any standard
// client (go-spiffe, spiffe-helper, java-spiffe) talks to the same server.
//
// Every request carries the `workload.spiffe.io: true` metadata the SPIFFE Workload
// Endpoint specification requires (an SSRF guard: a server rejects requests without it).
import { WorkloadApiConfigError } from '../../errors.js';
import { existsSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { JSONWebKeySet } from 'jose';
import { readTlv } from '../x509-builder.js';

/** The security header every Workload API request must carry. */
export const SECURITY_HEADER = 'workload.spiffe.io';
export const SECURITY_HEADER_VALUE = 'true';
/** The message servers answer requests without the header with (SPIRE's wording). */
export const SECURITY_HEADER_MISSING = 'security header missing from request';

/** The environment variable that locates the endpoint (SPIFFE Workload Endpoint spec section 4). */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';

// ---------------------------------------------------------------------------------------
// The protocol: message shapes as proto-loader gives and takes them (keepCase, defaults).

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
export interface X509SvidResponseMessage {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}
export interface X509BundlesResponseMessage {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}
export interface JwtSvidRequestMessage {
  audience: string[];
  spiffe_id: string;
}
export interface JwtSvidMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}
export interface JwtSvidResponseMessage {
  svids: JwtSvidMessage[];
}
export interface JwtBundlesResponseMessage {
  bundles: Record<string, Buffer>;
}
export interface ValidateJwtSvidRequestMessage {
  audience: string;
  svid: string;
}
/** google.protobuf.Value as proto-loader represents it (`kind` names the oneof member set). */
export interface ProtoValue {
  kind?: string;
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values: ProtoValue[] };
}
export interface ProtoStruct {
  fields: Record<string, ProtoValue>;
}
export interface ValidateJwtSvidResponseMessage {
  spiffe_id: string;
  claims: ProtoStruct | null;
}

/**
 * The .proto, resolved from the compiled file (dist/src/identity/workload-api/*.js) back to
 * the source tree (src/identity/workload-api/workload.proto); the build copies nothing.
 * When run from the sources directly (a TS loader), the sibling file is used.
 */
export function workloadProtoPath(): string {
  const candidates = [
    new URL('../../../../src/identity/workload-api/workload.proto', import.meta.url),
    new URL('./workload.proto', import.meta.url),
  ];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  throw new Error(
    `the SPIFFE Workload API definition is missing: looked for ${candidates.map((u) => fileURLToPath(u)).join(' and ')}`,
  );
}

export interface WorkloadApiProto {
  /** The generated client constructor (also carries `.service`, the server definition). */
  readonly SpiffeWorkloadAPI: grpc.ServiceClientConstructor;
}

let cached: WorkloadApiProto | undefined;

/** Loads the Workload API definition once per process. */
export function loadWorkloadApi(): WorkloadApiProto {
  if (cached) return cached;
  // google/protobuf/struct.proto is among the definitions protobufjs bundles, so no includeDirs.
  const def = protoLoader.loadSync(workloadProtoPath(), {
    keepCase: true,
    longs: String,
    enums: Number,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def);
  const ctor = pkg['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor | undefined;
  if (typeof ctor !== 'function') throw new Error('workload.proto defines no SpiffeWorkloadAPI service');
  cached = { SpiffeWorkloadAPI: ctor };
  return cached;
}

// ---------------------------------------------------------------------------------------
// google.protobuf.Struct <-> plain JSON values.

export function toProtoStruct(obj: Readonly<Record<string, unknown>>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined) fields[k] = toProtoValue(v);
  }
  return { fields };
}

export function toProtoValue(v: unknown): ProtoValue {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'bigint') return { numberValue: Number(v) };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toProtoValue) } };
  if (typeof v === 'object') return { structValue: toProtoStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}

export function fromProtoStruct(s: ProtoStruct | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromProtoValue(v);
  return out;
}

export function fromProtoValue(v: ProtoValue): unknown {
  switch (v.kind) {
    case 'numberValue':
      return v.numberValue;
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return fromProtoStruct(v.structValue);
    case 'listValue':
      return (v.listValue?.values ?? []).map(fromProtoValue);
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------
// DER helpers.

/** Splits concatenated DER certificates (the Workload API's `x509_svid` and `bundle` fields). */
export function splitDerCertificates(der: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < der.length) {
    if (der.length - p < 2 || der[p] !== 0x30) throw new Error(`not a DER certificate sequence at byte ${p}`);
    const t = readTlv(der, p);
    if (t.end > der.length || t.end <= p) throw new Error(`truncated DER certificate at byte ${p}`);
    out.push(der.subarray(t.start, t.end));
    p = t.end;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The client.

/** An X.509-SVID as the Workload API delivers it, decoded. */
export interface WorkloadX509Svid {
  readonly spiffeId: string;
  /** Leaf first, then intermediates. DER. */
  readonly chain: readonly Buffer[];
  readonly privateKey: KeyObject;
  /** The trust domain's roots. DER. */
  readonly bundle: readonly Buffer[];
  readonly hint: string;
}

export interface X509SvidUpdate {
  /** Every SVID of the caller; the first is the default identity. */
  readonly svids: readonly WorkloadX509Svid[];
  /** Foreign trust domains' roots, keyed by trust-domain SPIFFE ID. */
  readonly federatedBundles: ReadonlyMap<string, readonly Buffer[]>;
  readonly crl: readonly Buffer[];
}

export interface WorkloadJwtSvid {
  readonly spiffeId: string;
  readonly token: string;
  readonly hint: string;
}

export interface WorkloadApiClientOptions {
  /** Deadline of unary calls and of waiting for a stream's first message (default 10 s). */
  readonly timeoutMs?: number;
}

/** A watch handle: `cancel()` ends the stream. */
export interface Watch {
  cancel(): void;
}

/** A Workload API error: the gRPC status code and details. */
export class WorkloadApiError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${grpc.status[code] ?? code}: ${details}`);
    this.name = 'WorkloadApiError';
  }
}

/**
 * Turns an endpoint address into a grpc-js target. Accepts the SPIFFE forms
 * `unix:///abs/path` and `tcp://ip:port`, and a bare absolute socket path.
 */
export function endpointTarget(address: string): string {
  if (address.startsWith('/')) return `unix://${address}`;
  let u: URL;
  try {
    u = new URL(address);
  } catch {
    throw new WorkloadApiConfigError(
      `invalid Workload API address ${JSON.stringify(address)}: expected unix:///path or tcp://ip:port`,
    );
  }
  if (u.protocol === 'unix:') {
    if (u.host !== '' || u.search !== '' || u.hash !== '' || !u.pathname.startsWith('/')) {
      throw new WorkloadApiConfigError(
        `invalid Workload API address ${JSON.stringify(address)}: a unix address is unix:///absolute/path, with no host, query or fragment`,
      );
    }
    return `unix://${decodeURIComponent(u.pathname)}`;
  }
  if (u.protocol === 'tcp:') {
    if (u.hostname === '' || u.port === '' || (u.pathname !== '' && u.pathname !== '/') || u.search || u.hash) {
      throw new WorkloadApiConfigError(
        `invalid Workload API address ${JSON.stringify(address)}: a tcp address is tcp://ip:port and nothing else`,
      );
    }
    return `${u.hostname}:${u.port}`;
  }
  throw new WorkloadApiConfigError(
    `invalid Workload API address ${JSON.stringify(address)}: the scheme must be unix or tcp`,
  );
}

function securityMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(SECURITY_HEADER, SECURITY_HEADER_VALUE);
  return md;
}

function asWorkloadError(e: unknown): Error {
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se?.code === 'number') return new WorkloadApiError(se.code, se.details ?? se.message ?? '');
  return e instanceof Error ? e : new Error(String(e));
}

function decodeX509Response(m: X509SvidResponseMessage): X509SvidUpdate {
  const svids = m.svids.map((s) => ({
    spiffeId: s.spiffe_id,
    chain: splitDerCertificates(s.x509_svid),
    privateKey: createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' }),
    bundle: splitDerCertificates(s.bundle),
    hint: s.hint,
  }));
  if (svids.length === 0) throw new WorkloadApiError(grpc.status.INTERNAL, 'the response holds no X.509-SVID');
  const federatedBundles = new Map<string, Buffer[]>();
  for (const [td, der] of Object.entries(m.federated_bundles)) federatedBundles.set(td, splitDerCertificates(der));
  return { svids, federatedBundles, crl: m.crl };
}

function decodeX509Bundles(m: X509BundlesResponseMessage): Map<string, Buffer[]> {
  const out = new Map<string, Buffer[]>();
  for (const [td, der] of Object.entries(m.bundles)) out.set(td, splitDerCertificates(der));
  return out;
}

function decodeJwtBundles(m: JwtBundlesResponseMessage): Map<string, JSONWebKeySet> {
  const out = new Map<string, JSONWebKeySet>();
  for (const [td, json] of Object.entries(m.bundles)) out.set(td, JSON.parse(json.toString('utf8')) as JSONWebKeySet);
  return out;
}

type StreamMethod = 'FetchX509SVID' | 'FetchX509Bundles' | 'FetchJWTBundles';
type UnaryMethod = 'FetchJWTSVID' | 'ValidateJWTSVID';
type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;
type GeneratedClient = grpc.Client & {
  [K in StreamMethod]: (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>;
} & {
  [K in UnaryMethod]: (
    req: object,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<unknown>,
  ) => grpc.ClientUnaryCall;
};

export class WorkloadApiClient {
  readonly target: string;
  readonly #client: GeneratedClient;
  readonly #timeoutMs: number;
  readonly #watches = new Set<Watch>();

  /** `address` defaults to $SPIFFE_ENDPOINT_SOCKET, as the specification requires. */
  constructor(address?: string, opts: WorkloadApiClientOptions = {}) {
    const addr = address ?? process.env[SPIFFE_ENDPOINT_SOCKET];
    if (!addr)
      throw new WorkloadApiConfigError(`no Workload API address given and ${SPIFFE_ENDPOINT_SOCKET} is not set`);
    this.target = endpointTarget(addr);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    const { SpiffeWorkloadAPI } = loadWorkloadApi();
    this.#client = new SpiffeWorkloadAPI(this.target, grpc.credentials.createInsecure()) as unknown as GeneratedClient;
  }

  /** The current X.509-SVIDs: the first message of FetchX509SVID. */
  fetchX509Svid(): Promise<X509SvidUpdate> {
    return this.#first('FetchX509SVID', (m) => decodeX509Response(m as X509SvidResponseMessage));
  }

  /**
   * Calls `onUpdate` with every X.509-SVID update (the first one at once). When the stream
   * ends or fails it is re-opened with backoff (as the spec asks of clients), except after
   * InvalidArgument, which the spec says not to retry; `onError` hears every failure.
   */
  watchX509Svid(onUpdate: (u: X509SvidUpdate) => void, onError?: (e: Error) => void): Watch {
    return this.#watch('FetchX509SVID', (m) => onUpdate(decodeX509Response(m as X509SvidResponseMessage)), onError);
  }

  /** The X.509 bundles, keyed by trust-domain SPIFFE ID (the first message of FetchX509Bundles). */
  fetchX509Bundles(): Promise<Map<string, Buffer[]>> {
    return this.#first('FetchX509Bundles', (m) => decodeX509Bundles(m as X509BundlesResponseMessage));
  }

  watchX509Bundles(onUpdate: (b: Map<string, Buffer[]>) => void, onError?: (e: Error) => void): Watch {
    return this.#watch(
      'FetchX509Bundles',
      (m) => onUpdate(decodeX509Bundles(m as X509BundlesResponseMessage)),
      onError,
    );
  }

  /** The JWT bundles (JWKS), keyed by trust-domain SPIFFE ID (the first message of FetchJWTBundles). */
  fetchJwtBundles(): Promise<Map<string, JSONWebKeySet>> {
    return this.#first('FetchJWTBundles', (m) => decodeJwtBundles(m as JwtBundlesResponseMessage));
  }

  watchJwtBundles(onUpdate: (b: Map<string, JSONWebKeySet>) => void, onError?: (e: Error) => void): Watch {
    return this.#watch('FetchJWTBundles', (m) => onUpdate(decodeJwtBundles(m as JwtBundlesResponseMessage)), onError);
  }

  /** A JWT-SVID for `audience` (the default identity's, or `spiffeId`'s). */
  async fetchJwtSvid(audience: string | readonly string[], spiffeId?: string): Promise<WorkloadJwtSvid> {
    const req: JwtSvidRequestMessage = {
      audience: typeof audience === 'string' ? [audience] : [...audience],
      spiffe_id: spiffeId ?? '',
    };
    const res = (await this.#unary('FetchJWTSVID', req)) as JwtSvidResponseMessage;
    const first = res.svids[0];
    if (!first) throw new WorkloadApiError(grpc.status.INTERNAL, 'the response holds no JWT-SVID');
    return { spiffeId: first.spiffe_id, token: first.svid, hint: first.hint };
  }

  /** Validates `token` for `audience` through the Workload API; rejects with InvalidArgument when invalid. */
  async validateJwtSvid(
    token: string,
    audience: string,
  ): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
    const req: ValidateJwtSvidRequestMessage = { audience, svid: token };
    const res = (await this.#unary('ValidateJWTSVID', req)) as ValidateJwtSvidResponseMessage;
    return { spiffeId: res.spiffe_id, claims: fromProtoStruct(res.claims) };
  }

  /** Cancels every watch and closes the channel. */
  close(): void {
    for (const w of [...this.#watches]) w.cancel();
    this.#client.close();
  }

  #unary(method: UnaryMethod, req: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#client[method](req, securityMetadata(), { deadline: Date.now() + this.#timeoutMs }, (err, value) =>
        err ? reject(asWorkloadError(err)) : resolve(value),
      );
    });
  }

  #first<T>(method: StreamMethod, decode: (m: unknown) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const call = this.#client[method]({}, securityMetadata());
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        call.cancel();
        fn();
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new WorkloadApiError(grpc.status.DEADLINE_EXCEEDED, `no ${method} response within ${this.#timeoutMs} ms`),
            ),
          ),
        this.#timeoutMs,
      );
      call.on('data', (m: unknown) => {
        try {
          const v = decode(m);
          finish(() => resolve(v));
        } catch (e) {
          finish(() => reject(asWorkloadError(e)));
        }
      });
      call.on('error', (e) => finish(() => reject(asWorkloadError(e))));
      call.on('end', () =>
        finish(() => reject(new WorkloadApiError(grpc.status.UNAVAILABLE, `${method} stream ended before a response`))),
      );
    });
  }

  #watch(method: StreamMethod, onMessage: (m: unknown) => void, onError?: (e: Error) => void): Watch {
    let cancelled = false;
    let call: grpc.ClientReadableStream<unknown> | undefined;
    let retry: NodeJS.Timeout | undefined;
    let failures = 0;
    const watch: Watch = {
      cancel: () => {
        cancelled = true;
        clearTimeout(retry);
        call?.cancel();
        this.#watches.delete(watch);
      },
    };
    const fail = (e: Error): void => {
      if (cancelled) return;
      onError?.(e);
      if (cancelled) return; // onError may cancel
      if (e instanceof WorkloadApiError && e.code === grpc.status.INVALID_ARGUMENT) {
        watch.cancel();
        return;
      }
      failures++;
      const backoff = Math.min(30_000, 250 * 2 ** Math.min(failures - 1, 7)) * (0.8 + 0.4 * Math.random());
      retry = setTimeout(open, backoff);
    };
    const open = (): void => {
      if (cancelled) return;
      const c = this.#client[method]({}, securityMetadata());
      call = c;
      let ended = false;
      c.on('data', (m: unknown) => {
        if (cancelled) return;
        failures = 0;
        try {
          onMessage(m);
        } catch (e) {
          onError?.(asWorkloadError(e));
        }
      });
      c.on('error', (e) => {
        if (ended) return;
        ended = true;
        fail(asWorkloadError(e));
      });
      c.on('end', () => {
        if (ended) return;
        ended = true;
        fail(new WorkloadApiError(grpc.status.UNAVAILABLE, `${method} stream ended`));
      });
    };
    this.#watches.add(watch);
    open();
    return watch;
  }
}
