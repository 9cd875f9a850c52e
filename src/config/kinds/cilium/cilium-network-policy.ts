// cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy:
// https://docs.cilium.io/en/stable/network/kubernetes/policy/ and https://docs.cilium.io/en/stable/security/policy/
//
// Rules: the CRD schema generated from cilium/cilium pkg/policy/api (enums, patterns, maxItems, oneOf/anyOf) and
// the rule validation in pkg/policy/api/rule_validation.go (Rule/IngressRule/EgressRule/PortRule/L7Rules/
// PortProtocol/CIDRRule Validate), http.go, kafka/kafka.go, icmp.go and the k8s CNP/CCNP parsing.
import { array, record } from '../../schema/collections.js';
import { cidr, re2Regex } from '../../schema/formats.js';
import { def, object, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { boolean, integer, intOrString, oneOf, string, unchecked } from '../../schema/primitives.js';
import { INVALID, IssueSink, type Invalid, type Path, type PathSegment, type Schema } from '../../schema/schema.js';
import { parseCidr } from '../../../util/cidr.js';
import { labelKey, labelSelector, labelValue, selectorRequirement } from '../common/meta.js';
import { defineKind, type BodyOf } from '../kind.js';

export const CILIUM_GROUP = 'cilium.io';

// ---------------------------------------------------------------------------------------------------------
// EndpointSelector: a Kubernetes label selector whose keys may carry a Cilium label source ("k8s:", "any:",
// "reserved:", ...).

/** A Cilium selector key: an optional `<source>:` prefix and a Kubernetes qualified name. */
export function ciliumLabelKeyProblem(key: string): string | undefined {
  const colon = key.indexOf(':');
  const sourcePart = colon < 0 ? undefined : key.slice(0, colon);
  const name = colon < 0 ? key : key.slice(colon + 1);
  if (sourcePart !== undefined && !/^[a-zA-Z0-9][-a-zA-Z0-9_.]*$/.test(sourcePart)) {
    return `label source ${JSON.stringify(sourcePart)} of key ${JSON.stringify(key)} is not valid`;
  }
  const sink = new IssueSink();
  labelKey().parse(name, [], sink);
  return sink.issues.length > 0 ? `${JSON.stringify(key)} is not a valid label key` : undefined;
}

const ciliumLabelKey = (): Schema<string> =>
  string({
    minLength: 1,
    expected: 'a label key, optionally with a source prefix such as "k8s:" or "any:"',
    check: ciliumLabelKeyProblem,
  });

const ciliumSelectorRequirement = selectorRequirement(ciliumLabelKey());

/** EndpointSelector. `{}` selects every endpoint (or node, for nodeSelector / fromNodes / toNodes). */
export const endpointSelector = object({
  matchLabels: opt(record(labelValue(), { key: ciliumLabelKey() })),
  matchExpressions: opt(array(ciliumSelectorRequirement)),
});
export type EndpointSelector = ObjectOf<typeof endpointSelector.fields>;

// ---------------------------------------------------------------------------------------------------------
// L3 peers

/** Entities (EntitySelectorMapping / the CRD enum). */
export const ENTITIES = [
  'all',
  'world',
  'cluster',
  'host',
  'init',
  'ingress',
  'unmanaged',
  'remote-node',
  'health',
  'none',
  'kube-apiserver',
] as const;
export type Entity = (typeof ENTITIES)[number];

/** fromCIDR / toCIDR entries: the CRD `format: cidr` requires prefix notation ("10.0.0.1/32", not "10.0.0.1"). */
const cidrEntry = (): Schema<string> => cidr();

export const cidrRule = object(
  {
    cidr: opt(cidrEntry()),
    cidrGroupRef: opt(
      string({
        minLength: 1,
        maxLength: 253,
        pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
        expected: 'the name of a CiliumCIDRGroup',
      }),
    ),
    cidrGroupSelector: opt(labelSelector),
    except: opt(array(cidrEntry())),
  },
  {
    check: (r, report) => {
      const set = (['cidr', 'cidrGroupRef', 'cidrGroupSelector'] as const).filter((f) => r[f] !== undefined);
      if (set.length === 0) {
        report(
          [],
          'one of cidr, cidrGroupRef, or cidrGroupSelector is required',
          'exactly one of cidr, cidrGroupRef, cidrGroupSelector',
          'required',
        );
        return;
      }
      if (set.length > 1) {
        report(
          [set[1]!],
          `cannot be set together with "${set[0]}"`,
          'exactly one of cidr, cidrGroupRef, cidrGroupSelector',
          'conflict',
        );
        return;
      }
      if (r.except === undefined || r.except.length === 0) return;
      if (r.cidr === undefined) {
        report(
          ['except'],
          `except is not supported together with ${set[0]} (Cilium ignores it)`,
          'except only with cidr',
          'conflict',
        );
        return;
      }
      const outer = parseCidr(r.cidr);
      if (typeof outer === 'string') return;
      r.except.forEach((e, i) => {
        const inner = parseCidr(e);
        if (typeof inner === 'string') return;
        // CIDRRule.Validate: prefix.Contains(except.Addr()), which also requires the same address family.
        const bits = outer.family === 4 ? 32 : 128;
        const shift = BigInt(bits - outer.prefix);
        if (inner.family !== outer.family || inner.network >> shift !== outer.network >> shift) {
          report(
            ['except', i],
            `allow CIDR prefix ${r.cidr} does not contain exclude CIDR prefix ${e}`,
            `a CIDR inside ${r.cidr}`,
            'range',
          );
        }
      });
    },
  },
);
export type CidrRule = ObjectOf<typeof cidrRule.fields>;

export const groups = object({
  aws: opt(
    object({
      labels: opt(record(string())),
      region: opt(string()),
      securityGroupsIds: opt(array(string())),
      securityGroupsNames: opt(array(string())),
    }),
  ),
});

export const service = object({
  k8sService: opt(object({ serviceName: opt(string()), namespace: opt(string()) })),
  k8sServiceSelector: opt(object({ selector: req(endpointSelector), namespace: opt(string()) })),
});

/** Safe forms of the CRD patterns `^([-a-zA-Z0-9_]+[.]?)+$` and `^([-a-zA-Z0-9_*]+[.]?)+$`. */
const DNS_NAME = /^[-a-zA-Z0-9_]+(\.[-a-zA-Z0-9_]+)*\.?$/;
const DNS_PATTERN = /^[-a-zA-Z0-9_*]+(\.[-a-zA-Z0-9_*]+)*\.?$/;

/** FQDNSelector (toFQDNs) and PortRuleDNS (rules.dns): exactly one of matchName and matchPattern. */
export const fqdnSelector = object(
  {
    matchName: opt(
      string({
        minLength: 1,
        maxLength: 255,
        pattern: DNS_NAME,
        expected: 'a DNS name: letters, digits, "-", "_" and "."',
      }),
    ),
    matchPattern: opt(
      string({
        minLength: 1,
        maxLength: 255,
        pattern: DNS_PATTERN,
        expected: 'a DNS name pattern: letters, digits, "-", "_", "." and "*" wildcards',
      }),
    ),
  },
  {
    check: (s, report) => {
      if (s.matchName !== undefined && s.matchPattern !== undefined) {
        report(
          ['matchPattern'],
          'only one of matchName or matchPattern is allowed',
          'matchName or matchPattern',
          'conflict',
        );
      } else if (s.matchName === undefined && s.matchPattern === undefined) {
        report([], 'one of matchName or matchPattern is required', 'matchName or matchPattern', 'required');
      }
    },
  },
);
export type FqdnSelector = ObjectOf<typeof fqdnSelector.fields>;

// ---------------------------------------------------------------------------------------------------------
// L4: ports and ICMP

export const CILIUM_PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'VRRP', 'IGMP', 'ANY'] as const;
export type CiliumProtocol = (typeof CILIUM_PROTOCOLS)[number];

