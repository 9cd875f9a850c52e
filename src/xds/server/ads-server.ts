// The ADS server: envoy.service.discovery.v3.AggregatedDiscoveryService, both
// StreamAggregatedResources (state-of-the-world) and DeltaAggregatedResources (incremental:
// only changed resources and the names of removed ones are sent). One grpc-js Server, insecure credentials (grpc-js-xds has no TLS channel
// credentials for the control plane). Snapshots come from a SnapshotSource; a change is
// debounced and pushed to the affected streams, one unacknowledged response per type per
// stream at most (latest version only), so a slow or stuck client costs O(types) memory and
// never stalls the others.
import * as grpc from '@grpc/grpc-js';
import { TYPE_URLS, type Snapshot, type SnapshotSource } from '../snapshot.js';
import {
  encodeDeltaDiscoveryResponse,
  encodeDeltaResourceField,
  encodeDiscoveryResponse,
  encodeResourceField,
  loadXdsProtos,
  type XdsProtos,
} from './protos.js';
import {
  ClientState,
  type AdsTypeStatus,
  type DiscoveryRequestMessage,
  type NackRecord,
  type NodeInfo,
  type StreamCounters,
  type TypeSubscription,
} from './client-state.js';
import {
  DeltaClientState,
  DeltaLimitError,
  type DeltaDiscoveryRequestMessage,
  type DeltaTypeSubscription,
} from './delta-state.js';

export const DEFAULT_ADS_ADDRESS = '127.0.0.1:15010';
export const DEFAULT_DEBOUNCE_MS = 100;
/** Responses handed to grpc-js but not yet flushed, per stream, before we wait. */
export const DEFAULT_MAX_QUEUE = 8;
/** Distinct type URLs one stream may use (keeps per-stream state bounded). */
export const MAX_TYPES_PER_STREAM = 64;

export interface AdsServerOptions {
  readonly source: SnapshotSource;
  /** host:port to listen on; port 0 picks one. Default 127.0.0.1:15010. */
  readonly address?: string;
  /** Changes within this window become one push (quiet period; at most 10x this after the first change). Default 100. */
  readonly debounceMs?: number;
  /**
   * Per stream, how many responses may be written and not yet flushed to the transport
   * before further sends wait (as when write() returns false and we wait for 'drain').
   * Responses are at most one per type anyway. Default 8.
   */
  readonly maxQueue?: number;
  /** Told of responses, ACKs and NACKs as they happen (the control plane's /metrics). */
  readonly metrics?: AdsMetricsSink;
}

/** Observer of protocol events; called synchronously, so it must be cheap and must not throw. */
export interface AdsMetricsSink {
  /** A response was written; `buildSeconds` is the time to plan and encode it. */
  responseSent(typeUrl: string, buildSeconds: number): void;
  /** A client rejected the last response of the type. */
  nack(typeUrl: string, nodeId: string): void;
  /**
   * A client ACKed the last response of the type. `convergenceSeconds` is set on the ACK
   * that completes a snapshot change for the client (every type the change touched is
   * ACKed): the time since the first change of that push round. Answers to a client's own
   * requests carry no change.
   */
  ack(typeUrl: string, convergenceSeconds: number | undefined): void;
}

/** Server-wide counters (they survive stream ends). */
export interface AdsServerStats {
  readonly connectedStreams: number;
  readonly streamsOpened: number;
  readonly streamsClosed: number;
  /** SnapshotSource change notifications received. */
  readonly changeEvents: number;
  /** Debounced push rounds (a burst of changes is one round). */
  readonly pushRounds: number;
  /** Responses carrying a new version of an unchanged subscription. */
  readonly pushes: number;
  readonly responses: number;
  readonly resourcesSent: number;
  /** Names sent in removed_resources (incremental streams). */
  readonly resourcesRemoved: number;
  /** Serialized (Delta)DiscoveryResponse bytes (without the 5-byte gRPC frame header). */
  readonly bytesSent: number;
  readonly requests: number;
  readonly acks: number;
  readonly nacks: number;
  readonly staleRequests: number;
  /** Responses held back because a resource could not be encoded. */
  readonly encodeErrors: number;
  readonly lastEncodeError: string | undefined;
}

