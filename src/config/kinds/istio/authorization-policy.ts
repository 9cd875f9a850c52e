// security.istio.io AuthorizationPolicy: https://istio.io/latest/docs/reference/config/security/authorization-policy/
//
// Rules: the CRD schema (action enum, rules/from at most 512, targetRefs at most 16, serviceAccounts at most 16
// of at most 320 characters) and istio/istio ValidateAuthorizationPolicy with pkg/config/security
// (ValidateAttribute, ValidateIPs, ValidatePorts, CheckEmptyValues, CheckServiceAccount, CheckValidPathTemplate).
import { isIP } from 'node:net';
import { array } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { oneOf, string, unchecked } from '../../schema/primitives.js';
import type { PathSegment, Schema } from '../../schema/schema.js';
import { parseCidr } from '../../../util/cidr.js';
import { didYouMean } from '../../../util/did-you-mean.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  checkDryRunAnnotation,
  checkOneTargeting,
  ISTIO_SECURITY_GROUP,
  ISTIO_SECURITY_VERSIONS,
  targetingFields,
} from './security-common.js';

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;
export type AuthorizationAction = (typeof AUTHZ_ACTIONS)[number];

// ---------------------------------------------------------------------------------------------------------
// Value checks shared by sources, operations and conditions

/** security.ValidateIPs: a single address, or a CIDR when the value has a "/". */
export function ipBlockProblem(v: string): string | undefined {
  if (v.includes('/')) {
    const c = parseCidr(v);
    return typeof c === 'string' ? `bad CIDR range ${JSON.stringify(v)}: ${c}` : undefined;
  }
  return isIP(v) ? undefined : `bad IP address ${JSON.stringify(v)}`;
}

/** security.ValidatePorts: a decimal number 0-65535 written as a string. */
export function portValueProblem(v: string): string | undefined {
  return /^\d+$/.test(v) && Number(v) <= 65535 ? undefined : `bad port ${JSON.stringify(v)}: not a number 0-65535`;
}

/** security.CheckServiceAccount for one value: "name" or "namespace/name", no wildcard, at most 320 characters. */
export function serviceAccountProblem(v: string): string | undefined {
  if (v.includes('*')) return `wildcard not allowed in ${JSON.stringify(v)}`;
  const slashes = v.split('/').length - 1;
  if (slashes > 1) return `expected format 'serviceAccount' or 'namespace/serviceAccount', found ${JSON.stringify(v)}`;
  if (v.length > 320) return `value cannot exceed 320 characters, found ${v.length}`;
  if (slashes === 1) {
    const [ns, sa] = v.split('/') as [string, string];
    if (ns === '') return `expected format 'namespace/serviceAccount', found empty namespace in ${JSON.stringify(v)}`;
    if (sa === '')
      return `expected format 'namespace/serviceAccount', found empty serviceAccount in ${JSON.stringify(v)}`;
  }
  return undefined;
}

const nonEmpty = (expected: string): Schema<string> => string({ minLength: 1, expected });
const values = (expected: string) => opt(array(nonEmpty(expected)));
const ipBlocks = () =>
  opt(
    array(string({ minLength: 1, expected: 'an IP address or CIDR such as "203.0.113.0/24"', check: ipBlockProblem })),
  );
const serviceAccounts = () =>
  opt(
    array(
      string({
        minLength: 1,
        expected: 'a service account "name" or "namespace/name"',
        check: serviceAccountProblem,
      }),
      { max: 16 },
    ),
  );
const ports = () =>
  opt(array(string({ minLength: 1, expected: 'a port number as a string, e.g. "8080"', check: portValueProblem })));

// ---------------------------------------------------------------------------------------------------------
// Source

const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;

