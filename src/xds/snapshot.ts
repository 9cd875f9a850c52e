// A versioned, immutable set of xDS resources for one node (go-control-plane's Snapshot).
// Resources are Envoy v3 messages in the object form protobufjs `fromObject` takes
// (keepCase field names; nested Any written as { '@type': URL, ...fields }).
import { createHash } from 'node:crypto';

export const TYPE_URLS = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

export type TypeUrl = (typeof TYPE_URLS)[keyof typeof TYPE_URLS];
export const ALL_TYPE_URLS: readonly TypeUrl[] = Object.values(TYPE_URLS);

/** LDS and CDS are "state of the world": a resource missing from a response is deleted (xDS spec). */
export function allResourcesRequiredInSotW(typeUrl: string): boolean {
  return typeUrl === TYPE_URLS.listener || typeUrl === TYPE_URLS.cluster;
}

export interface XdsResource {
  readonly name: string;
  readonly typeUrl: TypeUrl;
  /** The message, '@type' included. */
  readonly body: Readonly<Record<string, unknown>>;
  /** Content hash: equal bodies, equal versions. */
  readonly version: string;
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export function xdsResource(typeUrl: TypeUrl, name: string, body: Record<string, unknown>): XdsResource {
  return Object.freeze({
    name,
    typeUrl,
    body: Object.freeze({ '@type': typeUrl, ...body }),
    // The translation builds objects in a deterministic key order, so plain JSON is a stable
    // text to hash, and several times cheaper than canonicalising (measured with bench:xds).
    version: hash(JSON.stringify(body)),
  });
}

export class Snapshot {
  readonly #byType: ReadonlyMap<TypeUrl, ReadonlyMap<string, XdsResource>>;
  readonly #versions: ReadonlyMap<TypeUrl, string>;

  constructor(resources: readonly XdsResource[]) {
    const byType = new Map<TypeUrl, Map<string, XdsResource>>();
    for (const t of ALL_TYPE_URLS) byType.set(t, new Map());
    for (const r of [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const m = byType.get(r.typeUrl)!;
      if (m.has(r.name)) throw new Error(`duplicate ${r.typeUrl} resource ${r.name}`);
      m.set(r.name, r);
    }
    this.#byType = byType;
    // A type's version is derived from its resources, so an unchanged type keeps its version.
    this.#versions = new Map(
      ALL_TYPE_URLS.map((t) => [t, hash([...byType.get(t)!.values()].map((r) => `${r.name}=${r.version}`).join('\n'))]),
    );
  }

  version(typeUrl: string): string {
    return this.#versions.get(typeUrl as TypeUrl) ?? '';
  }

  resources(typeUrl: string): ReadonlyMap<string, XdsResource> {
    return this.#byType.get(typeUrl as TypeUrl) ?? new Map();
  }

  /**
   * Every name one resource refers to exists (listeners -> route configs, routes -> clusters,
   * EDS clusters -> load assignments). Returns the problems; empty when consistent.
   */
  consistent(): string[] {
    const problems: string[] = [];
    const has = (t: TypeUrl, n: string) => this.resources(t).has(n);
    for (const l of this.resources(TYPE_URLS.listener).values()) {
      for (const rds of findKey(l.body, 'route_config_name')) {
        if (typeof rds === 'string' && !has(TYPE_URLS.route, rds))
          problems.push(`Listener ${l.name} -> missing RouteConfiguration ${rds}`);
      }
    }
    for (const r of this.resources(TYPE_URLS.route).values()) {
      for (const c of findKey(r.body, 'cluster')) {
        if (typeof c === 'string' && !has(TYPE_URLS.cluster, c))
          problems.push(`RouteConfiguration ${r.name} -> missing Cluster ${c}`);
      }
      for (const wc of findKey(r.body, 'weighted_clusters')) {
        for (const c of (wc as { clusters?: { name?: string }[] }).clusters ?? []) {
          if (c.name !== undefined && !has(TYPE_URLS.cluster, c.name))
            problems.push(`RouteConfiguration ${r.name} -> missing Cluster ${c.name}`);
        }
      }
    }
    for (const c of this.resources(TYPE_URLS.cluster).values()) {
      if (c.body.type !== 'EDS') continue;
      const edsName = ((c.body.eds_cluster_config as { service_name?: string } | undefined)?.service_name ||
        c.name) as string;
      if (!has(TYPE_URLS.endpoint, edsName))
        problems.push(`Cluster ${c.name} -> missing ClusterLoadAssignment ${edsName}`);
    }
    return problems;
  }
}

/** All values of `key` anywhere in a JSON-like tree. */
function findKey(value: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(value)) for (const v of value) findKey(v, key, out);
  else if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (k === key) out.push(v);
      findKey(v, key, out);
    }
  }
  return out;
}

/** What a snapshot may depend on besides the node id: where the node is. */
export interface NodeView {
  readonly locality: { readonly region: string; readonly zone: string; readonly sub_zone: string };
}

/** Where an ADS server gets snapshots from (go-control-plane's ConfigWatcher role). */
export interface SnapshotSource {
  /** The current snapshot for a node, or undefined when the node is unknown. */
  snapshot(nodeId: string, node?: NodeView): Snapshot | undefined;
  /** Called with the node ids whose snapshot changed ("*" for all). Returns unsubscribe. */
  onChange(listener: (nodeIds: readonly string[] | '*') => void): () => void;
}
