// Kubernetes ObjectMeta and LabelSelector, shared by every kind.
import { array, record } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf } from '../../schema/object.js';
import { integer, oneOf, string, unchecked } from '../../schema/primitives.js';
import type { Schema } from '../../schema/schema.js';
import { dnsLabel, dnsSubdomain } from '../../schema/formats.js';

// A label/annotation key: optional DNS-subdomain prefix and a name segment (validation.IsQualifiedName).
const QUALIFIED_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function labelKey(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 317,
    pattern: QUALIFIED_NAME,
    expected: 'a label key: an optional DNS prefix and "/", then up to 63 letters, digits, "-", "_" or "."',
    check: (v) => {
      const name = v.includes('/') ? v.slice(v.indexOf('/') + 1) : v;
      return name.length > 63 ? `the name part of ${JSON.stringify(v)} is longer than 63 characters` : undefined;
    },
  });
}

export function labelValue(): Schema<string> {
  return string({
    maxLength: 63,
    pattern: LABEL_VALUE,
    expected: 'a label value: up to 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit',
  });
}

export const labels = (): Schema<Readonly<Record<string, string>>> => record(labelValue(), { key: labelKey() });

/** A matchExpressions entry; `key` is the label-key schema (Cilium allows source prefixes). */
export function selectorRequirement(key: Schema<string> = labelKey()) {
  return object(
    {
      key: req(key),
      operator: req(oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist'])),
      values: opt(array(labelValue())),
    },
    {
      check: (v, report) => {
        const n = v.values?.length ?? 0;
        if ((v.operator === 'In' || v.operator === 'NotIn') && n === 0) {
          report(['values'], `must be non-empty when operator is ${v.operator}`, 'at least one value');
        }
        if ((v.operator === 'Exists' || v.operator === 'DoesNotExist') && n > 0) {
          report(['values'], `must be empty when operator is ${v.operator}`, 'no values');
        }
      },
    },
  );
}

export const labelSelectorRequirement = selectorRequirement();

/** metav1.LabelSelector. An empty selector selects everything (Kubernetes semantics). */
export const labelSelector = object({
  matchLabels: opt(labels()),
  matchExpressions: opt(array(labelSelectorRequirement)),
});
export type LabelSelector = ObjectOf<typeof labelSelector.fields>;

/** Istio's WorkloadSelector (matchLabels only). */
export const workloadSelector = object({ matchLabels: opt(labels()) });

export const objectMeta = object(
  {
    name: req(dnsSubdomain()),
    namespace: opt(dnsLabel('namespace')),
    labels: opt(labels()),
    annotations: opt(record(string(), { key: labelKey() })),
    // Fields kubectl and the API server write; accepted so that `kubectl get -o yaml` output loads.
    generateName: opt(string()),
    uid: opt(string()),
    resourceVersion: opt(string()),
    generation: opt(integer({ min: 0 })),
    creationTimestamp: opt(unchecked()),
    deletionTimestamp: opt(unchecked()),
    deletionGracePeriodSeconds: opt(integer()),
    selfLink: opt(string()),
    finalizers: opt(array(string())),
    ownerReferences: opt(array(unchecked())),
    managedFields: opt(array(unchecked())),
  },
  { expected: 'a mapping with name and, for namespaced kinds, an optional namespace, labels and annotations' },
);
export type ObjectMeta = ObjectOf<typeof objectMeta.fields>;
