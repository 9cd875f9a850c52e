// One node process: the node proxy (ztunnel's role: HBONE in and out, L4 authorization,
// outbound proxies for local workloads) and the L7 engines of the gateways and waypoints
// placed on this node. Configured only by xDS; each update is applied as a whole, and a
// listener that cannot bind is reported while the rest keep serving.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  connect as netConnect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import type { Duplex } from 'node:stream';
import type { Http2SecureServer, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { L4Metrics, type FlowRecord } from '../../observe/flows.js';
import { MetricsRegistry, type FamilySnapshot } from '../../observe/metrics-registry.js';
import { Credentials } from '../hbone/credentials.js';
import { HbonePool, splitHostPort, TunnelError, type TunnelTarget } from '../hbone/client.js';
import { createHboneServer, type TunnelRequest } from '../hbone/server.js';
import { defaultFilters, L7Engine } from '../l7/engine.js';
import { jwtAuthnFilter } from '../l7/filters/jwt-authn.js';
import { rbacFilter } from '../l7/filters/rbac.js';
import { tracingFilter } from '../l7/filters/tracing.js';
import { OtlpTraceExporter } from '../../observe/otlp-exporter.js';
import { addClusterStats, statsFilter } from '../l7/filters/stats.js';
import { flowLogFilter } from '../l7/filters/flow-log.js';
import { FlowBuffer, serveFlows } from '../../observe/flow-buffer.js';
import { accessLogFilter, type AccessLogField } from '../l7/filters/access-log.js';
import { AccessLogWriter } from '../../observe/access-log-writer.js';
import type { UpstreamTarget } from '../l7/upstream.js';
import { Http1Pool } from '../l7/h1-upstream.js';
import { UpstreamConnectError } from '../l7/upstream-pool.js';
import { stripHopByHop, type HeaderMap } from '../l7/headers.js';
import { socketLike } from '../socket-like.js';
import { XdsClient, type XdsState } from '../xds-client.js';
import { readTrellisMetadata } from '../../xds/struct.js';
import { nodeConfig, Resolver, secretNamesFor, type Bind, type NodeConfig, type Route } from './node-config.js';
import { deniedReason, PlaintextInboundListeners } from './plaintext-inbound.js';
import { CaptureListener, type Endpoint } from './capture-listener.js';

export interface NodeProcessOptions {
  readonly node: string;
  /** The control plane ("host:port"). Absent in a worker: the primary holds the xDS stream and hands states over (applyState). */
  readonly xds?: string;
  /** Flow records, one per connection (default: JSON lines on stdout). */
  readonly onFlow?: (f: FlowRecord) => void;
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Where /metrics and /healthz/ready are served ("ip:port"); default the node's metrics port is not known here. */
  readonly metricsListen?: Bind;
  /** Which worker of the node this process is (in flow records), when there are several. */
  readonly worker?: number;
  /** Tracing in the gateways and waypoints: spans go to this OTLP/HTTP collector. */
  readonly tracing?: { readonly otlpEndpoint: string; readonly samplingPercent?: number };
  /** Access logs of the gateways and waypoints: JSON lines appended to `path` ("-": stdout); off when absent. */
  readonly accessLog?: { readonly path: string; readonly fields?: readonly AccessLogField[] };
  /**
   * false: no request metrics, tracing or access log filters in the L7 chains (a benchmarking and
   * debugging switch, `trellis node --observability off`, to measure what observability costs).
   */
  readonly observability?: boolean;
  /**
   * Transparent capture (Istio ambient's redirection): accept the pods' redirected outbound TCP on
   * this port and send it on as the pod's identity, to the destination it was addressed to
   * (SO_ORIGINAL_DST). The redirect rules are the caller's (trellis node --capture).
   */
  readonly capture?: { readonly port: number; readonly resolve: (socket: Socket) => Endpoint };
}

interface Running {
  readonly key: string;
  close(): Promise<void>;
}

const NOT_CONFIGURED: Route = { kind: 'refused', reason: 'not-configured' };

/** Both directions piped, half-close passed on, and an error on either side tears down both. */
function splice(client: Duplex, upstream: Duplex): void {
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.once('close', () => upstream.destroy());
  // end, not destroy: what the upstream sent may still be queued for the client.
  upstream.once('close', () => client.end());
  if (client.destroyed) upstream.destroy();
  else client.pipe(upstream).pipe(client);
}

/** How long open HBONE sessions get to finish their streams when the node stops or the listener moves. */
const HBONE_DRAIN_MS = 2_000;

function closeServer(s: Server | Http2SecureServer): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    (s as Server).closeAllConnections?.();
  });
}

