// security.istio.io PeerAuthentication: https://istio.io/latest/docs/reference/config/security/peer_authentication/
//
// Rules: the CRD schema (mode enum, portLevelMtls minProperties 1, port keys 1-65535, "portLevelMtls requires
// selector") and istio/istio ValidatePeerAuthentication.
import { record } from '../../schema/collections.js';
import { def, object, opt, type ObjectOf } from '../../schema/object.js';
import { oneOf, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  checkDryRunAnnotation,
  istioWorkloadSelector,
  ISTIO_SECURITY_GROUP,
  ISTIO_SECURITY_VERSIONS,
} from './security-common.js';

export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

/** UNSET inherits from the parent scope (namespace, then mesh; PERMISSIVE if none says otherwise). */
export const mutualTls = object({ mode: def(oneOf(MTLS_MODES), 'UNSET' as MtlsMode) });
export type MutualTls = ObjectOf<typeof mutualTls.fields>;

function portKey() {
  return string({
    expected: 'a port number 1-65535',
    check: (k) => {
      if (!/^\d+$/.test(k) || Number(k) < 1 || Number(k) > 65535) {
        return `port must be between 1-65535, got ${JSON.stringify(k)}`;
      }
      return undefined;
    },
  });
}

export const peerAuthenticationSpec = object(
  {
    selector: opt(istioWorkloadSelector),
    mtls: opt(mutualTls),
    portLevelMtls: opt(record(mutualTls, { key: portKey() })),
  },
  {
    check: (spec, report) => {
      if (spec.portLevelMtls === undefined) return;
      if (Object.keys(spec.portLevelMtls).length === 0) {
        report(
          ['portLevelMtls'],
          'port level mTLS, if defined, must have at least one element',
          'at least one port',
          'limit',
        );
        return;
      }
      const labels = spec.selector?.matchLabels;
      if (labels === undefined || Object.keys(labels).length === 0) {
        report(
          ['portLevelMtls'],
          'portLevelMtls requires selector: a mesh- or namespace-wide PeerAuthentication cannot have port level mTLS',
          'a selector with matchLabels, or no portLevelMtls',
          'conflict',
        );
      }
    },
  },
);
export type PeerAuthenticationSpec = ObjectOf<typeof peerAuthenticationSpec.fields>;

export const peerAuthenticationKind = defineKind({
  group: ISTIO_SECURITY_GROUP,
  kind: 'PeerAuthentication',
  versions: ISTIO_SECURITY_VERSIONS,
  namespaced: true,
  summary: 'Mutual TLS mode (STRICT, PERMISSIVE, DISABLE) for the mesh, a namespace, workloads or single ports.',
  fields: { spec: def(peerAuthenticationSpec, (): PeerAuthenticationSpec => ({})), status: opt(unchecked()) },
  check: (doc, report) => checkDryRunAnnotation(doc, report),
});
export type PeerAuthenticationBody = BodyOf<typeof peerAuthenticationKind>;
