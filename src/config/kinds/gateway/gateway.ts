// Gateway (gateway.networking.k8s.io v1, v1beta1): apis/v1/gateway_types.go, plus the listener
// rules of apis/v1/validation/gateway.go (tls required for HTTPS and TLS listeners).
import { isIP } from 'node:net';
import { array, record } from '../../schema/collections.js';
import { def, object, opt, req, type ObjectOf } from '../../schema/object.js';
import { oneOf, string, unchecked } from '../../schema/primitives.js';
import { labelKey, labelSelector, labelValue } from '../common/meta.js';
import { defineKind, type BodyOf } from '../kind.js';
import {
  annotationMap,
  defaultScope,
  GATEWAY_GROUP,
  group,
  hostname,
  kind,
  objectName,
  objectReference,
  portNumber,
  secretObjectReference,
  sectionName,
} from './common.js';

/** ProtocolType: a core protocol name (HTTP, HTTPS, TLS, TCP, UDP, ...) or a domain-prefixed name. */
const protocolType = () =>
  string({
    minLength: 1,
    maxLength: 255,
    pattern:
      /^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$/,
    expected: 'HTTP, HTTPS, TLS, TCP, UDP, or a domain-prefixed protocol such as "example.com/my-protocol"',
  });

/** Core protocol names are case-insensitive; anything else is compared as written. */
function coreProtocol(p: string): string {
  const up = p.toUpperCase();
  return ['HTTP', 'HTTPS', 'TLS', 'TCP', 'UDP'].includes(up) ? up : p;
}

export const frontendTLSValidation = object({
  caCertificateRefs: req(array(objectReference, { min: 1, max: 8 })),
  mode: def(oneOf(['AllowValidOnly', 'AllowInsecureFallback']), 'AllowValidOnly'),
});
export type FrontendTLSValidation = ObjectOf<typeof frontendTLSValidation.fields>;

export const listenerTLSConfig = object(
  {
    mode: def(oneOf(['Terminate', 'Passthrough']), 'Terminate'),
    certificateRefs: opt(array(secretObjectReference, { max: 64 })),
    options: opt(annotationMap(16)),
    // Experimental in v1.1-v1.3 (moved to spec.tls.frontend in later releases).
    frontendValidation: opt(object({ caCertificateRefs: opt(array(objectReference, { min: 1, max: 8 })) })),
  },
  {
    check: (v, report) => {
      if (
        v.mode === 'Terminate' &&
        (v.certificateRefs?.length ?? 0) === 0 &&
        Object.keys(v.options ?? {}).length === 0
      ) {
        report(
          ['certificateRefs'],
          'certificateRefs or options must be specified when mode is Terminate',
          'at least one certificate reference (a kubernetes.io/tls Secret)',
          'required',
        );
      }
    },
  },
);
export type ListenerTLSConfig = ObjectOf<typeof listenerTLSConfig.fields>;

export const routeGroupKind = object({
  group: def(group(), GATEWAY_GROUP),
  kind: req(kind()),
});
export type RouteGroupKind = ObjectOf<typeof routeGroupKind.fields>;

export const routeNamespaces = object(
  {
    from: def(oneOf(['All', 'Selector', 'Same']), 'Same'),
    selector: opt(labelSelector),
  },
  {
    check: (v, report) => {
      if (v.from === 'Selector' && v.selector === undefined) {
        report(['selector'], 'must be specified when from is Selector', 'a label selector for namespaces', 'required');
      }
    },
  },
);

export const allowedRoutes = object({
  namespaces: def(routeNamespaces, () => ({ from: 'Same' as const })),
  kinds: opt(array(routeGroupKind, { max: 8 })),
});
export type AllowedRoutes = ObjectOf<typeof allowedRoutes.fields>;

export const listener = object({
  name: req(sectionName('listener name')),
  hostname: opt(hostname()),
  port: req(portNumber()),
  protocol: req(protocolType()),
  tls: opt(listenerTLSConfig),
  allowedRoutes: def(allowedRoutes, () => ({ namespaces: { from: 'Same' as const } })),
});
export type Listener = ObjectOf<typeof listener.fields>;

const addressType = () =>
  string({
    minLength: 1,
    maxLength: 253,
    pattern:
      /^(Hostname|IPAddress|NamedAddress)$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/,
    expected: 'IPAddress, Hostname, or a domain-prefixed address type such as "example.com/static-ip"',
  });

const HOSTNAME_ADDRESS = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const gatewaySpecAddress = object(
  {
    type: def(addressType(), 'IPAddress'),
    value: opt(string({ maxLength: 253, expected: 'an address of at most 253 characters' })),
  },
  {
    check: (v, report) => {
      if (v.value === undefined || v.value === '') return;
      if (v.type === 'IPAddress' && !isIP(v.value)) {
        report(['value'], `${JSON.stringify(v.value)} is not a valid IP address`, 'an IPv4 or IPv6 address', 'format');
      }
      if (v.type === 'Hostname' && !HOSTNAME_ADDRESS.test(v.value)) {
        report(['value'], `${JSON.stringify(v.value)} is not a valid hostname`, 'a lowercase DNS name', 'format');
      }
    },
  },
);
export type GatewaySpecAddress = ObjectOf<typeof gatewaySpecAddress.fields>;

