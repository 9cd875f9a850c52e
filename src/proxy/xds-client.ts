// A state-of-the-world ADS client for Trellis' own proxies: the node process subscribes to
// Listeners and Clusters by wildcard (as Envoy does), then to the RouteConfigurations,
// ClusterLoadAssignments and Secrets they reference. Every response is ACKed, or NACKed with
// the reason when it cannot be decoded, in which case the last good resources stay in use.
import * as grpc from '@grpc/grpc-js';
import { loadXdsProtos } from '../xds/server/protos.js';
import { TYPE_URLS } from '../xds/snapshot.js';
import { VERSION } from '../version.js';

import type { EnvoyObject } from './envoy/values.js';

export type { EnvoyObject } from './envoy/values.js';

/** What the proxy holds, by type and name (bodies decoded, nested Anys unpacked to '@type' form). */
export interface XdsState {
  readonly listeners: ReadonlyMap<string, EnvoyObject>;
  readonly routes: ReadonlyMap<string, EnvoyObject>;
  readonly clusters: ReadonlyMap<string, EnvoyObject>;
  readonly endpoints: ReadonlyMap<string, EnvoyObject>;
  readonly secrets: ReadonlyMap<string, EnvoyObject>;
}

export interface XdsClientOptions {
  /** host:port of the control plane's xDS (plaintext gRPC, as on 15010). */
  readonly server: string;
  readonly nodeId: string;
  readonly cluster?: string;
  readonly locality?: { region?: string; zone?: string; sub_zone?: string };
  /** Which secrets to ask for, given the listeners (the identities they use). */
  readonly secretNames: (state: XdsState) => readonly string[];
  readonly onUpdate: (state: XdsState) => void;
  readonly log?: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

type TypeKey = keyof XdsState;

const ORDER: readonly [TypeKey, string][] = [
  ['clusters', TYPE_URLS.cluster],
  ['endpoints', TYPE_URLS.endpoint],
  ['listeners', TYPE_URLS.listener],
  ['routes', TYPE_URLS.route],
  ['secrets', TYPE_URLS.secret],
];
const WILDCARD: ReadonlySet<TypeKey> = new Set(['listeners', 'clusters']);

interface TypeState {
  readonly url: string;
  names: string[];
  version: string;
  nonce: string;
  received: boolean;
  resources: Map<string, EnvoyObject>;
}

interface DiscoveryResponse {
  version_info?: string;
  resources?: { type_url?: string; value?: Buffer }[];
  type_url?: string;
  nonce?: string;
}

/** Replaces every nested google.protobuf.Any ({type_url, value}) with its decoded '@type' form. */
function unpackDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unpackDeep);
  if (!value || typeof value !== 'object' || Buffer.isBuffer(value) || value instanceof Uint8Array) return value;
  const o = value as Record<string, unknown>;
  if (typeof o.type_url === 'string' && (Buffer.isBuffer(o.value) || o.value instanceof Uint8Array)) {
    return unpackDeep(loadXdsProtos().unpackAny(o as { type_url: string; value: Buffer }));
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = unpackDeep(v);
  return out;
}

/** The names a resource refers to, for the dependent subscriptions. */
function routeNamesOf(listeners: Iterable<EnvoyObject>): string[] {
  const names = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      const rds = o.rds as { route_config_name?: string } | undefined;
      if (rds?.route_config_name) names.add(rds.route_config_name);
      for (const x of Object.values(o)) if (x && typeof x === 'object') visit(x);
    }
  };
  for (const l of listeners) visit(l);
  return [...names].sort();
}

function edsNamesOf(clusters: Iterable<EnvoyObject>): string[] {
  const names = new Set<string>();
  for (const c of clusters) {
    if (c.type !== 'EDS' && c.type !== undefined) continue;
    const svc = (c.eds_cluster_config as { service_name?: string } | undefined)?.service_name;
    names.add(svc || String(c.name));
  }
  return [...names].sort();
}

export class XdsClient {
  readonly #opts: XdsClientOptions;
  readonly #types = new Map<TypeKey, TypeState>();
  #client: grpc.Client | undefined;
  #call: grpc.ClientDuplexStream<object, DiscoveryResponse> | undefined;
  #closed = false;
  #retryMs = 250;
  #timer: NodeJS.Timeout | undefined;
  #readyResolve: (() => void) | undefined;
  /** Resolves once every subscribed type has answered at least once (warming). */
  readonly ready: Promise<void>;