export const source = object(
  {
    principals: values('a peer identity such as "cluster.local/ns/default/sa/sleep"'),
    notPrincipals: values('a peer identity such as "cluster.local/ns/default/sa/sleep"'),
    requestPrincipals: values('a request identity "<issuer>/<subject>"'),
    notRequestPrincipals: values('a request identity "<issuer>/<subject>"'),
    namespaces: values('a namespace'),
    notNamespaces: values('a namespace'),
    serviceAccounts: serviceAccounts(),
    notServiceAccounts: serviceAccounts(),
    ipBlocks: ipBlocks(),
    notIpBlocks: ipBlocks(),
    remoteIpBlocks: ipBlocks(),
    notRemoteIpBlocks: ipBlocks(),
  },
  {
    check: (src, report) => {
      if (SOURCE_FIELDS.every((f) => (src[f]?.length ?? 0) === 0)) {
        report([], '`from.source` must not be empty', `at least one of ${SOURCE_FIELDS.join(', ')}`, 'required');
        return;
      }
      const identity = (['principals', 'notPrincipals', 'namespaces', 'notNamespaces'] as const).find(
        (f) => (src[f]?.length ?? 0) > 0,
      );
      const account = (['serviceAccounts', 'notServiceAccounts'] as const).find((f) => (src[f]?.length ?? 0) > 0);
      if (identity !== undefined && account !== undefined) {
        report(
          [account],
          `cannot set ${account} together with ${identity}`,
          'serviceAccounts, or namespaces/principals, not both',
          'conflict',
        );
      }
    },
  },
);
export type AuthorizationSource = ObjectOf<typeof source.fields>;

// ---------------------------------------------------------------------------------------------------------
// Operation

const OPERATION_FIELDS = [
  'hosts',
  'notHosts',
  'ports',
  'notPorts',
  'methods',
  'notMethods',
  'paths',
  'notPaths',
] as const;

/** Envoy's pchar set (RFC 3986): what a literal path segment may contain next to `{*}` / `{**}`. */
const VALID_LITERAL = /^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/;

/** security.CheckValidPathTemplate: `{*}` matches one segment, `{**}` the rest and must be the last operator. */
export function pathTemplateProblem(path: string): string | undefined {
  const hasTemplate = path.includes('{*}') || path.includes('{**}');
  let seenMatchAny = false;
  for (const glob of path.replace(/^\/+|\/+$/g, '').split('/')) {
    if (glob === '{*}' || glob === '{**}') {
      if (seenMatchAny) return `invalid path template ${JSON.stringify(path)}: {**} must be the last operator`;
      if (glob === '{**}') seenMatchAny = true;
      continue;
    }
    if (/[{}]/.test(glob)) {
      return `invalid path template ${JSON.stringify(path)}: "{" or "}" outside a supported {*} or {**} operator`;
    }
    if (hasTemplate && !VALID_LITERAL.test(glob)) {
      return `invalid path template ${JSON.stringify(path)}: segment ${JSON.stringify(glob)} is not a valid literal`;
    }
  }
  return undefined;
}

const paths = () =>
  opt(
    array(
      string({
        minLength: 1,
        expected: 'a path such as "/info", "/api/*" or a template like "/v1/{*}/items/{**}"',
        check: pathTemplateProblem,
      }),
    ),
  );

export const operation = object(
  {
    hosts: values('a host such as "example.com" or "*.example.com"'),
    notHosts: values('a host such as "example.com" or "*.example.com"'),
    ports: ports(),
    notPorts: ports(),
    methods: values('an HTTP method such as "GET"'),
    notMethods: values('an HTTP method such as "GET"'),
    paths: paths(),
    notPaths: paths(),
  },
  {
    check: (op, report) => {
      if (OPERATION_FIELDS.every((f) => (op[f]?.length ?? 0) === 0)) {
        report([], '`to.operation` must not be empty', `at least one of ${OPERATION_FIELDS.join(', ')}`, 'required');
      }
    },
  },
);
export type AuthorizationOperation = ObjectOf<typeof operation.fields>;

