// Value formats shared by the kinds, with the upstream rules they encode.
import { integer, string } from './primitives.js';
import type { Schema } from './schema.js';
import { parseCidr } from '../../util/cidr.js';
import { parseGatewayDuration, parseGoDuration } from '../../util/duration.js';
import { re2Problem } from '../../util/re2.js';
import { isIP } from 'node:net';

/** RFC 1123 label: Kubernetes names of namespaces, services, ports. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain: most Kubernetes object names. */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function dnsLabel(what = 'name'): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 63,
    pattern: DNS1123_LABEL,
    expected: `a ${what}: lowercase letters, digits and '-', starting and ending with a letter or digit (RFC 1123 label)`,
  });
}

/** RFC 1035 label: Kubernetes Service names (they become DNS labels, so must start with a letter). */
export function dns1035Label(what = 'name'): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 63,
    pattern: /^[a-z]([-a-z0-9]*[a-z0-9])?$/,
    expected: `a ${what}: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (RFC 1035 label)`,
  });
}

export function dnsSubdomain(what = 'name'): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 253,
    pattern: DNS1123_SUBDOMAIN,
    expected: `a ${what}: lowercase letters, digits, '-' and '.' (RFC 1123 subdomain)`,
  });
}

/** A TCP/UDP port number. */
export function port(min = 1): Schema<number> {
  return integer({ min, max: 65535, expected: `a port number ${min}-65535` });
}

/** Istio / Go duration, e.g. "10s", "100ms", "1h30m". */
export function goDuration(): Schema<string> {
  return string({
    expected: 'a duration such as "10s", "250ms" or "1m30s"',
    check: (v) => (parseGoDuration(v) === undefined ? `${JSON.stringify(v)} is not a duration` : undefined),
  });
}

/** Gateway API Duration (GEP-2257), e.g. "10s", "1h", "500ms"; at most 4 parts. */
export function gatewayDuration(): Schema<string> {
  return string({
    expected: 'a Gateway API duration such as "10s", "500ms" or "1m30s" (GEP-2257)',
    check: (v) =>
      parseGatewayDuration(v) === undefined ? `${JSON.stringify(v)} is not a Gateway API duration` : undefined,
  });
}

export function cidr(): Schema<string> {
  return string({
    expected: 'a CIDR such as "10.0.0.0/16" or "fd00::/64"',
    check: (v) => {
      const c = parseCidr(v);
      return typeof c === 'string' ? c : undefined;
    },
  });
}

/** An IP address or a CIDR (Istio ipBlocks accept both). */
export function ipOrCidr(): Schema<string> {
  return string({
    expected: 'an IP address or a CIDR such as "10.0.0.0/16"',
    check: (v) => {
      if (isIP(v)) return undefined;
      const c = parseCidr(v);
      return typeof c === 'string' ? c : undefined;
    },
  });
}

export function ipAddress(): Schema<string> {
  return string({
    expected: 'an IPv4 or IPv6 address',
    check: (v) => (isIP(v) ? undefined : `${JSON.stringify(v)} is not an IP address`),
  });
}

/** A regular expression in RE2 syntax (what Envoy and Cilium evaluate). */
export function re2Regex(maxLength = 1024): Schema<string> {
  return string({ maxLength, expected: 'a regular expression in RE2 syntax', check: re2Problem });
}

/** Gateway API Hostname: a DNS name, optionally with one leading "*." wildcard label. */
export const GATEWAY_HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function gatewayHostname(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 253,
    pattern: GATEWAY_HOSTNAME,
    expected: 'a lowercase DNS name, optionally starting with "*." (Gateway API Hostname; no IP addresses)',
    check: (v) => (isIP(v) ? 'IP addresses are not allowed as hostnames' : undefined),
  });
}

/** IANA service name (Kubernetes named ports): 1-15 chars, lowercase letters, digits, '-', at least one letter. */
export function ianaServiceName(): Schema<string> {
  return string({
    minLength: 1,
    maxLength: 15,
    pattern: /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/,
    expected: 'a port name (IANA service name: up to 15 lowercase letters, digits and "-", with at least one letter)',
    check: (v) =>
      !/[a-z]/.test(v)
        ? `${JSON.stringify(v)} is not valid: a port name needs a letter (write a number without quotes)`
        : v.includes('--')
          ? `${JSON.stringify(v)} has "--"`
          : undefined,
  });
}
