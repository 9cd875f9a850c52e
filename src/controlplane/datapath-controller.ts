// The kernel side of the nodes of `trellis up --netns`: on every model, each node's network
// policy (NetworkPolicy / Cilium L3-L4, nftables verdict maps) and service load balancing
// (nftables maps and numgen) are compiled and applied in the node's namespace, one
// transaction each; the kernel's policy drops come back as flow records for the relay.
// Updates are serialised and coalesced: a burst of configurations applies only the last.
import type { Resource } from '../config/resource.js';
import type { MeshModel } from '../model/mesh-model.js';
import type { FlowRecord } from '../observe/flow-types.js';
import { enforceNodePolicy, readDrops } from '../datapath/linux/policy/kernel-policy.js';
import { workloadsOnNode, type NodePolicy } from '../datapath/linux/policy/policy-map.js';
import { applyServices } from '../datapath/linux/services/kernel-services.js';
import { affinityTimeouts } from '../datapath/linux/services/affinity-timeouts.js';

type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export class DatapathController {
  /** Mesh node name -> path of its network namespace. */
  readonly #nodes: ReadonlyMap<string, string>;
  readonly #log: Log;
  readonly #policies = new Map<string, NodePolicy>();
  /** Drop key -> packets already reported. */
  readonly #reported = new Map<string, number>();
  #pending: { model: MeshModel; resources: readonly Resource[] } | undefined;
  #running: Promise<void> | undefined;

  constructor(nodes: Readonly<Record<string, string>>, log: Log) {
    this.#nodes = new Map(Object.entries(nodes));
    this.#log = log;
  }

  /** Schedules applying this model (the resources carry what the model does not: affinity timeouts). */
  update(model: MeshModel, resources: readonly Resource[]): Promise<void> {
    this.#pending = { model, resources };
    this.#running ??= this.#drain();
    return this.#running;
  }

  async #drain(): Promise<void> {
    for (;;) {
      if (!this.#pending) {
        // Cleared in the same turn as the last check: an update after it starts a new drain.
        this.#running = undefined;
        return;
      }
      const { model, resources } = this.#pending;
      this.#pending = undefined;
      const timeouts = affinityTimeouts(resources);
      for (const [node, netns] of this.#nodes) {
        try {
          const policy = await enforceNodePolicy(model, workloadsOnNode(model, node), { netns });
          this.#policies.set(node, policy);
          for (const p of policy.problems)
            this.#log('warn', 'kernel policy: not enforced as written', { node, problem: p });
          const services = await applyServices(model, { netns, affinityTimeoutSeconds: timeouts });
          this.#log('info', 'datapath applied', {
            node,
            isolated: { ingress: policy.ingress.length, egress: policy.egress.length },
            servicePorts: services.servicePorts,
          });
        } catch (e) {
          // The previous ruleset stays in force (each apply is one transaction).
          this.#log('error', 'datapath not applied; the previous rules stay in force', {
            node,
            error: (e as Error).message,
          });
        }
      }
    }
  }

  /** Kernel drops not reported yet (new denied flows, or more packets of known ones). */
  async drops(): Promise<FlowRecord[]> {
    const out: FlowRecord[] = [];
    for (const [node, netns] of this.#nodes) {
      const policy = this.#policies.get(node);
      if (!policy) continue;
      try {
        for (const d of await readDrops(policy, { netns, node })) {
          const key = `${node} ${d.flow.source.address} ${d.flow.destination.address} ${d.flow.reason}`;
          if ((this.#reported.get(key) ?? 0) >= d.packets) continue;
          this.#reported.set(key, d.packets);
          out.push(d.flow);
        }
      } catch (e) {
        this.#log('warn', 'kernel drops not read', { node, error: (e as Error).message });
      }
    }
    return out;
  }
}
