// DestinationRule (networking.istio.io): https://istio.io/latest/docs/reference/config/networking/destination-rule/
// Policies for traffic to a host after routing: load balancing, connection pools, outlier detection,
// client TLS, and named subsets of the host's endpoints.
import { isIP } from 'node:net';
import { array, record } from '../../schema/collections.js';
import { checks, def, object, oneOfFields, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { boolean, integer, number, oneOf, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  checkExportTo,
  exportToList,
  fqdnProblem,
  HOST_EXPECTED,
  int32NonNegative,
  istioDnsLabel,
  istioDuration,
  istioLabels,
  ISTIO_NETWORKING_GROUP,
  ISTIO_NETWORKING_VERSIONS,
  namespaceOf,
  portSelector,
  selectorLabels,
  uint32,
  wildcardDomainProblem,
} from './common.js';

export const SIMPLE_LB = [
  'UNSPECIFIED',
  'LEAST_CONN',
  'RANDOM',
  'PASSTHROUGH',
  'ROUND_ROBIN',
  'LEAST_REQUEST',
] as const;
export const H2_UPGRADE_POLICIES = ['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE'] as const;
export const CLIENT_TLS_MODES = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const;
export const PROXY_PROTOCOL_VERSIONS = ['V1', 'V2'] as const;

// ---------------------------------------------------------------------------------------------------------
// Load balancing

const httpCookie = object({
  name: req(string({ minLength: 1, expected: 'a cookie name' })),
  path: opt(string()),
  /** "0s" makes a session cookie. */
  ttl: opt(istioDuration({ any: true })),
  attributes: opt(array(object({ name: req(string({ minLength: 1 })), value: opt(string()) }))),
});

/** Envoy's primality test for the Maglev table size (isPrime in validation.go). */
function isPrime(x: number): boolean {
  if (x !== 0 && x < 4) return true;
  if (x % 2 === 0) return false;
  const limit = Math.floor(Math.sqrt(x));
  for (let f = 3; f <= limit; f += 2) if (x % f === 0) return false;
  return true;
}

const consistentHashFields = {
  httpHeaderName: opt(string()),
  httpCookie: opt(httpCookie),
  useSourceIp: opt(boolean()),
  httpQueryParameterName: opt(string()),
  ringHash: opt(object({ minimumRingSize: opt(integer({ min: 0 })) })),
  maglev: opt(object({ tableSize: opt(integer({ min: 0 })) })),
  /** Deprecated: use ringHash.minimumRingSize. */
  minimumRingSize: opt(integer({ min: 0 })),
} as const;
type ConsistentHash = ObjectOf<typeof consistentHashFields>;

const consistentHash = object(consistentHashFields, {
  check: checks<ConsistentHash>(
    oneOfFields(['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'], false),
    oneOfFields(['ringHash', 'maglev'], false),
    (ch, report) => {
      if (ch.minimumRingSize !== undefined && ch.minimumRingSize !== 0 && (ch.ringHash || ch.maglev)) {
        report(
          ['minimumRingSize'],
          'cannot be set together with ringHash or maglev',
          'ringHash.minimumRingSize alone',
          'conflict',
        );
      }
      if (ch.maglev) {
        const size = ch.maglev.tableSize ?? 0;
        if (size === 0)
          report(
            ['maglev', 'tableSize'],
            'tableSize must be set for maglev',
            'a prime number below 5000011',
            'required',
          );
        else if (size >= 5000011)
          report(['maglev', 'tableSize'], `${size} is not less than 5000011`, 'a prime number below 5000011', 'range');
        else if (!isPrime(size))
          report(['maglev', 'tableSize'], `${size} is not a prime number`, 'a prime number below 5000011');
      }
    },
  ),
});

/** Locality names: "region", "region/zone" or "region/zone/subzone", each optionally ending in "*". */
function localityProblems(localities: readonly string[]): string | undefined {
  const tree = new Map<string, Map<string, Set<string>>>();
  const ALL = '*';
  for (const loc of localities) {
    const stars = loc.split('*').length - 1;
    if (stars > 1 || (stars === 1 && !loc.endsWith('*'))) {
      return `locality ${loc}: at most one "*" wildcard, and only at the end`;
    }
    if (tree.has(ALL)) return `locality ${loc} overlaps with a previous one`;
    const items = loc.split('/');
    const parts = [items[0]!, items[1] ?? '', items.slice(2).join('/')].slice(0, Math.min(items.length, 3));
    if (parts.some((p) => p === '')) return `locality ${loc} must not have an empty region, zone or subzone`;
    const [region, zone, subzone] = parts as [string, string?, string?];
    const zones = tree.get(region);
    if (zone === undefined) {
      if (zones) return `locality ${loc} overlaps with a previous one`;
      tree.set(region, new Map([[ALL, new Set([ALL])]]));
    } else if (subzone === undefined) {
      if (zones && (zones.has(ALL) || zones.has(zone))) return `locality ${loc} overlaps with a previous one`;
      if (zones) zones.set(zone, new Set([ALL]));
      else tree.set(region, new Map([[zone, new Set([ALL])]]));
    } else {
      if (zones?.has(ALL)) return `locality ${loc} overlaps with a previous one`;
      const subs = zones?.get(zone);
      if (subs && (subs.has(ALL) || subs.has(subzone))) return `locality ${loc} overlaps with a previous one`;
      if (subs) subs.add(subzone);
      else if (zones) zones.set(zone, new Set([subzone]));
      else tree.set(region, new Map([[zone, new Set([subzone])]]));
    }
  }
  return undefined;
}

const TOPOLOGY_LABELS = new Set([
  'topology.kubernetes.io/region',
  'topology.kubernetes.io/zone',
  'topology.istio.io/subzone',
]);

const localityLbSettingFields = {
  /** Weights (1-100, summing to 100) from a source locality to destination localities. */
  distribute: opt(
    array(
      object({
        from: opt(string()),
        to: opt(record(integer({ min: 0, max: 4294967295 }))),
      }),
    ),
  ),
  /** Region-level failover pairs (needs outlierDetection to take effect). */
  failover: opt(array(object({ from: opt(string()), to: opt(string()) }))),
  /** Ordered endpoint labels for priority-based failover. */
  failoverPriority: opt(array(string())),
  enabled: opt(boolean()),
} as const;
type LocalityLbSetting = ObjectOf<typeof localityLbSettingFields>;

/** agent.ValidateLocalityLbSetting. */
function checkLocalityLb(lb: LocalityLbSetting, report: Reporter): void {
  const distribute = lb.distribute ?? [];
  const failover = lb.failover ?? [];
  if (distribute.length > 0 && failover.length > 0) {
    report(['failover'], 'cannot be set together with "distribute"', 'one of distribute, failover', 'conflict');
    return;
  }
  if (failover.length > 0) {
    const i = (lb.failoverPriority ?? []).findIndex((l) => TOPOLOGY_LABELS.has(l));
    if (i >= 0) {
      report(
        ['failoverPriority', i],
        `cannot use the topology label ${lb.failoverPriority![i]} together with "failover"`,
        'non-topology labels, or no failover',
        'conflict',
      );
      return;
    }
  }
  for (let i = 0; i < distribute.length; i++) {
    const to = distribute[i]!.to ?? {};
    let total = 0;
    for (const [loc, w] of Object.entries(to)) {
      if (w <= 0 || w > 100) {
        report(
          ['distribute', i, 'to', loc],
          `locality weight ${w} is not in the range 1-100`,
          'a weight 1-100',
          'range',
        );
        return;
      }
      total += w;
    }
    if (total !== 100) {
      report(
        ['distribute', i, 'to'],
        `the locality weights add up to ${total}, not 100`,
        'weights adding up to 100',
        'range',
      );
      return;
    }
    const p = localityProblems(Object.keys(to));
    if (p) {
      report(['distribute', i, 'to'], p, 'region[/zone[/subzone]] localities, "*" only at the end');
      return;
    }
  }
  const src = localityProblems(distribute.map((d) => d.from ?? ''));
  if (src) report(['distribute'], src, 'distinct region[/zone[/subzone]] "from" localities');
  failover.forEach((f, i) => {
    const from = f.from ?? '';
    const to = f.to ?? '';
    if (from === to)
      report(['failover', i], 'failover must name two different regions', 'different from and to regions');
    if (from.includes('/') || to.includes('/'))
      report(['failover', i], 'failover takes regions only, without zones', 'region names');
    if (from.includes('*') || to.includes('*'))
      report(['failover', i], 'failover regions must not contain "*"', 'region names');
  });
}

const loadBalancerFields = {
  simple: opt(oneOf(SIMPLE_LB)),
  consistentHash: opt(consistentHash),
  localityLbSetting: opt(object(localityLbSettingFields, { check: checkLocalityLb })),
  /** Deprecated: use warmup. */
  warmupDurationSecs: opt(istioDuration()),
  warmup: opt(
    object({
      duration: req(istioDuration()),
      minimumPercent: opt(number({ min: 0, max: 100, expected: 'a percentage 0-100' })),
      aggression: opt(number({ min: 1, expected: 'a number >= 1' })),
    }),
  ),
} as const;
type LoadBalancer = ObjectOf<typeof loadBalancerFields>;

const loadBalancer = object(loadBalancerFields, {
  check: oneOfFields<LoadBalancer>(['simple', 'consistentHash'], false),
});

// ---------------------------------------------------------------------------------------------------------
// Connection pool, outlier detection, TLS

const tcpSettings = object({
  maxConnections: opt(int32NonNegative()),
  connectTimeout: opt(istioDuration()),
  tcpKeepalive: opt(object({ probes: opt(uint32()), time: opt(istioDuration()), interval: opt(istioDuration()) })),
  maxConnectionDuration: opt(istioDuration()),
  /** "0s" disables the idle timeout. */
  idleTimeout: opt(istioDuration({ allowZero: true })),
});

const httpSettingsFields = {
  http1MaxPendingRequests: opt(int32NonNegative()),
  http2MaxRequests: opt(int32NonNegative()),
  maxRequestsPerConnection: opt(int32NonNegative()),
  maxRetries: opt(int32NonNegative()),
  idleTimeout: opt(istioDuration()),
  h2UpgradePolicy: def(oneOf(H2_UPGRADE_POLICIES), 'DEFAULT'),
  useClientProtocol: opt(boolean()),
  maxConcurrentStreams: opt(int32NonNegative()),
} as const;

const httpSettings = object(httpSettingsFields, {
  check: (h, report) => {
    if (h.h2UpgradePolicy === 'UPGRADE' && h.useClientProtocol === true) {
      report(
        ['useClientProtocol'],
        'cannot be true when h2UpgradePolicy is UPGRADE',
        'false, or another h2UpgradePolicy',
        'conflict',
      );
    }
  },
});

const connectionPool = object(
  { tcp: opt(tcpSettings), http: opt(httpSettings) },
  {
    check: (cp, report) => {
      if (cp.tcp === undefined && cp.http === undefined) {
        report([], 'a connection pool needs tcp or http settings', 'tcp and/or http', 'required');
      }
    },
  },
);

const percent100 = () => int32NonNegative();
const outlierDetection = object(
  {
    /** Deprecated: use consecutiveGatewayErrors or consecutive5xxErrors. */
    consecutiveErrors: opt(integer({ min: -2147483648, max: 2147483647 })),
    splitExternalLocalOriginErrors: opt(boolean()),
    consecutiveLocalOriginFailures: opt(uint32()),
    consecutiveGatewayErrors: opt(uint32()),
    consecutive5xxErrors: opt(uint32()),
    interval: opt(istioDuration()),
    baseEjectionTime: opt(istioDuration()),
    maxEjectionPercent: opt(percent100()),
    minHealthPercent: opt(percent100()),
  },
  {
    check: (od, report) => {
      if ((od.consecutiveLocalOriginFailures ?? 0) > 0 && od.splitExternalLocalOriginErrors !== true) {
        report(
          ['consecutiveLocalOriginFailures'],
          'is set but splitExternalLocalOriginErrors is not true',
          'splitExternalLocalOriginErrors: true',
          'conflict',
        );
      }
      for (const k of ['maxEjectionPercent', 'minHealthPercent'] as const) {
        const v = od[k];
        if (v !== undefined && v > 100)
          report([k], `percentage ${v} is not in the range 0-100`, 'a percentage 0-100', 'range');
      }
    },
  },
);

const clientTlsFields = {
  mode: def(oneOf(CLIENT_TLS_MODES), 'DISABLE'),
  clientCertificate: opt(string()),
  privateKey: opt(string()),
  caCertificates: opt(string()),
  credentialName: opt(string()),
  subjectAltNames: opt(array(string())),
  sni: opt(string()),
  insecureSkipVerify: opt(boolean()),
  caCrl: opt(string()),
} as const;
type ClientTls = ObjectOf<typeof clientTlsFields>;

/** agent.ValidateTLS (ClientTLSSettings). */
function checkClientTls(tls: ClientTls, report: Reporter): void {
  const set = (v: string | undefined) => v !== undefined && v !== '';
  if (tls.insecureSkipVerify === true) {
    if (
      tls.mode === 'SIMPLE' &&
      (set(tls.caCertificates) || set(tls.credentialName) || tls.subjectAltNames !== undefined)
    ) {
      report(
        ['insecureSkipVerify'],
        'cannot skip verification while also giving caCertificates, credentialName or subjectAltNames',
        'insecureSkipVerify alone, or the verification settings alone',
        'conflict',
      );
    }
    if (tls.mode === 'MUTUAL' && (set(tls.caCertificates) || tls.subjectAltNames !== undefined)) {
      report(
        ['insecureSkipVerify'],
        'cannot skip verification while also giving caCertificates or subjectAltNames',
        'insecureSkipVerify alone, or the verification settings alone',
        'conflict',
      );
    }
  }
  if ((tls.mode === 'SIMPLE' || tls.mode === 'MUTUAL') && set(tls.credentialName)) {
    const extra = (['clientCertificate', 'caCertificates', 'privateKey', 'caCrl'] as const).find((k) => set(tls[k]));
    if (extra) {
      report(
        [extra],
        'cannot be set together with credentialName (the secret holds the certificates)',
        'credentialName alone',
        'conflict',
      );
    }
    return;
  }
  if (tls.mode === 'MUTUAL') {
    if (!set(tls.clientCertificate))
      report(
        ['clientCertificate'],
        'is required when mode is MUTUAL',
        'a certificate file path, or credentialName',
        'required',
      );
    if (!set(tls.privateKey))
      report(['privateKey'], 'is required when mode is MUTUAL', 'a key file path, or credentialName', 'required');
  }
}

const clientTls = object(clientTlsFields, { check: checkClientTls });

// ---------------------------------------------------------------------------------------------------------
// Traffic policy

const portTrafficPolicyFields = {
  port: opt(portSelector),
  loadBalancer: opt(loadBalancer),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  tls: opt(clientTls),
} as const;

const portTrafficPolicy = object(portTrafficPolicyFields, {
  check: (p, report) => {
    if (p.port === undefined)
      report(['port'], 'a port-level setting needs the port it applies to', 'port.number', 'required');
    if (!p.loadBalancer && !p.connectionPool && !p.outlierDetection && !p.tls) {
      report(
        [],
        'a port-level setting needs at least one policy',
        'loadBalancer, connectionPool, outlierDetection or tls',
        'required',
      );
    }
  },
});

const tunnel = object({
  /** CONNECT (default) or POST. */
  protocol: def(
    string({
      expected: '"CONNECT" or "POST"',
      check: (p) =>
        p === '' || p === 'CONNECT' || p === 'POST'
          ? undefined
          : `tunnel protocol ${JSON.stringify(p)} is not CONNECT or POST`,
    }),
    'CONNECT',
  ),
  targetHost: req(
    string({
      expected: 'a DNS name or an IP address',
      check: (h) =>
        isIP(h) || fqdnProblem(h) === undefined ? undefined : `${JSON.stringify(h)} is not a DNS name or an IP address`,
    }),
  ),
  targetPort: req(integer({ min: 1, max: 65535, expected: 'a port number 1-65535' })),
});

const trafficPolicyFields = {
  loadBalancer: opt(loadBalancer),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  tls: opt(clientTls),
  portLevelSettings: opt(array(portTrafficPolicy, { max: 4096 })),
  tunnel: opt(tunnel),
  proxyProtocol: opt(object({ version: def(oneOf(PROXY_PROTOCOL_VERSIONS), 'V1') })),
  retryBudget: opt(
    object({
      percent: opt(number({ min: 0, max: 100, expected: 'a percentage 0-100' })),
      minRetryConcurrency: opt(uint32()),
    }),
  ),
} as const;
type TrafficPolicyValue = ObjectOf<typeof trafficPolicyFields>;

export const trafficPolicy = object(trafficPolicyFields, {
  check: (tp: TrafficPolicyValue, report) => {
    if (Object.values(tp).every((v) => v === undefined)) {
      report(
        [],
        'a traffic policy needs at least one setting',
        'loadBalancer, connectionPool, outlierDetection, tls, ...',
        'required',
      );
    }
    if (tp.tunnel !== undefined && tp.proxyProtocol !== undefined) {
      report(['proxyProtocol'], 'cannot be set together with "tunnel"', 'one of tunnel, proxyProtocol', 'conflict');
    }
  },
});
export type TrafficPolicy = TrafficPolicyValue;

const subset = object({
  name: req(istioDnsLabel('subset name')),
  labels: opt(istioLabels()),
  trafficPolicy: opt(trafficPolicy),
});
export type Subset = ObjectOf<typeof subset.fields>;

/** istio.type.v1beta1.WorkloadSelector (matchLabels), unlike ServiceEntry's. */
const drWorkloadSelector = object({ matchLabels: opt(selectorLabels(4096)) });

const destinationRuleSpec = object(
  {
    host: req(string({ expected: HOST_EXPECTED, check: wildcardDomainProblem })),
    trafficPolicy: opt(trafficPolicy),
    subsets: opt(array(subset)),
    exportTo: opt(exportToList(false)),
    workloadSelector: opt(drWorkloadSelector),
  },
  {
    check: (dr, report) => {
      const seen = new Map<string, number>();
      (dr.subsets ?? []).forEach((s, i) => {
        const prev = seen.get(s.name);
        if (prev !== undefined) {
          report(
            ['subsets', i, 'name'],
            `duplicate subset name ${JSON.stringify(s.name)} (also subsets[${prev}])`,
            'unique subset names',
          );
        } else seen.set(s.name, i);
      });
    },
  },
);

export type DestinationRuleSpec = ObjectOf<typeof destinationRuleSpec.fields>;

export const destinationRuleKind = defineKind({
  group: ISTIO_NETWORKING_GROUP,
  kind: 'DestinationRule',
  versions: ISTIO_NETWORKING_VERSIONS,
  namespaced: true,
  summary:
    'Policies for traffic to a host after routing: load balancing, connection pools, outlier detection, TLS, subsets.',
  fields: { spec: req(destinationRuleSpec), status: opt(unchecked()) },
  check: (doc, report) =>
    checkExportTo(
      doc.spec.exportTo,
      namespaceOf(doc),
      report,
      ['spec', 'exportTo'],
      doc.spec.workloadSelector !== undefined,
    ),
});

export type DestinationRuleBody = BodyOf<typeof destinationRuleKind>;
