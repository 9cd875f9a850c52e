// trellis policy check: would this caller reach this service port, and which rule decides?
// Like `cilium policy trace` and `istioctl x authz check`, for every kind at once: the request
// is evaluated at each enforcement point on its way, with the RBAC filters those proxies are
// served — the service's waypoint (L7, the caller's identity and the HTTP request), then each
// endpoint's node inbound listener (L4; behind a waypoint the caller there is the waypoint).
import { UsageError } from '../errors.js';
import type { EndpointModel, ServiceModel, WorkloadModel } from '../model/mesh-model.js';
import { get, isObj } from '../proxy/envoy/values.js';
import {
  compileRbacFilters,
  type RbacAttributes,
  type RbacDecision,
  type RequestAuth,
} from '../proxy/rbac/evaluate.js';
import { closest } from '../util/did-you-mean.js';
import type { EnvoyObject } from '../xds/translate/route-match.js';
import { allowPolicies, sourceOf } from '../proxy/rbac/policy-names.js';
import type { PolicyView } from './view.js';

export type Verdict = 'ALLOW' | 'DENY';

export interface CheckRequest {
  /** A workload ("ns/name", "name.ns" or a unique "name") or a SPIFFE ID. */
  readonly from: string;
  /** "host:port": a service host name (api.shop.svc.cluster.local), port optional for one-port services. */
  readonly to: string;
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly requestAuth?: RequestAuth;
}

export interface CheckStep {
  /** The endpoint workload ("shop/api-v1") or address. */
  readonly endpoint: string;
  /** "waypoint shop/waypoint" or "node node-a inbound 127.0.0.1:9081". */
  readonly enforcedBy: string;
  readonly layer: 'L4' | 'L7';
  /** The identity the enforcement point sees. */
  readonly caller: string;
  readonly verdict: Verdict;
  readonly policy?: string;
  readonly rule?: string;
  readonly reason: string;
}

export interface CheckResult {
  readonly verdict: Verdict;
  /** The deciding policy: the one that denied, else the one that allowed at the first enforcement point. */
  readonly policy: string | null;
  readonly rule: string | null;
  readonly reason: string;
  readonly from: { readonly identity: string; readonly workload?: string; readonly address?: string };
  readonly to: { readonly service: string; readonly port: number };
  readonly request?: { readonly method: string; readonly path: string };
  readonly steps: readonly CheckStep[];
}

export interface Caller {
  readonly identity: string;
  readonly workload?: WorkloadModel;
}

/** --from: a workload reference or a SPIFFE ID. */
export function resolveCaller(view: PolicyView, from: string, flag = '--from'): Caller {
  if (from.startsWith('spiffe://')) {
    return { identity: from, workload: view.model.workloads.find((w) => w.identity === from) };
  }
  const [a, b] = from.includes('/') ? from.split('/', 2) : from.includes('.') ? from.split('.', 2).reverse() : [];
  const found =
    a !== undefined
      ? view.model.workloads.filter((w) => w.namespace === a && w.name === b)
      : view.model.workloads.filter((w) => w.name === from);
  if (found.length === 1) return { identity: found[0]!.identity, workload: found[0] };
  const names = view.model.workloads.map((w) => `${w.namespace}/${w.name}`);
  if (found.length > 1)
    throw new UsageError(
      `${flag} ${from}: several workloads are named so (${found.map((w) => `${w.namespace}/${w.name}`).join(', ')}); use NAMESPACE/NAME`,
    );
  const guess = closest(from, names);
  throw new UsageError(
    `${flag} ${from}: no such workload in ${view.origin}${guess ? ` (did you mean ${guess}?)` : ''}; expected NAMESPACE/NAME, NAME.NAMESPACE or a SPIFFE ID (spiffe://...)`,
  );
}

/** --to: a service host name and port. */
export function resolveService(view: PolicyView, to: string, flag = '--to'): { svc: ServiceModel; port: number } {
  const m = /^(.+?)(?::(\d+))?$/.exec(to)!;
  const host = m[1]!;
  const services = view.model.services;
  let svc = services.find((s) => s.hostname === host);
  if (!svc) {
    const expanded = services.filter((s) => s.hostname.startsWith(`${host}.`));
    if (expanded.length === 1) svc = expanded[0];
  }
  if (!svc) {
    const guess = closest(
      host,
      services.map((s) => s.hostname),
    );
    throw new UsageError(
      `${flag} ${to}: no service has host ${host} in ${view.origin}${guess ? ` (did you mean ${guess}?)` : ''}; expected HOST:PORT such as api.prod.svc.cluster.local:8080`,
    );
  }
  const ports = svc.ports.map((p) => p.port);
  if (m[2] === undefined) {
    if (ports.length === 1) return { svc, port: ports[0]! };
    throw new UsageError(`${flag} ${to}: ${svc.hostname} has ports ${ports.join(', ')}; say which (HOST:PORT)`);
  }
  const port = Number(m[2]);
  if (!ports.includes(port))
    throw new UsageError(`${flag} ${to}: ${svc.hostname} has no port ${port} (ports: ${ports.join(', ') || 'none'})`);
  return { svc, port };
}

/** The filters of a Listener's filter chain (by name, or the first). */
function chainFilters(listener: EnvoyObject | undefined, chain?: string): EnvoyObject[] | undefined {
  if (!listener) return undefined;
  const chains = (get(listener, 'filter_chains') as EnvoyObject[] | undefined) ?? [];
  const c = chain === undefined ? chains[0] : chains.find((x) => get(x, 'name') === chain);
  if (!c) return chain === undefined ? [] : undefined;
  return (get(c, 'filters') as EnvoyObject[] | undefined) ?? [];
}