// ---------------------------------------------------------------------------------------------------------
// Condition (`when`)

/** Attributes whose key is used as is. */
const PLAIN_ATTRIBUTES = [
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.serviceAccount',
  'source.principal',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
] as const;
/** Attributes keyed by a name in brackets, e.g. request.headers[User-Agent]; matched by prefix as istiod does. */
const MAP_ATTRIBUTES = [
  'request.headers',
  'request.experimental.inline.headers',
  'request.auth.claims',
  'experimental.envoy.filters.',
] as const;
const ATTRIBUTES_TEXT =
  'one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, ' +
  'request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>], ' +
  'destination.ip, destination.port, connection.sni, experimental.envoy.filters.<filter>[<key>]';

function mapKeyProblem(key: string): string | undefined {
  const open = key.indexOf('[');
  if (key.endsWith(']') && open > 0 && open < key.length - 2) return undefined;
  return `bad key ${JSON.stringify(key)}: should have the format a[b]`;
}

/** The part of security.ValidateAttribute that depends on the key only. */
export function conditionKeyProblem(key: string): string | undefined {
  if ((PLAIN_ATTRIBUTES as readonly string[]).includes(key)) return undefined;
  const mapped = MAP_ATTRIBUTES.find((p) => key.startsWith(p));
  if (mapped !== undefined) return mapKeyProblem(key);
  if (key === 'destination.namespace') return `attribute ${key} is replaced by the metadata.namespace`;
  if (key.startsWith('destination.labels')) return `attribute ${key} is replaced by the workload selector`;
  if (key === 'destination.name' || key === 'destination.user') {
    return `deprecated attribute ${key}: only supported in v1alpha1`;
  }
  const open = key.indexOf('[');
  const base = open < 0 ? key : key.slice(0, open);
  return `unknown attribute ${JSON.stringify(key)}${didYouMean(base, [...PLAIN_ATTRIBUTES, ...MAP_ATTRIBUTES])}`;
}

/** The part of security.ValidateAttribute that checks one value of a known key. */
export function conditionValueProblem(key: string, value: string): string | undefined {
  switch (key) {
    case 'source.ip':
    case 'remote.ip':
    case 'destination.ip':
      return ipBlockProblem(value);
    case 'destination.port':
      return portValueProblem(value);
    case 'source.serviceAccount':
      return serviceAccountProblem(value);
    default:
      return undefined;
  }
}

export const condition = object(
  {
    key: req(string({ minLength: 1, expected: ATTRIBUTES_TEXT })),
    values: opt(array(string({ minLength: 1, expected: 'a non-empty value' }))),
    notValues: opt(array(string({ minLength: 1, expected: 'a non-empty value' }))),
  },
  {
    check: (c, report) => {
      const keyProblem = conditionKeyProblem(c.key);
      if (keyProblem !== undefined) report(['key'], keyProblem, ATTRIBUTES_TEXT, 'enum');
      if ((c.values?.length ?? 0) === 0 && (c.notValues?.length ?? 0) === 0) {
        report(
          [],
          `at least one of \`values\` or \`notValues\` must be set for key ${c.key}`,
          'values or notValues',
          'required',
        );
        return;
      }
      if (keyProblem !== undefined) return;
      for (const field of ['values', 'notValues'] as const) {
        const list = c[field] ?? [];
        if (c.key === 'source.serviceAccount' && list.length > 16) {
          report([field], `may not have more than 16 values for ${c.key}`, 'at most 16', 'limit');
        }
        list.forEach((v, i) => {
          const problem = conditionValueProblem(c.key, v);
          if (problem !== undefined)
            report([field, i], `invalid value for key ${c.key}: ${problem}`, undefined, 'format');
        });
      }
    },
  },
);
export type AuthorizationCondition = ObjectOf<typeof condition.fields>;

// ---------------------------------------------------------------------------------------------------------
// Rule and spec

