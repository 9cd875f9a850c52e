// Active health checking (envoy.config.core.v3.HealthCheck, Cluster.health_checks): one probe loop
// per host of the cluster, through the engine's connector (so through HBONE in the mesh). HTTP
// checks send "GET <path>" over HTTP/1.1 (Envoy's default codec) with Host = http_health_check.host
// or the cluster name, and pass on expected_statuses (default: 200 only; ranges are [start, end));
// TCP checks pass on connect, or with send/receive payloads when the response contains the
// receive blocks in order. A host starts unhealthy until its first check passes (Envoy: a single
// success at startup); then it turns unhealthy after unhealthy_threshold failures in a row
// (immediately for an HTTP status outside expected_statuses) and healthy again after
// healthy_threshold successes. Intervals: interval, unhealthy_interval while unhealthy, and the
// edge intervals for the first check after a change (interval_jitter added). One connection per
// check (reuse_connection is not honoured); no_traffic_interval is not honoured (checks always run
// at interval). Per endpoint, health_check_config.port_value sends the checks to another port and
// disable_active_health_check leaves the host out (never failed by checks); HTTP checks add
// http_health_check.request_headers_to_add.
// Only the first HealthCheck of a cluster is used; gRPC and custom checks are reported.
import type { Duplex } from 'node:stream';
import { durationMs, list, num, obj, str, type EnvoyObject } from './config.js';
import type { HostHealth } from './outlier-detection.js';
import { openConnection } from './upstream-pool.js';
import type { UpstreamConnector, UpstreamTarget } from './upstream.js';

export interface HealthCheckSettings {
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** unhealthy_interval (default interval), unhealthy_edge_interval and healthy_edge_interval (first check after a change). */
  readonly unhealthyIntervalMs: number;
  readonly unhealthyEdgeIntervalMs: number;
  readonly healthyEdgeIntervalMs: number;
  readonly jitterMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
  readonly http?: {
    readonly path: string;
    readonly host: string;
    /** [start, end) ranges. */
    readonly expected: readonly (readonly [number, number])[];
    /** request_headers_to_add, as "name: value\r\n" lines. */
    readonly headers: string;
  };
  readonly tcp?: { readonly send: Buffer | undefined; readonly receive: readonly Buffer[] };
}