function httpFiltersOf(filters: readonly EnvoyObject[]): EnvoyObject[] {
  for (const f of filters) {
    const tc = get(f, 'typed_config');
    const hf = isObj(tc) ? get(tc, 'http_filters') : undefined;
    if (Array.isArray(hf)) return hf as EnvoyObject[];
  }
  return [];
}

/**
 * A denial no policy named ("no ALLOW policy matched"), with the ALLOW policies in force at the
 * filters that found nothing (each evaluated alone), so the message says what to change.
 */
export function explainDenial(
  filters: readonly EnvoyObject[],
  mode: 'l4' | 'l7',
  attrs: RbacAttributes,
  d: RbacDecision,
  where: 'here' | 'there' = 'here',
): string {
  const names = allowPolicies(filters.filter((f) => !compileRbacFilters([f], mode).evaluate(attrs).allowed));
  return names.length ? `${d.reason}; the ALLOW policies in force ${where}: ${names.join(', ')}` : d.reason;
}

/** An RBAC decision as a step; a "no ALLOW matched" names the filter's policies that did not match. */
function step(
  filters: readonly EnvoyObject[],
  mode: 'l4' | 'l7',
  attrs: RbacAttributes,
  base: Omit<CheckStep, 'verdict' | 'reason' | 'policy' | 'rule' | 'layer'>,
): CheckStep {
  const d: RbacDecision = compileRbacFilters(filters, mode).evaluate(attrs);
  const src = sourceOf(d);
  const reason = d.allowed || src ? d.reason : explainDenial(filters, mode, attrs, d);
  return {
    ...base,
    layer: mode === 'l4' ? 'L4' : 'L7',
    verdict: d.allowed ? 'ALLOW' : 'DENY',
    ...(src ? { policy: src.policy, ...(src.rule ? { rule: src.rule } : {}) } : {}),
    reason,
  };
}

export function checkPolicy(view: PolicyView, req: CheckRequest): CheckResult {
  const caller = resolveCaller(view, req.from);
  const { svc, port } = resolveService(view, req.to);
  const svcPort = svc.ports.find((p) => p.port === port)!;
  const method = (req.method ?? 'GET').toUpperCase();
  const path = req.path ?? '/';
  const headers = Object.fromEntries(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const sourceIp = caller.workload?.address;
  const steps: CheckStep[] = [];
  const workloads = new Map(view.model.workloads.map((w) => [w.id, w]));
  const nodes = new Map(view.model.nodes.map((n) => [n.name, n]));

  // 1. The waypoint, when the service has one: L7, with the caller's identity.
  let inboundCaller = caller.identity;
  let inboundIp = sourceIp;
  const waypoint = svc.waypoint ? view.model.gateways.find((g) => g.id === svc.waypoint) : undefined;
  if (waypoint?.node) {
    const listener = view.listeners.get(`trellis/${waypoint.node}/waypoint/${waypoint.namespace}/${waypoint.name}`);
    const filters = chainFilters(listener, `${svc.hostname}:${port}`);
    if (filters) {
      steps.push(
        step(
          httpFiltersOf(filters),
          'l7',
          {
            principal: caller.identity,
            ...(sourceIp ? { sourceIp } : {}),
            destinationPort: port,
            ...(req.requestAuth ? { requestAuth: req.requestAuth } : {}),
            http: {
              method,
              path,
              host: svc.hostname,
              header: (name) =>
                name === ':method'
                  ? method
                  : name === ':path'
                    ? path
                    : name === ':authority' || name === 'host'
                      ? svc.hostname
                      : headers[name],
            },
          },
          {
            endpoint: svc.hostname,
            enforcedBy: `waypoint ${waypoint.namespace}/${waypoint.name}`,
            caller: caller.identity,
          },
        ),
      );
      inboundCaller = waypoint.identity;
      inboundIp = nodes.get(waypoint.node)?.address;
    }
  }

  // 2. Each endpoint's node inbound listener: L4.
  const endpoints = svc.endpoints.filter((e: EndpointModel) => e.ports[svcPort.name] !== undefined);
  for (const e of endpoints) {
    const w = workloads.get(e.workload);
    const name = w ? `${w.namespace}/${w.name}` : e.address;
    const targetPort = e.ports[svcPort.name]!;
    if (!e.node) {
      steps.push({
        endpoint: name,
        enforcedBy: 'none (no Trellis node runs this endpoint)',
        layer: 'L4',
        caller: inboundCaller,
        verdict: 'ALLOW',
        reason: 'no node proxy in front of it enforces policy',
      });
      continue;
    }
    const listenerName = `trellis/${e.node}/inbound/${e.address}:${targetPort}`;
    steps.push(
      step(
        chainFilters(view.listeners.get(listenerName)) ?? [],
        'l4',
        {
          principal: inboundCaller,
          ...(inboundIp ? { sourceIp: inboundIp } : {}),
          destinationIp: e.address,
          destinationPort: targetPort,
        },
        { endpoint: name, enforcedBy: `node ${e.node} inbound ${e.address}:${targetPort}`, caller: inboundCaller },
      ),
    );
  }

  const denied = steps.find((s) => s.verdict === 'DENY');
  const deciding = denied ?? steps.find((s) => s.policy) ?? steps[0];
  const verdict: Verdict = denied ? 'DENY' : 'ALLOW';
  return {
    verdict,
    policy: deciding?.policy ?? null,
    rule: deciding?.rule ?? null,
    reason: steps.length === 0 ? `${svc.hostname} has no endpoints for port ${port}` : deciding!.reason,
    from: {
      identity: caller.identity,
      ...(caller.workload
        ? { workload: `${caller.workload.namespace}/${caller.workload.name}`, address: caller.workload.address }
        : {}),
    },
    to: { service: svc.hostname, port },
    ...(waypoint ? { request: { method, path } } : {}),
    steps,
  };
}