/** The protocol enum, with a pointer to `icmps` for the ICMP protocols toPorts cannot match. */
function protocol(): Schema<CiliumProtocol> {
  const base = oneOf(CILIUM_PROTOCOLS);
  return {
    expected: base.expected,
    parse(input: unknown, path: Path, sink: IssueSink): CiliumProtocol | Invalid {
      if (input === 'ICMP' || input === 'ICMPv6') {
        const msg = `${JSON.stringify(input)} is not allowed: ICMP is matched with "icmps" in the rule, not with a port protocol`;
        sink.report(path, 'enum', msg, base.expected);
        return INVALID;
      }
      return base.parse(input, path, sink);
    },
  };
}

/** iana.IsSvcName: 1-15 letters/digits in groups joined by single "-", with at least one letter. */
export function isIanaServiceName(v: string): boolean {
  return v.length >= 1 && v.length <= 15 && /^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$/.test(v) && /[a-zA-Z]/.test(v);
}

/**
 * The number a numeric port string stands for (strconv.ParseUint(port, 0, 16): a leading 0 means octal, "0x"
 * would be a port name), or a message when it is neither a number 0-65535 nor a port name.
 */
export function parseCiliumPort(v: string): number | string {
  if (isIanaServiceName(v)) return `named:${v.toLowerCase()}`;
  if (/^\d+-\d+$/.test(v)) {
    return `unable to parse port ${JSON.stringify(v)}: write a port range as port and endPort`;
  }
  if (!/^\d+$/.test(v)) return `unable to parse port ${JSON.stringify(v)}: not a number 0-65535 or a port name`;
  const n = v.length > 1 && v.startsWith('0') ? (/^[0-7]+$/.test(v) ? parseInt(v, 8) : NaN) : Number(v);
  if (Number.isNaN(n)) return `unable to parse port ${JSON.stringify(v)}: a leading 0 makes it octal`;
  if (n > 65535) return `unable to parse port ${JSON.stringify(v)}: out of range 0-65535`;
  return n;
}

