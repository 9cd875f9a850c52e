// SDS for Trellis' node proxies: each Mesh node gets the SVIDs of the identities its local
// workloads run as (and their trust bundle), renewed by a SecretManager and pushed on rotation.
import { localCaClient, SecretManager } from '../identity/secret-manager.js';
import type { CertificateAuthority } from '../identity/ca.js';
import type { MeshModel } from '../model/mesh-model.js';
import { TYPE_URLS, xdsResource, type XdsResource } from '../xds/snapshot.js';
import { svidSecrets } from '../xds/translate/secret.js';
import { parseGoDuration } from '../util/duration.js';

export class NodeSecrets {
  readonly #svids: SecretManager;
  #identitiesByNode = new Map<string, readonly string[]>();
  readonly #watches = new Map<string, () => void>();
  #onChange: (nodeIds: readonly string[]) => void = () => undefined;

  constructor(ca: CertificateAuthority, ttl = '24h') {
    this.#svids = new SecretManager({ ca: localCaClient(ca), ttlMs: parseGoDuration(ttl) ?? 86_400_000 });
  }

  /** Called with the node ids whose secrets changed (a rotation, or an SVID becoming available). */
  onChange(listener: (nodeIds: readonly string[]) => void): void {
    this.#onChange = listener;
  }

  /** Tracks the identities of each node of the model; starts (and stops) renewing them. */
  update(model: MeshModel): void {
    this.#identitiesByNode = new Map(model.nodes.map((n) => [n.name, n.identities]));
    const wanted = new Set(model.nodes.flatMap((n) => n.identities));
    for (const id of wanted) {
      if (this.#watches.has(id)) continue;
      this.#watches.set(
        id,
        this.#svids.watch(id, () => {
          const nodes = [...this.#identitiesByNode].filter(([, ids]) => ids.includes(id)).map(([n]) => n);
          this.#onChange(nodes);
        }),
      );
    }
    for (const [id, stop] of this.#watches) {
      if (wanted.has(id)) continue;
      stop();
      this.#svids.forget(id);
      this.#watches.delete(id);
    }
  }

  /** SDS Secrets for a node: one certificate per local identity, and the trust bundle. */
  secretsFor(nodeId: string): XdsResource[] {
    const out = new Map<string, XdsResource>();
    for (const id of this.#identitiesByNode.get(nodeId) ?? []) {
      const st = this.#svids.state(id);
      if (st.state !== 'Available') continue;
      for (const s of svidSecrets(st.snapshot)) {
        const { '@type': _t, ...body } = s;
        if (!out.has(s.name)) out.set(s.name, xdsResource(TYPE_URLS.secret, s.name, body as Record<string, unknown>));
      }
    }
    return [...out.values()];
  }

  close(): void {
    for (const stop of this.#watches.values()) stop();
    this.#svids.close();
  }
}
