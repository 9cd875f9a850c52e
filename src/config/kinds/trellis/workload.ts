// trellis.dev/v1alpha1 Workload: what a universal (VM / bare-metal) workload needs
// beyond its Istio WorkloadEntry — the node that runs it and, for `trellis up`,
// the command that starts it. Identity, address, ports and labels stay in the
// WorkloadEntry, so the standard kind remains the source of truth. `upstreams` are
// Consul Connect's local_bind_port: a plain TCP port on the workload's machine per mesh
// service it calls, for clients that cannot use HTTP_PROXY/CONNECT.
import { array, record } from '../../schema/collections.js';
import { def, object, opt, req } from '../../schema/object.js';
import { string, unchecked } from '../../schema/primitives.js';
import { dnsLabel, dnsSubdomain, ipAddress, port } from '../../schema/formats.js';
import { defineKind, type BodyOf } from '../kind.js';

const envVar = object({
  name: req(string({ minLength: 1, pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, expected: 'an environment variable name' })),
  value: req(string()),
});

const upstream = object({
  /** The service's host name as the mesh knows it: NAME.NAMESPACE.svc.<clusterDomain>, or a ServiceEntry host. */
  host: req(dnsSubdomain('service host name such as orders.shop.svc.cluster.local')),
  /** The service port. */
  port: req(port()),
  /** Where the node process listens for the workload: localAddress:localPort. */
  localPort: req(port()),
  localAddress: def(ipAddress(), '127.0.0.1'),
});

const workloadSpec = object({
  /** The WorkloadEntry in the same namespace; defaults to the Workload's own name. */
  workloadEntry: opt(dnsSubdomain('WorkloadEntry name')),
  /** A node declared in the Mesh's spec.nodes. */
  node: req(dnsLabel('node name')),
  /** argv of the process `trellis up` starts; absent when something else starts it. */
  command: opt(array(string({ minLength: 1 }), { min: 1 })),
  env: opt(array(envVar)),
  /** Relative to the directory of the file that declares the Workload. */
  workingDir: opt(string({ minLength: 1 })),
  /** A local TCP port per mesh service the workload calls; the node proxy forwards each connection over mTLS as the workload's identity. */
  upstreams: opt(array(upstream)),
  /** The node's HTTP_PROXY port for this workload; by default a stable port derived from the workload's id. */
  outboundPort: opt(port()),
  /** Extra key/values shown in `trellis get` (owner, team...). */
  annotations: opt(record(string())),
});

export const workloadKind = defineKind({
  group: 'trellis.dev',
  kind: 'Workload',
  versions: ['v1alpha1'],
  namespaced: true,
  summary: 'Which node runs a WorkloadEntry, and the command `trellis up` starts it with.',
  fields: { spec: req(workloadSpec), status: opt(unchecked()) },
});
export type WorkloadSpec = BodyOf<typeof workloadKind>['spec'];
export type WorkloadUpstream = NonNullable<WorkloadSpec['upstreams']>[number];