function portNumber(v: string): number | undefined {
  const n = parseCiliumPort(v);
  return typeof n === 'number' ? n : undefined;
}

export const portProtocol = object(
  {
    port: opt(
      string({
        expected: 'a port number 0-65535 or a port name such as "http", as a string',
        check: (v) => {
          if (v === '') return undefined;
          const n = parseCiliumPort(v);
          return typeof n === 'string' && !n.startsWith('named:') ? n : undefined;
        },
      }),
    ),
    endPort: opt(integer({ min: 0, max: 65535, expected: 'a port number 0-65535' })),
    protocol: def(protocol(), 'ANY' as CiliumProtocol),
  },
  {
    check: (p, report) => {
      const noPortProtocol = p.protocol === 'VRRP' || p.protocol === 'IGMP';
      if (p.port === undefined || p.port === '') {
        if (!noPortProtocol) report(['port'], 'port must be specified', 'a port number or name', 'required');
      } else if (noPortProtocol && p.port !== '0') {
        report(['port'], `port must be empty or 0 for protocol ${p.protocol}`, 'no port', 'conflict');
      }
      if (p.endPort === undefined || p.endPort === 0 || p.port === undefined || p.port === '') return;
      const start = portNumber(p.port);
      if (start === undefined) {
        report(['endPort'], 'may not be specified when `port` is a name', 'a numeric port with endPort', 'conflict');
      } else if (p.endPort < start) {
        report(
          ['endPort'],
          `must be greater than or equal to \`port\` (${p.endPort} < ${start})`,
          `a port number ${start}-65535`,
          'range',
        );
      }
    },
  },
);
export type CiliumPortProtocol = ObjectOf<typeof portProtocol.fields>;

