// Per-stream, per-type-URL state of an incremental (delta) ADS conversation (xDS protocol,
// "Incremental xDS"): the client's subscription (names, wildcard) and the version of every
// resource we believe it holds, so that a snapshot change sends only what changed and names
// what disappeared. Pure: no I/O, no timers; the server feeds it requests and asks it what
// (if anything) to send.
//
// What the client holds is updated when a response is handed to the stream (as
// go-control-plane does): a NACKed response is therefore not resent (latest version only,
// the next change of a resource sends it again), and at most one response per type is ever
// unacknowledged, so a slow client's state is bounded by its subscription and the snapshot.
import type { Snapshot } from '../snapshot.js';
import {
  StreamState,
  type AdsTypeStatus,
  type NackRecord,
  type NodeMessage,
  type RequestKind,
} from './client-state.js';

/** DeltaDiscoveryRequest as proto-loader gives it (keepCase, no defaults). */
export interface DeltaDiscoveryRequestMessage {
  node?: NodeMessage | null;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string> | null;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

/** Names one stream may subscribe to (or announce in initial_resource_versions) per type. */
export const MAX_DELTA_NAMES_PER_TYPE = 100_000;

export class DeltaLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeltaLimitError';
  }
}

export interface DeltaSentRecord {
  /** The snapshot's version of the type (system_version_info; for debugging only). */
  readonly version: string;
  readonly nonce: string;
  readonly at: Date;
  /** Names of the resources in the response (new or changed). */
  readonly resourceNames: readonly string[];
  /** removed_resources of the response. */
  readonly removedNames: readonly string[];
  readonly bytes: number;
}

export interface DeltaPlan {
  /** The snapshot's version of the type. */
  readonly version: string;
  /** Resources to send: new to the client or at another version than it holds. */
  readonly resourceNames: readonly string[];
  /** Names for removed_resources: gone from the snapshot, or subscribed and never existing. */
  readonly removedNames: readonly string[];
}

/** In `known`: the client was told this (explicitly subscribed) name does not exist. */
const ABSENT = '';

export class DeltaTypeSubscription {
  readonly typeUrl: string;
  #requested = false;
  #wildcard = false;
  #legacyWildcard = false;
  readonly #names = new Set<string>();
  /** name -> version the client holds (ABSENT: told it does not exist). */
  readonly #known = new Map<string, string>();
  /** name -> version never to send (could not be encoded); retried when the version changes. */
  readonly #held = new Map<string, string>();
  #sent: DeltaSentRecord | undefined;
  #pending = false;
  #lastOutcome: 'none' | 'ack' | 'nack' = 'none';
  #acked: { version: string; nonce: string; at: Date } | undefined;
  #nack: NackRecord | undefined;
  /** Bumped on every state change; with the snapshot it keys the "nothing to send" memo. */
  #generation = 0;
  #nothingFor: { snapshot: Snapshot; generation: number } | undefined;
  /** The subscription changed since the last response (so the next one answers it, no push). */
  #subscriptionChanged = true;
  responses = 0;
  acks = 0;
  nacks = 0;

  constructor(typeUrl: string) {
    this.typeUrl = typeUrl;
  }

