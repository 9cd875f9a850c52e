// WorkloadEntry (networking.istio.io): https://istio.io/latest/docs/reference/config/networking/workload-entry/
// A non-Kubernetes workload (VM, bare metal) that ServiceEntries select by labels. The same message is
// ServiceEntry.endpoints[].
import { isIP } from 'node:net';
import { record } from '../../schema/collections.js';
import { object, opt, req, type ObjectOf, type Reporter } from '../../schema/object.js';
import { integer, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  fqdnProblem,
  ISTIO_NETWORKING_GROUP,
  ISTIO_NETWORKING_VERSIONS,
  istioLabels,
  uint32,
  unixAddressProblem,
} from './common.js';

export const UNIX_ADDRESS_PREFIX = 'unix://';

/** Endpoint port names: the CRD's rule (shorter than 63 characters, letters, digits and "-"). */
const endpointPortName = string({
  minLength: 1,
  expected: 'a port name of the service: letters, digits and "-", starting and ending with a letter or digit',
  check: (k) =>
    k.length < 63 && /^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$/.test(k)
      ? undefined
      : `${JSON.stringify(k)} is not a valid port name`,
});

export const workloadEntryFields = {
  /** IP, FQDN (DNS resolution only) or unix:///absolute/path; may be empty when network is set. */
  address: opt(string({ maxLength: 256, expected: 'an IP address, a DNS name or unix:///absolute/path' })),
  /** Service port name -> this endpoint's port. */
  ports: opt(
    record(integer({ min: 1, max: 65535, expected: 'a port number 1-65535' }), { key: endpointPortName, max: 128 }),
  ),
  labels: opt(istioLabels(256)),
  network: opt(string({ maxLength: 2048 })),
  /** "region/zone/subzone" (any depth, "/"-separated). */
  locality: opt(string({ maxLength: 2048 })),
  weight: opt(uint32()),
  serviceAccount: opt(string({ maxLength: 253 })),
} as const;

export type WorkloadEntrySpec = ObjectOf<typeof workloadEntryFields>;

export interface WorkloadEntryRules {
  /** The service's port names (ServiceEntry endpoints only): endpoint ports must name one of them. */
  readonly servicePorts?: ReadonlySet<string>;
  /** A DNS name is accepted as address (false for STATIC ServiceEntry endpoints, which need IPs). */
  readonly allowFqdn: boolean;
}

/** validateWorkloadEntry: the address/network/ports rules istiod applies to an entry or an endpoint. */
export function checkWorkloadEntry(we: WorkloadEntrySpec, rules: WorkloadEntryRules, report: Reporter): void {
  const addr = we.address ?? '';
  if (addr === '' && (we.network === undefined || we.network === '')) {
    report(
      ['address'],
      'address is required unless network is set',
      'an IP address, a DNS name or unix://path',
      'required',
    );
  }
  if (addr === '') {
    // No address (a remote network's aggregate): nothing more to check about it.
  } else if (addr.startsWith(UNIX_ADDRESS_PREFIX)) {
    const p = unixAddressProblem(addr.slice(UNIX_ADDRESS_PREFIX.length));
    if (p) report(['address'], p, 'unix:///absolute/path/to/socket or unix://@abstract');
    if (we.ports && Object.keys(we.ports).length > 0) {
      report(['ports'], `unix endpoint ${addr} must not include ports`, 'no ports for a unix:// address');
    }
    if (rules.servicePorts && rules.servicePorts.size !== 1) {
      report(['address'], 'a unix:// endpoint needs exactly one service port', 'exactly one port in spec.ports');
    }
  } else if (!isIP(addr)) {
    if (!rules.allowFqdn) {
      report(
        ['address'],
        `endpoint address ${JSON.stringify(addr)} is not an IP address`,
        'an IP address (resolution STATIC)',
      );
    } else if (fqdnProblem(addr) !== undefined) {
      report(
        ['address'],
        `${JSON.stringify(addr)} is not a valid DNS name or IP address`,
        'an IP address or a DNS name',
      );
    }
  }
  if (rules.servicePorts && we.ports) {
    for (const name of Object.keys(we.ports)) {
      if (!rules.servicePorts.has(name)) {
        report(
          ['ports', name],
          `endpoint port ${JSON.stringify(name)} is not defined by the service entry`,
          'a name from spec.ports',
        );
      }
    }
  }
}

const workloadEntrySpec = object(workloadEntryFields, {
  check: (we, report) => checkWorkloadEntry(we, { allowFqdn: true }, report),
});

export const workloadEntryKind = defineKind({
  group: ISTIO_NETWORKING_GROUP,
  kind: 'WorkloadEntry',
  versions: ISTIO_NETWORKING_VERSIONS,
  namespaced: true,
  summary: 'A VM or bare-metal workload (address, ports, labels, identity) that ServiceEntries can select.',
  fields: { spec: req(workloadEntrySpec), status: opt(unchecked()) },
});

export type WorkloadEntryBody = BodyOf<typeof workloadEntryKind>;
