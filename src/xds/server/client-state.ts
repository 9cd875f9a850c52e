// Per-stream, per-type-URL state of a state-of-the-world ADS conversation (xDS protocol,
// "ACK/NACK and resource type instance version" and "How the client specifies what
// resources to return"). Pure: no I/O, no timers; the server feeds it requests and asks it
// what (if anything) to send.
import type { Snapshot } from '../snapshot.js';

// ---------------------------------------------------------------------------------------
// Messages as proto-loader gives them (keepCase, longs/enums as strings, no defaults, oneofs).

/** google.protobuf.Value / Struct as proto-loader decodes them (keepCase). */
export interface ProtoValueMessage {
  null_value?: string;
  number_value?: number;
  string_value?: string;
  bool_value?: boolean;
  struct_value?: ProtoStructMessage;
  list_value?: { values?: ProtoValueMessage[] };
}
export interface ProtoStructMessage {
  fields?: Record<string, ProtoValueMessage>;
}

export interface LocalityMessage {
  region?: string;
  zone?: string;
  sub_zone?: string;
}

export interface NodeMessage {
  id?: string;
  cluster?: string;
  metadata?: ProtoStructMessage | null;
  locality?: LocalityMessage | null;
  user_agent_name?: string;
  user_agent_version?: string;
  user_agent_build_version?: { version?: unknown; metadata?: ProtoStructMessage } | null;
  client_features?: string[];
}

export interface DiscoveryRequestMessage {
  version_info?: string;
  node?: NodeMessage | null;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

/** google.protobuf.Struct -> plain JSON. */
export function structToJson(s: ProtoStructMessage | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: ProtoValueMessage): unknown {
  // With oneofs, `kind` names the member that is set; read it first (a member may also be
  // present with its default when another is set).
  const kind = (v as { kind?: unknown }).kind;
  if (typeof kind === 'string' && kind !== 'kind' && kind in v) {
    const member = (v as Record<string, unknown>)[kind];
    if (kind === 'struct_value') return structToJson(member as ProtoStructMessage);
    if (kind === 'list_value') return ((member as { values?: ProtoValueMessage[] }).values ?? []).map(valueToJson);
    if (kind === 'null_value') return null;
    return member;
  }
  if (v.string_value !== undefined) return v.string_value;
  if (v.number_value !== undefined) return v.number_value;
  if (v.bool_value !== undefined) return v.bool_value;
  if (v.struct_value !== undefined) return structToJson(v.struct_value);
  if (v.list_value !== undefined) return (v.list_value.values ?? []).map(valueToJson);
  return null;
}

// ---------------------------------------------------------------------------------------
// Per type URL.

/**
 * SYNCED: the client ACKed the snapshot's current version (for its current subscription).
 * STALE: a response is waiting for its ACK/NACK, or the snapshot moved on since the ACK.
 * NACKED: the client rejected the last response (see `nack`).
 * NOT_SENT: nothing has been sent for this type yet.
 * A type the client unsubscribed from entirely is owed nothing: SYNCED unless a response is
 * still pending (STALE) or the last one was rejected (NACKED).
 */
export type AdsTypeStatus = 'SYNCED' | 'STALE' | 'NACKED' | 'NOT_SENT';

export type RequestKind =
  /** response_nonce set, something was sent for the type, and it is not the last nonce: ignored entirely. */
  | 'stale'
  /** The first request of the type on this stream (or any request without a nonce). */
  | 'initial'
  /** An ACK of the last response (possibly with a subscription change). */
  | 'ack'
  /** A NACK of the last response (possibly with a subscription change). */
  | 'nack'
  /** A further request quoting the last nonce after it was already ACKed/NACKed (a subscription change, or a repeat). */
  | 'update';

export interface SentRecord {
  readonly version: string;
  readonly nonce: string;
  readonly at: Date;
  /** The names of the resources in the response. */
  readonly resourceNames: readonly string[];
  readonly bytes: number;
}

export interface NackRecord {
  /** The version the client rejected (what we sent with that nonce). */
  readonly version: string;
  readonly nonce: string;
  readonly code: number;
  readonly message: string;
  readonly at: Date;
  /** The version the client says it still runs (`version_info` of the NACK). */
  readonly clientVersion: string;
}

export interface PlannedResponse {
  readonly version: string;
  readonly resourceNames: readonly string[];
}

const UNSET = Symbol('unset');

export class TypeSubscription {
  readonly typeUrl: string;
  #requested = false;
  #wildcard = false;
  /** Wildcard because the first request had no names (legacy wildcard, Envoy's). */
  #legacyWildcard = false;
  #names = new Set<string>();
  /** The subscription the last response answered (UNSET after an unsubscribe-all: resend on resubscribe). */
  #sentKey: string | typeof UNSET = UNSET;
  #sent: SentRecord | undefined;
  #pending = false;
  #lastOutcome: 'none' | 'ack' | 'nack' = 'none';
  #acked: { version: string; nonce: string; at: Date } | undefined;
  #nack: NackRecord | undefined;
  responses = 0;
  acks = 0;
  nacks = 0;

