// networking.k8s.io/v1 NetworkPolicy: https://kubernetes.io/docs/concepts/services-networking/network-policies/
// API reference: https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/
//
// Rules: kubernetes pkg/apis/networking/validation (ValidateNetworkPolicySpec, ValidateNetworkPolicyPort,
// ValidateNetworkPolicyPeer, ValidateIPBlock) and the defaults of pkg/apis/networking/v1 (protocol TCP;
// policyTypes Ingress, plus Egress when there are egress rules).
import { array } from '../../schema/collections.js';
import { cidr, port } from '../../schema/formats.js';
import { def, object, opt, req, type ObjectOf } from '../../schema/object.js';
import { integer, intOrString, oneOf, string, unchecked } from '../../schema/primitives.js';
import { cidrContains, parseCidr } from '../../../util/cidr.js';
import { labelSelector } from '../common/meta.js';
import { defineKind, type BodyOf } from '../kind.js';

export const POLICY_TYPES = ['Ingress', 'Egress'] as const;
export type PolicyType = (typeof POLICY_TYPES)[number];
export const NETWORK_POLICY_PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
export type NetworkPolicyProtocol = (typeof NETWORK_POLICY_PROTOCOLS)[number];

/** validation.IsValidPortName: an IANA service name (1-15 of [a-z0-9-], a letter, no leading/trailing/double "-"). */
export function portNameProblem(v: string): string | undefined {
  if (v.length > 15) return `port name ${JSON.stringify(v)} is longer than 15 characters`;
  if (!/^[-a-z0-9]+$/.test(v))
    return `port name ${JSON.stringify(v)} may only contain lowercase letters, digits and "-"`;
  if (!/[a-z]/.test(v)) return `port name ${JSON.stringify(v)} must contain at least one letter`;
  if (v.startsWith('-') || v.endsWith('-')) return `port name ${JSON.stringify(v)} must not begin or end with "-"`;
  if (v.includes('--')) return `port name ${JSON.stringify(v)} must not contain "--"`;
  return undefined;
}

const portName = () =>
  string({ minLength: 1, expected: 'a named container port such as "http"', check: portNameProblem });

export const networkPolicyPort = object(
  {
    protocol: def(oneOf(NETWORK_POLICY_PROTOCOLS), 'TCP' as NetworkPolicyProtocol),
    port: opt(intOrString(port(), portName())),
    endPort: opt(integer({ min: 1, max: 65535, expected: 'a port number 1-65535' })),
  },
  {
    check: (p, report) => {
      if (p.endPort === undefined) return;
      if (p.port === undefined) {
        report(
          ['endPort'],
          'may not be specified when `port` is not specified',
          'a numeric port with endPort',
          'conflict',
        );
      } else if (typeof p.port === 'string') {
        report(
          ['endPort'],
          'may not be specified when `port` is non-numeric',
          'a numeric port with endPort',
          'conflict',
        );
      } else if (p.endPort < p.port) {
        report(
          ['endPort'],
          `must be greater than or equal to \`port\` (${p.endPort} < ${p.port})`,
          `a port number ${p.port}-65535`,
          'range',
        );
      }
    },
  },
);
export type NetworkPolicyPort = ObjectOf<typeof networkPolicyPort.fields>;

export const ipBlock = object(
  {
    cidr: req(cidr()),
    except: opt(array(cidr())),
  },
  {
    check: (b, report) => {
      const outer = parseCidr(b.cidr);
      if (typeof outer === 'string') return;
      b.except?.forEach((e, i) => {
        const inner = parseCidr(e);
        if (typeof inner === 'string') return;
        if (!cidrContains(outer, inner) || inner.prefix <= outer.prefix) {
          report(
            ['except', i],
            `${JSON.stringify(e)} must be a strict subset of \`cidr\` ${JSON.stringify(b.cidr)}`,
            `a CIDR strictly inside ${b.cidr}`,
            'range',
          );
        }
      });
    },
  },
);
export type IpBlock = ObjectOf<typeof ipBlock.fields>;

export const networkPolicyPeer = object(
  {
    podSelector: opt(labelSelector),
    namespaceSelector: opt(labelSelector),
    ipBlock: opt(ipBlock),
  },
  {
    check: (peer, report) => {
      const n = [peer.podSelector, peer.namespaceSelector, peer.ipBlock].filter((x) => x !== undefined).length;
      if (n === 0) {
        report([], 'must specify a peer', 'one of podSelector, namespaceSelector (or both), or ipBlock', 'required');
      } else if (n > 1 && peer.ipBlock !== undefined) {
        report(
          ['ipBlock'],
          'may not specify both ipBlock and another peer',
          'ipBlock alone, or podSelector and/or namespaceSelector',
          'conflict',
        );
      }
    },
  },
);
export type NetworkPolicyPeer = ObjectOf<typeof networkPolicyPeer.fields>;

export const networkPolicyIngressRule = object({
  from: opt(array(networkPolicyPeer)),
  ports: opt(array(networkPolicyPort)),
});
export type NetworkPolicyIngressRule = ObjectOf<typeof networkPolicyIngressRule.fields>;

export const networkPolicyEgressRule = object({
  to: opt(array(networkPolicyPeer)),
  ports: opt(array(networkPolicyPort)),
});
export type NetworkPolicyEgressRule = ObjectOf<typeof networkPolicyEgressRule.fields>;

export const networkPolicySpec = object(
  {
    podSelector: req(labelSelector),
    policyTypes: opt(array(oneOf(POLICY_TYPES), { max: 2 })),
    ingress: opt(array(networkPolicyIngressRule)),
    egress: opt(array(networkPolicyEgressRule)),
  },
  {
    // SetDefaults_NetworkPolicySpec: Ingress always, Egress when there are egress rules.
    complete: (spec) => {
      if (spec.policyTypes !== undefined && spec.policyTypes.length > 0) return spec;
      const types: PolicyType[] = ['Ingress'];
      if ((spec.egress?.length ?? 0) > 0) types.push('Egress');
      return { ...spec, policyTypes: types };
    },
  },
);
export type NetworkPolicySpec = ObjectOf<typeof networkPolicySpec.fields>;

export const networkPolicyKind = defineKind({
  group: 'networking.k8s.io',
  kind: 'NetworkPolicy',
  versions: ['v1'],
  namespaced: true,
  summary: 'Kubernetes L3/L4 allow rules for the pods a podSelector picks, by peer pods, namespaces or IP blocks.',
  fields: { spec: req(networkPolicySpec), status: opt(unchecked()) },
});
export type NetworkPolicyBody = BodyOf<typeof networkPolicyKind>;
