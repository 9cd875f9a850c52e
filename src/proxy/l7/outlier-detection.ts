// Passive health checking: Envoy's outlier detection (envoy.config.cluster.v3.OutlierDetection),
// the consecutive 5xx and consecutive gateway failure detectors. Per-host state (HostHealth) lives
// in HostShared, so it survives config updates that keep the endpoint; the detector (settings,
// interval sweep, counters) is per cluster and owned by the ClusterManager.
//
// Semantics (Envoy defaults): consecutive_5xx 5 (enforcing 100%), consecutive_gateway_failure 5
// (enforcing 0%: only when enforcing_consecutive_gateway_failure is set), interval 10 s,
// base_ejection_time 30 s multiplied by the host's ejection count, capped by max_ejection_time
// (300 s; never below the base), max_ejection_percent 10% but the first ejection is always
// allowed. Without split_external_local_origin_errors, local origin failures (connect failure,
// reset, timeout) count as 503 (504 for a timeout). Ejection is immediate; hosts come back at the
// first interval sweep after their ejection time; the ejection multiplier decreases by one at
// each sweep that finds the host back for a whole interval. A passed active health check ends an
// ejection (successful_active_health_check_uneject_host, default true). Success-rate and failure-percentage
// ejection are not implemented (the settings are read but only logged as unsupported).
import { bool, durationMs, num, obj, type EnvoyObject } from './config.js';

/** Outlier and active health-check state of one endpoint of one cluster. */
export class HostHealth {
  consecutive5xx = 0;
  consecutiveGateway = 0;
  ejected = false;
  ejectedAt = 0;
  unejectedAt = 0;
  /** Ejection time multiplier (times ejected, decreasing while the host behaves). */
  ejections = 0;
  /** Active health checking says unhealthy (hosts start so until their first check passes). */
  hcFailed = false;
  hcSuccesses = 0;
  hcFailures = 0;
  /** Told when ejected/hcFailed change (the cluster's health epoch). */
  owner: HealthEpoch | undefined;

  get healthy(): boolean {
    return !this.ejected && !this.hcFailed;
  }

  changed(): void {
    if (this.owner) this.owner.epoch++;
  }
}

/** Bumped whenever a host of the cluster changes health: load balancers rebuild lazily. */
export interface HealthEpoch {
  epoch: number;
}

export interface OutlierSettings {
  readonly consecutive5xx: number;
  readonly consecutiveGateway: number;
  readonly enforcing5xx: number;
  readonly enforcingGateway: number;
  readonly intervalMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
  /** successful_active_health_check_uneject_host (default true): a passed active check ends an ejection. */
  readonly unejectOnHealthCheck: boolean;
}

export interface OutlierStats {
  /** Gauge: hosts ejected now. */
  outlier_detection_ejections_active: number;
  ejections_enforced_total: number;
  ejections_overflow: number;
  ejections_detected_consecutive_5xx: number;
  ejections_enforced_consecutive_5xx: number;
  ejections_detected_consecutive_gateway_failure: number;
  ejections_enforced_consecutive_gateway_failure: number;
}

/** OutlierDetection -> settings with Envoy's defaults, plus what is set but not honoured. */
export function outlierSettings(od: EnvoyObject): { settings: OutlierSettings; unsupported: string[] } {
  const u32 = (v: unknown, d: number) => num(obj(v)?.value ?? v) ?? d;
  const pct = (v: unknown, d: number) => Math.min(100, Math.max(0, u32(v, d)));
  const base = durationMs(od.base_ejection_time) ?? 30_000;
  const settings: OutlierSettings = {
    consecutive5xx: u32(od.consecutive_5xx, 5),
    consecutiveGateway: u32(od.consecutive_gateway_failure, 5),
    enforcing5xx: pct(od.enforcing_consecutive_5xx, 100),
    enforcingGateway: pct(od.enforcing_consecutive_gateway_failure, 0),
    intervalMs: Math.max(1, durationMs(od.interval) ?? 10_000),
    baseEjectionMs: base,
    maxEjectionMs: Math.max(base, durationMs(od.max_ejection_time) ?? 300_000),
    maxEjectionPercent: pct(od.max_ejection_percent, 10),
    unejectOnHealthCheck: bool(od.successful_active_health_check_uneject_host) ?? true,
  };
  const unsupported: string[] = [];
  // Success-rate ejection is on by default in Envoy (enforcing 100%) but needs request volume;
  // a set enforcing_success_rate other than 0 is reported, as are the failure-percentage and
  // split local-origin settings.
  if (u32(od.enforcing_success_rate, 0) > 0) unsupported.push('enforcing_success_rate');
  if (u32(od.enforcing_failure_percentage, 0) > 0) unsupported.push('enforcing_failure_percentage');
  if (od.split_external_local_origin_errors === true) unsupported.push('split_external_local_origin_errors');
  return { settings, unsupported };
}

export interface OutlierHost {
  readonly health: HostHealth;
}

