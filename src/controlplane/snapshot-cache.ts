// Compiled model -> snapshots served to xDS clients (the SnapshotSource of the ADS server).
// Every proxyless client gets the mesh-wide view today; per-node views (server listeners,
// SDS, locality) plug in here.
import type { Resource } from '../config/resource.js';
import type { MeshModel } from '../model/mesh-model.js';
import { ModelCompiler } from '../model/compile.js';
import { Snapshot, TYPE_URLS, type NodeView, type SnapshotSource } from '../xds/snapshot.js';
import type { NodeSecrets } from './node-secrets.js';
import { proxylessSnapshot } from '../xds/translate/proxyless.js';

export interface PushRecord {
  readonly generation: number;
  readonly at: Date;
  readonly compileMs: number;
  readonly translateMs: number;
}

export class SnapshotCache implements SnapshotSource {
  readonly #compiler = new ModelCompiler();
  readonly #listeners = new Set<(nodeIds: readonly string[] | '*') => void>();
  #model: MeshModel | undefined;
  #snapshot: Snapshot | undefined;
  /** Per client locality, built on first use for this model (only when some rule depends on locality). */
  #byLocality = new Map<string, Snapshot>();
  #localityMatters = false;
  readonly pushes: PushRecord[] = [];
  readonly #secrets: NodeSecrets | undefined;
  /** Per node: the snapshot with its secrets, valid while the base snapshot and the secrets are unchanged. */
  #withSecrets = new Map<string, { base: Snapshot; names: string; snapshot: Snapshot }>();

  /** With a CA, each Mesh node also gets its workloads' SVIDs over SDS. */
  constructor(secrets?: NodeSecrets) {
    this.#secrets = secrets;
    secrets?.onChange((nodes) => {
      for (const l of this.#listeners) l(nodes);
    });
  }

  /** Compiles and translates a new configuration, then tells the server. */
  update(resources: readonly Resource[], generation: number): MeshModel {
    const t0 = performance.now();
    const model = this.#compiler.compile(resources);
    const t1 = performance.now();
    const snapshot = proxylessSnapshot(model);
    const t2 = performance.now();
    const problems = snapshot.consistent();
    if (problems.length > 0) throw new Error(`inconsistent snapshot (a translation bug): ${problems.join('; ')}`);
    this.#model = model;
    this.#snapshot = snapshot;
    this.#secrets?.update(model);
    this.#byLocality = new Map();
    // Locality-aware load balancing (failover, distribute) follows outlier detection or a
    // localityLbSetting in a DestinationRule (Istio); otherwise every node sees the same thing.
    this.#localityMatters = model.destinationRules.some(
      (d) =>
        d.trafficPolicy?.outlierDetection !== undefined ||
        d.trafficPolicy?.loadBalancer?.localityLbSetting !== undefined ||
        Object.values(d.subsetPolicies).some(
          (p) => p.outlierDetection !== undefined || p.loadBalancer?.localityLbSetting !== undefined,
        ),
    );
    this.pushes.push({ generation, at: new Date(), compileMs: t1 - t0, translateMs: t2 - t1 });
    if (this.pushes.length > 100) this.pushes.shift();
    for (const l of this.#listeners) l('*');
    return model;
  }

  get model(): MeshModel | undefined {
    return this.#model;
  }

  snapshot(nodeId: string, node?: NodeView): Snapshot | undefined {
    const base = this.#baseSnapshot(this.#withNodeLocality(nodeId, node));
    if (!base || !this.#secrets) return base;
    const secrets = this.#secrets.secretsFor(nodeId);
    if (secrets.length === 0) return base;
    const names = secrets.map((s) => `${s.name}@${s.version}`).join(',');
    const cached = this.#withSecrets.get(nodeId);
    if (cached && cached.base === base && cached.names === names) return cached.snapshot;
    const all = [
      ...base.resources(TYPE_URLS.listener).values(),
      ...base.resources(TYPE_URLS.route).values(),
      ...base.resources(TYPE_URLS.cluster).values(),
      ...base.resources(TYPE_URLS.endpoint).values(),
      ...secrets,
    ];
    const snapshot = new Snapshot(all);
    this.#withSecrets.set(nodeId, { base, names, snapshot });
    return snapshot;
  }

  /**
   * A Trellis node process that sends no locality gets its Mesh node's (spec.nodes[].locality):
   * the control plane knows where its nodes are, as istiod reads a proxy's locality from its
   * Kubernetes node, so node proxies get locality-prioritized endpoints too.
   */
  #withNodeLocality(nodeId: string, node: NodeView | undefined): NodeView | undefined {
    const loc = node?.locality;
    if (loc && (loc.region || loc.zone || loc.sub_zone)) return node;
    const mesh = this.#model?.nodes.find((n) => n.name === nodeId);
    if (!mesh || (!mesh.locality.region && !mesh.locality.zone && !mesh.locality.subzone)) return node;
    return {
      ...node,
      locality: { region: mesh.locality.region, zone: mesh.locality.zone, sub_zone: mesh.locality.subzone },
    };
  }

  #baseSnapshot(node?: NodeView): Snapshot | undefined {
    const loc = node?.locality;
    if (!this.#model || !this.#localityMatters || !loc || (!loc.region && !loc.zone && !loc.sub_zone))
      return this.#snapshot;
    const key = `${loc.region}/${loc.zone}/${loc.sub_zone}`;
    let snap = this.#byLocality.get(key);
    if (!snap) {
      snap = proxylessSnapshot(this.#model, {
        clientLocality: { region: loc.region, zone: loc.zone, subzone: loc.sub_zone },
      });
      this.#byLocality.set(key, snap);
    }
    return snap;
  }

  onChange(listener: (nodeIds: readonly string[] | '*') => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
