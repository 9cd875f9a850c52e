// v1 Service: https://kubernetes.io/docs/reference/kubernetes-api/service-resources/service-v1/
import { array, record } from '../../schema/collections.js';
import { def, object, opt, req } from '../../schema/object.js';
import { integer, intOrString, oneOf, string, unchecked } from '../../schema/primitives.js';
import { dns1035Label, dnsLabel, ianaServiceName, ipAddress, port } from '../../schema/formats.js';
import { labelKey, labelValue } from '../common/meta.js';
import { defineKind } from '../kind.js';

const servicePort = object(
  {
    name: opt(dnsLabel('port name')),
    protocol: def(oneOf(['TCP', 'UDP', 'SCTP']), 'TCP'),
    appProtocol: opt(string({ minLength: 1 })),
    port: req(port()),
    targetPort: opt(intOrString(port(), ianaServiceName())),
    nodePort: opt(integer({ min: 1, max: 65535 })),
  },
  // The API server defaults targetPort to port.
  { complete: (p) => (p.targetPort === undefined ? { ...p, targetPort: p.port } : p) },
);

const serviceSpec = object(
  {
    selector: opt(record(labelValue(), { key: labelKey() })),
    ports: opt(array(servicePort)),
    type: def(oneOf(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']), 'ClusterIP'),
    clusterIP: opt(string()),
    clusterIPs: opt(array(string())),
    externalName: opt(string()),
    externalIPs: opt(array(ipAddress())),
    sessionAffinity: def(oneOf(['None', 'ClientIP']), 'None'),
    sessionAffinityConfig: opt(unchecked()),
    ipFamilies: opt(array(oneOf(['IPv4', 'IPv6']))),
    ipFamilyPolicy: opt(oneOf(['SingleStack', 'PreferDualStack', 'RequireDualStack'])),
    publishNotReadyAddresses: opt(unchecked()),
    internalTrafficPolicy: opt(oneOf(['Cluster', 'Local'])),
    externalTrafficPolicy: opt(oneOf(['Cluster', 'Local'])),
    loadBalancerIP: opt(string()),
    loadBalancerSourceRanges: opt(array(string())),
    loadBalancerClass: opt(string()),
    allocateLoadBalancerNodePorts: opt(unchecked()),
    healthCheckNodePort: opt(integer()),
    trafficDistribution: opt(string()),
  },
  {
    check: (spec, report) => {
      const ports = spec.ports ?? [];
      if (ports.length > 1) {
        ports.forEach((p, i) => {
          if (p.name === undefined)
            report(['ports', i, 'name'], 'is required when a Service has more than one port', 'a port name');
        });
      }
      const seenNames = new Map<string, number>();
      const seenPorts = new Map<string, number>();
      ports.forEach((p, i) => {
        if (p.name !== undefined) {
          const prev = seenNames.get(p.name);
          if (prev !== undefined)
            report(
              ['ports', i, 'name'],
              `duplicate port name ${JSON.stringify(p.name)} (also ports[${prev}])`,
              'unique port names',
            );
          seenNames.set(p.name, i);
        }
        const key = `${p.protocol}/${p.port}`;
        const prevPort = seenPorts.get(key);
        if (prevPort !== undefined)
          report(['ports', i, 'port'], `duplicate port ${key} (also ports[${prevPort}])`, 'unique port/protocol pairs');
        seenPorts.set(key, i);
      });
      if (spec.type === 'ExternalName' && spec.externalName === undefined) {
        report(['externalName'], 'is required when type is ExternalName', 'a DNS name');
      }
    },
  },
);

export const serviceKind = defineKind({
  group: '',
  kind: 'Service',
  versions: ['v1'],
  namespaced: true,
  summary: 'A named set of endpoints (selected WorkloadEntries) and the ports it serves.',
  fields: { spec: req(serviceSpec), status: opt(unchecked()) },
  nameSchema: dns1035Label('Service name'),
});