/** One cluster's detector: outcomes in, ejections out; an interval sweep brings hosts back. */
export class OutlierDetector {
  settings: OutlierSettings;
  readonly stats: OutlierStats = {
    outlier_detection_ejections_active: 0,
    ejections_enforced_total: 0,
    ejections_overflow: 0,
    ejections_detected_consecutive_5xx: 0,
    ejections_enforced_consecutive_5xx: 0,
    ejections_detected_consecutive_gateway_failure: 0,
    ejections_enforced_consecutive_gateway_failure: 0,
  };
  #hosts: readonly OutlierHost[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** For tests: Date.now replacement. */
  readonly #now: () => number;

  constructor(settings: OutlierSettings, now: () => number = Date.now) {
    this.settings = settings;
    this.#now = now;
    this.#schedule();
  }

  /** New settings (same cluster): host state and counters stay; the sweep restarts. */
  reconfigure(settings: OutlierSettings): void {
    const restart = settings.intervalMs !== this.settings.intervalMs;
    this.settings = settings;
    if (restart) {
      this.stop();
      this.#schedule();
    }
  }

  /** The cluster's hosts (all priorities), for max_ejection_percent and the sweep. */
  setHosts(hosts: readonly OutlierHost[]): void {
    this.#hosts = hosts;
    this.#recount();
  }

  /** An HTTP response status from the host (upstream's, not a local reply). */
  reportStatus(host: OutlierHost, status: number): void {
    const h = host.health;
    if (status >= 500 && status < 600) {
      if (status >= 502 && status <= 504) {
        if (++h.consecutiveGateway === this.settings.consecutiveGateway) this.#detected(host, 'gateway');
      } else {
        h.consecutiveGateway = 0;
      }
      if (++h.consecutive5xx === this.settings.consecutive5xx) this.#detected(host, '5xx');
    } else {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
    }
  }

  /** A local-origin failure (connect failure, reset, protocol error, timeout): 503, or 504 for a timeout. */
  reportLocalFailure(host: OutlierHost, timeout: boolean): void {
    this.reportStatus(host, timeout ? 504 : 503);
  }

  #detected(host: OutlierHost, kind: '5xx' | 'gateway'): void {
    const h = host.health;
    if (kind === '5xx') {
      h.consecutive5xx = 0;
      if (h.ejected) return;
      this.stats.ejections_detected_consecutive_5xx++;
      if (this.#enforce(this.settings.enforcing5xx) && this.#eject(host))
        this.stats.ejections_enforced_consecutive_5xx++;
    } else {
      h.consecutiveGateway = 0;
      if (h.ejected) return;
      this.stats.ejections_detected_consecutive_gateway_failure++;
      if (this.#enforce(this.settings.enforcingGateway) && this.#eject(host))
        this.stats.ejections_enforced_consecutive_gateway_failure++;
    }
  }

  #enforce(percent: number): boolean {
    return percent >= 100 || (percent > 0 && Math.random() * 100 < percent);
  }

  #eject(host: OutlierHost): boolean {
    const active = this.stats.outlier_detection_ejections_active;
    const total = this.#hosts.length;
    // The first ejection is always allowed; after that, the share ejected stays within the maximum.
    if (active > 0 && (100 * (active + 1)) / Math.max(1, total) > this.settings.maxEjectionPercent) {
      this.stats.ejections_overflow++;
      return false;
    }
    const h = host.health;
    h.ejected = true;
    h.ejectedAt = this.#now();
    // Grows with each ejection while base x multiplier is below the cap.
    if (this.settings.baseEjectionMs * h.ejections < this.settings.maxEjectionMs) h.ejections++;
    this.stats.outlier_detection_ejections_active++;
    this.stats.ejections_enforced_total++;
    h.changed();
    return true;
  }

  /** The ejection time of a host now (base x multiplier, capped). */
  ejectionTimeMs(host: OutlierHost): number {
    const s = this.settings;
    return Math.min(s.baseEjectionMs * Math.max(1, host.health.ejections), s.maxEjectionMs);
  }

  /** An active health check passed: the host comes back now if it was ejected (unless configured otherwise). */
  healthCheckPassed(host: OutlierHost): void {
    if (host.health.ejected && this.settings.unejectOnHealthCheck) {
      this.#uneject(host, this.#now());
      this.#recount();
    }
  }

  #uneject(host: OutlierHost, now: number): void {
    const h = host.health;
    h.ejected = false;
    h.unejectedAt = now;
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
    h.changed();
  }

  /** The interval sweep: ejected hosts whose time is up come back; well-behaved hosts lose a multiplier step. */
  sweep(): void {
    const now = this.#now();
    for (const host of this.#hosts) {
      const h = host.health;
      if (h.ejected) {
        if (now - h.ejectedAt >= this.ejectionTimeMs(host)) this.#uneject(host, now);
      } else if (h.ejections > 0 && now - h.unejectedAt >= this.settings.intervalMs) {
        h.ejections--;
      }
    }
    this.#recount();
  }

  #recount(): void {
    let n = 0;
    for (const host of this.#hosts) if (host.health.ejected) n++;
    this.stats.outlier_detection_ejections_active = n;
  }

  #schedule(): void {
    const tick = () => {
      this.sweep();
      this.#timer = setTimeout(tick, this.settings.intervalMs);
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, this.settings.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