  constructor(opts: XdsClientOptions) {
    this.#opts = opts;
    for (const [key, url] of ORDER) {
      this.#types.set(key, { url, names: [], version: '', nonce: '', received: false, resources: new Map() });
    }
    this.ready = new Promise((resolve) => (this.#readyResolve = resolve));
  }

  get state(): XdsState {
    const get = (k: TypeKey) => this.#types.get(k)!.resources;
    return {
      listeners: get('listeners'),
      routes: get('routes'),
      clusters: get('clusters'),
      endpoints: get('endpoints'),
      secrets: get('secrets'),
    };
  }

  start(): void {
    const protos = loadXdsProtos();
    this.#client = new protos.AdsClient(this.#opts.server, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
    });
    this.#connect();
  }

  #connect(): void {
    if (this.#closed || !this.#client) return;
    const call = (
      this.#client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<object, DiscoveryResponse> }
    ).StreamAggregatedResources();
    this.#call = call;
    call.on('data', (r: DiscoveryResponse) => {
      this.#retryMs = 250;
      this.#onResponse(r);
    });
    call.on('error', (e: Error) => {
      if (!this.#closed) this.#opts.log?.('warn', 'xDS stream failed; reconnecting', { error: e.message });
    });
    call.on('close', () => this.#reconnect(call));
    call.on('end', () => this.#reconnect(call));
    // A new stream: every type is asked again with what we hold (the server resends it).
    for (const [key, st] of this.#types) {
      st.nonce = '';
      if (WILDCARD.has(key) || st.names.length > 0) this.#send(key);
    }
  }

  #reconnect(call: grpc.ClientDuplexStream<object, DiscoveryResponse>): void {
    if (this.#closed || this.#call !== call) return;
    this.#call = undefined;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#connect(), this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, 15_000);
  }

  #send(key: TypeKey, error?: string): void {
    const st = this.#types.get(key)!;
    const req: Record<string, unknown> = {
      version_info: st.version,
      node: {
        id: this.#opts.nodeId,
        cluster: this.#opts.cluster ?? 'trellis',
        locality: this.#opts.locality ?? {},
        user_agent_name: 'trellis-node',
        user_agent_version: VERSION,
      },
      resource_names: WILDCARD.has(key) ? [] : st.names,
      type_url: st.url,
      response_nonce: st.nonce,
    };
    if (error) req.error_detail = { code: 3, message: error };
    this.#call?.write(req);
  }

  #onResponse(r: DiscoveryResponse): void {
    const entry = [...this.#types].find(([, st]) => st.url === r.type_url);
    if (!entry) return;
    const [key, st] = entry;
    st.nonce = r.nonce ?? '';
    let decoded: Map<string, EnvoyObject>;
    try {
      decoded = new Map();
      for (const any of r.resources ?? []) {
        const body = unpackDeep(loadXdsProtos().unpackAny(any)) as EnvoyObject;
        const name = String(body.name ?? body.cluster_name ?? '');
        if (!name) throw new Error(`a ${st.url} without a name`);
        decoded.set(name, body);
      }
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.#opts.log?.('warn', 'xDS response rejected (NACK); keeping the last good configuration', {
        type: st.url,
        version: r.version_info,
        error: message,
      });
      this.#send(key, message);
      return;
    }
    st.version = r.version_info ?? '';
    st.received = true;
    // SotW: the response is the whole set for wildcard types; for named ones, what we asked.
    st.resources = decoded;
    this.#send(key);
    this.#resubscribe();
    // Envoy's warming: nothing is applied until every referenced resource has arrived once.
    if (!this.#warm()) return;
    this.#opts.onUpdate(this.state);
    this.#readyResolve?.();
    this.#readyResolve = undefined;
  }

  /** Follows references: listeners -> route configs, clusters -> load assignments, listeners -> secrets. */
  #resubscribe(): void {
    const state = this.state;
    this.#want('routes', routeNamesOf(state.listeners.values()));
    this.#want('endpoints', edsNamesOf(state.clusters.values()));
    this.#want('secrets', [...new Set(this.#opts.secretNames(state))].sort());
  }

  #want(key: TypeKey, names: string[]): void {
    const st = this.#types.get(key)!;
    if (names.length === st.names.length && names.every((n, i) => n === st.names[i])) return;
    const had = st.names.length > 0;
    st.names = names;
    if (names.length === 0 && !had) return;
    if (names.length === 0) st.resources = new Map();
    this.#send(key);
  }

  #warm(): boolean {
    for (const [key, st] of this.#types) {
      if (WILDCARD.has(key) ? !st.received : st.names.length > 0 && !st.received) return false;
    }
    return true;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#call?.cancel();
    this.#client?.close();
  }
}