export interface AdsTypeInfo {
  readonly typeUrl: string;
  /** '*' for wildcard; [] after the client unsubscribed from everything of this type. */
  readonly subscribed: readonly string[] | '*';
  readonly status: AdsTypeStatus;
  /** The node's snapshot version of this type now (undefined when the node has no snapshot). */
  readonly currentVersion: string | undefined;
  readonly sentVersion: string | undefined;
  readonly sentNonce: string | undefined;
  readonly sentAt: Date | undefined;
  /** Names of the resources in the last response (incremental: only the new or changed ones). */
  readonly sentResources: readonly string[];
  /** removed_resources of the last response (always [] on state-of-the-world streams). */
  readonly removedResources: readonly string[];
  readonly ackedVersion: string | undefined;
  readonly ackedAt: Date | undefined;
  /** Set when status is NACKED: the error and the version the client rejected. */
  readonly nack: NackRecord | undefined;
  /** The most recent NACK even if later responses were ACKed. */
  readonly lastNack: NackRecord | undefined;
  readonly responses: number;
  readonly acks: number;
  readonly nacks: number;
}

export interface AdsClientInfo {
  readonly streamId: string;
  /** StreamAggregatedResources ('sotw') or DeltaAggregatedResources ('delta'). */
  readonly protocol: 'sotw' | 'delta';
  readonly peer: string;
  readonly connectedAt: Date;
  /** '' until the first request (which must carry node) arrived. */
  readonly nodeId: string;
  readonly cluster: string;
  readonly locality: NodeInfo['locality'];
  readonly userAgentName: string;
  readonly userAgentVersion: string;
  readonly clientFeatures: readonly string[];
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly types: readonly AdsTypeInfo[];
  readonly counters: Readonly<StreamCounters>;
}

/** Push order: clusters and their endpoints before the listeners and routes that use them (Istio's order). */
const PUSH_ORDER: readonly string[] = [TYPE_URLS.cluster, TYPE_URLS.endpoint, TYPE_URLS.listener, TYPE_URLS.route];

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequestMessage, Buffer>;
type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequestMessage, Buffer>;
type AnyCall = grpc.ServerDuplexStream<unknown, Buffer>;

interface StreamEntry {
  readonly state: ClientState | DeltaClientState;
  readonly call: AnyCall;
  closed: boolean;
  /** write() returned false: wait for 'drain'. */
  blocked: boolean;
  /** Writes not yet flushed (their callbacks pending). */
  inFlight: number;
  /** A send was held back by blocked/inFlight: flush again when they clear. */
  deferred: boolean;
  /** Per type (metrics only): when the change not yet sent to this stream happened (ms epoch). */
  readonly changeAt: Map<string, number>;
  /** Per type (metrics only): the change the outstanding response carries, until its ACK/NACK. */
  readonly sentChange: Map<string, number>;
}

type MutableStats = { -readonly [K in keyof AdsServerStats]: AdsServerStats[K] };

/** What the server knows of a node when it asks for its snapshot. */
interface NodeIdentity {
  readonly id: string;
  readonly locality: { readonly region: string; readonly zone: string; readonly sub_zone: string };
}