export const ICMP_V4_TYPES = [
  'EchoReply',
  'DestinationUnreachable',
  'Redirect',
  'Echo',
  'EchoRequest',
  'RouterAdvertisement',
  'RouterSelection',
  'TimeExceeded',
  'ParameterProblem',
  'Timestamp',
  'TimestampReply',
  'Photuris',
  'ExtendedEchoRequest',
  'ExtendedEchoReply',
] as const;
export const ICMP_V6_TYPES = [
  'DestinationUnreachable',
  'PacketTooBig',
  'TimeExceeded',
  'ParameterProblem',
  'EchoRequest',
  'EchoReply',
  'MulticastListenerQuery',
  'MulticastListenerReport',
  'MulticastListenerDone',
  'RouterSolicitation',
  'RouterAdvertisement',
  'NeighborSolicitation',
  'NeighborAdvertisement',
  'RedirectMessage',
  'RouterRenumbering',
  'ICMPNodeInformationQuery',
  'ICMPNodeInformationResponse',
  'InverseNeighborDiscoverySolicitation',
  'InverseNeighborDiscoveryAdvertisement',
  'HomeAgentAddressDiscoveryRequest',
  'HomeAgentAddressDiscoveryReply',
  'MobilePrefixSolicitation',
  'MobilePrefixAdvertisement',
  'DuplicateAddressRequestCodeSuffix',
  'DuplicateAddressConfirmationCodeSuffix',
  'ExtendedEchoRequest',
  'ExtendedEchoReply',
] as const;
const ICMP_NAMES = new Set<string>([...ICMP_V4_TYPES, ...ICMP_V6_TYPES]);

export const icmpField = object(
  {
    family: def(oneOf(['IPv4', 'IPv6']), 'IPv4' as 'IPv4' | 'IPv6'),
    type: req(
      intOrString(
        integer({ min: 0, max: 255, expected: 'an ICMP type 0-255' }),
        string({
          expected: 'an ICMP type 0-255 or a type name such as "EchoRequest"',
          check: (v) => {
            if (/^(0|[1-9]\d{0,2})$/.test(v) && Number(v) <= 255) return undefined;
            return ICMP_NAMES.has(v) ? undefined : `${JSON.stringify(v)} is not an ICMP type number or name`;
          },
        }),
      ),
    ),
  },
  {
    check: (f, report) => {
      if (typeof f.type !== 'string' || /^\d+$/.test(f.type)) return;
      const names: readonly string[] = f.family === 'IPv6' ? ICMP_V6_TYPES : ICMP_V4_TYPES;
      if (!names.includes(f.type)) {
        report(
          ['type'],
          `ICMP type ${f.type} not found in ${f.family}`,
          `an ${f.family} ICMP type name or number`,
          'enum',
        );
      }
    },
  },
);
export const icmpRule = object({ fields: opt(array(icmpField, { max: 40 })) });
export type IcmpRule = ObjectOf<typeof icmpRule.fields>;

// ---------------------------------------------------------------------------------------------------------
// L7

export const secretRef = object({
  name: req(string({ minLength: 1, expected: 'a Secret name' })),
  namespace: opt(string()),
});

export const headerMatch = object({
  mismatch: opt(oneOf(['LOG', 'ADD', 'DELETE', 'REPLACE'])),
  name: req(string({ minLength: 1, expected: 'an HTTP header name' })),
  secret: opt(secretRef),
  value: opt(string()),
});

/** PortRuleHTTP: method, path and host are regular expressions (RE2, as Envoy evaluates them). */
export const httpRule = object({
  method: opt(re2Regex()),
  path: opt(re2Regex()),
  host: opt(re2Regex()),
  headers: opt(array(string({ expected: 'a header "Name" or "Name: value"' }))),
  headerMatches: opt(array(headerMatch)),
});
export type CiliumHttpRule = ObjectOf<typeof httpRule.fields>;

/** Kafka API keys (kafka.APIKeyMap), matched case-insensitively. */
export const KAFKA_API_KEYS = [
  'produce',
  'fetch',
  'offsets',
  'metadata',
  'leaderandisr',
  'stopreplica',
  'updatemetadata',
  'controlledshutdown',
  'offsetcommit',
  'offsetfetch',
  'findcoordinator',
  'joingroup',
  'heartbeat',
  'leavegroup',
  'syncgroup',
  'describegroups',
  'listgroups',
  'saslhandshake',
  'apiversions',
  'createtopics',
  'deletetopics',
  'deleterecords',
  'initproducerid',
  'offsetforleaderepoch',
  'addpartitionstotxn',
  'addoffsetstotxn',
  'endtxn',
  'writetxnmarkers',
  'txnoffsetcommit',
  'describeacls',
  'createacls',
  'deleteacls',
  'describeconfigs',
  'alterconfigs',
] as const;

