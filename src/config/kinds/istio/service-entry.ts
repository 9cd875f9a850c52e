// ServiceEntry (networking.istio.io): https://istio.io/latest/docs/reference/config/networking/service-entry/
// Adds hosts (external APIs, VMs) to the mesh's service registry, with their ports, resolution and endpoints.
import { isIP } from 'node:net';
import { array } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf } from '../../schema/object.js';
import { integer, oneOf, string, unchecked } from '../../schema/primitives.js';
import { didYouMean } from '../../../util/did-you-mean.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  checkExportTo,
  exportToList,
  fqdnProblem,
  HOST_EXPECTED,
  ipSubnetProblem,
  isHttpProtocol,
  isIstioDnsLabel,
  isTlsProtocol,
  ISTIO_NETWORKING_GROUP,
  ISTIO_NETWORKING_VERSIONS,
  namespaceOf,
  parseProtocol,
  PORT_PROTOCOLS,
  selectorLabels,
  wildcardDomainProblem,
} from './common.js';
import { checkWorkloadEntry, workloadEntryFields } from './workload-entry.js';

export const SERVICE_ENTRY_LOCATIONS = ['MESH_EXTERNAL', 'MESH_INTERNAL'] as const;
export const SERVICE_ENTRY_RESOLUTIONS = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'] as const;

const servicePort = object({
  number: req(integer({ min: 1, max: 65535, expected: 'a port number 1-65535' })),
  /** Case-insensitive; empty means "detect the protocol". */
  protocol: opt(
    string({
      maxLength: 256,
      expected: `one of ${PORT_PROTOCOLS.join(', ')} (any case), or empty for protocol detection`,
      check: (p) =>
        p === '' || parseProtocol(p)
          ? undefined
          : `unsupported protocol ${JSON.stringify(p)}${didYouMean(p, PORT_PROTOCOLS)}`,
    }),
  ),
  name: req(
    string({
      maxLength: 256,
      expected: 'a port name: letters, digits and "-", starting and ending with a letter or digit (DNS label)',
      check: (n) => (isIstioDnsLabel(n) ? undefined : `invalid port name ${JSON.stringify(n)}`),
    }),
  ),
  targetPort: opt(integer({ min: 1, max: 65535, expected: 'a port number 1-65535' })),
});
export type ServiceEntryPort = ObjectOf<typeof servicePort.fields>;

/** networking.v1alpha3.WorkloadSelector: note the field is `labels`, not `matchLabels`. */
const serviceEntryWorkloadSelector = object({ labels: opt(selectorLabels(256)) });

const serviceEntryHost = string({
  expected: `${HOST_EXPECTED} (not "*" alone)`,
  check: (h) => (h === '*' ? 'a ServiceEntry host cannot be "*"' : wildcardDomainProblem(h)),
});

