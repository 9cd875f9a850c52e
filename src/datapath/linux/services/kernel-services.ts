// Service load balancing into a node's kernel: the script of nft-services.ts applied with one
// `nft -f` (atomic: a new connection meets either the old ruleset or the new one, never a
// mix), in the node's network namespace. Idempotent: applying the same services again gives
// the same table. Established connections keep their endpoint (conntrack holds their DNAT).
import type { MeshModel, ServiceModel } from '../../../model/mesh-model.js';
import { applyNft, deleteTable, nftJson, NftError } from '../nft.js';
import { affinityEntriesOf, type AffinityEntries } from './affinity-carry.js';
import { renderServices, TABLE_FAMILY, TABLE_NAME } from './nft-services.js';
import { planServices, type PlanOptions } from './plan.js';

export interface ApplyServicesOptions extends PlanOptions {
  /** Path of the node's network namespace; this process's own when absent. */
  readonly netns?: string;
}

export interface AppliedServices {
  /** Service ports programmed (with endpoints or rejecting). */
  readonly servicePorts: number;
  readonly ignored: readonly string[];
  readonly script: string;
}

/** Live affinity entries of the table in place, none when there is no table yet. */
async function currentAffinity(netns: string | undefined): Promise<AffinityEntries> {
  try {
    return affinityEntriesOf(await nftJson(['list', 'table', TABLE_FAMILY, TABLE_NAME], { netns }));
  } catch (e) {
    if (e instanceof NftError && /No such file or directory/i.test(e.stderr)) return new Map();
    throw e;
  }
}

/** Replaces the node's service load balancing with the one for these services. */
export async function applyServices(
  input: MeshModel | readonly ServiceModel[],
  opts: ApplyServicesOptions = {},
): Promise<AppliedServices> {
  const services = 'services' in input ? input.services : input;
  const plan = planServices(services, opts);
  const script = renderServices(plan, await currentAffinity(opts.netns));
  try {
    await applyNft(script, { netns: opts.netns });
  } catch (e) {
    if (e instanceof NftError) throw new NftError(`applying service load balancing (${TABLE_NAME})`, e.message);
    throw e;
  }
  return { servicePorts: plan.ports.length, ignored: plan.ignored, script };
}

/** Removes the node's service load balancing (nothing to do when there is none). */
export async function removeServices(opts: { netns?: string } = {}): Promise<void> {
  await deleteTable(TABLE_FAMILY, TABLE_NAME, opts);
}
