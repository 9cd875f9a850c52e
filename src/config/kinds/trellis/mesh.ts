// trellis.dev/v1alpha1 Mesh: what no standard kind says — the trust domain, the
// mesh-wide mTLS default, certificate lifetimes and, outside Kubernetes, the nodes.
import { array } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf } from '../../schema/object.js';
import { integer, oneOf, string, unchecked } from '../../schema/primitives.js';
import { dnsLabel, dnsSubdomain, ipAddress, port } from '../../schema/formats.js';
import { cidrContains, parseCidr, type Cidr } from '../../../util/cidr.js';
import { labels } from '../common/meta.js';
import { defineKind } from '../kind.js';
import { INVALID, IssueSink } from '../../schema/schema.js';
import { parseGoDuration } from '../../../util/duration.js';

// SPIFFE: the trust domain is lowercase letters, digits, '.', '-' and '_' (no scheme, port or path).
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;

const nodePorts = object({
  hbone: def(port(), 15008),
  outbound: def(port(), 15001),
  inbound: def(port(), 15006),
  metrics: def(port(), 15020),
  health: def(port(), 15021),
});

const meshNode = object({
  name: req(dnsLabel('node name')),
  /** Where other nodes reach this node's HBONE listener. */
  address: req(ipAddress()),
  /** Istio's locality form "region/zone/subzone". */
  locality: opt(string({ pattern: /^[^/]*(\/[^/]*){0,2}$/, expected: 'a locality "region/zone/subzone"' })),
  labels: opt(labels()),
  ports: def(nodePorts, () => ({ hbone: 15008, outbound: 15001, inbound: 15006, metrics: 15020, health: 15021 })),
});
export type MeshNode = ObjectOf<typeof meshNode.fields>;

/** Kubernetes' defaults (kubeadm, kind): pods 10.244.0.0/16 split in /24 per node, services 10.96.0.0/16. */
export const NETWORK_DEFAULTS = {
  clusterCIDR: '10.244.0.0/16',
  nodeCIDRMaskSize: 24,
  serviceCIDR: '10.96.0.0/16',
  underlayCIDR: '10.250.0.0/24',
} as const;

const ipv4Cidr = () =>
  string({
    expected: 'an IPv4 CIDR such as "10.244.0.0/16"',
    check: (v) => {
      const c = parseCidr(v);
      if (typeof c === 'string') return c;
      return c.family === 6 ? 'IPv6 pod networking is not supported yet' : undefined;
    },
  });

/** Pod networking of `trellis up --netns`: where pods, service VIPs and node links get their addresses. */
const network = object(
  {
    clusterCIDR: def(ipv4Cidr(), NETWORK_DEFAULTS.clusterCIDR),
    /** Each node's pod CIDR is this long (kube-controller-manager --node-cidr-mask-size). */
    nodeCIDRMaskSize: def(integer({ min: 8, max: 30 }), NETWORK_DEFAULTS.nodeCIDRMaskSize),
    serviceCIDR: def(ipv4Cidr(), NETWORK_DEFAULTS.serviceCIDR),
    /** The link between the nodes (a bridge on this machine); its first address is the host's. */
    underlayCIDR: def(ipv4Cidr(), NETWORK_DEFAULTS.underlayCIDR),
  },
  {
    check: (v, report) => {
      const parsed = (['clusterCIDR', 'serviceCIDR', 'underlayCIDR'] as const).map(
        (k) => [k, parseCidr(v[k]) as Cidr] as const,
      );
      const cluster = parsed[0]![1];
      if (v.nodeCIDRMaskSize <= cluster.prefix)
        report(
          ['nodeCIDRMaskSize'],
          `/${v.nodeCIDRMaskSize} is not longer than clusterCIDR ${v.clusterCIDR}`,
          `a mask size from ${cluster.prefix + 1} to 30`,
        );
      for (let i = 0; i < parsed.length; i++)
        for (let j = i + 1; j < parsed.length; j++) {
          const [a, x] = parsed[i]!;
          const [b, y] = parsed[j]!;
          if (cidrContains(x, y) || cidrContains(y, x))
            report([b], `${v[b]} overlaps ${a} ${v[a]}`, 'separate ranges for pods, services and node links');
        }
    },
  },
);

