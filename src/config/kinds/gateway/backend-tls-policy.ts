// BackendTLSPolicy (gateway.networking.k8s.io v1, v1alpha3): apis/v1/backendtlspolicy_types.go.
// The v1alpha3 shape is the same (targetRefs with sectionName, validation.caCertificateRefs,
// wellKnownCACertificates, hostname, subjectAltNames, options), so one schema serves both.
import { array } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf } from '../../schema/object.js';
import { oneOf, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  absoluteURI,
  annotationMap,
  hostname,
  localObjectReference,
  localPolicyTargetReferenceWithSectionName,
  preciseHostname,
} from './common.js';

export const subjectAltName = object(
  {
    type: req(oneOf(['Hostname', 'URI'])),
    hostname: opt(hostname()),
    uri: opt(absoluteURI()),
  },
  {
    check: (v, report) => {
      if (v.type === 'Hostname' && v.hostname === undefined) {
        report(['hostname'], 'must be specified when type is Hostname', 'a DNS name', 'required');
      }
      if (v.type !== 'Hostname' && v.hostname !== undefined) {
        report(['hostname'], `must not be set when type is ${v.type}`, 'type: Hostname', 'conflict');
      }
      if (v.type === 'URI' && v.uri === undefined) {
        report(['uri'], 'must be specified when type is URI', 'an absolute URI such as a SPIFFE ID', 'required');
      }
      if (v.type !== 'URI' && v.uri !== undefined) {
        report(['uri'], `must not be set when type is ${v.type}`, 'type: URI', 'conflict');
      }
    },
  },
);
export type SubjectAltName = ObjectOf<typeof subjectAltName.fields>;

export const backendTLSPolicyValidation = object(
  {
    caCertificateRefs: opt(array(localObjectReference, { max: 8 })),
    wellKnownCACertificates: opt(oneOf(['System'])),
    hostname: req(preciseHostname()),
    subjectAltNames: opt(array(subjectAltName, { max: 5 })),
  },
  {
    check: (v, report) => {
      const refs = (v.caCertificateRefs?.length ?? 0) > 0;
      if (refs && v.wellKnownCACertificates !== undefined) {
        report(
          ['wellKnownCACertificates'],
          'must not be set together with caCertificateRefs',
          'either caCertificateRefs or wellKnownCACertificates',
          'conflict',
        );
      }
      if (!refs && v.wellKnownCACertificates === undefined) {
        report(
          [],
          'must specify either caCertificateRefs or wellKnownCACertificates',
          'caCertificateRefs (e.g. a ConfigMap with ca.crt) or wellKnownCACertificates: System',
          'required',
        );
      }
    },
  },
);
export type BackendTLSPolicyValidation = ObjectOf<typeof backendTLSPolicyValidation.fields>;

export const backendTLSPolicySpec = object(
  {
    targetRefs: req(array(localPolicyTargetReferenceWithSectionName, { min: 1, max: 16 })),
    validation: req(backendTLSPolicyValidation),
    options: opt(annotationMap(16)),
  },
  {
    check: (v, report) => {
      // Distinct targetRefs: references to the same target all set sectionName or none do, and differ in it.
      const first = new Map<string, number>();
      const seen = new Map<string, number>();
      v.targetRefs.forEach((t, i) => {
        const key = `${t.group}/${t.kind}/${t.name}`;
        const prev = first.get(key);
        if (prev !== undefined && (t.sectionName === undefined) !== (v.targetRefs[prev]!.sectionName === undefined)) {
          report(
            ['targetRefs', i, 'sectionName'],
            `sectionName must be specified when targetRefs includes 2 or more references to the same target (also targetRefs[${prev}])`,
            'a sectionName on every reference to the same target',
          );
          return;
        }
        if (prev === undefined) first.set(key, i);
        const full = `${key}#${t.sectionName ?? ''}`;
        const dup = seen.get(full);
        if (dup !== undefined) {
          report(
            ['targetRefs', i],
            `duplicates targetRefs[${dup}]; sectionName must be unique when targetRefs includes 2 or more references to the same target`,
            'distinct target references',
            'conflict',
          );
        } else seen.set(full, i);
      });
    },
  },
);
export type BackendTLSPolicySpec = ObjectOf<typeof backendTLSPolicySpec.fields>;

export const backendTlsPolicyKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'BackendTLSPolicy',
  versions: ['v1', 'v1alpha3'],
  namespaced: true,
  summary: 'How a Gateway connects to a backend Service over TLS: trusted CAs, SNI hostname and SANs.',
  fields: { spec: req(backendTLSPolicySpec), status: opt(unchecked()) },
});
export type BackendTLSPolicy = BodyOf<typeof backendTlsPolicyKind>;
