// trellis.dev/v1alpha1 Workload: what a universal (VM / bare-metal) workload needs
// beyond its Istio WorkloadEntry — the node that runs it and, for `trellis up`,
// the command that starts it. Identity, address, ports and labels stay in the
// WorkloadEntry, so the standard kind remains the source of truth.
import { array, record } from '../../schema/collections.js';
import { object, opt, req } from '../../schema/object.js';
import { string, unchecked } from '../../schema/primitives.js';
import { dnsLabel, dnsSubdomain } from '../../schema/formats.js';
import { defineKind, type BodyOf } from '../kind.js';

const envVar = object({
  name: req(string({ minLength: 1, pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, expected: 'an environment variable name' })),
  value: req(string()),
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