const durationAtLeast = (minMs: number, what: string) =>
  string({
    expected: `a duration of at least ${what}, such as "24h"`,
    check: (v) => {
      const ms = parseGoDuration(v);
      if (ms === undefined) return `${JSON.stringify(v)} is not a duration`;
      return ms < minMs ? `${JSON.stringify(v)} is shorter than ${what}` : undefined;
    },
  });

const certificates = object(
  {
    /** X.509-SVID lifetime (SPIFFE/Istio default 24h). */
    workloadTTL: def(durationAtLeast(1000, '1s'), '24h'),
    /** Root CA lifetime when Trellis creates the root (10 years, as Istio's self-signed root). */
    rootTTL: def(durationAtLeast(3_600_000, '1h'), '87600h'),
    /** JWT-SVID lifetime. */
    jwtTTL: def(durationAtLeast(1000, '1s'), '5m'),
  },
  {
    check: (v, report) => {
      if (parseGoDuration(v.workloadTTL)! >= parseGoDuration(v.rootTTL)!) {
        report(
          ['workloadTTL'],
          `${v.workloadTTL} is not shorter than rootTTL ${v.rootTTL}`,
          'a workload lifetime shorter than the root lifetime',
        );
      }
    },
  },
);

const meshSpec = object(
  {
    trustDomain: def(
      string({
        minLength: 1,
        maxLength: 255,
        pattern: TRUST_DOMAIN,
        expected: 'a SPIFFE trust domain: lowercase letters, digits, ".", "-", "_"',
      }),
      'cluster.local',
    ),
    /** DNS suffix of service host names: NAME.NAMESPACE.svc.<clusterDomain>. */
    clusterDomain: def(
      string({ minLength: 1, pattern: /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, expected: 'a DNS domain' }),
      'cluster.local',
    ),
    /** Trust domains whose SVIDs are accepted as this one (Istio's trustDomainAliases). */
    trustDomainAliases: opt(array(string({ pattern: TRUST_DOMAIN, expected: 'a SPIFFE trust domain' }))),
    /** The mesh-wide PeerAuthentication default; Istio's is PERMISSIVE. */
    mtls: def(object({ mode: def(oneOf(['STRICT', 'PERMISSIVE', 'DISABLE']), 'PERMISSIVE') }), () => ({
      mode: 'PERMISSIVE' as const,
    })),
    certificates: def(certificates, () => ({ workloadTTL: '24h', rootTTL: '87600h', jwtTTL: '5m' })),
    /** The namespace treated as Istio's root namespace (mesh-wide policies live there). */
    rootNamespace: def(dnsSubdomain('namespace'), 'istio-system'),
    nodes: opt(array(meshNode)),
    network: opt(network),
    controlPlane: opt(
      object({
        xdsAddress: opt(string({ expected: 'host:port' })),
        adminAddress: opt(string({ expected: 'host:port' })),
      }),
    ),
  },
  {
    check: (spec, report) => {
      const names = new Map<string, number>();
      (spec.nodes ?? []).forEach((n, i) => {
        const prev = names.get(n.name);
        if (prev !== undefined)
          report(
            ['nodes', i, 'name'],
            `duplicate node name ${JSON.stringify(n.name)} (also nodes[${prev}])`,
            'unique node names',
          );
        names.set(n.name, i);
      });
      const endpoints = new Map<string, number>();
      (spec.nodes ?? []).forEach((n, i) => {
        const key = `${n.address}:${n.ports.hbone}`;
        const prev = endpoints.get(key);
        if (prev !== undefined) {
          report(
            ['nodes', i, 'ports', 'hbone'],
            `node ${n.name} listens on ${key} like nodes[${prev}]`,
            'a distinct address or HBONE port per node',
          );
        }
        endpoints.set(key, i);
      });
    },
  },
);

export const meshKind = defineKind({
  group: 'trellis.dev',
  kind: 'Mesh',
  versions: ['v1alpha1'],
  namespaced: false,
  summary:
    'Mesh-wide settings: trust domain, default mTLS mode, certificate lifetimes, and the nodes outside Kubernetes.',
  fields: { spec: def(meshSpec, defaultMeshSpec), status: opt(unchecked()) },
});
export type MeshSpec = ObjectOf<typeof meshSpec.fields>;

/** The settings in force when no Mesh resource is given (every field at its default). */
export function defaultMeshSpec(): MeshSpec {
  const v = meshSpec.parse({}, [], new IssueSink());
  if (v === INVALID) throw new Error('Mesh defaults do not validate');
  return v;
}
