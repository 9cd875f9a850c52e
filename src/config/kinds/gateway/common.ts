// Types shared by the Gateway API kinds (sigs.k8s.io/gateway-api apis/v1 shared_types.go,
// object_reference_types.go, policy_types.go), with the upstream limits, defaults and CEL rules.
import { array, record } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { integer, oneOf, string } from '../../schema/primitives.js';
import {
  describeValue,
  formatPath,
  INVALID,
  type Invalid,
  type IssueSink,
  type Path,
  type Schema,
} from '../../schema/schema.js';
import { DNS1123_LABEL, DNS1123_SUBDOMAIN, gatewayDuration, gatewayHostname } from '../../schema/formats.js';
import { parseGatewayDuration } from '../../../util/duration.js';
import { re2Problem } from '../../../util/re2.js';
import { labelKey } from '../common/meta.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

// ---------------------------------------------------------------------------
// Scalar types
// ---------------------------------------------------------------------------

/** Group: "" (core) or an RFC 1123 subdomain, at most 253 characters. */
export function group(): Schema<string> {
  return string({
    maxLength: 253,
    pattern: /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    expected: 'an API group: "" for the core group, or a lowercase DNS subdomain such as "gateway.networking.k8s.io"',
  });
}

/** Kind: 1-63 characters, a letter then letters, digits and '-'. */
export function kind(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 63,
    pattern: /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/,
    expected: 'a resource kind such as "Service" or "HTTPRoute"',
  });
}

/** ObjectName: 1-253 characters. */
export function objectName(): Schema<string> {
  return string({ minLength: 1, maxLength: 253, expected: 'an object name (1-253 characters)' });
}

/** Namespace: an RFC 1123 label. */
export function namespaceName(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 63,
    pattern: DNS1123_LABEL,
    expected: 'a namespace name: lowercase letters, digits and "-" (RFC 1123 label)',
  });
}

/** SectionName: an RFC 1123 subdomain (listener names, rule names, port names). */
export function sectionName(what = 'section name'): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 253,
    pattern: DNS1123_SUBDOMAIN,
    expected: `a ${what}: lowercase letters, digits, "-" and "." (RFC 1123 subdomain)`,
  });
}

/** PortNumber: 1-65535. */
export function portNumber(): Schema<number> {
  return integer({ min: 1, max: 65535, expected: 'a port number 1-65535' });
}

/** Hostname: a DNS name, optionally with a leading "*." label; no IP addresses. */
export const hostname = gatewayHostname;

/** PreciseHostname: a DNS name without wildcard. */
export function preciseHostname(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 253,
    pattern: DNS1123_SUBDOMAIN,
    expected: 'a lowercase DNS name without wildcard (Gateway API PreciseHostname)',
  });
}

/** HeaderName: an HTTP header (or query parameter) name token. */
export function headerName(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 256,
    pattern: /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/,
    expected: 'an HTTP header name: letters, digits and !#$%&\'*+-.^_`|~ (no ":" pseudo-headers, no spaces)',
  });
}

/** A header (or query parameter) value to match or set. */
export function headerValue(maxLength = 4096): Schema<string> {
  return string({
    minLength: 1,
    maxLength,
    expected: `a non-empty value of at most ${maxLength} characters`,
    check: (v) => (/[\r\n\0]/.test(v) ? 'must not contain line breaks or NUL characters' : undefined),
  });
}

/** GatewayController: a domain-prefixed path such as "example.net/gateway-controller". */
export function gatewayController(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 253,
    pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/,
    expected: 'a domain-prefixed path such as "example.net/gateway-controller"',
  });
}

