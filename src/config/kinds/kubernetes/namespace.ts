// v1 Namespace: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/namespace-v1/
//
// Rules: kubernetes pkg/apis/core/validation ValidateNamespace (the name is a DNS-1123 label; spec.finalizers are
// qualified names, and a name without "/" must be a standard finalizer).
import { array } from '../../schema/collections.js';
import { DNS1123_LABEL } from '../../schema/formats.js';
import { object, opt, type ObjectOf } from '../../schema/object.js';
import { string, unchecked } from '../../schema/primitives.js';
import { IssueSink } from '../../schema/schema.js';
import { labelKey } from '../common/meta.js';
import { defineKind, type BodyOf } from '../kind.js';

/** Finalizer names that need no domain prefix (helper.IsStandardFinalizerName). */
export const STANDARD_FINALIZERS = ['kubernetes', 'orphan', 'foregroundDeletion'] as const;

function finalizerName() {
  const qualified = labelKey();
  return string({
    minLength: 1,
    expected: `"kubernetes" or a qualified name such as "example.com/cleanup"`,
    check: (v) => {
      // IsQualifiedName, the same syntax as a label key.
      if (!v.includes('/')) {
        return (STANDARD_FINALIZERS as readonly string[]).includes(v)
          ? undefined
          : `${JSON.stringify(v)} is neither a standard finalizer name nor fully qualified`;
      }
      const sink = new IssueSink();
      qualified.parse(v, [], sink);
      return sink.issues.length > 0
        ? `${JSON.stringify(v)} is not a qualified name (a DNS prefix, "/" and a name)`
        : undefined;
    },
  });
}

export const namespaceSpec = object({ finalizers: opt(array(finalizerName())) });
export type NamespaceSpec = ObjectOf<typeof namespaceSpec.fields>;

export const namespaceKind = defineKind({
  group: '',
  kind: 'Namespace',
  versions: ['v1'],
  namespaced: false,
  summary: 'A namespace; its labels are what namespaceSelector and Istio/Cilium namespace rules match.',
  fields: { spec: opt(namespaceSpec), status: opt(unchecked()) },
  check: (doc, report) => {
    const name = (doc as { metadata?: { name?: unknown } }).metadata?.name;
    if (typeof name === 'string' && (name.length > 63 || !DNS1123_LABEL.test(name))) {
      report(
        ['metadata', 'name'],
        `${JSON.stringify(name)} is not a valid namespace name`,
        "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (no '.')",
        'format',
      );
    }
  },
});
export type NamespaceBody = BodyOf<typeof namespaceKind>;