/** HTTP/2 servers wait for every session to end: ask peers to go away (GOAWAY), then cut what is left. */
function trackSessions(server: Http2SecureServer): () => Promise<void> {
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  return async () => {
    const closed = closeServer(server);
    for (const session of sessions) session.close();
    const timer = setTimeout(() => {
      for (const session of sessions) session.destroy();
    }, HBONE_DRAIN_MS);
    await closed;
    clearTimeout(timer);
  };
}

function listen(server: Server | NetServer | Http2SecureServer, bind: Bind): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(bind.port, bind.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export class NodeProcess {
  readonly #opts: NodeProcessOptions;
  readonly #xds: XdsClient | undefined;
  #firstApplied!: () => void;
  /** Resolves once a first complete configuration is applied. */
  readonly applied = new Promise<void>((resolve) => (this.#firstApplied = resolve));
  /** istio_tcp_* and the L7 engines' istio_request* series, one registry for the node's /metrics. */
  readonly metrics = new L4Metrics();
  /** Recent flow records, L4 and L7 (GET /flows; a worker's primary pulls them). */
  readonly flows = new FlowBuffer();
  #credentials = new Credentials();
  #config: NodeConfig | undefined;
  #resolver: Resolver | undefined;
  #state: XdsState | undefined;
  readonly #pool = new HbonePool(() => this.#credentials);
  #hbone: { key: string; close: () => Promise<void> } | undefined;
  readonly #outbound = new Map<string, Running>();
  readonly #upstreams = new Map<string, Running>();
  /** PERMISSIVE / DISABLE workload ports: plaintext in, same L4 policy, no principal. */
  readonly #plaintext = new PlaintextInboundListeners(
    (f, phase) => this.#flow(f, phase),
    (level, msg, fields) => this.#log(level, msg, fields),
  );
  readonly #engines = new Map<string, { engine: L7Engine; listener?: Running; key: string }>();
  /** HTTP_PROXY upstreams: the L7 engine's keep-alive HTTP/1.1 pools, per (caller identity, destination). */
  readonly #pools = new Map<string, Http1Pool>();
  #metricsServer: Server | undefined;
  #capture: CaptureListener | undefined;
  /** Per config: pod address -> the local workload sending from it (captured connections). */
  #captureSources:
    { cfg: NodeConfig; bySource: Map<string, { identity: string; workload: string; listener: string }> } | undefined;
  #applying: Promise<void> = Promise.resolve();
  #closed = false;
  /** One exporter (queue, batches) for every L7 engine of the process. */
  readonly #spans: OtlpTraceExporter | undefined;
  /** One writer for every L7 engine of the process. */
  readonly #accessLog: AccessLogWriter | undefined;

  constructor(opts: NodeProcessOptions) {
    this.#opts = opts;
    const observe = opts.observability !== false;
    this.#accessLog =
      observe && opts.accessLog
        ? new AccessLogWriter({
            path: opts.accessLog.path,
            onError: (e) => this.#log('error', 'access log not writable; dropping its lines', { error: String(e) }),
          })
        : undefined;
    this.#spans =
      observe && opts.tracing
        ? new OtlpTraceExporter({
            endpoint: opts.tracing.otlpEndpoint,
            serviceName: `trellis-node.${opts.node}`,
            resourceAttributes: { 'service.instance.id': `${opts.node}/${opts.worker ?? 0}` },
            log: (level, msg, fields) => this.#log(level, msg, fields),
          })
        : undefined;
    this.#xds =
      opts.xds === undefined
        ? undefined
        : new XdsClient({
            server: opts.xds,
            nodeId: opts.node,
            secretNames: (s) => secretNamesFor(opts.node, s),
            onUpdate: (s) => this.applyState(s),
            log: (level, msg, fields) => this.#log(level, msg, fields),
          });
  }

  /** Applies a whole xDS state (from this process's own client, or handed over by the primary). */
  applyState(state: XdsState): Promise<void> {
    this.#state = state;
    this.#applying = this.#applying
      .then(() => this.#apply(state))
      .then(() => this.#firstApplied())
      .catch((e: unknown) => this.#log('error', 'applying configuration failed', { error: String(e) }));
    return this.#applying;
  }

  #log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    if (this.#opts.log) this.#opts.log(level, msg, fields);
    else
      process.stderr.write(
        `${JSON.stringify({ time: new Date().toISOString(), level, component: 'node', node: this.#opts.node, msg, ...fields })}\n`,
      );
  }

  #flow(f: Omit<FlowRecord, 'time' | 'node'>, phase: 'open' | 'close' | 'once'): void {
    const rec: FlowRecord = {
      time: new Date().toISOString(),
      node: this.#opts.node,
      ...(this.#opts.worker !== undefined ? { worker: this.#opts.worker } : {}),
      observationPoint: f.direction === 'inbound' ? 'node-inbound' : 'node-outbound',
      ...f,
    };
    if (phase !== 'close') this.metrics.record(rec, 'open');
    if (phase !== 'open') {
      this.metrics.record(rec, 'close');
      this.flows.push(rec);
      if (this.#opts.onFlow) this.#opts.onFlow(rec);
      else process.stdout.write(`${JSON.stringify({ type: 'flow', ...rec })}\n`);
    }
  }

  /** Starts; resolves once the first complete configuration is applied (or after `warmMs`). */
  async start(warmMs = 10_000): Promise<void> {
    this.#xds?.start();
    if (this.#opts.metricsListen) {
      this.#metricsServer = createHttpServer((req, res) => {
        if (req.url === '/metrics') {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
          res.end(this.renderMetrics());
        } else if (req.url?.startsWith('/flows') && (req.url.length === 6 || req.url[6] === '?')) {
          serveFlows(this.flows, req, res);
        } else if (req.url === '/healthz/ready') {
          res.writeHead(this.#config ? 200 : 503);
          res.end(this.#config ? 'ready\n' : 'warming\n');
        } else {
          res.writeHead(404);
          res.end();
        }
      });
      await listen(this.#metricsServer, this.#opts.metricsListen);
    }
    await this.startCapture();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.applied, new Promise((r) => (timer = setTimeout(r, warmMs)))]);
    clearTimeout(timer);
    await this.#applying;
  }

  get config(): NodeConfig | undefined {
    return this.#config;
  }

  /** Accepts captured connections, when capture is configured (a worker calls it without start()). */
  async startCapture(): Promise<void> {
    if (!this.#opts.capture || this.#capture) return;
    this.#capture = await CaptureListener.start({
      port: this.#opts.capture.port,
      resolve: this.#opts.capture.resolve,
      handler: (socket, original, source) => this.#onCaptured(socket, original, source),
      log: this.#log,
    });
  }

  /**
   * Every series of this process: the live registry plus the engines' per-cluster resilience
   * counters, read now (they live in the engines, which a config update may replace).
   */
  metricsSnapshot(): FamilySnapshot[] {
    const scratch = new MetricsRegistry();
    for (const { engine } of this.#engines.values()) addClusterStats(scratch, engine.stats());
    return [...this.metrics.snapshot(), ...scratch.snapshot()];
  }

  renderMetrics(): string {
    const total = new MetricsRegistry();
    total.merge(this.metricsSnapshot());
    return total.render();
  }

  async #apply(state: XdsState): Promise<void> {
    if (this.#closed) return;
    const cfg = nodeConfig(this.#opts.node, state);
    this.#credentials = Credentials.fromSecrets(state.secrets);
    this.#resolver = new Resolver(state);
    this.#config = cfg;
    await this.#applyHbone(cfg);
    await this.#applyOutbound(cfg);
    await this.#applyUpstreams(cfg);
    await this.#plaintext.apply(cfg.plaintextInbound);
    await this.#applyL7(cfg, state);
  }

  async #applyHbone(cfg: NodeConfig): Promise<void> {
    const key = cfg.hbone ? `${cfg.hbone.address}:${cfg.hbone.port}` : '';
    if (this.#hbone?.key === key) return;
    if (this.#hbone) await this.#hbone.close();
    this.#hbone = undefined;
    if (!cfg.hbone) return;
    const server = createHboneServer({
      credentials: () => this.#credentials,
      onTunnel: (t) => this.#onTunnel(t),
      onRefused: (r) =>
        this.#flow(
          {
            direction: 'inbound',
            verdict: 'DENIED',
            reason: r.reason,
            source: { address: r.peerAddress },
            destination: {},
            via: 'hbone',
          },
          'once',
        ),
    });
    try {
      const close = trackSessions(server);
      await listen(server, cfg.hbone);
      this.#hbone = { key, close };
      this.#log('info', 'HBONE listening', { address: key });
    } catch (e) {
      this.#log('error', 'HBONE listener failed', { address: key, error: String(e) });
    }
  }

  async #applyOutbound(cfg: NodeConfig): Promise<void> {
    const wanted = new Map(cfg.outbound.map((o) => [`${o.name}@${o.address}:${o.port}@${o.identity}`, o]));
    for (const [key, r] of this.#outbound) {
      if (!wanted.has(key)) {
        this.#outbound.delete(key);
        await r.close();
      }
    }
    for (const [key, o] of wanted) {
      if (this.#outbound.has(key)) continue;
      const server = createHttpServer((req, res) => this.#forwardHttp(req, res, o.identity, o.workload, o.name));
      server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) =>
        this.#forwardConnect(req, socket, head, o.identity, o.workload, o.name),
      );
      server.keepAliveTimeout = 60_000;
      try {
        await listen(server, o);
        this.#outbound.set(key, { key, close: () => closeServer(server) });
        this.#log('info', 'outbound proxy listening', { workload: o.workload, address: `${o.address}:${o.port}` });
      } catch (e) {
        this.#log('error', 'outbound proxy failed to listen', {
          workload: o.workload,
          address: `${o.address}:${o.port}`,
          error: String(e),
        });
      }
    }
  }

  /**
   * Workload upstream ports (Consul Connect's local_bind_port): a TCP listener per upstream;
   * each connection it accepts goes to the upstream's destination as the workload's identity,
   * as a CONNECT through its outbound proxy would. Listeners no longer wanted close (with
   * their connections), new ones open, unchanged ones stay; `undefined`, or a closed process,
   * closes them all. Calls run one at a time; the listeners live in this closure.
   */
  /** Per-upstream local ports: each accepted connection is one tunnel (or direct connection) to the upstream. */
  async #applyUpstreams(cfg: NodeConfig): Promise<void> {
    const wanted = new Map(
      cfg.upstreams.map((u) => [`${u.name}@${u.address}:${u.port}@${u.identity}@${u.host}:${u.destPort}`, u]),
    );
    for (const [key, r] of this.#upstreams) {
      if (!wanted.has(key)) {
        this.#upstreams.delete(key);
        await r.close();
      }
    }
    for (const [key, u] of wanted) {
      if (this.#upstreams.has(key)) continue;
      const sockets = new Set<Socket>();
      // Half-open: a client that is done sending still gets the rest of the answer.
      const server = createNetServer({ allowHalfOpen: true, noDelay: true }, (client) => {
        sockets.add(client);
        client.once('close', () => sockets.delete(client));
        client.on('error', () => undefined);
        const route = this.#resolver?.resolve(u.host, u.destPort) ?? NOT_CONFIGURED;
        this.#connectRoute(
          route,
          { identity: u.identity, workload: u.workload },
          `${u.host}:${u.destPort}`,
          u.name,
        ).then(
          (up) => splice(client, up),
          () => client.destroy(),
        );
      });
      const address = `${u.address}:${u.port}`;
      try {
        await listen(server, u);
        this.#upstreams.set(key, {
          key,
          close: () => {
            for (const c of sockets) c.destroy();
            return new Promise<void>((resolve) => server.close(() => resolve()));
          },
        });
        this.#log('info', 'upstream port listening', {
          workload: u.workload,
          address,
          destination: `${u.host}:${u.destPort}`,
        });
      } catch (e) {
        this.#log('error', 'upstream port failed to listen', { workload: u.workload, address, error: String(e) });
      }
    }
  }

  async #applyL7(cfg: NodeConfig, state: XdsState): Promise<void> {
    const l7config = { routes: state.routes, clusters: state.clusters, endpoints: state.endpoints };
    const wanted = new Set(cfg.l7.map((r) => r.name));
    for (const [name, e] of this.#engines) {
      if (wanted.has(name)) continue;
      this.#engines.delete(name);
      await e.listener?.close();
      await e.engine.close();
    }
    for (const role of cfg.l7) {
      const key = `${role.identity}@${role.bind ? `${role.bind.address}:${role.bind.port}` : ''}@${[...role.chains.values()].map((c) => c.routeConfig).join(',')}`;
      let entry = this.#engines.get(role.name);
      if (entry && entry.key !== key) {
        await entry.listener?.close();
        await entry.engine.close();
        entry = undefined;
      }
      if (!entry) {
        const identity = role.identity;
        const name = role.name;
        const policies = (routeConfig: string) => {
          const r = this.#config?.l7.find((x) => x.name === name);
          for (const c of r?.chains.values() ?? []) if (c.routeConfig === routeConfig) return c.httpFilters;
          return [];
        };
        const engine = new L7Engine({
          identity,
          connector: (t) => this.#l7Connect(t, identity),
          // JWT authentication first: RBAC reads the request principal it verifies.
          filters: [
            // Tracing first: the hop's span covers every filter and the router.
            ...(this.#spans
              ? [
                  tracingFilter({
                    sink: this.#spans,
                    samplingPercent: this.#opts.tracing?.samplingPercent,
                    // "gateway/<name>" or "waypoint/<name>": which hop of the trace a span is.
                    proxy: `${role.role}/${role.gateway}`,
                  }),
                ]
              : []),
            jwtAuthnFilter(policies),
            rbacFilter(policies),
            ...defaultFilters(),
            // The node's registry: series survive an engine being replaced.
            ...(this.#opts.observability !== false
              ? [
                  statsFilter({
                    registry: this.metrics.registry,
                    reporter: role.role === 'waypoint' ? 'waypoint' : 'source',
                    self: identity,
                  }),
                ]
              : []),
            ...(this.#accessLog
              ? [
                  accessLogFilter({
                    sink: (line) => this.#accessLog!.write(line),
                    fields: this.#opts.accessLog?.fields,
                    proxy: `${role.role}/${role.gateway}`,
                  }),
                ]
              : []),
            // Last: sees the request as every other filter left it (L7 records: ring buffer only).
            ...(this.#opts.observability !== false
              ? [
                  flowLogFilter({
                    node: this.#opts.node,
                    ...(this.#opts.worker !== undefined ? { worker: this.#opts.worker } : {}),
                    role: role.role === 'waypoint' ? 'waypoint' : 'gateway',
                    buffer: this.flows,
                  }),
                ]
              : []),
          ],
        });
        entry = { engine, key };
        this.#engines.set(role.name, entry);
        const chain = role.chains.get('*');
        if (role.role === 'gateway' && role.bind && chain) {
          try {
            const l = await engine.listen({
              host: role.bind.address,
              port: role.bind.port,
              routeConfig: chain.routeConfig,
            });
            entry.listener = { key, close: () => l.close() };
            this.#log('info', 'gateway listening', {
              gateway: role.gateway,
              address: `${role.bind.address}:${role.bind.port}`,
            });
          } catch (e) {
            this.#log('error', 'gateway listener failed', { gateway: role.gateway, error: String(e) });
          }
        }
      }
      entry.engine.update(l7config);
    }
  }

  /** Upstream connections of a gateway or waypoint: HBONE to the endpoint's node as the L7 role's identity. */
  async #l7Connect(t: UpstreamTarget, identity: string): Promise<Duplex> {
    const md = readTrellisMetadata(t.endpoint);
    if (typeof md.hbone === 'string' && typeof md.identity === 'string' && md.identity) {
      const target: TunnelTarget = {
        peer: md.hbone,
        authority: `${t.address}:${t.port}`,
        sourceIdentity: identity,
        destinationIdentity: md.identity,
      };
      return socketLike(
        await this.#openTunnel(
          target,
          { identity },
          { identity: md.identity, address: target.authority, service: t.clusterName },
        ),
      );
    }
    if (t.cluster.transport_socket !== undefined)
      throw new TunnelError('mtls-required-but-no-node-proxy', `${t.address}:${t.port} has no node proxy`);
    return netConnect({ port: t.port, host: t.address, noDelay: true });
  }

  /** Opens a tunnel with an outbound flow record (closed when the stream closes). */
  async #openTunnel(
    target: TunnelTarget,
    source: FlowRecord['source'],
    destination: FlowRecord['destination'],
    via: 'hbone' | 'waypoint' = 'hbone',
  ): Promise<Duplex> {
    const started = Date.now();
    try {
      const stream = await this.#pool.open(target);
      let sent = 0;
      let received = 0;
      const write = stream.write.bind(stream);
      stream.on('data', (d: Buffer) => (received += d.length));
      (stream as { write: typeof stream.write }).write = ((chunk: Buffer | string, ...rest: never[]) => {
        sent += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        return write(chunk, ...rest);
      }) as typeof stream.write;
      this.#flow({ direction: 'outbound', verdict: 'FORWARDED', source, destination, via }, 'open');
      stream.once('close', () =>
        this.#flow(
          {
            direction: 'outbound',
            verdict: 'FORWARDED',
            source,
            destination,
            via,
            bytesSent: sent,
            bytesReceived: received,
            durationMs: Date.now() - started,
          },
          'close',
        ),
      );
      return stream;
    } catch (e) {
      const reason = e instanceof TunnelError ? e.reason : 'connect-failed';
      this.#flow(
        {
          direction: 'outbound',
          verdict: e instanceof TunnelError && e.status === 403 ? 'DENIED' : 'ERROR',
          reason,
          source,
          destination,
          via,
        },
        'once',
      );
      throw e;
    }
  }

  /**
   * The source workload's egress policy (NetworkPolicy / Cilium, carried by the listener it came
   * in on) on the destination the route picked, before anything is dialled. Kubernetes decides
   * egress on the destination POD address and port (after the Service's DNAT), so an endpoint
   * route is checked on that endpoint. A waypoint route has no endpoint yet (the waypoint picks
   * one): every endpoint of the service must be allowed, so no choice of the waypoint's can
   * reach a pod the policy forbids (fail closed). undefined: allowed.
   */
  #egressDenied(
    listener: string,
    route: Exclude<Route, { kind: 'refused' }>,
    principal: string,
  ): { reason: string; address: string; policy?: string } | undefined {
    const policy = this.#config?.egress.get(listener);
    if (!policy || policy.rbac.empty) return undefined;
    let targets: { address: string; port: number }[];
    if (route.kind === 'direct') targets = [{ address: route.address, port: route.port }];
    else if (route.via === 'waypoint') {
      const [host, port] = splitHostPort(route.authority);
      targets = this.#resolver?.endpoints(host, port) ?? [];
    } else {
      const [address, port] = splitHostPort(route.authority);
      targets = [{ address, port }];
    }
    for (const t of targets) {
      const d = policy.rbac.evaluate({ principal, destinationIp: t.address, destinationPort: t.port });
      if (!d.allowed)
        return {
          reason: `egress ${deniedReason(d, policy.allowRules)}`,
          address: `${t.address}:${t.port}`,
          ...(d.policy !== undefined ? { policy: d.policy } : {}),
        };
    }
    return undefined;
  }

  /**
   * A connection for a workload to what it asked for ("host:port"): a tunnel, or a direct
   * connection for a destination outside the mesh, if the workload's egress policy (on
   * `listener`, the listener it came in on) allows it. Every outcome has its flow record.
   */
  async #connectRoute(
    route: Route,
    source: { readonly identity: string; readonly workload: string },
    requested: string,
    listener: string,
  ): Promise<Duplex> {
    if (route.kind === 'refused') {
      this.#flow(
        { direction: 'outbound', verdict: 'ERROR', reason: route.reason, source, destination: { service: requested } },
        'once',
      );
      throw new TunnelError(route.reason, route.reason);
    }
    const denied = this.#egressDenied(listener, route, source.identity);
    if (denied) {
      const service = route.service;
      this.#flow(
        {
          direction: 'outbound',
          verdict: 'DENIED',
          reason: denied.reason,
          ...(denied.policy !== undefined ? { policy: denied.policy } : {}),
          source,
          destination: { address: denied.address, ...(service ? { service } : {}) },
          via: route.kind === 'direct' ? 'passthrough' : route.via,
        },
        'once',
      );
      // 403: the status a CONNECT or an absolute-form request is answered with.
      throw new TunnelError('egress-denied', `${requested}: ${denied.reason}`, 403);
    }
    if (route.kind === 'direct') {
      const destination = {
        address: `${route.address}:${route.port}`,
        ...(route.service ? { service: route.service } : {}),
      };
      const s = netConnect({ port: route.port, host: route.address, noDelay: true });
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('connect', resolve);
          s.once('error', reject);
        });
      } catch (e) {
        const reason = `connect-failed: ${e instanceof Error ? e.message : String(e)}`;
        this.#flow(
          { direction: 'outbound', verdict: 'ERROR', reason, source, destination, via: 'passthrough' },
          'once',
        );
        throw e;
      }
      this.#flow({ direction: 'outbound', verdict: 'FORWARDED', source, destination, via: 'passthrough' }, 'once');
      return s;
    }
    return this.#openTunnel(
      {
        peer: route.peer,
        authority: route.authority,
        sourceIdentity: source.identity,
        destinationIdentity: route.identity,
      },
      source,
      { identity: route.identity, address: route.authority, ...(route.service ? { service: route.service } : {}) },
      route.via,
    );
  }

  /** HTTP_PROXY requests (absolute-form): forwarded over a kept-alive tunnel per destination. */
  #forwardHttp(req: IncomingMessage, res: ServerResponse, identity: string, workload: string, listener: string): void {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`trellis node proxy: expected an absolute-form request (HTTP_PROXY), got ${JSON.stringify(req.url)}\n`);
      return;
    }
    const port = Number(url.port || 80);
    const route = this.#resolver?.resolve(url.hostname, port) ?? NOT_CONFIGURED;
    if (route.kind === 'refused') {
      void this.#connectRoute(route, { identity, workload }, `${url.hostname}:${port}`, listener).catch(
        () => undefined,
      );
      res.writeHead(503, { 'content-type': 'text/plain', 'trellis-reason': route.reason });
      res.end(`trellis: ${url.hostname}:${port}: ${route.reason}\n`);
      return;
    }
    // Per listener too: the pool's connections were allowed by that listener's egress policy.
    const poolKey = `${listener}|${identity}|${url.hostname}:${port}`;
    let pool = this.#pools.get(poolKey);
    if (!pool) {
      const requested = `${url.hostname}:${port}`;
      const target: UpstreamTarget = { address: url.hostname, port, clusterName: requested, cluster: {}, endpoint: {} };
      // Each new connection re-resolves (round robin across endpoints), as a cluster would.
      pool = new Http1Pool(target, async () => {
        const route = this.#resolver?.resolve(url.hostname, port) ?? NOT_CONFIGURED;
        const tunnel = await this.#connectRoute(route, { identity, workload }, requested, listener);
        // HTTP/1.1 never half-closes: the far end finishing (its workload closed an idle
        // keep-alive connection) means the connection is gone.
        tunnel.once('end', () => tunnel.destroy());
        return socketLike(tunnel);
      });
      this.#pools.set(poolKey, pool);
    }
    // The parsed header objects are ours: stripped in place (the L7 engine's rule), no copies.
    const headers = req.headers as HeaderMap;
    stripHopByHop(headers);
    delete headers['proxy-authorization'];
    delete headers.host;
    const hasBody =
      headers['content-length'] !== undefined
        ? headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined;
    const src = {
      method: req.method ?? 'GET',
      path: `${url.pathname}${url.search}`,
      authority: url.host,
      headers,
      body: hasBody ? req : undefined,
      bytesReceived: 0,
    };
    let done = false;
    const upstream = pool.request(src, {
      onUpstreamHeaders: (status, h, endStream) => {
        stripHopByHop(h);
        res.writeHead(status, h as Record<string, string | string[]>);
        if (endStream) {
          done = true;
          res.end();
        }
      },
      onUpstreamData: (chunk) => {
        if (!res.write(chunk)) {
          upstream.pause();
          res.once('drain', () => upstream.resume());
        }
      },
      onUpstreamEnd: () => {
        done = true;
        res.end();
      },
      onUpstreamError: (_reason, e) => {
        done = true;
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const cause = e instanceof UpstreamConnectError && e.cause instanceof TunnelError ? e.cause : e;
        const reason = cause instanceof TunnelError ? cause.reason : 'upstream-connect-error';
        res.writeHead(cause instanceof TunnelError && cause.status === 403 ? 403 : 503, {
          'content-type': 'text/plain',
          'trellis-reason': reason,
        });
        res.end(`trellis: ${url.host}: ${cause?.message ?? reason}\n`);
      },
    });
    res.once('close', () => {
      if (!done) upstream.abort();
    });
  }

  /** CONNECT host:port (HTTPS_PROXY, or plain TCP through the proxy): one tunnel. */
  #forwardConnect(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    identity: string,
    workload: string,
    listener: string,
  ): void {
    const [host, port] = splitHostPort(req.url ?? '');
    const route = this.#resolver?.resolve(host, port) ?? NOT_CONFIGURED;
    socket.on('error', () => undefined);
    this.#connectRoute(route, { identity, workload }, `${host}:${port}`, listener).then(
      (up) => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) up.write(head);
        splice(socket, up);
      },
      (e: Error) => {
        const reason = e instanceof TunnelError ? e.reason : 'connect-failed';
        socket.end(
          `HTTP/1.1 ${e instanceof TunnelError && e.status === 403 ? 403 : 503} ${reason}\r\ntrellis-reason: ${reason}\r\ncontent-length: 0\r\n\r\n`,
        );
      },
    );
  }

  /** Which local workload a captured connection came from: by its address (every local workload has an outbound entry). */
  #captureSource(address: string): { identity: string; workload: string; listener: string } | undefined {
    const cfg = this.#config;
    if (!cfg) return undefined;
    if (this.#captureSources?.cfg !== cfg) {
      const bySource = new Map<string, { identity: string; workload: string; listener: string }>();
      for (const o of cfg.outbound)
        if (o.workloadAddress)
          bySource.set(o.workloadAddress, { identity: o.identity, workload: o.workload, listener: o.name });
      this.#captureSources = { cfg, bySource };
    }
    return this.#captureSources.bySource.get(address);
  }

  /** A pod's redirected connection: as if it had asked CONNECT <original destination> of its outbound proxy. */
  #onCaptured(socket: Socket, original: Endpoint, source: Endpoint): void {
    socket.on('error', () => undefined);
    const from = this.#captureSource(source.address);
    if (!from) {
      this.#flow(
        {
          direction: 'outbound',
          verdict: 'ERROR',
          reason: 'unknown-source',
          source: { address: source.address },
          destination: { address: `${original.address}:${original.port}` },
        },
        'once',
      );
      socket.destroy();
      return;
    }
    // A Service VIP stands for its service host; any other address is dialled as it is.
    const host = this.#resolver?.serviceOfVip(original.address, original.port) ?? original.address;
    const route = this.#resolver?.resolve(host, original.port) ?? NOT_CONFIGURED;
    this.#connectRoute(
      route,
      { identity: from.identity, workload: from.workload },
      `${host}:${original.port}`,
      from.listener,
    ).then(
      (up) => splice(socket, up),
      () => socket.destroy(),
    );
  }

  /** An inbound CONNECT: a local workload port (L4 policy, then deliver) or a waypoint hosted here. */
  #onTunnel(t: TunnelRequest): void {
    const cfg = this.#config;
    const source = { identity: t.peerIdentity, address: t.peerAddress };
    const refuse = (status: number, reason: string, destination: FlowRecord['destination'], policy?: string) => {
      if (!t.stream.destroyed) t.stream.respond({ ':status': status, 'trellis-reason': reason }, { endStream: true });
      this.#flow(
        {
          direction: 'inbound',
          verdict: status === 403 ? 'DENIED' : 'ERROR',
          reason,
          ...(policy !== undefined ? { policy } : {}),
          source,
          destination,
          via: 'hbone',
        },
        'once',
      );
    };
    const inbound = cfg?.inbound.get(t.authority);
    if (inbound) {
      const destination = { identity: inbound.identity, address: t.authority, workload: inbound.workload };
      if (t.localIdentity !== undefined && t.localIdentity !== inbound.identity)
        return refuse(403, 'wrong-destination-identity', destination);
      const [ip, port] = splitHostPort(t.authority);
      const decision = inbound.rbac.evaluate({
        principal: t.peerIdentity,
        sourceIp: t.peerAddress,
        destinationIp: ip,
        destinationPort: port,
      });
      if (!decision.allowed)
        return refuse(403, deniedReason(decision, inbound.allowPolicies), destination, decision.policy);
      return this.#deliver(t, ip, port, source, destination);
    }
    for (const role of cfg?.l7 ?? []) {
      if (role.role !== 'waypoint') continue;
      const chain = role.chains.get(t.authority);
      if (!chain) continue;
      const destination = { identity: role.identity, service: t.authority };
      if (t.localIdentity !== role.identity) return refuse(403, 'wrong-destination-identity', destination);
      const engine = this.#engines.get(role.name)?.engine;
      if (!engine) return refuse(503, 'waypoint-not-ready', destination);
      t.stream.respond({ ':status': 200 });
      this.#flow({ direction: 'inbound', verdict: 'FORWARDED', source, destination, via: 'waypoint' }, 'once');
      engine.serveConnection(socketLike(t.stream as ServerHttp2Stream & Duplex), chain.routeConfig, {
        identity: t.peerIdentity,
        address: t.peerAddress,
        port: t.peerPort,
      });
      return;
    }
    return refuse(404, 'no-such-destination', { address: t.authority });
  }

  #deliver(
    t: TunnelRequest,
    ip: string,
    port: number,
    source: FlowRecord['source'],
    destination: FlowRecord['destination'],
  ): void {
    const started = Date.now();
    const up = netConnect({ port, host: ip, noDelay: true });
    up.once('connect', () => {
      t.stream.respond({ ':status': 200 });
      this.#flow({ direction: 'inbound', verdict: 'FORWARDED', source, destination, via: 'hbone' }, 'open');
      t.stream.pipe(up).pipe(t.stream);
    });
    up.once('error', (e: Error) => {
      if (!t.stream.headersSent) {
        t.stream.respond({ ':status': 503, 'trellis-reason': 'workload-unreachable' }, { endStream: true });
        this.#flow(
          {
            direction: 'inbound',
            verdict: 'ERROR',
            reason: `workload-unreachable: ${e.message}`,
            source,
            destination,
            via: 'hbone',
          },
          'once',
        );
      } else t.stream.destroy();
    });
    up.once('close', () => {
      if (!t.stream.destroyed) t.stream.end();
      if (t.stream.headersSent)
        this.#flow(
          {
            direction: 'inbound',
            verdict: 'FORWARDED',
            source,
            destination,
            via: 'hbone',
            // The workload socket's own counters: what it answered is what the peer was sent.
            bytesSent: up.bytesRead,
            bytesReceived: up.bytesWritten,
            durationMs: Date.now() - started,
          },
          'close',
        );
    });
    t.stream.on('error', () => up.destroy());
    t.stream.on('close', () => up.destroy());
  }

  get state(): XdsState | undefined {
    return this.#state;
  }

  /** Stops accepting, lets tunnels finish (bounded), then closes everything. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#xds?.close();
    await this.#capture?.close();
    await Promise.all([...this.#outbound.values()].map((r) => r.close()));
    this.#outbound.clear();
    await Promise.all([...this.#upstreams.values()].map((r) => r.close()));
    this.#upstreams.clear();
    await this.#plaintext.close();
    await Promise.all(
      [...this.#engines.values()].map(async (e) => {
        await e.listener?.close();
        await e.engine.close();
      }),
    );
    this.#engines.clear();
    for (const p of this.#pools.values()) p.close();
    this.#pool.close();
    if (this.#hbone) await this.#hbone.close();
    if (this.#metricsServer) await closeServer(this.#metricsServer);
    // After the engines: their last requests' spans and access log lines are queued by now.
    await this.#spans?.close();
    if (this.#accessLog) {
      await this.#accessLog.close();
      if (this.#accessLog.dropped > 0)
        this.#log('warn', 'access log lines dropped (writer over its buffer bound)', {
          dropped: this.#accessLog.dropped,
        });
    }
  }
}