/** AbsoluteURI: a URI with a scheme and "//authority", e.g. a SPIFFE ID. */
export function absoluteURI(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 253,
    pattern: /^(([^:/?#]+):)(\/\/([^/?#]*))([^?#]*)(\?([^#]*))?(#(.*))?/,
    expected: 'an absolute URI with scheme and authority, such as "spiffe://cluster.local/ns/default/sa/api"',
  });
}

/** AnnotationValue: at most 4096 characters. */
export function annotationValue(): Schema<string> {
  return string({ maxLength: 4096, expected: 'a string of at most 4096 characters' });
}

/** map[AnnotationKey]AnnotationValue with MaxProperties. */
export function annotationMap(max: number): Schema<Readonly<Record<string, string>>> {
  return record(annotationValue(), { key: labelKey(), max });
}

/** Gateway API Duration (GEP-2257). */
export const duration = gatewayDuration;

/** Milliseconds of a Gateway API duration that already passed validation. */
export function durationMs(v: string): number {
  return parseGatewayDuration(v) ?? 0;
}

/** Reports an invalid RE2 pattern (what re2Regex() checks) at `at`, for type-dependent values. */
export function checkRegex(pattern: string, at: readonly (string | number)[], report: Reporter): void {
  const problem = re2Problem(pattern);
  if (problem !== undefined) report(at, problem, 'a regular expression in RE2 syntax', 'format');
}

/** An integer restricted to a fixed set (e.g. redirect status codes). */
export function intEnum<const T extends readonly number[]>(values: T): Schema<T[number]> {
  const expected = `one of ${values.join(', ')}`;
  return {
    expected,
    parse(input: unknown, path: Path, sink: IssueSink): T[number] | Invalid {
      if (typeof input !== 'number' || !Number.isInteger(input)) {
        sink.report(path, 'type', `must be an integer, got ${describeValue(input)}`, expected);
        return INVALID;
      }
      if (!values.includes(input)) {
        sink.report(path, 'enum', `${input} is not allowed`, expected);
        return INVALID;
      }
      return input as T[number];
    },
  };
}

// ---------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------

/** ParentReference: group defaults to gateway.networking.k8s.io, kind to Gateway. */
export const parentReference = object({
  group: def(group(), GATEWAY_GROUP),
  kind: def(kind(), 'Gateway'),
  namespace: opt(namespaceName()),
  name: req(objectName()),
  sectionName: opt(sectionName()),
  port: opt(portNumber()),
});
export type ParentReference = ObjectOf<typeof parentReference.fields>;

/**
 * The CommonRouteSpec parentRefs rules: references to the same parent must all set the same
 * combination of sectionName/port, and that combination must be distinct.
 */
export function checkParentRefs(refs: readonly ParentReference[], report: Reporter, at: readonly (string | number)[]) {
  const parentKey = (p: ParentReference) => `${p.group}/${p.kind}/${p.namespace ?? ''}/${p.name}`;
  const first = new Map<string, number>();
  const seen = new Map<string, number>();
  refs.forEach((p, i) => {
    const key = parentKey(p);
    const prev = first.get(key);
    if (prev !== undefined) {
      const q = refs[prev]!;
      if (
        (p.sectionName === undefined) !== (q.sectionName === undefined) ||
        (p.port === undefined) !== (q.port === undefined)
      ) {
        report(
          [...at, i],
          `refers to the same parent as ${formatIndex(at, prev)} but sets a different combination of sectionName and port`,
          'sectionName or port set the same way on every reference to the same parent',
        );
        return;
      }
      if (p.sectionName === undefined && p.port === undefined) {
        report(
          [...at, i],
          `refers to the same parent as ${formatIndex(at, prev)}; sectionName or port must be specified when parentRefs includes 2 or more references to the same parent`,
          'a sectionName or port on each reference',
        );
        return;
      }
    } else {
      first.set(key, i);
    }
    const full = `${key}#${p.sectionName ?? ''}#${p.port ?? ''}`;
    const dup = seen.get(full);
    if (dup !== undefined) {
      report(
        [...at, i],
        `duplicates ${formatIndex(at, dup)}; sectionName or port must be unique when parentRefs includes 2 or more references to the same parent`,
        'distinct parent references',
        'conflict',
      );
    } else {
      seen.set(full, i);
    }
  });
}

function formatIndex(at: readonly (string | number)[], i: number): string {
  return `${String(at[at.length - 1])}[${i}]`;
}

/** BackendObjectReference fields (group "" and kind Service by default). */
export const backendObjectReferenceFields = {
  group: def(group(), ''),
  kind: def(kind(), 'Service'),
  name: req(objectName()),
  namespace: opt(namespaceName()),
  port: opt(portNumber()),
} as const;

/** CEL: "Must have port for Service reference". */
export function checkServicePort(v: { group: string; kind: string; port?: number }, report: Reporter): void {
  if (v.group === '' && v.kind === 'Service' && v.port === undefined) {
    report(['port'], 'is required when the backend is a Service', 'the Service port number 1-65535', 'required');
  }
}

export const backendObjectReference = object(backendObjectReferenceFields, { check: checkServicePort });
export type BackendObjectReference = ObjectOf<typeof backendObjectReference.fields>;

/** BackendRef: a BackendObjectReference with a weight (default 1, 0-1000000). */
export const backendRefFields = {
  ...backendObjectReferenceFields,
  weight: def(integer({ min: 0, max: 1_000_000, expected: 'an integer weight 0-1000000' }), 1),
} as const;

export const backendRef = object(backendRefFields, { check: checkServicePort });
export type BackendRef = ObjectOf<typeof backendRef.fields>;

/** LocalObjectReference (extensionRef, caCertificateRefs). Group is "" when omitted. */
export const localObjectReference = object({
  group: def(group(), ''),
  kind: req(kind()),
  name: req(objectName()),
});
export type LocalObjectReference = ObjectOf<typeof localObjectReference.fields>;

/** SecretObjectReference: group "" and kind Secret by default. */
export const secretObjectReference = object({
  group: def(group(), ''),
  kind: def(kind(), 'Secret'),
  name: req(objectName()),
  namespace: opt(namespaceName()),
});
export type SecretObjectReference = ObjectOf<typeof secretObjectReference.fields>;

/** ObjectReference: group and kind required. */
export const objectReference = object({
  group: req(group()),
  kind: req(kind()),
  name: req(objectName()),
  namespace: opt(namespaceName()),
});
export type ObjectReference = ObjectOf<typeof objectReference.fields>;

/** LocalPolicyTargetReferenceWithSectionName (policy targetRefs). */
export const localPolicyTargetReferenceWithSectionName = object({
  group: req(group()),
  kind: req(kind()),
  name: req(objectName()),
  sectionName: opt(sectionName()),
});
export type LocalPolicyTargetReferenceWithSectionName = ObjectOf<
  typeof localPolicyTargetReferenceWithSectionName.fields
>;

// ---------------------------------------------------------------------------
// Route building blocks
// ---------------------------------------------------------------------------

/** GatewayDefaultScope (GEP-3793, experimental). */
export const defaultScope = () => oneOf(['All', 'None']);

/** The CommonRouteSpec fields every route has. */
export const commonRouteFields = {
  parentRefs: opt(array(parentReference, { max: 32 })),
  useDefaultGateway: opt(defaultScope()),
} as const;

/** Route hostnames (HTTPRoute, GRPCRoute, TLSRoute): at most 16. */
export const routeHostnames = () => array(hostname(), { max: 16 });

/** CEL: "Rule name must be unique within the route". */
/** CEL rule shared by HTTPRoute and GRPCRoute: at most 128 matches across all rules. */
export function checkTotalMatches(
  rules: readonly { readonly matches?: readonly unknown[] }[] | undefined,
  report: Reporter,
): void {
  const total = (rules ?? []).reduce((n, r) => n + (r.matches?.length ?? 0), 0);
  if (total > 128) {
    report(
      ['rules'],
      `has ${total} matches in total; the total number of matches across all rules in a route must be at most 128`,
      'at most 128 matches across all rules',
      'limit',
    );
  }
}

export function checkUniqueRuleNames(
  rules: readonly { readonly name?: string }[] | undefined,
  report: Reporter,
  at: readonly (string | number)[] = ['rules'],
): void {
  const seen = new Map<string, number>();
  (rules ?? []).forEach((r, i) => {
    if (r.name === undefined) return;
    const prev = seen.get(r.name);
    if (prev !== undefined) {
      report(
        [...at, i, 'name'],
        `rule name ${JSON.stringify(r.name)} is already used by rules[${prev}]; rule names must be unique within the route`,
        'a unique rule name',
        'conflict',
      );
    } else {
      seen.set(r.name, i);
    }
  });
}

/** Reports the second and later entries whose key repeats (case-insensitively when `fold`). */
export function checkUniqueNames<T>(
  items: readonly T[] | undefined,
  key: (item: T) => string,
  report: Reporter,
  at: (i: number) => readonly (string | number)[],
  what: string,
  fold = true,
): void {
  const seen = new Map<string, number>();
  (items ?? []).forEach((item, i) => {
    const raw = key(item);
    const k = fold ? raw.toLowerCase() : raw;
    const prev = seen.get(k);
    if (prev !== undefined) {
      report(
        at(i),
        `duplicate ${what} ${JSON.stringify(raw)} (also ${formatPath(at(prev))})${fold ? '; names are compared case-insensitively' : ''}`,
        `unique ${what}s`,
        'conflict',
      );
    } else {
      seen.set(k, i);
    }
  });
}

/** SessionPersistence (experimental on route rules). */
export const sessionPersistence = object(
  {
    sessionName: opt(string({ maxLength: 128, expected: 'a session name of at most 128 characters' })),
    absoluteTimeout: opt(duration()),
    idleTimeout: opt(duration()),
    type: def(oneOf(['Cookie', 'Header']), 'Cookie'),
    cookieConfig: opt(object({ lifetimeType: def(oneOf(['Permanent', 'Session']), 'Session') })),
  },
  {
    check: (v, report) => {
      if (v.cookieConfig?.lifetimeType === 'Permanent' && v.absoluteTimeout === undefined) {
        report(
          ['absoluteTimeout'],
          'is required when cookieConfig.lifetimeType is Permanent',
          'a Gateway API duration such as "24h"',
          'required',
        );
      }
    },
  },
);
export type SessionPersistence = ObjectOf<typeof sessionPersistence.fields>;

/** HTTPHeader: a name and a value to set or add. */
export const httpHeader = object({ name: req(headerName()), value: req(headerValue()) });

/**
 * HTTPHeaderFilter (RequestHeaderModifier / ResponseHeaderModifier). Only one action per header
 * name is permitted across set, add and remove.
 */
export const httpHeaderFilter = object(
  {
    set: opt(array(httpHeader, { max: 16 })),
    add: opt(array(httpHeader, { max: 16 })),
    remove: opt(array(headerName(), { max: 16 })),
  },
  {
    check: (v, report) => {
      const seen = new Map<string, string>();
      const visit = (list: 'set' | 'add' | 'remove', i: number, name: string) => {
        const k = name.toLowerCase();
        const prev = seen.get(k);
        if (prev !== undefined) {
          report(
            list === 'remove' ? [list, i] : [list, i, 'name'],
            `header ${JSON.stringify(name)} already has an action (${prev}); only one action per header name is permitted`,
            'each header name in at most one of set, add and remove, once',
            'conflict',
          );
        } else {
          seen.set(k, `${list}[${i}]`);
        }
      };
      v.set?.forEach((h, i) => visit('set', i, h.name));
      v.add?.forEach((h, i) => visit('add', i, h.name));
      v.remove?.forEach((h, i) => visit('remove', i, h));
    },
  },
);
export type HTTPHeaderFilter = ObjectOf<typeof httpHeaderFilter.fields>;

/** Fraction: numerator <= denominator (default 100). */
export const fraction = object(
  {
    numerator: req(integer({ min: 0, max: 2147483647 })),
    denominator: def(integer({ min: 1, max: 2147483647 }), 100),
  },
  {
    check: (v, report) => {
      if (v.numerator > v.denominator) {
        report(
          ['numerator'],
          `${v.numerator} is greater than the denominator ${v.denominator}`,
          'numerator <= denominator',
          'range',
        );
      }
    },
  },
);

/** HTTPRequestMirrorFilter: a backend and optionally percent or fraction (not both). */
export const httpRequestMirrorFilter = object(
  {
    backendRef: req(backendObjectReference),
    percent: opt(integer({ min: 0, max: 100, expected: 'a percentage 0-100' })),
    fraction: opt(fraction),
  },
  {
    check: (v, report) => {
      if (v.percent !== undefined && v.fraction !== undefined) {
        report(['fraction'], 'cannot be set together with "percent"', 'only one of percent or fraction', 'conflict');
      }
    },
  },
);
export type HTTPRequestMirrorFilter = ObjectOf<typeof httpRequestMirrorFilter.fields>;

/**
 * The CEL rules "filter.<field> must be nil if the filter.type is not <Type>" and
 * "filter.<field> must be specified for <Type> filter.type".
 */
export function checkFilterUnion<T extends { readonly type: string }>(
  fieldFor: Readonly<Record<string, string>>,
): (v: T, report: Reporter) => void {
  return (v, report) => {
    const wanted = fieldFor[v.type];
    for (const [type, field] of Object.entries(fieldFor)) {
      if (type === v.type) continue;
      if ((v as Record<string, unknown>)[field] !== undefined) {
        report(
          [field],
          `must not be set when type is ${v.type}`,
          wanted ? `only "${wanted}" for type ${v.type}` : `no configuration field for type ${v.type}`,
          'conflict',
        );
      }
    }
    if (wanted !== undefined && (v as Record<string, unknown>)[wanted] === undefined) {
      report([wanted], `is required when type is ${v.type}`, `a "${wanted}" block`, 'required');
    }
  };
}

/** "<Type> filter cannot be repeated" for the listed types. */
export function checkFiltersNotRepeated(
  filters: readonly { readonly type: string }[] | undefined,
  types: readonly string[],
  report: Reporter,
  at: readonly (string | number)[],
): void {
  const first = new Map<string, number>();
  (filters ?? []).forEach((f, i) => {
    if (!types.includes(f.type)) return;
    const prev = first.get(f.type);
    if (prev !== undefined) {
      report(
        [...at, i, 'type'],
        `${f.type} filter cannot be repeated (also ${String(at[at.length - 1])}[${prev}])`,
        `at most one ${f.type} filter`,
        'conflict',
      );
    } else {
      first.set(f.type, i);
    }
  });
}

/** The apiVersion of a document inside a kind-level check (the check sees the whole document). */
export function documentVersion(doc: unknown): string {
  const v = (doc as { apiVersion?: unknown }).apiVersion;
  if (typeof v !== 'string') return '';
  const slash = v.lastIndexOf('/');
  return slash < 0 ? v : v.slice(slash + 1);
}