const serviceEntrySpec = object(
  {
    hosts: req(array(serviceEntryHost, { min: 1, max: 256 })),
    addresses: opt(
      array(
        string({ maxLength: 64, expected: 'an IP address or a CIDR such as "10.0.0.0/16"', check: ipSubnetProblem }),
        {
          max: 256,
        },
      ),
    ),
    ports: opt(array(servicePort, { max: 256 })),
    location: def(oneOf(SERVICE_ENTRY_LOCATIONS), 'MESH_EXTERNAL'),
    resolution: def(oneOf(SERVICE_ENTRY_RESOLUTIONS), 'NONE'),
    endpoints: opt(array(object(workloadEntryFields), { max: 4096 })),
    workloadSelector: opt(serviceEntryWorkloadSelector),
    exportTo: opt(exportToList(true)),
    subjectAltNames: opt(array(string())),
  },
  {
    check: (se, report) => {
      const endpoints = se.endpoints ?? [];
      const ports = se.ports ?? [];
      if (se.workloadSelector !== undefined && se.endpoints !== undefined) {
        report(
          ['workloadSelector'],
          'cannot be set together with "endpoints"',
          'exactly one of endpoints, workloadSelector',
          'conflict',
        );
      }

      const names = new Map<string, number>();
      const numbers = new Map<number, number>();
      ports.forEach((p, i) => {
        const n = names.get(p.name);
        if (n !== undefined)
          report(
            ['ports', i, 'name'],
            `duplicate port name ${JSON.stringify(p.name)} (also ports[${n}])`,
            'unique port names',
          );
        else names.set(p.name, i);
        const m = numbers.get(p.number);
        if (m !== undefined)
          report(['ports', i, 'number'], `duplicate port number ${p.number} (also ports[${m}])`, 'unique port numbers');
        else numbers.set(p.number, i);
      });

      (se.addresses ?? []).forEach((a, i) => {
        if (a.includes('/') && se.resolution !== 'NONE' && se.resolution !== 'STATIC') {
          report(
            ['addresses', i],
            `CIDR addresses are allowed only with resolution NONE or STATIC, not ${se.resolution}`,
            'an IP address',
          );
        }
      });

      const servicePorts = new Set(names.keys());
      switch (se.resolution) {
        case 'NONE':
          if (endpoints.length > 0) {
            report(
              ['endpoints'],
              'resolution NONE cannot have endpoints',
              'no endpoints, or resolution STATIC or DNS',
              'conflict',
            );
          }
          break;
        case 'STATIC':
          endpoints.forEach((ep, i) => {
            checkWorkloadEntry(ep, { servicePorts, allowFqdn: false }, (rel, msg, exp, code) =>
              report(['endpoints', i, ...rel], msg, exp, code),
            );
          });
          break;
        case 'DNS':
        case 'DNS_ROUND_ROBIN':
          if (endpoints.length === 0) {
            se.hosts.forEach((h, i) => {
              if (fqdnProblem(h) !== undefined) {
                report(
                  ['hosts', i],
                  `hosts must be fully qualified DNS names (no wildcards) when resolution is ${se.resolution} and there are no endpoints`,
                  'a DNS name without wildcards, or endpoints',
                );
              }
            });
          }
          if (se.resolution === 'DNS_ROUND_ROBIN' && endpoints.length > 1) {
            report(
              ['endpoints'],
              `resolution DNS_ROUND_ROBIN allows at most one endpoint, got ${endpoints.length}`,
              'at most 1 endpoint',
              'limit',
            );
          }
          endpoints.forEach((ep, i) => {
            const addr = ep.address ?? '';
            if (!isIP(addr) && fqdnProblem(addr) !== undefined) {
              report(
                ['endpoints', i, 'address'],
                `endpoint address ${JSON.stringify(addr)} is not a valid DNS name or IP address`,
                'an IP address or a DNS name',
              );
            }
            for (const name of Object.keys(ep.ports ?? {})) {
              if (!servicePorts.has(name)) {
                report(
                  ['endpoints', i, 'ports', name],
                  `endpoint port ${JSON.stringify(name)} is not defined by the service entry`,
                  'a name from spec.ports',
                );
              }
            }
          });
          break;
        case 'DYNAMIC_DNS':
          // Endpoints are ignored: the proxy resolves the Host header or SNI at request time.
          break;
      }

      // Plain TCP cannot tell several hosts apart, unless the hosts are ignored (NONE).
      if (se.resolution !== 'NONE' && se.hosts.length > 1) {
        const i = ports.findIndex((p) => {
          const proto = parseProtocol(p.protocol ?? '');
          return !isHttpProtocol(proto) && !isTlsProtocol(proto);
        });
        if (i >= 0) {
          report(
            ['ports', i, 'protocol'],
            `several hosts with resolution ${se.resolution} need HTTP or TLS ports, which can tell the hosts apart`,
            'an HTTP, HTTP2, GRPC, HTTPS or TLS protocol, a single host, or resolution NONE',
          );
        }
      }
    },
  },
);

export type ServiceEntrySpec = ObjectOf<typeof serviceEntrySpec.fields>;

export const serviceEntryKind = defineKind({
  group: ISTIO_NETWORKING_GROUP,
  kind: 'ServiceEntry',
  versions: ISTIO_NETWORKING_VERSIONS,
  namespaced: true,
  summary: 'Adds hosts outside the platform registry (external APIs, VMs) with their ports, resolution and endpoints.',
  fields: { spec: req(serviceEntrySpec), status: opt(unchecked()) },
  check: (doc, report) => checkExportTo(doc.spec.exportTo, namespaceOf(doc), report, ['spec', 'exportTo']),
});

export type ServiceEntryBody = BodyOf<typeof serviceEntryKind>;