export const kafkaRule = object(
  {
    role: opt(
      string({
        expected: 'produce or consume',
        check: (v) =>
          v === '' || ['produce', 'consume'].includes(v.toLowerCase())
            ? undefined
            : `invalid Kafka Role ${JSON.stringify(v)}`,
      }),
    ),
    apiKey: opt(
      string({
        expected: 'a Kafka API key name such as "produce" or "fetch"',
        check: (v) =>
          v === '' || (KAFKA_API_KEYS as readonly string[]).includes(v.toLowerCase())
            ? undefined
            : `invalid Kafka APIKey ${JSON.stringify(v)}`,
      }),
    ),
    apiVersion: opt(
      string({
        expected: 'a Kafka API version 0-32767, as a string',
        check: (v) =>
          v === '' || (/^\d+$/.test(v) && Number(v) <= 32767)
            ? undefined
            : `invalid Kafka APIVersion ${JSON.stringify(v)}`,
      }),
    ),
    clientID: opt(string()),
    topic: opt(
      string({
        maxLength: 255,
        pattern: /^[a-zA-Z0-9\\._-]*$/,
        expected: 'a Kafka topic: letters, digits, ".", "_" and "-"',
      }),
    ),
  },
  {
    check: (k, report) => {
      if (k.apiKey && k.role) {
        report(
          ['apiKey'],
          `cannot set both Role ${JSON.stringify(k.role)} and APIKey ${JSON.stringify(k.apiKey)} together`,
          'role or apiKey',
          'conflict',
        );
      }
    },
  },
);

export const l7Rules = object(
  {
    http: opt(array(httpRule)),
    kafka: opt(array(kafkaRule)),
    dns: opt(array(fqdnSelector)),
    l7proto: opt(string()),
    l7: opt(array(record(string()))),
  },
  {
    check: (r, report) => {
      if (r.l7 !== undefined && !r.l7proto) {
        report(['l7'], "'l7' may only be specified when a 'l7proto' is also specified", 'l7proto with l7', 'conflict');
      }
      const types = (['http', 'kafka', 'dns', 'l7proto'] as const).filter((t) =>
        t === 'l7proto' ? !!r.l7proto : r[t] !== undefined,
      );
      if (types.length > 1) {
        report(
          [types[1]!],
          `multiple L7 protocol rule types specified in single rule: ${types.join(', ')}`,
          'one of http, kafka, dns, l7proto',
          'conflict',
        );
      }
    },
  },
);
export type L7Rules = ObjectOf<typeof l7Rules.fields>;

/** L7Rules.IsEmpty (l7proto alone does not count). */
function hasL7(r: L7Rules | undefined): r is L7Rules {
  return (
    r !== undefined && (r.http !== undefined || r.kafka !== undefined || r.dns !== undefined || r.l7 !== undefined)
  );
}

export const tlsContext = object({
  secret: req(secretRef),
  trustedCA: opt(string()),
  certificate: opt(string()),
  privateKey: opt(string()),
});

export const listener = object({
  envoyConfig: req(
    object({
      kind: opt(oneOf(['CiliumEnvoyConfig', 'CiliumClusterwideEnvoyConfig'])),
      name: req(string({ minLength: 1, expected: 'the name of a CiliumEnvoyConfig' })),
    }),
  ),
  name: req(string({ minLength: 1, expected: 'the listener name' })),
  priority: opt(integer({ min: 1, max: 100 })),
});

const serverName = (): Schema<string> =>
  string({
    minLength: 1,
    maxLength: 255,
    pattern: DNS_PATTERN,
    expected: 'a TLS server name, optionally with "*" wildcards',
  });

