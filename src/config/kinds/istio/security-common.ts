// Shared pieces of the Istio security kinds (security.istio.io): the workload selector and policy target
// references with the rules the CRD schema and istiod apply, the `istio.io/dry-run` annotation, and Istio's
// string matching conventions.
//
// Sources: istio/api security/v1beta1 and type/v1beta1 protos and the generated CRD schema
// (kubernetes/customresourcedefinitions.gen.yaml), istio/istio pkg/config/validation/validation.go
// (validateWorkloadSelector, validatePolicyTargetReference, validateOneOfSelectorType, checkDryRunAnnotation).
import { array, record } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { string } from '../../schema/primitives.js';
import type { PathSegment, Schema } from '../../schema/schema.js';

export const ISTIO_SECURITY_GROUP = 'security.istio.io';
/** Served versions; v1 is preferred, v1beta1 is the storage version of older releases. */
export const ISTIO_SECURITY_VERSIONS = ['v1', 'v1beta1'] as const;

// ---------------------------------------------------------------------------------------------------------
// WorkloadSelector (istio.type.v1beta1.WorkloadSelector as the CRD schema constrains it)

function selectorKey(): Schema<string> {
  return string({
    expected: 'a non-empty label key without "*"',
    check: (k) => {
      if (k.length === 0) return 'key must not be empty';
      if (k.includes('*')) return `wildcard not allowed in label key match: ${JSON.stringify(k)}`;
      return undefined;
    },
  });
}

function selectorValue(): Schema<string> {
  return string({
    maxLength: 63,
    expected: 'a label value of at most 63 characters without "*"',
    check: (v) => (v.includes('*') ? `wildcard not allowed in label value match: ${JSON.stringify(v)}` : undefined),
  });
}

/** `selector: {matchLabels}`: keys non-empty, no `*` in keys or values, values at most 63 characters. */
export const istioWorkloadSelector = object({
  matchLabels: opt(record(selectorValue(), { key: selectorKey(), max: 4096 })),
});
export type IstioWorkloadSelector = ObjectOf<typeof istioWorkloadSelector.fields>;

// ---------------------------------------------------------------------------------------------------------
// PolicyTargetReference (GEP-2648 style targetRef / targetRefs)

const GROUP_PATTERN = /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KIND_PATTERN = /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/** The targets istiod accepts (validatePolicyTargetReference: group "" is the core group). */
export const ALLOWED_TARGET_KINDS: readonly { readonly group: string; readonly kind: string }[] = [
  { group: 'core', kind: 'Service' },
  { group: 'networking.istio.io', kind: 'ServiceEntry' },
  { group: 'gateway.networking.k8s.io', kind: 'Gateway' },
  { group: 'gateway.networking.k8s.io', kind: 'GatewayClass' },
];
const ALLOWED_TARGETS_TEXT =
  'one of core/Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/GatewayClass';

export const policyTargetReference = object(
  {
    group: opt(
      string({
        maxLength: 253,
        pattern: GROUP_PATTERN,
        expected: 'an API group: empty (core) or a lowercase DNS subdomain',
      }),
    ),
    kind: req(
      string({
        minLength: 1,
        maxLength: 63,
        pattern: KIND_PATTERN,
        expected: 'a kind name such as "Service" or "Gateway"',
      }),
    ),
    name: req(string({ minLength: 1, maxLength: 253, expected: 'the name of the target resource' })),
    namespace: opt(
      string({
        expected: 'no namespace (the target is in the policy namespace)',
        check: (v) => (v === '' ? undefined : 'cross namespace referencing is not currently supported'),
      }),
    ),
  },
  {
    check: (ref, report) => {
      const group = ref.group === undefined || ref.group === '' ? 'core' : ref.group;
      if (!ALLOWED_TARGET_KINDS.some((t) => t.group === group && t.kind === ref.kind)) {
        report(['kind'], `targetRef to ${group}/${ref.kind} is not supported`, ALLOWED_TARGETS_TEXT, 'enum');
      }
    },
  },
);
export type PolicyTargetReference = ObjectOf<typeof policyTargetReference.fields>;

/** The selector / targetRef / targetRefs fields shared by AuthorizationPolicy and RequestAuthentication. */
export const targetingFields = {
  selector: opt(istioWorkloadSelector),
  targetRef: opt(policyTargetReference),
  targetRefs: opt(array(policyTargetReference, { max: 16 })),
} as const;

/** validateOneOfSelectorType: at most one of selector, targetRef and (a non-empty) targetRefs. */
export function checkOneTargeting(
  spec: {
    readonly selector?: unknown;
    readonly targetRef?: unknown;
    readonly targetRefs?: readonly unknown[];
  },
  report: Reporter,
): void {
  const set: string[] = [];
  if (spec.selector !== undefined) set.push('selector');
  if (spec.targetRef !== undefined) set.push('targetRef');
  if (spec.targetRefs !== undefined && spec.targetRefs.length > 0) set.push('targetRefs');
  if (set.length > 1) {
    report(
      [set[1]!],
      `only one of targetRefs or workloadSelector can be set: found both "${set[0]}" and "${set[1]}"`,
      'at most one of selector, targetRef, targetRefs',
      'conflict',
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// The istio.io/dry-run annotation (checkDryRunAnnotation)

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';
/** Values Go's strconv.ParseBool accepts. */
const GO_BOOLS = new Set(['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False']);

function annotationsOf(doc: unknown): Readonly<Record<string, string>> | undefined {
  const meta = (doc as { metadata?: { annotations?: Readonly<Record<string, string>> } }).metadata;
  return meta?.annotations;
}

/**
 * Only AuthorizationPolicy supports `istio.io/dry-run`, and only with action ALLOW or DENY; its value must be
 * a Go boolean. Every other security kind rejects the annotation. `action` is undefined for those kinds.
 */
export function checkDryRunAnnotation(doc: unknown, report: Reporter, action?: string): void {
  const value = annotationsOf(doc)?.[DRY_RUN_ANNOTATION];
  if (value === undefined) return;
  const at: PathSegment[] = ['metadata', 'annotations', DRY_RUN_ANNOTATION];
  if (action === undefined) {
    report(
      at,
      `unsupported annotation ${DRY_RUN_ANNOTATION}; only AuthorizationPolicy supports it`,
      'no such annotation',
    );
  } else if (action !== 'ALLOW' && action !== 'DENY') {
    report(
      at,
      `${DRY_RUN_ANNOTATION} only supports action ALLOW or DENY, found action ${action}`,
      'action ALLOW or DENY',
    );
  } else if (!GO_BOOLS.has(value)) {
    report(at, `${DRY_RUN_ANNOTATION} has an invalid value ${JSON.stringify(value)}`, '"true" or "false"');
  }
}

// ---------------------------------------------------------------------------------------------------------
// String matching used by AuthorizationPolicy fields (pilot/pkg/security/authz/matcher)

export type IstioStringMatch =
  | { readonly kind: 'presence' }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'suffix'; readonly value: string }
  | { readonly kind: 'exact'; readonly value: string };

/**
 * How Istio reads a rule value: `*` is a presence match, a leading `*` a suffix match, a trailing `*` a prefix
 * match, anything else exact. A `*` anywhere else is a literal character.
 */
export function istioStringMatch(v: string): IstioStringMatch {
  if (v === '*') return { kind: 'presence' };
  if (v.startsWith('*')) return { kind: 'suffix', value: v.slice(1) };
  if (v.endsWith('*')) return { kind: 'prefix', value: v.slice(0, -1) };
  return { kind: 'exact', value: v };
}