  get subscribed(): boolean {
    return this.#wildcard || this.#names.size > 0;
  }
  get wildcard(): boolean {
    return this.#wildcard;
  }
  /** '*' for a wildcard subscription, else the sorted explicit names. */
  get subscription(): string[] | '*' {
    return this.#wildcard ? '*' : [...this.#names].sort();
  }
  /** Resources the client holds, as we believe (name -> version). */
  get known(): ReadonlyMap<string, string> {
    return new Map([...this.#known].filter(([, v]) => v !== ABSENT));
  }
  get sent(): DeltaSentRecord | undefined {
    return this.#sent;
  }
  get pending(): boolean {
    return this.#pending;
  }
  get acked(): { version: string; nonce: string; at: Date } | undefined {
    return this.#acked;
  }
  get lastNack(): NackRecord | undefined {
    return this.#nack;
  }
  get lastOutcome(): 'none' | 'ack' | 'nack' {
    return this.#lastOutcome;
  }

  /**
   * Applies one request of this type. The subscription deltas are applied even when the nonce
   * is stale ('stale' only means it is no ACK/NACK of the outstanding response): unlike a
   * state-of-the-world request they are not repeated later. Throws DeltaLimitError beyond
   * MAX_DELTA_NAMES_PER_TYPE names.
   */
  applyRequest(req: DeltaDiscoveryRequestMessage, now: Date): RequestKind {
    this.#generation++;
    const first = !this.#requested;
    this.#requested = true;
    const nonce = req.response_nonce ?? '';
    let kind: RequestKind = first ? 'initial' : 'update';
    if (nonce !== '' && this.#sent) {
      if (nonce !== this.#sent.nonce) kind = 'stale';
      else if (this.#pending) {
        this.#pending = false;
        if (req.error_detail) {
          kind = 'nack';
          this.nacks++;
          this.#lastOutcome = 'nack';
          this.#nack = {
            version: this.#sent.version,
            nonce,
            code: req.error_detail.code ?? 0,
            message: req.error_detail.message ?? '',
            at: now,
            clientVersion: this.#acked?.version ?? '',
          };
        } else {
          kind = 'ack';
          this.acks++;
          this.#lastOutcome = 'ack';
          this.#acked = { version: this.#sent.version, nonce, at: now };
        }
      }
    }
    this.#applyNames(req, first);
    return kind;
  }

  #applyNames(req: DeltaDiscoveryRequestMessage, first: boolean): void {
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    if (first || subscribe.length > 0 || unsubscribe.length > 0) this.#subscriptionChanged = true;
    if (first && subscribe.length === 0) {
      // No names in the first request of a type: legacy wildcard (Envoy's CDS/LDS).
      this.#wildcard = true;
      this.#legacyWildcard = true;
    }
    for (const name of subscribe) {
      if (name === '*') {
        this.#wildcard = true;
        this.#legacyWildcard = false;
        continue;
      }
      this.#names.add(name);
      // "the server must still provide those resources": the client may have forgotten them.
      this.#known.delete(name);
    }
    if (this.#legacyWildcard && subscribe.some((n) => n !== '*')) {
      // Specific names end a legacy wildcard unless '*' is subscribed explicitly.
      this.#legacyWildcard = false;
      this.#wildcard = false;
    }
    for (const name of unsubscribe) {
      if (name === '*') {
        this.#wildcard = false;
        this.#legacyWildcard = false;
        continue;
      }
      this.#names.delete(name);
      // Still covered by the wildcard: the client keeps it (and its updates).
      if (!this.#wildcard) this.#known.delete(name);
    }
    if (!this.#wildcard) {
      for (const name of this.#known.keys()) if (!this.#names.has(name)) this.#known.delete(name);
    }
    if (first) {
      // Resume: what the client already holds is not sent again.
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {})) {
        if (name === '*' || version === ABSENT) continue;
        if (this.#wildcard || this.#names.has(name)) this.#known.set(name, version);
      }
    }
    if (this.#names.size > MAX_DELTA_NAMES_PER_TYPE || this.#known.size > MAX_DELTA_NAMES_PER_TYPE) {
      throw new DeltaLimitError(
        `more than ${MAX_DELTA_NAMES_PER_TYPE} resource names of ${this.typeUrl} on one stream`,
      );
    }
  }

  /** What the client is owed by the snapshot, regardless of a pending response. */
  #diff(snapshot: Snapshot): DeltaPlan | undefined {
    const memo = this.#nothingFor;
    if (memo && memo.snapshot === snapshot && memo.generation === this.#generation) return undefined;
    const all = snapshot.resources(this.typeUrl);
    for (const [name, version] of this.#held) if (all.get(name)?.version !== version) this.#held.delete(name);
    const resourceNames: string[] = [];
    const want = (name: string, version: string) =>
      this.#known.get(name) !== version && this.#held.get(name) !== version;
    if (this.#wildcard) {
      for (const r of all.values()) if (want(r.name, r.version)) resourceNames.push(r.name);
    } else {
      for (const name of [...this.#names].sort()) {
        const r = all.get(name);
        if (r && want(name, r.version)) resourceNames.push(name);
      }
    }
    const removed = new Set<string>();
    for (const [name, version] of this.#known) if (version !== ABSENT && !all.has(name)) removed.add(name);
    for (const name of this.#names) if (!all.has(name) && !this.#known.has(name)) removed.add(name);
    if (resourceNames.length === 0 && removed.size === 0) {
      this.#nothingFor = { snapshot, generation: this.#generation };
      return undefined;
    }
    return { version: snapshot.version(this.typeUrl), resourceNames, removedNames: [...removed].sort() };
  }

  /**
   * What to send now, if anything: nothing while a response is pending (one unacknowledged
   * response per type; later changes coalesce into the next one), nothing without a
   * snapshot; otherwise the resources whose version the client does not hold and the names
   * to remove.
   */
  plan(snapshot: Snapshot | undefined): DeltaPlan | undefined {
    if (this.#pending || !snapshot) return undefined;
    return this.#diff(snapshot);
  }

  /** Marks resources that could not be encoded: not sent (nor retried) at that version. */
  hold(name: string, version: string): void {
    this.#generation++;
    this.#held.set(name, version);
  }

  /**
   * Records a response handed to the stream: the client now holds what it carried. Returns
   * true for a push: a response for an unchanged subscription (the snapshot changed).
   */
  markSent(sent: DeltaSentRecord, resources: ReadonlyMap<string, { readonly version: string }>): boolean {
    this.#generation++;
    const push = this.#sent !== undefined && !this.#subscriptionChanged;
    this.#subscriptionChanged = false;
    for (const name of sent.resourceNames) this.#known.set(name, resources.get(name)?.version ?? ABSENT);
    for (const name of sent.removedNames) {
      if (this.#names.has(name)) this.#known.set(name, ABSENT);
      else this.#known.delete(name);
    }
    this.#sent = sent;
    this.#pending = true;
    this.responses++;
    return push;
  }

  /**
   * As for state-of-the-world streams: STALE while a response is unacknowledged or the client
   * is owed one, NACKED after a rejection (until a later response is ACKed), NOT_SENT when
   * nothing was sent yet and something is owed (or the node has no snapshot), else SYNCED —
   * which includes a resumed stream whose initial_resource_versions were all current.
   */
  status(snapshot: Snapshot | undefined): AdsTypeStatus {
    if (this.#pending) return 'STALE';
    if (this.#lastOutcome === 'nack') return 'NACKED';
    const owed = snapshot ? this.#diff(snapshot) !== undefined : this.subscribed;
    if (!this.#sent) return owed ? 'NOT_SENT' : 'SYNCED';
    return owed ? 'STALE' : 'SYNCED';
  }
}

export class DeltaClientState extends StreamState<DeltaTypeSubscription, DeltaDiscoveryRequestMessage> {
  readonly protocol = 'delta';

  protected newSubscription(typeUrl: string): DeltaTypeSubscription {
    return new DeltaTypeSubscription(typeUrl);
  }

  /** Records a response handed to the stream; returns whether it was a push (see markSent). */
  recordSent(
    t: DeltaTypeSubscription,
    sent: DeltaSentRecord,
    resources: ReadonlyMap<string, { readonly version: string }>,
  ): boolean {
    const push = t.markSent(sent, resources);
    this.counters.responses++;
    this.counters.resourcesSent += sent.resourceNames.length;
    this.counters.resourcesRemoved += sent.removedNames.length;
    this.counters.bytesSent += sent.bytes;
    if (push) this.counters.pushes++;
    return push;
  }
}