function portRule(direction: 'ingress' | 'egress') {
  return object(
    {
      ports: opt(array(portProtocol, { max: 40 })),
      rules: opt(l7Rules),
      terminatingTLS: opt(tlsContext),
      originatingTLS: opt(tlsContext),
      serverNames: opt(array(serverName(), { min: 1 })),
      listener: opt(listener),
    },
    {
      check: (pr, report) => {
        const dns = pr.rules?.dns !== undefined && pr.rules.dns.length > 0;
        const l7 = hasL7(pr.rules);
        if (direction === 'ingress' && dns) {
          report(['rules', 'dns'], 'DNS rules are not allowed on ingress', 'http or kafka rules', 'conflict');
        }
        if ((pr.serverNames?.length ?? 0) > 0 && l7 && pr.terminatingTLS === undefined) {
          report(
            ['serverNames'],
            'serverNames are not allowed with L7 rules without TLS termination',
            'terminatingTLS with serverNames and L7 rules',
            'conflict',
          );
        }
        const ports = pr.ports ?? [];
        ports.forEach((p, i) => {
          if (l7 && !dns && p.protocol !== 'TCP') {
            report(
              ['ports', i, 'protocol'],
              `L7 rules can only apply to TCP (not ${p.protocol}) except for DNS rules`,
              'TCP',
              'conflict',
            );
          }
          if (dns && p.endPort !== undefined && p.port !== undefined && p.endPort > (portNumber(p.port) ?? 65536)) {
            report(['ports', i, 'endPort'], 'DNS rules do not support port ranges', 'a single port (53)', 'conflict');
          }
        });
        if (pr.listener !== undefined) {
          if (direction === 'ingress') {
            report(
              ['listener'],
              `listener is not allowed on ingress (${pr.listener.name})`,
              'listener only in egress rules',
              'conflict',
            );
          } else if (l7) {
            report(
              ['listener'],
              `listener is not allowed with L7 rules (${pr.listener.name})`,
              'listener or rules, not both',
              'conflict',
            );
          }
        }
        if (l7) {
          if (ports.some((p) => p.port !== undefined && portNumber(p.port) === 0)) {
            report(['rules'], 'L7 rules can not be used when a port is 0', 'non-zero ports with L7 rules', 'conflict');
          }
          if (dns && ports.length === 0) {
            report(['ports'], 'port 53 must be specified for DNS rules', 'ports with port "53"', 'required');
          }
        }
      },
    },
  );
}

export const ingressPortRule = portRule('ingress');
export const egressPortRule = portRule('egress');
export type CiliumPortRule = ObjectOf<typeof ingressPortRule.fields>;

/** Deny rules carry ports only (PortDenyRule: no L7). */
export const portDenyRule = object({ ports: opt(array(portProtocol, { max: 40 })) });
export type CiliumPortDenyRule = ObjectOf<typeof portDenyRule.fields>;

export const authentication = object({ mode: req(oneOf(['disabled', 'required', 'test-always-fail'])) });

// ---------------------------------------------------------------------------------------------------------
// Ingress and egress rules

/** Reports the first pair of L3 peer kinds that may not be combined in one rule. */
function checkExclusive(rule: Readonly<Record<string, unknown>>, members: readonly string[], report: Reporter): void {
  const set = members.filter((m) => Array.isArray(rule[m]) && (rule[m] as unknown[]).length > 0);
  if (set.length > 1) {
    report(
      [set[1]!],
      `combining ${set[0]} and ${set[1]} is not supported yet`,
      `one of ${members.join(', ')} per rule`,
      'conflict',
    );
  }
}

function checkIcmpsWithPorts(
  rule: { readonly icmps?: readonly unknown[]; readonly toPorts?: readonly unknown[] },
  report: Reporter,
): void {
  if ((rule.icmps?.length ?? 0) > 0 && (rule.toPorts?.length ?? 0) > 0) {
    report(
      ['icmps'],
      'the icmps block may only be present without toPorts; define a separate rule to use toPorts',
      'icmps or toPorts',
      'conflict',
    );
  }
}

const INGRESS_L3 = ['fromEndpoints', 'fromCIDR', 'fromCIDRSet', 'fromEntities', 'fromNodes', 'fromGroups'] as const;
const EGRESS_L3 = [
  'toEndpoints',
  'toCIDR',
  'toCIDRSet',
  'toEntities',
  'toServices',
  'toFQDNs',
  'toGroups',
  'toNodes',
] as const;

