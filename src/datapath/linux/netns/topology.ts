// Building and removing what a NetnsPlan describes. Node namespaces hang off a bridge on the
// host (the "network between machines", with the host on it so the control plane and the user
// reach the nodes); each node routes the other nodes' pod CIDRs to them over it. Pods are
// attached by the CNI plugin, run inside their node's namespace exactly as a runtime would.
// Every name carries the run id, so teardown removes exactly what this run made.
import { runTool } from '../run-tool.js';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installPlugins, PLUGIN_TYPES } from '../cni/install.js';
import { deleteLink, ip, ipBatch, IpCommandError } from '../ip-command.js';
import type { NetnsPlan, PodPlan } from './plan.js';

const NETNS_DIR = '/var/run/netns';

function run(file: string, args: readonly string[], input?: string): Promise<string> {
  return runTool(file, args, input === undefined ? {} : { input });
}

export interface TopologyOptions {
  /** Where the CNI plugins are installed and IPAM keeps its allocations (the run's state dir). */
  readonly stateDir: string;
  /** The cluster DNS suffix, for the pods' resolv.conf search list. */
  readonly clusterDomain: string;
  readonly log?: (line: string) => void;
}

export class NetnsTopology {
  readonly plan: NetnsPlan;
  readonly #o: TopologyOptions;
  readonly #binDir: string;

  constructor(plan: NetnsPlan, o: TopologyOptions) {
    this.plan = plan;
    this.#o = o;
    this.#binDir = join(o.stateDir, 'cni-bin');
  }

  #netnsPath(name: string): string {
    return `${NETNS_DIR}/${name}`;
  }

  /** Bridge, node namespaces and their routes, pod namespaces attached by CNI; resolves with "ns/name" -> pod IP. */
  async up(abort?: AbortSignal): Promise<Map<string, string>> {
    const { bridge, nodes } = this.plan;
    await this.down(); // what a crashed run of the same state dir left behind
    installPlugins(this.#binDir);
    await ipBatch([
      `link add ${bridge.name} type bridge`,
      `addr add ${bridge.address}/${bridge.prefix} dev ${bridge.name}`,
      `link set ${bridge.name} up`,
    ]);
    for (const n of nodes) {
      abort?.throwIfAborted();
      await ip(['netns', 'add', n.netns]);
      await ip(['link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns]);
      await ipBatch([`link set ${n.hostVeth} master ${bridge.name}`, `link set ${n.hostVeth} up`]);
      await ipBatch(
        [
          'link set lo up',
          `addr add ${n.underlayIp}/${bridge.prefix} dev eth0`,
          'link set eth0 up',
          `route add default via ${bridge.address}`,
          ...nodes.filter((m) => m !== n).map((m) => `route add ${m.podCidr} via ${m.underlayIp}`),
        ],
        { netns: this.#netnsPath(n.netns) },
      );
      // The node routes its pods' traffic.
      await run('ip', ['netns', 'exec', n.netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    }
    // The host reaches pods too (as from a machine on the nodes' network); these routes go with the bridge.
    await ipBatch(nodes.map((n) => `route add ${n.podCidr} via ${n.underlayIp} dev ${bridge.name}`));
    const ips = new Map<string, string>();
    for (const p of this.plan.pods) {
      abort?.throwIfAborted();
      ips.set(p.key, await this.#attach(p));
    }
    return ips;
  }

  #cniConf(p: PodPlan): string {
    const node = this.plan.nodes.find((n) => n.name === p.node)!;
    return JSON.stringify({
      cniVersion: '1.0.0',
      name: 'trellis',
      type: PLUGIN_TYPES.interface,
      ipam: { type: PLUGIN_TYPES.ipam, podCIDR: node.podCidr, dataDir: join(this.#o.stateDir, 'ipam') },
    });
  }

  #cni(command: 'ADD' | 'DEL', p: PodPlan): Promise<string> {
    const node = this.plan.nodes.find((n) => n.name === p.node)!;
    const env = [
      `CNI_COMMAND=${command}`,
      `CNI_CONTAINERID=${p.containerId}`,
      `CNI_NETNS=${this.#netnsPath(p.netns)}`,
      'CNI_IFNAME=eth0',
      `CNI_PATH=${this.#binDir}`,
      `PATH=${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    ];
    // As a runtime on that node: the plugin runs in the node's namespace.
    return run(
      'ip',
      ['netns', 'exec', node.netns, 'env', '-i', ...env, join(this.#binDir, PLUGIN_TYPES.interface)],
      this.#cniConf(p),
    );
  }

  async #attach(p: PodPlan): Promise<string> {
    await ip(['netns', 'add', p.netns]);
    await ip(['link', 'set', 'lo', 'up'], { netns: this.#netnsPath(p.netns) });
    let result: { ips?: { address: string }[] };
    try {
      result = JSON.parse(await this.#cni('ADD', p)) as typeof result;
    } catch (e) {
      throw new Error(`attaching ${p.key} to ${p.node}: ${(e as Error).message}`);
    }
    const podIp = result.ips?.[0]?.address.split('/')[0];
    if (!podIp) throw new Error(`attaching ${p.key}: the CNI result has no address`);
    // `ip netns exec` mounts /etc/netns/<name>/* over /etc: the pod's resolver asks the cluster DNS.
    const [ns] = p.key.split('/');
    const etc = join('/etc/netns', p.netns);
    mkdirSync(etc, { recursive: true });
    const d = this.#o.clusterDomain;
    writeFileSync(
      join(etc, 'resolv.conf'),
      `nameserver ${this.plan.bridge.address}\nsearch ${ns}.svc.${d} svc.${d} ${d}\noptions ndots:5\n`,
    );
    this.#o.log?.(`attached ${p.key} to ${p.node}: ${podIp}`);
    return podIp;
  }

  /** Removes everything of this run; never fails on what is already gone. */
  async down(): Promise<void> {
    const existing = new Set(
      (await run('ip', ['netns', 'list']).catch(() => '')).split('\n').map((l) => l.split(' ')[0]),
    );
    for (const p of this.plan.pods) {
      if (existing.has(p.netns) && existing.has(this.plan.nodes.find((n) => n.name === p.node)!.netns))
        await this.#cni('DEL', p).catch((e: Error) => this.#o.log?.(`detaching ${p.key}: ${e.message}`));
      if (existing.has(p.netns)) await ip(['netns', 'delete', p.netns]).catch(() => undefined);
      rmSync(join('/etc/netns', p.netns), { recursive: true, force: true });
    }
    for (const n of this.plan.nodes)
      if (existing.has(n.netns)) await ip(['netns', 'delete', n.netns]).catch(() => undefined);
    await deleteLink(this.plan.bridge.name).catch((e: unknown) => {
      if (!(e instanceof IpCommandError)) throw e;
    });
  }
}

/** Resolves once something listens on TCP `port` inside the namespace (as a kubelet's TCP probe would see it). */
export async function waitForListen(
  netns: string,
  port: number,
  timeoutMs: number,
  alive: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await run('ip', ['netns', 'exec', netns, 'ss', '-Hltn', `sport = :${port}`]).catch(() => '');
    if (out.trim()) return;
    if (!alive()) throw new Error('the process exited');
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
