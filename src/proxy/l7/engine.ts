// The L7 engine: an Envoy-like HTTP proxy core configured with Envoy v3 RouteConfiguration,
// Cluster and ClusterLoadAssignment objects. Per request: route (precompiled table), filter
// chain, router. Everything config-derived is compiled in update() and swapped atomically.
import net, { type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { compileFilters, compileRouteTables, type ActiveConfig } from './active-config.js';
import { NO_FLAGS, type AccessLogRecord, type AccessLogger } from './access-log.js';
import { ClusterManager, type ClusterState } from './cluster.js';
import type { L7Config } from './config.js';
import type { PeerInfo } from './context.js';
import type { ConnInfo, Exchange, ExchangeSink } from './exchange.js';
import { isPromise, type HttpFilterFactory } from './filter.js';
import { corsFilter } from './filters/cors.js';
import { faultFilter } from './filters/fault.js';
import { ClusterCircuits, circuitBreakerFilter } from './filters/circuit-breaker.js';
import { retryFilter } from './filters/retry.js';
import { headerMutationFilter } from './filters/header-mutation.js';
import { mirrorFilter } from './filters/mirror.js';
import { outlierFilter } from './filters/outlier.js';
import { xfccFilter } from './filters/xfcc.js';
import { HttpFront } from './http-front.js';
import { FILTER_ERROR, sendLocalReply } from './local-reply.js';
import { routeRequest } from './router.js';
import { tcpConnector, type UpstreamConnector } from './upstream.js';

export type { PeerInfo } from './context.js';

export interface L7EngineOptions {
  /** Opens upstream connections; default plain TCP. */
  readonly connector?: UpstreamConnector;
  /** Our own SPIFFE ID (XFCC By=). */
  readonly identity?: string;
  /** The filter chain before the router; default defaultFilters() (xfcc, fault, cors, header-mutation, mirror...). */
  readonly filters?: readonly HttpFilterFactory[];
  /** One record per request. */
  readonly log?: AccessLogger;
  /** How long close() waits for requests in flight (ms); default 5000. */
  readonly drainTimeoutMs?: number;
}

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
  readonly routeConfig: string;
  /** TLS with ALPN h2 and http/1.1; with `ca`, client certificates are required and their SPIFFE ID is the peer identity. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca?: string };
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The standard chain: XFCC sanitize/set, fault injection (Envoy: before other filters), CORS,
 * the route's header mutations, then request mirroring (after them: it copies the request as the
 * router will send it).
 */
export function defaultFilters(): HttpFilterFactory[] {
  // outlier first: it observes every upstream failure before a retry filter may claim it.
  // retry, then the circuit breaker: retries take slots of the breakers' per-cluster state.
  const circuits = new ClusterCircuits();
  return [
    outlierFilter,
    xfccFilter,
    faultFilter(),
    corsFilter,
    headerMutationFilter,
    mirrorFilter(),
    retryFilter(circuits),
    circuitBreakerFilter(circuits),
  ];
}

const EMPTY_CONFIG: L7Config = { routes: new Map(), clusters: new Map(), endpoints: new Map() };

export class L7Engine {
  readonly #identity: string | undefined;
  readonly #factories: readonly HttpFilterFactory[];
  readonly #log: AccessLogger | undefined;
  readonly #drainTimeoutMs: number;
  readonly #clusters: ClusterManager;
  readonly #front: HttpFront;
  readonly #listeners = new Set<Listener>();
  #active: ActiveConfig;
  #inflight = 0;
  #drained: (() => void) | undefined;
  #closed = false;
  /** Told by each exchange when it is done (kept off the public surface). */
  readonly #sink: ExchangeSink = { complete: (ex) => this.#complete(ex) };

  constructor(options: L7EngineOptions = {}) {
    this.#identity = options.identity;
    this.#factories = options.filters ?? defaultFilters();
    this.#log = options.log;
    this.#drainTimeoutMs = options.drainTimeoutMs ?? 5000;
    this.#clusters = new ClusterManager(options.connector ?? tcpConnector);
    this.#front = new HttpFront((ex) => this.#handle(ex));
    this.#active = this.#compile(EMPTY_CONFIG);
  }

  /**
   * Swaps in a new config atomically. Throws L7ConfigError (the previous config stays, as an
   * xDS NACK) when a resource cannot be used. Requests in flight keep the config they started
   * with; pools of clusters/endpoints no longer present drain and close.
   */
  update(config: L7Config): void {
    this.#active = this.#compile(config);
  }

  #compile(config: L7Config): ActiveConfig {
    // Route tables and filters first: they may throw, and must before pools are retired.
    const routeTables = compileRouteTables(config.routes);
    const chain = compileFilters(this.#factories, config, this.#identity);
    return { source: config, routeTables, chain, clusters: this.#clusters.build(config) };
  }

  /** The clusters of the config in use (health, outlier detection stats). */
  get clusters(): ReadonlyMap<string, ClusterState> {
    return this.#active.clusters;
  }

  /**
   * Per-cluster counters and gauges of the filters that keep them (circuit breakers and retries:
   * upstream_rq_pending_overflow, upstream_rq_retry, upstream_rq_retry_overflow, ...), by cluster.
   */
  stats(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    // A counter reported by two sources is summed: upstream_rq_pending_overflow counts both the
    // max_requests refusals (filter) and the max_pending_requests ones (pools), as Envoy's does.
    const add = (cluster: string, values: object) => {
      const o = (out[cluster] ??= {});
      for (const [k, v] of Object.entries(values)) if (typeof v === 'number') o[k] = (o[k] ?? 0) + v;
    };
    // Connection circuit breakers (upstream_cx_active, upstream_cx_overflow, upstream_rq_pending_*).
    for (const [cluster, values] of Object.entries(this.#clusters.stats())) add(cluster, values);
    for (const f of this.#factories) {
      const s = f.stats?.();
      if (s) for (const [cluster, values] of Object.entries(s)) add(cluster, values);
    }
    // Outlier detection (outlier_detection_ejections_active, ejections_enforced_total, ...).
    for (const c of this.#active.clusters.values()) if (c.outlier) add(c.name, c.outlier.stats);
    return out;
  }

  /** Requests being processed. */
  get inflight(): number {
    return this.#inflight;
  }

  /**
   * Serves HTTP on an accepted byte stream (TCP/TLS socket, or a tunnel's CONNECT stream):
   * HTTP/2 when it starts with the client preface (h2c prior knowledge), else HTTP/1.1.
   */
  serveConnection(stream: Duplex, routeConfig: string, peer: PeerInfo = {}): void {
    this.#serve(stream, routeConfig, peer);
  }

  #serve(stream: Duplex, routeConfig: string, peer: PeerInfo, protocol?: 'h2'): ConnInfo {
    const conn: ConnInfo = {
      routeConfig,
      peer,
      scheme: peer.scheme ?? 'http',
      sink: this.#sink,
      inflight: 0,
      closing: this.#closed,
      onIdle: undefined,
    };
    this.#front.serve(stream, conn, protocol);
    return conn;
  }

  async listen(options: ListenOptions): Promise<Listener> {
    const conns = new Set<ConnInfo>();
    const mine = (c: ConnInfo) => conns.has(c);
    const track = (sock: Duplex, conn: ConnInfo) => {
      conns.add(conn);
      sock.once('close', () => conns.delete(conn));
    };
    let server: net.Server;
    if (options.tls) {
      const t = options.tls;
      server = tls.createServer({
        cert: t.cert,
        key: t.key,
        ALPNProtocols: ['h2', 'http/1.1'],
        ...(t.ca ? { ca: t.ca, requestCert: true, rejectUnauthorized: true } : {}),
      });
      server.on('secureConnection', (sock: TLSSocket) => {
        sock.setNoDelay(true);
        const peer: PeerInfo = {
          address: sock.remoteAddress,
          port: sock.remotePort,
          scheme: 'https',
          identity: t.ca ? spiffeIdOf(sock) : undefined,
        };
        track(sock, this.#serve(sock, options.routeConfig, peer, sock.alpnProtocol === 'h2' ? 'h2' : undefined));
      });
      server.on('tlsClientError', () => {});
    } else {
      server = net.createServer((sock: Socket) => {
        sock.setNoDelay(true);
        const peer: PeerInfo = { address: sock.remoteAddress, port: sock.remotePort };
        track(sock, this.#serve(sock, options.routeConfig, peer));
      });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', () => {});
    const port = (server.address() as net.AddressInfo).port;
    let closing: Promise<void> | undefined;
    const listener: Listener = {
      port,
      close: () =>
        (closing ??= (async () => {
          this.#listeners.delete(listener);
          const closed = new Promise<void>((r) => server.close(() => r()));
          this.#front.closeConnections(mine);
          if (!(await within(closed, this.#drainTimeoutMs))) this.#front.destroyConnections(mine);
          await closed;
        })()),
    };
    this.#listeners.add(listener);
    return listener;
  }

  /** Stops listeners, lets requests in flight finish (bounded by drainTimeoutMs), closes pools. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const listeners = [...this.#listeners].map((l) => l.close());
    this.#front.closeConnections();
    if (this.#inflight > 0) {
      const drained = new Promise<void>((r) => (this.#drained = r));
      await within(drained, this.#drainTimeoutMs);
    }
    this.#front.destroyConnections();
    await Promise.all(listeners);
    this.#clusters.close();
  }

  // --- per request -------------------------------------------------------------------------------

  #handle(ex: Exchange): void {
    const config = this.#active;
    ex.config = config;
    this.#inflight++;
    ex.route = config.routeTables.get(ex.routeConfig)?.route(ex.authority, ex);
    runFilters(ex, 0);
  }

  /** The stream is done: access record, onComplete filters, drain bookkeeping. */
  #complete(ex: Exchange): void {
    this.#inflight--;
    const onComplete = ex.config.chain.onComplete;
    if (this.#log || onComplete.length > 0) {
      const record = accessLogRecord(ex);
      for (const f of onComplete) {
        try {
          f.onComplete!(ex, record);
        } catch {
          // A logging filter must not break the others.
        }
      }
      this.#log?.(record);
    }
    if (this.#inflight === 0 && this.#drained) this.#drained();
  }
}

/** Runs onRequest filters from `from`; synchronous as long as the filters are. */
function runFilters(ex: Exchange, from: number): void {
  const filters = ex.config.chain.onRequest;
  for (let i = from; i < filters.length; i++) {
    let r;
    try {
      r = filters[i]!.onRequest!(ex);
    } catch {
      sendLocalReply(ex, FILTER_ERROR);
      return;
    }
    if (r === undefined) continue;
    if (isPromise(r)) {
      const next = i + 1;
      r.then(
        (reply) => {
          if (ex.closed) return;
          if (reply) sendLocalReply(ex, reply);
          else runFilters(ex, next);
        },
        () => sendLocalReply(ex, FILTER_ERROR),
      );
      return;
    }
    sendLocalReply(ex, r);
    return;
  }
  routeRequest(ex);
}

function accessLogRecord(ex: Exchange): AccessLogRecord {
  return {
    startTime: ex.startTime,
    durationMs: Date.now() - ex.startTime,
    method: ex.method,
    authority: ex.authority,
    path: ex.originalPath,
    protocol: ex.protocol,
    status: ex.status,
    grpcStatus: ex.grpcStatus,
    responseFlags: ex.flags ?? NO_FLAGS,
    details: ex.details,
    routeConfig: ex.routeConfig,
    routeName: ex.route?.name,
    upstreamCluster: ex.upstreamCluster,
    upstreamHost: ex.upstreamHost,
    bytesReceived: ex.bytesReceived,
    bytesSent: ex.bytesSent,
    requestId: ex.requestId,
    peerIdentity: ex.peer.identity,
    peerAddress: ex.peer.address,
  };
}

/** The URI SAN of a verified client certificate. */
function spiffeIdOf(sock: TLSSocket): string | undefined {
  if (!sock.authorized) return undefined;
  const san = sock.getPeerCertificate().subjectaltname ?? '';
  return /URI:(spiffe:\/\/[^,\s]+)/.exec(san)?.[1];
}

/** Resolves true if `p` settles within `ms`, false on timeout. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
