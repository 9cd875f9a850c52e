// WorkloadGroup (networking.istio.io): https://istio.io/latest/docs/reference/config/networking/workload-group/
// A template for WorkloadEntries (metadata.labels/annotations, template) and the readiness probe of the
// workloads in the group. Trellis reads the probe: the L7 engine health-checks the group's endpoints
// with it (Envoy Cluster.health_checks). Rules follow istiod's ValidateWorkloadGroup /
// validateReadinessProbe and the CRD (template required; at most one of httpGet, tcpSocket, exec).
import { array, record } from '../../schema/collections.js';
import { object, oneOfFields, opt, req, type ObjectOf } from '../../schema/object.js';
import { integer, string, unchecked } from '../../schema/primitives.js';
import { defineKind, type BodyOf } from '../kind.js';
import { ISTIO_NETWORKING_GROUP, ISTIO_NETWORKING_VERSIONS, istioLabels } from './common.js';
import { workloadEntryFields } from './workload-entry.js';

/** Probe header names: Kubernetes' rule, which istiod applies (ValidateProbeHeaderName): an HTTP token. */
const PROBE_HEADER_NAME = /^[-!#$%&'*+.^_`|~0-9A-Za-z]+$/;

/** int32 fields where istiod rejects negatives; 0 (the proto default) means "use the default". */
const nonNegativeInt32 = () => integer({ min: 0, max: 2147483647, expected: 'a non-negative integer' });
/** ValidatePort: 1-65535 (the proto says uint32, the rule narrows it). */
const probePort = () => integer({ min: 1, max: 65535, expected: 'a port number 1-65535' });

const httpHeader = object({
  name: req(
    string({
      minLength: 1,
      expected: 'a header name (an HTTP token)',
      check: (n) =>
        PROBE_HEADER_NAME.test(n) ? undefined : `header name ${JSON.stringify(n)} is not a valid header name`,
    }),
  ),
  value: opt(string()),
});

const httpGet = object({
  /** Path to access on the HTTP server (Kubernetes' default: "/"). */
  path: opt(string({ maxLength: 4096 })),
  port: req(probePort()),
  /** Host to connect to (default: the workload's address). */
  host: opt(string({ maxLength: 253 })),
  /** HTTP (default) or HTTPS. */
  scheme: opt(
    string({
      expected: '"HTTP" or "HTTPS"',
      check: (s) =>
        s === '' || s === 'HTTP' || s === 'HTTPS' ? undefined : 'httpGet.scheme must be one of "HTTPS", "HTTP"',
    }),
  ),
  httpHeaders: opt(array(httpHeader, { max: 64 })),
});

const tcpSocket = object({
  host: opt(string({ maxLength: 253 })),
  port: req(probePort()),
});

const exec = object(
  { command: opt(array(string(), { max: 256 })) },
  {
    check: (e, report) => {
      if (!e.command || e.command.length === 0)
        report(['command'], 'exec.command is required', 'a command line', 'required');
    },
  },
);

export const readinessProbeFields = {
  initialDelaySeconds: opt(nonNegativeInt32()),
  /** Default 1 (also when 0). */
  timeoutSeconds: opt(nonNegativeInt32()),
  /** Default 10 (also when 0). */
  periodSeconds: opt(nonNegativeInt32()),
  /** Default 1 (also when 0). */
  successThreshold: opt(nonNegativeInt32()),
  /** Default 3 (also when 0). */
  failureThreshold: opt(nonNegativeInt32()),
  httpGet: opt(httpGet),
  tcpSocket: opt(tcpSocket),
  exec: opt(exec),
} as const;

export type ReadinessProbe = ObjectOf<typeof readinessProbeFields>;

/** Istio's defaults for a probe field left unset or 0. */
export const PROBE_DEFAULTS = {
  timeoutSeconds: 1,
  periodSeconds: 10,
  successThreshold: 1,
  failureThreshold: 3,
} as const;

const readinessProbe = object(readinessProbeFields, {
  // istiod: "unknown health check method" when none is set; the CRD: at most one.
  check: oneOfFields<ReadinessProbe>(['httpGet', 'tcpSocket', 'exec'], true),
});

const groupMetadata = object({
  labels: opt(istioLabels(256)),
  annotations: opt(record(string({ maxLength: 262144 }), { max: 256 })),
});

/** The template is a WorkloadEntry whose address may be empty (auto-registration fills it in). */
const template = object(workloadEntryFields);

const workloadGroupSpec = object({
  metadata: opt(groupMetadata),
  template: req(template),
  probe: opt(readinessProbe),
});

export type WorkloadGroupSpec = ObjectOf<typeof workloadGroupSpec.fields>;

export const workloadGroupKind = defineKind({
  group: ISTIO_NETWORKING_GROUP,
  kind: 'WorkloadGroup',
  versions: ISTIO_NETWORKING_VERSIONS,
  namespaced: true,
  summary:
    "A group of VM workloads: labels its WorkloadEntries carry and their readiness probe (health-checked by Trellis' L7 engines).",
  fields: { spec: req(workloadGroupSpec), status: opt(unchecked()) },
});

export type WorkloadGroupBody = BodyOf<typeof workloadGroupKind>;

/** The annotation istiod puts on a WorkloadEntry it auto-registered from a group (the group's name). */
export const AUTO_REGISTRATION_GROUP = 'istio.io/autoRegistrationGroup';