export class AdsServer {
  #protos: XdsProtos | undefined;
  #server: grpc.Server | undefined;
  #ownsServer = false;
  #source: SnapshotSource | undefined;
  #unsubscribe: (() => void) | undefined;
  #debounceMs = DEFAULT_DEBOUNCE_MS;
  #maxQueue = DEFAULT_MAX_QUEUE;
  #metrics: AdsMetricsSink | undefined;
  #port: number | undefined;
  #closed = false;
  readonly #streams = new Map<string, StreamEntry>();
  #nextStream = 1;
  #nextNonce = 1;
  // Debounce state.
  #pendingNodes: Set<string> | '*' | undefined;
  #timer: NodeJS.Timeout | undefined;
  #firstChangeAt: number | undefined;
  readonly #stats: MutableStats = {
    connectedStreams: 0,
    streamsOpened: 0,
    streamsClosed: 0,
    changeEvents: 0,
    pushRounds: 0,
    pushes: 0,
    responses: 0,
    resourcesSent: 0,
    resourcesRemoved: 0,
    bytesSent: 0,
    requests: 0,
    acks: 0,
    nacks: 0,
    staleRequests: 0,
    encodeErrors: 0,
    lastEncodeError: undefined,
  };

  /** The bound port once started. */
  get port(): number | undefined {
    return this.#port;
  }

  /** Creates a grpc-js Server, registers ADS on it and listens. Resolves with the bound port. */
  async start(options: AdsServerOptions): Promise<number> {
    if (this.#server) throw new Error('AdsServer.start: already started');
    const server = new grpc.Server();
    this.register(server, options);
    this.#ownsServer = true;
    const address = options.address ?? DEFAULT_ADS_ADDRESS;
    try {
      this.#port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      );
    } catch (e) {
      await this.close();
      throw new Error(`the xDS server cannot listen on ${address}: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
    return this.#port;
  }

  /**
   * Adds the ADS service to an existing grpc-js Server (for sharing a port with other
   * services); the caller binds and shuts down that server, `close()` only ends our streams.
   */
  register(server: grpc.Server, options: AdsServerOptions): void {
    if (this.#server) throw new Error('AdsServer: already registered on a server');
    if (this.#closed) throw new Error('AdsServer: closed');
    this.#protos = loadXdsProtos();
    this.#server = server;
    this.#source = options.source;
    this.#debounceMs = Math.max(0, options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
    this.#maxQueue = Math.max(1, Math.floor(options.maxQueue ?? DEFAULT_MAX_QUEUE));
    this.#metrics = options.metrics;
    // Responses are serialized by us (resource bytes are cached and shared between streams),
    // so the method's serializer passes Buffers through.
    const base = this.#protos.AdsClient.service;
    const service: grpc.ServiceDefinition = Object.fromEntries(
      Object.entries(base).map(([name, method]) => {
        const serialize = method.responseSerialize;
        return [
          name,
          { ...method, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) },
        ];
      }),
    );
    server.addService(service, {
      StreamAggregatedResources: (call: AdsCall) => this.#onStream(call as AnyCall),
      DeltaAggregatedResources: (call: DeltaCall) => this.#onStream(call as AnyCall, 'delta'),
    });
    this.#unsubscribe = options.source.onChange((nodeIds) => this.#onChange(nodeIds));
  }

  /** Ends every stream and, when start() created the server, shuts it down. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const entry of [...this.#streams.values()]) {
      this.#drop(entry);
      try {
        entry.call.end();
      } catch {
        // already ended
      }
    }
    const server = this.#server;
    if (server && this.#ownsServer) {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    }
  }

  stats(): AdsServerStats {
    return { ...this.#stats, connectedStreams: this.#streams.size };
  }

  /** One entry per connected stream, in connection order. */
  clients(): AdsClientInfo[] {
    const out: AdsClientInfo[] = [];
    for (const entry of this.#streams.values()) {
      const s = entry.state;
      const node = s.node;
      const snapshot = node ? this.#snapshot(node) : undefined;
      const types = [...(s.types as ReadonlyMap<string, TypeSubscription | DeltaTypeSubscription>).values()]
        .sort((a, b) => typeRank(a.typeUrl) - typeRank(b.typeUrl) || (a.typeUrl < b.typeUrl ? -1 : 1))
        .map((t) =>
          s instanceof DeltaClientState
            ? deltaTypeInfo(t as DeltaTypeSubscription, snapshot)
            : typeInfo(t as TypeSubscription, snapshot),
        );
      out.push({
        streamId: s.streamId,
        protocol: s instanceof DeltaClientState ? 'delta' : 'sotw',
        peer: s.peer,
        connectedAt: s.connectedAt,
        nodeId: node?.id ?? '',
        cluster: node?.cluster ?? '',
        locality: node?.locality ?? { region: '', zone: '', sub_zone: '' },
        userAgentName: node?.userAgentName ?? '',
        userAgentVersion: node?.userAgentVersion ?? '',
        clientFeatures: node?.clientFeatures ?? [],
        metadata: node?.metadata ?? {},
        types,
        counters: { ...s.counters },
      });
    }
    return out;
  }

  // -------------------------------------------------------------------------------------

  #snapshot(node: NodeIdentity): Snapshot | undefined {
    try {
      return this.#source?.snapshot(node.id, { locality: node.locality });
    } catch {
      return undefined;
    }
  }

  #onStream(call: AnyCall, protocol: 'sotw' | 'delta' = 'sotw'): void {
    if (this.#closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the xDS server is shutting down' });
      return;
    }
    let peer = '';
    try {
      peer = call.getPeer();
    } catch {
      // unknown peer
    }
    const id = String(this.#nextStream++);
    const now = new Date();
    const entry: StreamEntry = {
      state: protocol === 'delta' ? new DeltaClientState(id, peer, now) : new ClientState(id, peer, now),
      call,
      closed: false,
      blocked: false,
      inFlight: 0,
      deferred: false,
      changeAt: new Map(),
      sentChange: new Map(),
    };
    this.#streams.set(id, entry);
    this.#stats.streamsOpened++;
    call.on('data', (req: DiscoveryRequestMessage | DeltaDiscoveryRequestMessage) => {
      try {
        if (entry.state instanceof DeltaClientState) this.#onDeltaRequest(entry, entry.state, req);
        else this.#onRequest(entry, req as DiscoveryRequestMessage);
      } catch (e) {
        if (e instanceof DeltaLimitError) {
          this.#fail(entry, grpc.status.RESOURCE_EXHAUSTED, e.message);
          return;
        }
        this.#fail(entry, grpc.status.INTERNAL, `xDS server error: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
    call.on('end', () => {
      this.#drop(entry);
      call.end();
    });
    call.on('cancelled', () => this.#drop(entry));
    call.on('error', () => this.#drop(entry));
    call.on('close', () => this.#drop(entry));
    call.on('drain', () => {
      entry.blocked = false;
      this.#resume(entry);
    });
  }

  #drop(entry: StreamEntry): void {
    if (entry.closed) return;
    entry.closed = true;
    if (this.#streams.delete(entry.state.streamId)) this.#stats.streamsClosed++;
  }

  #fail(entry: StreamEntry, code: grpc.status, details: string): void {
    if (entry.closed) return;
    this.#drop(entry);
    entry.call.emit('error', { code, details });
  }

  #onRequest(entry: StreamEntry, req: DiscoveryRequestMessage): void {
    if (entry.closed) return;
    const state = entry.state as ClientState;
    if (!state.node) {
      if (!req.node?.id) {
        this.#fail(entry, grpc.status.INVALID_ARGUMENT, 'the first DiscoveryRequest of a stream must carry node.id');
        return;
      }
      state.setNode(req.node);
    }
    const typeUrl = req.type_url;
    if (!typeUrl) {
      this.#fail(entry, grpc.status.INVALID_ARGUMENT, 'DiscoveryRequest.type_url is required on the aggregated stream');
      return;
    }
    if (!state.types.has(typeUrl) && state.types.size >= MAX_TYPES_PER_STREAM) {
      this.#fail(entry, grpc.status.RESOURCE_EXHAUSTED, `more than ${MAX_TYPES_PER_STREAM} type URLs on one stream`);
      return;
    }
    this.#stats.requests++;
    const kind = state.applyRequest({ ...req, type_url: typeUrl }, new Date());
    if (kind === 'stale') {
      this.#stats.staleRequests++;
      return;
    }
    if (kind === 'ack') this.#stats.acks++;
    else if (kind === 'nack') this.#stats.nacks++;
    if (kind === 'ack' || kind === 'nack') this.#replied(entry, typeUrl, kind);
    this.#send(entry, typeUrl);
  }

  /**
   * One request of an incremental stream. Unlike state-of-the-world, its subscription
   * deltas count even with a stale nonce; whatever is due is sent (or waits for the ACK of
   * the outstanding response of the type).
   */
  #onDeltaRequest(entry: StreamEntry, state: DeltaClientState, req: DeltaDiscoveryRequestMessage): void {
    if (entry.closed) return;
    if (!state.node) {
      if (!req.node?.id) {
        this.#fail(
          entry,
          grpc.status.INVALID_ARGUMENT,
          'the first DeltaDiscoveryRequest of a stream must carry node.id',
        );
        return;
      }
      state.setNode(req.node);
    }
    const typeUrl = req.type_url;
    if (!typeUrl) {
      this.#fail(
        entry,
        grpc.status.INVALID_ARGUMENT,
        'DeltaDiscoveryRequest.type_url is required on the aggregated stream',
      );
      return;
    }
    if (!state.types.has(typeUrl) && state.types.size >= MAX_TYPES_PER_STREAM) {
      this.#fail(entry, grpc.status.RESOURCE_EXHAUSTED, `more than ${MAX_TYPES_PER_STREAM} type URLs on one stream`);
      return;
    }
    this.#stats.requests++;
    const kind = state.applyRequest({ ...req, type_url: typeUrl }, new Date());
    if (kind === 'stale') this.#stats.staleRequests++;
    else if (kind === 'ack') this.#stats.acks++;
    else if (kind === 'nack') this.#stats.nacks++;
    if (kind === 'ack' || kind === 'nack') this.#replied(entry, typeUrl, kind);
    this.#send(entry, typeUrl);
  }

  /** Sends the type's response if one is due and the stream can take it. */
  #send(entry: StreamEntry, typeUrl: string): void {
    if (entry.closed) return;
    const node = entry.state.node;
    if (!node || !entry.state.types.has(typeUrl)) return;
    if (entry.blocked || entry.inFlight >= this.#maxQueue) {
      entry.deferred = true;
      return;
    }
    if (entry.state instanceof DeltaClientState) {
      this.#sendDelta(entry, entry.state, entry.state.types.get(typeUrl)!, node);
      return;
    }
    const started = performance.now();
    const state = entry.state;
    const t = state.types.get(typeUrl)!;
    const snapshot = this.#snapshot(node);
    const plan = t.plan(snapshot);
    if (!plan || !snapshot) {
      // Nothing due and nothing outstanding: the change did not touch this type.
      if (!t.pending) entry.changeAt.delete(typeUrl);
      return;
    }
    const all = snapshot.resources(typeUrl);
    const fields: Buffer[] = [];
    try {
      for (const name of plan.resourceNames) fields.push(encodeResourceField(all.get(name)!));
    } catch (e) {
      // A ResourceEncodingError. Never send a partial response: for LDS/CDS a missing resource means "deleted".
      // The client stays on its last version; the next snapshot change retries.
      this.#stats.encodeErrors++;
      this.#stats.lastEncodeError = e instanceof Error ? e.message : String(e);
      return;
    }
    const nonce = String(this.#nextNonce++);
    const bytes = encodeDiscoveryResponse({ version_info: plan.version, type_url: typeUrl, nonce }, fields);
    const push = state.recordSent(t, {
      version: plan.version,
      nonce,
      at: new Date(),
      resourceNames: plan.resourceNames,
      bytes: bytes.length,
    });
    this.#stats.responses++;
    this.#stats.resourcesSent += plan.resourceNames.length;
    this.#stats.bytesSent += bytes.length;
    if (push) this.#stats.pushes++;
    this.#recordSent(entry, typeUrl, started);
    this.#write(entry, bytes);
  }

  /**
   * The incremental response of one type: the resources the client does not hold at their
   * current version and the names that disappeared. A resource that cannot be encoded is
   * left out (and held back until its version changes): in incremental xDS an absent
   * resource means "unchanged", never "deleted".
   */
  #sendDelta(entry: StreamEntry, state: DeltaClientState, t: DeltaTypeSubscription, node: NodeIdentity): void {
    const started = performance.now();
    const snapshot = this.#snapshot(node);
    const plan = t.plan(snapshot);
    if (!plan || !snapshot) {
      if (!t.pending) entry.changeAt.delete(t.typeUrl);
      return;
    }
    const all = snapshot.resources(t.typeUrl);
    const fields: Buffer[] = [];
    const sentNames: string[] = [];
    for (const name of plan.resourceNames) {
      const r = all.get(name)!;
      try {
        fields.push(encodeDeltaResourceField(r));
        sentNames.push(name);
      } catch (e) {
        this.#stats.encodeErrors++;
        this.#stats.lastEncodeError = e instanceof Error ? e.message : String(e);
        t.hold(name, r.version);
      }
    }
    if (sentNames.length === 0 && plan.removedNames.length === 0) {
      if (!t.pending) entry.changeAt.delete(t.typeUrl);
      return;
    }
    const nonce = String(this.#nextNonce++);
    const bytes = encodeDeltaDiscoveryResponse(
      { system_version_info: plan.version, type_url: t.typeUrl, nonce, removed_resources: plan.removedNames },
      fields,
    );
    const push = state.recordSent(
      t,
      {
        version: plan.version,
        nonce,
        at: new Date(),
        resourceNames: sentNames,
        removedNames: plan.removedNames,
        bytes: bytes.length,
      },
      all,
    );
    this.#stats.responses++;
    this.#stats.resourcesSent += sentNames.length;
    this.#stats.resourcesRemoved += plan.removedNames.length;
    this.#stats.bytesSent += bytes.length;
    if (push) this.#stats.pushes++;
    this.#recordSent(entry, t.typeUrl, started);
    this.#write(entry, bytes);
  }

  /** Metrics of a response handed to the stream: it now carries the pending change of its type. */
  #recordSent(entry: StreamEntry, typeUrl: string, started: number): void {
    if (!this.#metrics) return;
    const changeAt = entry.changeAt.get(typeUrl);
    entry.changeAt.delete(typeUrl);
    if (changeAt === undefined) entry.sentChange.delete(typeUrl);
    else entry.sentChange.set(typeUrl, changeAt);
    this.#metrics.responseSent(typeUrl, (performance.now() - started) / 1000);
  }

  /** Metrics of an ACK/NACK (always of the last response of the type: stale nonces never get here). */
  #replied(entry: StreamEntry, typeUrl: string, kind: 'ack' | 'nack'): void {
    if (!this.#metrics) return;
    const changeAt = entry.sentChange.get(typeUrl);
    entry.sentChange.delete(typeUrl);
    if (kind === 'nack') {
      this.#metrics.nack(typeUrl, entry.state.node?.id ?? '');
      return;
    }
    // One observation per change and client, once no type still waits for that change (or an older one).
    const waiting =
      changeAt === undefined || [...entry.changeAt.values(), ...entry.sentChange.values()].some((at) => at <= changeAt);
    this.#metrics.ack(typeUrl, waiting ? undefined : Math.max(0, Date.now() - changeAt) / 1000);
  }

  #write(entry: StreamEntry, bytes: Buffer): void {
    entry.inFlight++;
    const ok = entry.call.write(bytes, () => {
      entry.inFlight--;
      if (entry.deferred && !entry.blocked && entry.inFlight < this.#maxQueue) this.#resume(entry);
    });
    if (!ok) entry.blocked = true;
  }

  #resume(entry: StreamEntry): void {
    if (!entry.deferred) return;
    entry.deferred = false;
    this.#sendAll(entry);
  }

  #sendAll(entry: StreamEntry): void {
    const types = [...entry.state.types.keys()].sort((a, b) => typeRank(a) - typeRank(b));
    for (const typeUrl of types) this.#send(entry, typeUrl);
  }

  #onChange(nodeIds: readonly string[] | '*'): void {
    if (this.#closed) return;
    this.#stats.changeEvents++;
    if (nodeIds === '*') this.#pendingNodes = '*';
    else if (this.#pendingNodes !== '*') {
      this.#pendingNodes ??= new Set();
      for (const id of nodeIds) this.#pendingNodes.add(id);
    }
    // Quiet period of debounceMs, but never more than 10x that after the first change of a burst.
    const now = Date.now();
    this.#firstChangeAt ??= now;
    const wait = Math.max(0, Math.min(this.#debounceMs, this.#firstChangeAt + this.#debounceMs * 10 - now));
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#push(), wait);
  }

  #push(): void {
    const nodes = this.#pendingNodes;
    const changedAt = this.#firstChangeAt ?? Date.now();
    this.#pendingNodes = undefined;
    this.#firstChangeAt = undefined;
    this.#timer = undefined;
    if (this.#closed || nodes === undefined) return;
    this.#stats.pushRounds++;
    for (const entry of [...this.#streams.values()]) {
      const id = entry.state.node?.id;
      if (id === undefined || (nodes !== '*' && !nodes.has(id))) continue;
      // Every type may be affected; #send forgets the change for types it turns out not to touch.
      // An older change not yet delivered (a response still outstanding) keeps its earlier time.
      if (this.#metrics)
        for (const typeUrl of entry.state.types.keys())
          if (!entry.changeAt.has(typeUrl)) entry.changeAt.set(typeUrl, changedAt);
      this.#sendAll(entry);
    }
  }
}

function typeRank(typeUrl: string): number {
  const i = PUSH_ORDER.indexOf(typeUrl);
  return i === -1 ? PUSH_ORDER.length : i;
}

function typeInfo(t: TypeSubscription, snapshot: Snapshot | undefined): AdsTypeInfo {
  const current = snapshot ? snapshot.version(t.typeUrl) || undefined : undefined;
  return describeType(t, t.status(current), current, []);
}

function deltaTypeInfo(t: DeltaTypeSubscription, snapshot: Snapshot | undefined): AdsTypeInfo {
  const current = snapshot ? snapshot.version(t.typeUrl) || undefined : undefined;
  return describeType(t, t.status(snapshot), current, t.sent?.removedNames ?? []);
}

/** The introspection record of one type of one stream, for either protocol. */
function describeType(
  t: TypeSubscription | DeltaTypeSubscription,
  status: AdsTypeInfo['status'],
  current: string | undefined,
  removedResources: readonly string[],
): AdsTypeInfo {
  return {
    typeUrl: t.typeUrl,
    subscribed: t.subscription,
    status,
    currentVersion: current,
    sentVersion: t.sent?.version,
    sentNonce: t.sent?.nonce,
    sentAt: t.sent?.at,
    sentResources: t.sent?.resourceNames ?? [],
    removedResources: [...removedResources],
    ackedVersion: t.acked?.version,
    ackedAt: t.acked?.at,
    nack: status === 'NACKED' ? t.lastNack : undefined,
    lastNack: t.lastNack,
    responses: t.responses,
    acks: t.acks,
    nacks: t.nacks,
  };
}