const ingressCommon = {
  fromEndpoints: opt(array(endpointSelector)),
  fromRequires: opt(array(endpointSelector)),
  fromCIDR: opt(array(cidrEntry())),
  fromCIDRSet: opt(array(cidrRule)),
  fromEntities: opt(array(oneOf(ENTITIES))),
  fromGroups: opt(array(groups)),
  fromNodes: opt(array(endpointSelector)),
  icmps: opt(array(icmpRule)),
} as const;

const egressCommon = {
  toEndpoints: opt(array(endpointSelector)),
  toRequires: opt(array(endpointSelector)),
  toCIDR: opt(array(cidrEntry())),
  toCIDRSet: opt(array(cidrRule)),
  toEntities: opt(array(oneOf(ENTITIES))),
  toServices: opt(array(service)),
  toGroups: opt(array(groups)),
  toNodes: opt(array(endpointSelector)),
  icmps: opt(array(icmpRule)),
} as const;

export const ingressRule = object(
  { ...ingressCommon, toPorts: opt(array(ingressPortRule)), authentication: opt(authentication) },
  {
    check: (r, report) => {
      checkExclusive(r, INGRESS_L3, report);
      checkIcmpsWithPorts(r, report);
    },
  },
);
export type CiliumIngressRule = ObjectOf<typeof ingressRule.fields>;

export const ingressDenyRule = object(
  { ...ingressCommon, toPorts: opt(array(portDenyRule)) },
  {
    check: (r, report) => {
      checkExclusive(r, INGRESS_L3, report);
      checkIcmpsWithPorts(r, report);
    },
  },
);
export type CiliumIngressDenyRule = ObjectOf<typeof ingressDenyRule.fields>;

function checkServicesWithPorts(
  r: { readonly toServices?: readonly unknown[]; readonly toPorts?: readonly unknown[] },
  report: Reporter,
) {
  if ((r.toServices?.length ?? 0) > 0 && (r.toPorts?.length ?? 0) > 0) {
    report(
      ['toPorts'],
      'combining toServices and toPorts is not supported yet',
      'toServices without toPorts',
      'conflict',
    );
  }
}

export const egressRule = object(
  {
    ...egressCommon,
    toFQDNs: opt(array(fqdnSelector)),
    toPorts: opt(array(egressPortRule)),
    authentication: opt(authentication),
  },
  {
    check: (r, report) => {
      checkExclusive(r, EGRESS_L3, report);
      checkServicesWithPorts(r, report);
      checkIcmpsWithPorts(r, report);
    },
  },
);
export type CiliumEgressRule = ObjectOf<typeof egressRule.fields>;

export const egressDenyRule = object(
  { ...egressCommon, toPorts: opt(array(portDenyRule)) },
  {
    check: (r, report) => {
      checkExclusive(
        r,
        EGRESS_L3.filter((m) => m !== 'toFQDNs'),
        report,
      );
      checkServicesWithPorts(r, report);
      checkIcmpsWithPorts(r, report);
    },
  },
);
export type CiliumEgressDenyRule = ObjectOf<typeof egressDenyRule.fields>;

// ---------------------------------------------------------------------------------------------------------
// Rule (spec / specs[i])

const ruleFields = {
  endpointSelector: opt(endpointSelector),
  nodeSelector: opt(endpointSelector),
  ingress: opt(array(ingressRule)),
  ingressDeny: opt(array(ingressDenyRule)),
  egress: opt(array(egressRule)),
  egressDeny: opt(array(egressDenyRule)),
  labels: opt(array(object({ key: req(string()), source: opt(string()), value: opt(string()) }))),
  description: opt(string()),
  enableDefaultDeny: opt(object({ ingress: opt(boolean()), egress: opt(boolean()) })),
  log: opt(
    object({
      value: opt(
        string({
          maxLength: 32,
          pattern: /^\P{C}*$/u,
          expected: 'at most 32 printable characters',
        }),
      ),
    }),
  ),
} as const;

export type CiliumRule = ObjectOf<typeof ruleFields>;