  constructor(typeUrl: string) {
    this.typeUrl = typeUrl;
  }

  /** True when the client wants any resource of this type. */
  get subscribed(): boolean {
    return this.#wildcard || this.#names.size > 0;
  }
  get wildcard(): boolean {
    return this.#wildcard;
  }
  /** '*' for a wildcard subscription, else the sorted names (empty: unsubscribed). */
  get subscription(): string[] | '*' {
    return this.#wildcard ? '*' : [...this.#names].sort();
  }
  get sent(): SentRecord | undefined {
    return this.#sent;
  }
  /** A response was sent and its ACK/NACK has not arrived. */
  get pending(): boolean {
    return this.#pending;
  }
  get acked(): { version: string; nonce: string; at: Date } | undefined {
    return this.#acked;
  }
  /** The last NACK (kept after later ACKs, for history; `status` says whether it is current). */
  get lastNack(): NackRecord | undefined {
    return this.#nack;
  }
  get lastOutcome(): 'none' | 'ack' | 'nack' {
    return this.#lastOutcome;
  }

  #key(): string {
    return this.#wildcard ? '*' : [...this.#names].sort().join('\n');
  }

  /** Applies one request of this type. A 'stale' request changes nothing. */
  applyRequest(req: DiscoveryRequestMessage, now: Date): RequestKind {
    // A nonce is checked only once something was sent for the type on this stream (as
    // go-control-plane does): a client resuming on a new stream may quote an old one.
    const nonce = this.#sent ? (req.response_nonce ?? '') : '';
    if (nonce !== '' && nonce !== this.#sent?.nonce) return 'stale';
    let kind: RequestKind = 'initial';
    if (nonce !== '') {
      kind = 'update';
      if (this.#pending) {
        this.#pending = false;
        const version = req.version_info ?? '';
        if (req.error_detail) {
          kind = 'nack';
          this.nacks++;
          this.#lastOutcome = 'nack';
          this.#nack = {
            version: this.#sent!.version,
            nonce,
            code: req.error_detail.code ?? 0,
            message: req.error_detail.message ?? '',
            at: now,
            clientVersion: version,
          };
          // Partial acceptance: a NACK's version_info is what the client runs now.
          if (version !== '') this.#acked = { version, nonce, at: now };
        } else {
          kind = 'ack';
          this.acks++;
          this.#lastOutcome = 'ack';
          this.#acked = { version, nonce, at: now };
        }
      }
    }
    this.#applyNames(req.resource_names ?? []);
    return kind;
  }

