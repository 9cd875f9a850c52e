// The kernel side of the node policy: applying the compiled script in a node's network
// namespace (one nft transaction), and reading the drops the kernel counted back as flow records
// whose reason names the identity, the port and the policies in force, as the proxies' are.
import type { FlowRecord } from '../../../observe/flow-types.js';
import { sourceOfPolicyName } from '../../../proxy/rbac/policy-names.js';
import { applyNft, NftError, nftJson } from '../nft.js';
import { identityOf, type Identity } from './ipcache.js';
import { compileNodePolicy, modelIpcache, type NodePolicy } from './policy-map.js';
import { DROP_SETS, POLICY_FAMILY, POLICY_TABLE, renderPolicyScript, renderRemoveScript } from './nft-policy.js';
import type { MeshModel, WorkloadModel } from '../../../model/mesh-model.js';

export interface NetnsOption {
  /** Path of the node's network namespace; this process's own when absent. */
  readonly netns?: string;
}

/** Applies a rendered policy script atomically; the error carries nft's own message. */
export async function applyPolicy(script: string, opts: NetnsOption = {}): Promise<void> {
  try {
    await applyNft(script, opts);
  } catch (e) {
    if (e instanceof NftError) throw new NftError(`applying the ${POLICY_TABLE} policy`, e.stderr || e.message);
    throw e;
  }
}

/** Compiles the node's policy from the model and applies it; returns it (readDrops needs it). */
export async function enforceNodePolicy(
  model: MeshModel,
  local: readonly WorkloadModel[],
  opts: NetnsOption = {},
): Promise<NodePolicy> {
  const policy = compileNodePolicy(model, local, modelIpcache(model));
  await applyPolicy(renderPolicyScript(policy), opts);
  return policy;
}

/** Removes the policy table (its drops included). */
export async function removePolicy(opts: NetnsOption = {}): Promise<void> {
  await applyPolicy(renderRemoveScript(), opts);
}

export interface KernelDrop {
  readonly flow: FlowRecord;
  /** Packets and bytes the kernel dropped for this (source, destination, protocol, port) so far. */
  readonly packets: number;
  readonly bytes: number;
}

interface DropElement {
  readonly src: string;
  readonly dst: string;
  readonly proto: string;
  readonly port: number;
  readonly packets: number;
  readonly bytes: number;
}

const PROTOCOLS: Readonly<Record<string, string>> = { '6': 'tcp', '17': 'udp', '132': 'sctp', '1': 'icmp' };

/** The elements of a drop set in `nft -j list set` output. */
export function parseDropSet(json: unknown): DropElement[] {
  const out: DropElement[] = [];
  const items = (json as { nftables?: unknown[] } | undefined)?.nftables ?? [];
  for (const item of items) {
    const set = (item as { set?: { elem?: unknown[] } }).set;
    for (const e of set?.elem ?? []) {
      const el = (e as { elem?: { val?: { concat?: unknown[] }; counter?: { packets?: number; bytes?: number } } })
        .elem;
      const c = el?.val?.concat;
      if (!c || c.length !== 4) continue;
      out.push({
        src: String(c[0]),
        dst: String(c[1]),
        proto: PROTOCOLS[String(c[2])] ?? String(c[2]),
        port: Number(c[3]),
        packets: el.counter?.packets ?? 0,
        bytes: el.counter?.bytes ?? 0,
      });
    }
  }
  return out;
}

const peerName = (i: Identity | undefined, address: string): string => i?.name ?? `address ${address}`;

/** Why the engine refused a drop element (the policy's decision made again for its reason). */
export function dropReason(policy: NodePolicy, dir: 'ingress' | 'egress', d: DropElement): string {
  const [podIp, peerIp] = dir === 'ingress' ? [d.dst, d.src] : [d.src, d.dst];
  const peer = identityOf(policy.ipcache, peerIp);
  const what = `${d.proto.toUpperCase()}/${d.port} ${dir === 'ingress' ? 'from' : 'to'} ${peerName(peer, peerIp)}`;
  const wp = policy[dir].find((p) => p.workload.address === podIp);
  if (!wp) return `kernel policy: ${what} dropped by a policy no longer in force for ${podIp}`;
  const decision = d.proto === 'tcp' && peer ? wp.explain(peer.id, d.port) : undefined;
  if (decision && !decision.allowed && decision.policy) {
    const src = sourceOfPolicyName(decision.policy);
    return `kernel policy: ${what} denied by ${src ? `${src.policy} (${src.rule})` : decision.policy}`;
  }
  if (decision?.allowed) return `kernel policy: ${what} was dropped by an earlier policy (the one in force allows it)`;
  const only = d.proto === 'tcp' ? '' : ' (network policies only allow TCP here)';
  const inForce = wp.policies.length ? wp.policies.join(', ') : 'none: isolated with no rule';
  return `kernel policy: no network policy allows ${what}${only} (policies in force: ${inForce})`;
}

function endpoint(policy: NodePolicy, address: string) {
  const id = identityOf(policy.ipcache, address);
  const workload = policy.ipcache.workloadByAddress.get(address);
  return {
    address,
    ...(id?.kind === 'workload' ? { identity: id.name } : {}),
    ...(workload ? { workload } : {}),
  };
}

/** A drop set element as a flow record (DENIED at the node, with the reason). */
export function dropFlow(policy: NodePolicy, dir: 'ingress' | 'egress', d: DropElement, node: string, time: string) {
  const reason = dropReason(policy, dir, d);
  const peerIp = dir === 'ingress' ? d.src : d.dst;
  const podIp = dir === 'ingress' ? d.dst : d.src;
  const wp = policy[dir].find((p) => p.workload.address === podIp);
  const peer = identityOf(policy.ipcache, peerIp);
  const decision = wp && peer && d.proto === 'tcp' ? wp.explain(peer.id, d.port) : undefined;
  const deciding = decision?.policy ? sourceOfPolicyName(decision.policy)?.policy : undefined;
  const flow: FlowRecord = {
    time,
    node,
    direction: dir === 'ingress' ? 'inbound' : 'outbound',
    verdict: 'DENIED',
    reason,
    source: endpoint(policy, d.src),
    destination: endpoint(policy, d.dst),
    observationPoint: dir === 'ingress' ? 'node-inbound' : 'node-outbound',
    ...(deciding ? { policy: deciding } : {}),
  };
  return flow;
}

/**
 * The drops counted so far in a node's namespace, as DENIED flow records (ingress drops first,
 * each set in the kernel's order). `policy` is the compiled policy in force, which names the
 * identities and explains the decisions.
 */
export async function readDrops(
  policy: NodePolicy,
  opts: NetnsOption & { readonly node?: string; readonly now?: Date } = {},
): Promise<KernelDrop[]> {
  const time = (opts.now ?? new Date()).toISOString();
  const out: KernelDrop[] = [];
  for (const dir of ['ingress', 'egress'] as const) {
    let json: unknown;
    try {
      json = await nftJson(['list', 'set', POLICY_FAMILY, POLICY_TABLE, DROP_SETS[dir]], opts);
    } catch (e) {
      if (e instanceof NftError) throw new NftError(`reading the ${dir} drops of ${POLICY_TABLE}`, e.stderr);
      throw e;
    }
    for (const d of parseDropSet(json))
      out.push({ flow: dropFlow(policy, dir, d, opts.node ?? '', time), packets: d.packets, bytes: d.bytes });
  }
  return out;
}