export const ruleFrom = object({ source: req(source) });
export const ruleTo = object({ operation: req(operation) });

export const rule = object({
  from: opt(array(ruleFrom, { min: 1, max: 512 })),
  to: opt(array(ruleTo, { min: 1 })),
  when: opt(array(condition)),
});
export type AuthorizationRule = ObjectOf<typeof rule.fields>;

/** What istiod rejects in a CUSTOM policy (source identities and identity-based conditions). */
const CUSTOM_UNSUPPORTED_SOURCE = [
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
] as const;

function checkCustomRules(rules: readonly AuthorizationRule[], report: Reporter): void {
  rules.forEach((r, i) => {
    r.from?.forEach((f, j) => {
      for (const field of CUSTOM_UNSUPPORTED_SOURCE) {
        if ((f.source[field]?.length ?? 0) > 0) {
          const at: PathSegment[] = ['rules', i, 'from', j, 'source', field];
          report(
            at,
            `${field} is currently not supported with CUSTOM action`,
            'ipBlocks, remoteIpBlocks or operations',
          );
        }
      }
    });
    r.when?.forEach((w, j) => {
      const k = w.key;
      if (
        k === 'source.namespace' ||
        k === 'source.serviceAccount' ||
        k === 'source.principal' ||
        k.startsWith('request.auth.')
      ) {
        report(
          ['rules', i, 'when', j, 'key'],
          `${k} is currently not supported with CUSTOM action`,
          'a non-identity attribute',
        );
      }
    });
  });
}

export const authorizationPolicySpec = object(
  {
    ...targetingFields,
    action: def(oneOf(AUTHZ_ACTIONS), 'ALLOW' as AuthorizationAction),
    provider: opt(object({ name: opt(string()) })),
    rules: opt(array(rule, { max: 512 })),
  },
  {
    check: (spec, report) => {
      checkOneTargeting(spec, report);
      const hasRules = spec.rules !== undefined && spec.rules.length > 0;
      if (spec.action === 'CUSTOM') {
        if (!hasRules) {
          report(
            ['rules'],
            'CUSTOM action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` to trigger it for every request',
            'at least one rule',
            'required',
          );
        } else if (spec.provider === undefined) {
          report(
            ['provider'],
            'CUSTOM action requires `provider`',
            'provider.name of an extension provider in MeshConfig',
            'required',
          );
        } else if (spec.provider.name === undefined || spec.provider.name === '') {
          report(
            ['provider', 'name'],
            '`provider.name` must not be empty',
            'the name of an extension provider in MeshConfig',
            'required',
          );
        }
        checkCustomRules(spec.rules ?? [], report);
      } else if (spec.provider !== undefined) {
        report(
          ['provider'],
          `\`provider\` must not be set with non CUSTOM action, found ${spec.action}`,
          'action CUSTOM, or no provider',
          'conflict',
        );
      }
      if (spec.action === 'DENY' && !hasRules) {
        report(
          ['rules'],
          'DENY action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` to trigger it for every request',
          'at least one rule',
          'required',
        );
      }
    },
  },
);
export type AuthorizationPolicySpec = ObjectOf<typeof authorizationPolicySpec.fields>;

export const authorizationPolicyKind = defineKind({
  group: ISTIO_SECURITY_GROUP,
  kind: 'AuthorizationPolicy',
  versions: ISTIO_SECURITY_VERSIONS,
  namespaced: true,
  summary: 'Allow, deny, audit or delegate (CUSTOM) requests to workloads by source, operation and conditions.',
  fields: {
    spec: def(authorizationPolicySpec, (): AuthorizationPolicySpec => ({ action: 'ALLOW' })),
    status: opt(unchecked()),
  },
  check: (doc, report) => checkDryRunAnnotation(doc, report, doc.spec.action),
});
export type AuthorizationPolicyBody = BodyOf<typeof authorizationPolicyKind>;
