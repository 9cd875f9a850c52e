// A WorkloadGroup readiness probe (Istio ReadinessProbe, in the model as HealthProbeModel) ->
// Envoy active health checking: Cluster.health_checks (envoy.config.core.v3.HealthCheck) and, when
// the probe's port is not the serving port, LbEndpoint.endpoint.health_check_config.port_value.
// Pure.
//
//   timeoutSeconds   -> timeout              periodSeconds -> interval (and no_traffic_interval,
//   failureThreshold -> unhealthy_threshold                    so Envoy probes at that period
//   successThreshold -> healthy_threshold                      before the cluster sees traffic)
//   httpGet          -> http_health_check {path, host, request_headers_to_add,
//                                          expected_statuses [200, 400): Kubernetes' success range}
//   tcpSocket        -> tcp_health_check {} (connect only)
// exec (run on the workload) and HTTPS probes cannot be performed by a proxy: no health check
// (the model reports them, TRL0011). initialDelaySeconds has no Envoy equivalent: a new host is
// unhealthy until its first check passes, which is what the delay protects. Envoy's rules then
// apply: an HTTP status outside the expected range fails a host at once; connection failures and
// timeouts count towards unhealthy_threshold.
import type { HealthProbeModel } from '../../model/mesh-model.js';
import type { EnvoyObject } from './route-match.js';

/** Envoy's HeaderValueOption cannot set Host (http_health_check.host is the Host header). */
const isHost = (name: string): boolean => name.toLowerCase() === 'host' || name === ':authority';

function duration(seconds: number): { seconds: number; nanos: number } {
  return { seconds, nanos: 0 };
}

/** Cluster.health_checks for a probe, or undefined when a proxy cannot perform it. */
export function healthChecksFor(probe: HealthProbeModel | undefined): EnvoyObject[] | undefined {
  if (!probe || probe.exec) return undefined;
  const hc: EnvoyObject = {
    timeout: duration(probe.timeoutSeconds),
    interval: duration(probe.periodSeconds),
    no_traffic_interval: duration(probe.periodSeconds),
    unhealthy_threshold: { value: probe.failureThreshold },
    healthy_threshold: { value: probe.successThreshold },
  };
  if (probe.http) {
    if (probe.http.scheme !== 'HTTP') return undefined;
    const hostHeader = probe.http.headers.find((h) => isHost(h.name))?.value ?? probe.http.host;
    const http: EnvoyObject = { path: probe.http.path, expected_statuses: [{ start: 200, end: 400 }] };
    if (hostHeader) http.host = hostHeader;
    const add = probe.http.headers
      .filter((h) => !isHost(h.name))
      .map((h) => ({ header: { key: h.name, value: h.value }, append_action: 'APPEND_IF_EXISTS_OR_ADD' }));
    if (add.length > 0) http.request_headers_to_add = add;
    hc.http_health_check = http;
  } else if (probe.tcp) {
    hc.tcp_health_check = {};
  } else {
    return undefined;
  }
  return [hc];
}

/** The port the probe targets, when it is not the endpoint's serving port (else undefined). */
export function healthCheckPort(probe: HealthProbeModel | undefined, servingPort: number): number | undefined {
  if (!healthChecksFor(probe)) return undefined;
  const port = probe!.http?.port ?? probe!.tcp?.port;
  return port !== undefined && port !== servingPort ? port : undefined;
}