export const gatewayInfrastructure = object({
  labels: opt(record(labelValue(), { key: labelKey(), max: 8 })),
  annotations: opt(annotationMap(16)),
  parametersRef: opt(
    object({
      group: req(group()),
      kind: req(kind()),
      name: req(string({ minLength: 1, maxLength: 253, expected: 'a name (1-253 characters)' })),
    }),
  ),
});
export type GatewayInfrastructure = ObjectOf<typeof gatewayInfrastructure.fields>;

const tlsConfig = object({ validation: opt(frontendTLSValidation) });

export const gatewayTLSConfig = object({
  backend: opt(object({ clientCertificateRef: opt(secretObjectReference) })),
  frontend: opt(
    object(
      {
        default: req(tlsConfig),
        perPort: opt(array(object({ port: req(portNumber()), tls: req(tlsConfig) }), { max: 64 })),
      },
      {
        check: (v, report) => {
          const seen = new Map<number, number>();
          (v.perPort ?? []).forEach((p, i) => {
            const prev = seen.get(p.port);
            if (prev !== undefined) {
              report(
                ['perPort', i, 'port'],
                `port ${p.port} already has a TLS configuration (perPort[${prev}]); ports must be unique`,
                'a unique port',
                'conflict',
              );
            } else seen.set(p.port, i);
          });
        },
      },
    ),
  ),
});

export const allowedListeners = object({
  namespaces: def(
    object({
      from: def(oneOf(['All', 'Selector', 'Same', 'None']), 'None'),
      selector: opt(labelSelector),
    }),
    () => ({ from: 'None' as const }),
  ),
});

export const gatewaySpec = object(
  {
    gatewayClassName: req(objectName()),
    listeners: req(array(listener, { min: 1, max: 64 })),
    addresses: opt(array(gatewaySpecAddress, { max: 16 })),
    infrastructure: opt(gatewayInfrastructure),
    allowedListeners: opt(allowedListeners),
    tls: opt(gatewayTLSConfig),
    defaultScope: opt(defaultScope()),
  },
  {
    check: (spec, report) => {
      const names = new Map<string, number>();
      const combos = new Map<string, number>();
      spec.listeners.forEach((l, i) => {
        const protocol = coreProtocol(l.protocol);
        if (['HTTP', 'TCP', 'UDP'].includes(protocol) && l.tls !== undefined) {
          report(
            ['listeners', i, 'tls'],
            `must not be specified when protocol is ${l.protocol}`,
            'no tls block',
            'conflict',
          );
        }
        if ((protocol === 'HTTPS' || protocol === 'TLS') && l.tls === undefined) {
          report(
            ['listeners', i, 'tls'],
            `is required when protocol is ${l.protocol}`,
            protocol === 'HTTPS'
              ? 'a tls block with certificateRefs (mode Terminate)'
              : 'a tls block with mode Passthrough or Terminate',
            'required',
          );
        }
        if (protocol === 'HTTPS' && l.tls !== undefined && l.tls.mode !== 'Terminate') {
          report(
            ['listeners', i, 'tls', 'mode'],
            `must be Terminate for protocol HTTPS, got ${l.tls.mode}`,
            'Terminate',
          );
        }
        if ((protocol === 'TCP' || protocol === 'UDP') && l.hostname !== undefined) {
          report(
            ['listeners', i, 'hostname'],
            `must not be specified when protocol is ${l.protocol}`,
            'no hostname',
            'conflict',
          );
        }
        const prevName = names.get(l.name);
        if (prevName !== undefined) {
          report(
            ['listeners', i, 'name'],
            `listener name ${JSON.stringify(l.name)} is already used by listeners[${prevName}]; names must be unique within the Gateway`,
            'a unique listener name',
            'conflict',
          );
        } else names.set(l.name, i);
        const combo = `${l.port}/${protocol}/${l.hostname ?? ''}`;
        const prevCombo = combos.get(combo);
        if (prevCombo !== undefined) {
          report(
            ['listeners', i],
            `has the same port, protocol and hostname as listeners[${prevCombo}]; the combination must be unique for each listener`,
            'a distinct port, protocol or hostname',
            'conflict',
          );
        } else combos.set(combo, i);
      });
      for (const t of ['IPAddress', 'Hostname']) {
        const seen = new Map<string, number>();
        (spec.addresses ?? []).forEach((a, i) => {
          if (a.type !== t || a.value === undefined) return;
          const prev = seen.get(a.value);
          if (prev !== undefined) {
            report(
              ['addresses', i, 'value'],
              `${t} value ${JSON.stringify(a.value)} is already requested by addresses[${prev}]; ${t} values must be unique`,
              `unique ${t} values`,
              'conflict',
            );
          } else seen.set(a.value, i);
        });
      }
    },
  },
);
export type GatewaySpec = ObjectOf<typeof gatewaySpec.fields>;

export const gatewayKind = defineKind({
  group: 'gateway.networking.k8s.io',
  kind: 'Gateway',
  versions: ['v1', 'v1beta1'],
  namespaced: true,
  summary: 'Listeners (port, protocol, hostname, TLS) that accept traffic for attached routes.',
  fields: { spec: req(gatewaySpec), status: opt(unchecked()) },
});
export type Gateway = BodyOf<typeof gatewayKind>;