function checkHostPolicyL7(rule: CiliumRule, report: Reporter): void {
  rule.ingress?.forEach((r, i) =>
    r.toPorts?.forEach((p, j) => {
      if (hasL7(p.rules)) {
        report(
          ['ingress', i, 'toPorts', j, 'rules'],
          'L7 policy is not supported on host ingress yet',
          'no L7 rules with nodeSelector',
          'conflict',
        );
      }
    }),
  );
  rule.egress?.forEach((r, i) =>
    r.toPorts?.forEach((p, j) => {
      for (const t of ['http', 'kafka'] as const) {
        if ((p.rules?.[t]?.length ?? 0) > 0) {
          const at: PathSegment[] = ['egress', i, 'toPorts', j, 'rules', t];
          report(
            at,
            `L7 protocol ${t.toUpperCase()} is not supported on host egress yet`,
            'only DNS rules with nodeSelector',
            'conflict',
          );
        }
      }
    }),
  );
}

function ciliumRule(clusterwide: boolean) {
  return object(ruleFields, {
    check: (rule, report) => {
      if (rule.endpointSelector === undefined && rule.nodeSelector === undefined) {
        report(
          [],
          'rule must have one of endpointSelector or nodeSelector',
          'exactly one of endpointSelector, nodeSelector',
          'required',
        );
      } else if (rule.endpointSelector !== undefined && rule.nodeSelector !== undefined) {
        report(
          ['nodeSelector'],
          'rule cannot have both endpointSelector and nodeSelector',
          'exactly one of endpointSelector, nodeSelector',
          'conflict',
        );
      } else if (rule.nodeSelector !== undefined) {
        if (!clusterwide) {
          report(
            ['nodeSelector'],
            'nodeSelector can only be used in a CiliumClusterwideNetworkPolicy',
            'endpointSelector',
            'conflict',
          );
        } else {
          checkHostPolicyL7(rule, report);
        }
      }
      const directions = ['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const;
      if (directions.every((d) => (rule[d]?.length ?? 0) === 0)) {
        report(
          [],
          'rule must have at least one of ingress, ingressDeny, egress, egressDeny',
          'at least one rule list',
          'required',
        );
      }
    },
    // Rule.Sanitize: default deny is on for each direction that has rules, unless set explicitly.
    complete: (rule) => ({
      ...rule,
      enableDefaultDeny: {
        ingress:
          rule.enableDefaultDeny?.ingress ?? ((rule.ingress?.length ?? 0) > 0 || (rule.ingressDeny?.length ?? 0) > 0),
        egress:
          rule.enableDefaultDeny?.egress ?? ((rule.egress?.length ?? 0) > 0 || (rule.egressDeny?.length ?? 0) > 0),
      },
    }),
  });
}

export const namespacedRule = ciliumRule(false);
export const clusterwideRule = ciliumRule(true);

function checkSpecs(doc: { readonly spec?: unknown; readonly specs?: unknown }, report: Reporter): void {
  if (doc.spec === undefined && doc.specs === undefined) {
    report([], 'empty policy: one of spec or specs is required', 'spec and/or specs', 'required');
  }
}

export const ciliumNetworkPolicyKind = defineKind({
  group: CILIUM_GROUP,
  kind: 'CiliumNetworkPolicy',
  versions: ['v2'],
  namespaced: true,
  summary: 'Cilium L3-L7 allow and deny rules for the endpoints of one namespace (endpointSelector).',
  fields: { spec: opt(namespacedRule), specs: opt(array(namespacedRule)), status: opt(unchecked()) },
  check: checkSpecs,
});
export type CiliumNetworkPolicyBody = BodyOf<typeof ciliumNetworkPolicyKind>;

export const ciliumClusterwideNetworkPolicyKind = defineKind({
  group: CILIUM_GROUP,
  kind: 'CiliumClusterwideNetworkPolicy',
  versions: ['v2'],
  namespaced: false,
  summary: 'Cilium L3-L7 allow and deny rules for endpoints or nodes (nodeSelector) across the cluster.',
  fields: { spec: opt(clusterwideRule), specs: opt(array(clusterwideRule)), status: opt(unchecked()) },
  check: checkSpecs,
});
export type CiliumClusterwideNetworkPolicyBody = BodyOf<typeof ciliumClusterwideNetworkPolicyKind>;