/** Cluster.health_checks -> settings, or an error message (the engine reports it and checks nothing). */
export function healthCheckSettings(clusterName: string, checks: unknown): HealthCheckSettings | string | undefined {
  const hc = list(checks)[0];
  if (!hc) return undefined;
  const timeoutMs = durationMs(hc.timeout);
  const intervalMs = durationMs(hc.interval);
  if (!timeoutMs || !intervalMs) return 'health_checks[0]: timeout and interval are required';
  const u32 = (v: unknown) => num(obj(v)?.value ?? v);
  const unhealthy = u32(hc.unhealthy_threshold);
  const healthy = u32(hc.healthy_threshold);
  if (unhealthy === undefined || healthy === undefined)
    return 'health_checks[0]: unhealthy_threshold and healthy_threshold are required';
  const unhealthyIntervalMs = durationMs(hc.unhealthy_interval) || intervalMs;
  const base = {
    timeoutMs,
    intervalMs,
    unhealthyIntervalMs,
    unhealthyEdgeIntervalMs: durationMs(hc.unhealthy_edge_interval) || unhealthyIntervalMs,
    healthyEdgeIntervalMs: durationMs(hc.healthy_edge_interval) || intervalMs,
    jitterMs: durationMs(hc.interval_jitter) ?? 0,
    unhealthyThreshold: Math.max(1, unhealthy),
    healthyThreshold: Math.max(1, healthy),
  };
  const http = obj(hc.http_health_check);
  if (http) {
    const path = str(http.path);
    if (!path) return 'health_checks[0].http_health_check.path is required';
    const ranges = list(http.expected_statuses).map((r) => [num(r.start) ?? 0, num(r.end) ?? 0] as const);
    if (ranges.some(([s, e]) => s < 100 || e > 600 || s >= e))
      return 'health_checks[0].http_health_check.expected_statuses: ranges must be [start, end) within 100..600';
    let headers = '';
    for (const o of list(http.request_headers_to_add)) {
      const h = obj(o.header);
      const key = str(h?.key);
      // Header text goes on the wire: names must be tokens, values one line.
      if (!key || !/^[-!#$%&'*+.^_`|~0-9A-Za-z]+$/.test(key) || /[\r\n]/.test(str(h?.value) ?? ''))
        return 'health_checks[0].http_health_check.request_headers_to_add: invalid header';
      headers += `${key}: ${str(h?.value) ?? ''}\r\n`;
    }
    return {
      ...base,
      http: {
        path,
        host: str(http.host) || clusterName,
        expected: ranges.length > 0 ? ranges : [[200, 201] as const],
        headers,
      },
    };
  }
  const tcp = obj(hc.tcp_health_check);
  if (tcp) {
    const payload = (p: EnvoyObject | undefined): Buffer | undefined => {
      const text = str(p?.text);
      return text ? Buffer.from(text, 'hex') : undefined;
    };
    return {
      ...base,
      tcp: {
        send: payload(obj(tcp.send)),
        receive: list(tcp.receive)
          .map(payload)
          .filter((b): b is Buffer => b !== undefined),
      },
    };
  }
  return 'health_checks[0]: only http_health_check and tcp_health_check are supported';
}

export interface CheckedHost {
  readonly target: UpstreamTarget;
  readonly health: HostHealth;
}

/** The probe loops of one cluster. */
export class HealthChecker {
  readonly settings: HealthCheckSettings;
  readonly #connector: UpstreamConnector;
  readonly #loops = new Map<CheckedHost, Probe>();
  #stopped = false;

  /** Called after each passed check (outlier detection may uneject the host). */
  onPass: ((host: CheckedHost) => void) | undefined;

  constructor(settings: HealthCheckSettings, connector: UpstreamConnector) {
    this.settings = settings;
    this.#connector = connector;
  }

  /** Starts probing new hosts, stops probing hosts no longer in the cluster. */
  setHosts(all: readonly CheckedHost[]): void {
    if (this.#stopped) return;
    const hosts = all.filter((h) => {
      if (!checkDisabled(h.target.endpoint)) return true;
      // Not checked: never failed by checks.
      if (h.health.hcFailed) {
        h.health.hcFailed = false;
        h.health.changed();
      }
      return false;
    });
    const keep = new Set(hosts);
    for (const [h, p] of this.#loops) {
      if (!keep.has(h)) {
        p.stop();
        this.#loops.delete(h);
      }
    }
    for (const h of hosts) {
      if (this.#loops.has(h)) continue;
      const p = new Probe(h, this.settings, this.#connector, (x) => this.onPass?.(x));
      this.#loops.set(h, p);
      p.start();
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const p of this.#loops.values()) p.stop();
    this.#loops.clear();
  }
}

type Outcome = 'ok' | 'fail' | 'fail-now';

/** LbEndpoint.endpoint.health_check_config.disable_active_health_check. */
function checkDisabled(lbEndpoint: EnvoyObject): boolean {
  return obj(obj(lbEndpoint.endpoint)?.health_check_config)?.disable_active_health_check === true;
}

/** The host the checks go to: health_check_config.port_value (when set) replaces the port. */
function checkTarget(t: UpstreamTarget): UpstreamTarget {
  const port = num(obj(obj(t.endpoint.endpoint)?.health_check_config)?.port_value);
  return port !== undefined && port > 0 && port <= 65535 && port !== t.port ? { ...t, port } : t;
}

class Probe {
  readonly #host: CheckedHost;
  readonly #s: HealthCheckSettings;
  readonly #connector: UpstreamConnector;
  readonly #target: UpstreamTarget;
  #timer: NodeJS.Timeout | undefined;
  #socket: Duplex | undefined;
  #stopped = false;
  /** No check has passed yet since this host appeared (one success is enough then). */
  #initial = true;
  readonly #onPass: (host: CheckedHost) => void;

  constructor(
    host: CheckedHost,
    s: HealthCheckSettings,
    connector: UpstreamConnector,
    onPass: (host: CheckedHost) => void,
  ) {
    this.#host = host;
    this.#target = checkTarget(host.target);
    this.#s = s;
    this.#connector = connector;
    this.#onPass = onPass;
  }

  start(): void {
    const h = this.#host.health;
    // A host already known healthy (unchanged config, same endpoint) stays so; a new one waits for a check.
    if (h.hcSuccesses === 0 && !h.hcFailed) {
      h.hcFailed = true;
      h.changed();
    }
    this.#initial = h.hcFailed;
    this.#run();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#socket?.destroy();
  }

  #next(changed: boolean): void {
    if (this.#stopped) return;
    const s = this.#s;
    const unhealthy = this.#host.health.hcFailed;
    const interval = changed
      ? unhealthy
        ? s.unhealthyEdgeIntervalMs
        : s.healthyEdgeIntervalMs
      : unhealthy
        ? s.unhealthyIntervalMs
        : s.intervalMs;
    const jitter = s.jitterMs > 0 ? Math.floor(Math.random() * s.jitterMs) : 0;
    this.#timer = setTimeout(() => this.#run(), interval + jitter);
    this.#timer.unref();
  }

  #run(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    void this.#check().then((outcome) => {
      if (this.#stopped) return;
      const before = this.#host.health.hcFailed;
      this.#record(outcome);
      this.#next(before !== this.#host.health.hcFailed);
    });
  }

  #record(outcome: Outcome): void {
    const h = this.#host.health;
    if (outcome === 'ok') {
      h.hcFailures = 0;
      h.hcSuccesses++;
      if (h.hcFailed && (this.#initial || h.hcSuccesses >= this.#s.healthyThreshold)) {
        h.hcFailed = false;
        this.#initial = false;
        h.changed();
      }
      this.#onPass(this.#host);
      return;
    }
    h.hcSuccesses = 0;
    h.hcFailures++;
    if (!h.hcFailed && (outcome === 'fail-now' || h.hcFailures >= this.#s.unhealthyThreshold)) {
      h.hcFailed = true;
      h.changed();
    }
  }

  /** One check, bounded by the timeout; never rejects. */
  #check(): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let done = false;
      let sock: Duplex | undefined;
      const finish = (o: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock?.destroy();
        if (this.#socket === sock) this.#socket = undefined;
        resolve(o);
      };
      const timer = setTimeout(() => finish('fail'), this.#s.timeoutMs);
      timer.unref();
      let opened: Duplex | Promise<Duplex>;
      try {
        opened = openConnection(this.#connector, this.#target);
      } catch {
        finish('fail');
        return;
      }
      Promise.resolve(opened).then(
        (s) => {
          if (done || this.#stopped) {
            s.destroy();
            finish('fail');
            return;
          }
          sock = this.#socket = s;
          s.on('error', () => finish('fail'));
          s.on('close', () => finish('fail'));
          this.#converse(s, finish);
        },
        () => finish('fail'),
      );
    });
  }

  #converse(s: Duplex, finish: (o: Outcome) => void): void {
    const http = this.#s.http;
    const tcp = this.#s.tcp;
    if (http) {
      let buf = '';
      s.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        const eol = buf.indexOf('\r\n');
        if (eol < 0) {
          if (buf.length > 8192) finish('fail');
          return;
        }
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf.slice(0, eol));
        if (!m) return finish('fail');
        const status = Number(m[1]);
        finish(http.expected.some(([a, b]) => status >= a && status < b) ? 'ok' : 'fail-now');
      });
      s.write(
        `GET ${http.path} HTTP/1.1\r\nhost: ${http.host}\r\nuser-agent: Envoy/HC\r\n${http.headers}connection: close\r\n\r\n`,
      );
      return;
    }
    if (!tcp || (!tcp.send && tcp.receive.length === 0)) return finish('ok');
    const want = tcp.receive;
    if (want.length === 0) {
      // Send only: passes once written.
      s.write(tcp.send!, (e) => finish(e ? 'fail' : 'ok'));
      return;
    }
    let got = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      let at = 0;
      for (const w of want) {
        const i = got.indexOf(w, at);
        if (i < 0) {
          if (got.length > 65536) finish('fail');
          return;
        }
        at = i + w.length;
      }
      finish('ok');
    });
    if (tcp.send) s.write(tcp.send);
  }
}