  #applyNames(names: readonly string[]): void {
    const first = !this.#requested;
    this.#requested = true;
    if (names.length === 0) {
      // Empty on the first request: (legacy) wildcard. Empty after explicit names:
      // unsubscribe from everything, never "send me all" (grpc-js-xds does this on close).
      if (first) {
        this.#wildcard = true;
        this.#legacyWildcard = true;
      } else if (!this.#legacyWildcard) {
        this.#wildcard = false;
        this.#names.clear();
        this.#sentKey = UNSET;
      }
      return;
    }
    this.#legacyWildcard = false;
    this.#wildcard = names.includes('*');
    this.#names = new Set(names.filter((n) => n !== '*'));
  }

  /**
   * What to send now, if anything: nothing while a response is pending (one unacknowledged
   * response per type, latest version only), nothing when unsubscribed or when the node has
   * no snapshot or the snapshot does not serve this type; otherwise a response when nothing
   * was sent yet, the type's version changed, or the subscription changed. After a NACK the
   * same version is not resent.
   */
  plan(snapshot: Snapshot | undefined): PlannedResponse | undefined {
    if (this.#pending || !this.subscribed || !snapshot) return undefined;
    const version = snapshot.version(this.typeUrl);
    if (version === '') return undefined;
    if (this.#sent && this.#sent.version === version && this.#sentKey === this.#key()) return undefined;
    const all = snapshot.resources(this.typeUrl);
    const resourceNames = this.#wildcard ? [...all.keys()] : [...all.keys()].filter((n) => this.#names.has(n));
    return { version, resourceNames };
  }

  /**
   * Records a response handed to the stream. Returns true for a push: a new version for an
   * unchanged subscription (rather than an answer to a subscription change).
   */
  markSent(sent: SentRecord): boolean {
    const push = this.#sent !== undefined && this.#sentKey === this.#key() && this.#sent.version !== sent.version;
    this.#sent = sent;
    this.#sentKey = this.#key();
    this.#pending = true;
    this.responses++;
    return push;
  }

  status(currentVersion: string | undefined): AdsTypeStatus {
    if (!this.#sent) return 'NOT_SENT';
    if (this.#pending) return 'STALE';
    if (this.#lastOutcome === 'nack') return 'NACKED';
    if (!this.subscribed) return 'SYNCED';
    if (currentVersion !== undefined && this.#acked?.version === currentVersion && this.#sentKey === this.#key()) {
      return 'SYNCED';
    }
    return 'STALE';
  }
}

// ---------------------------------------------------------------------------------------
// Per stream.

export interface NodeInfo {
  readonly id: string;
  readonly cluster: string;
  readonly locality: { readonly region: string; readonly zone: string; readonly sub_zone: string };
  readonly userAgentName: string;
  readonly userAgentVersion: string;
  readonly clientFeatures: readonly string[];
  /** node.metadata as plain JSON. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

export function nodeInfo(node: NodeMessage): NodeInfo {
  return {
    id: node.id ?? '',
    cluster: node.cluster ?? '',
    locality: {
      region: node.locality?.region ?? '',
      zone: node.locality?.zone ?? '',
      sub_zone: node.locality?.sub_zone ?? '',
    },
    userAgentName: node.user_agent_name ?? '',
    userAgentVersion: node.user_agent_version ?? '',
    clientFeatures: [...(node.client_features ?? [])],
    metadata: structToJson(node.metadata),
  };
}

export interface StreamCounters {
  requests: number;
  staleRequests: number;
  responses: number;
  /** Responses sent because the snapshot changed (not because the client asked for new names). */
  pushes: number;
  resourcesSent: number;
  /** Names sent in removed_resources (incremental streams only; 0 on state-of-the-world streams). */
  resourcesRemoved: number;
  /** Serialized DiscoveryResponse bytes (without gRPC framing). */
  bytesSent: number;
  acks: number;
  nacks: number;
}

/** What every stream keeps, whatever its protocol: who it is, its per-type state, its counters. */
export abstract class StreamState<Sub extends { applyRequest(req: Req, now: Date): RequestKind }, Req> {
  readonly streamId: string;
  readonly peer: string;
  readonly connectedAt: Date;
  #node: NodeInfo | undefined;
  readonly types = new Map<string, Sub>();
  readonly counters: StreamCounters = {
    requests: 0,
    staleRequests: 0,
    responses: 0,
    pushes: 0,
    resourcesSent: 0,
    resourcesRemoved: 0,
    bytesSent: 0,
    acks: 0,
    nacks: 0,
  };

  constructor(streamId: string, peer: string, connectedAt: Date) {
    this.streamId = streamId;
    this.peer = peer;
    this.connectedAt = connectedAt;
  }

  protected abstract newSubscription(typeUrl: string): Sub;

  get node(): NodeInfo | undefined {
    return this.#node;
  }

  setNode(node: NodeMessage): void {
    this.#node = nodeInfo(node);
  }

  type(typeUrl: string): Sub {
    let t = this.types.get(typeUrl);
    if (!t) {
      t = this.newSubscription(typeUrl);
      this.types.set(typeUrl, t);
    }
    return t;
  }

  /** Applies a request (type_url required) and counts it. */
  applyRequest(req: Req & { type_url: string }, now: Date): RequestKind {
    this.counters.requests++;
    const kind = this.type(req.type_url).applyRequest(req, now);
    if (kind === 'stale') this.counters.staleRequests++;
    else if (kind === 'ack') this.counters.acks++;
    else if (kind === 'nack') this.counters.nacks++;
    return kind;
  }
}

export class ClientState extends StreamState<TypeSubscription, DiscoveryRequestMessage> {
  protected newSubscription(typeUrl: string): TypeSubscription {
    return new TypeSubscription(typeUrl);
  }

  /** Records a response handed to the stream; returns whether it was a push (see TypeSubscription.markSent). */
  recordSent(t: TypeSubscription, sent: SentRecord): boolean {
    const push = t.markSent(sent);
    this.counters.responses++;
    this.counters.resourcesSent += sent.resourceNames.length;
    this.counters.bytesSent += sent.bytes;
    if (push) this.counters.pushes++;
    return push;
  }
}
