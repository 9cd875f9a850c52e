// trellis cni install: put the CNI plugins where a container runtime finds them, and
// (optionally) the network configuration list that uses them.
import { join } from 'node:path';
import { installConfList, installPlugins } from '../../datapath/linux/cni/install.js';
import { parseIpv4Cidr, podRange, PodRangeError } from '../../datapath/linux/ipam/pod-cidr.js';
import { UsageError } from '../../errors.js';
import { HELP_FLAG, type Command } from '../command.js';

export const cniCommand: Command = {
  name: 'cni',
  summary: 'Install the CNI plugins (trellis-cni, trellis-ipam) and a network configuration for a node',
  usage:
    'trellis cni install --bin-dir /opt/cni/bin [--conf-dir /etc/cni/net.d --pod-cidr 10.244.1.0/24 [--network trellis] [--mtu 1500] [--ipam-data-dir /var/lib/trellis/ipam]]',
  flags: [
    {
      name: 'bin-dir',
      type: 'string',
      valueName: 'DIR',
      description: 'where the runtime looks for plugins (CNI_PATH)',
    },
    { name: 'conf-dir', type: 'string', valueName: 'DIR', description: 'write <DIR>/10-<network>.conflist there' },
    { name: 'pod-cidr', type: 'string', valueName: 'CIDR', description: "this node's pod CIDR (with --conf-dir)" },
    { name: 'network', type: 'string', valueName: 'NAME', description: 'the network name (default trellis)' },
    { name: 'mtu', type: 'string', valueName: 'N', description: 'pod interface MTU (default 1500)' },
    { name: 'ipam-data-dir', type: 'string', valueName: 'DIR', description: 'where allocations are kept' },
    HELP_FLAG,
  ],
  run(args, io) {
    const [action, ...extra] = args.positionals;
    if (action !== 'install')
      throw new UsageError(`trellis cni: expected "install", got ${JSON.stringify(action ?? '')}`);
    if (extra.length) throw new UsageError(`trellis cni install: unexpected argument ${JSON.stringify(extra[0])}`);
    const binDir = args.flags['bin-dir'] as string | undefined;
    if (!binDir) throw new UsageError('trellis cni install needs --bin-dir DIR (e.g. /opt/cni/bin)');
    const confDir = args.flags['conf-dir'] as string | undefined;
    const podCidr = args.flags['pod-cidr'] as string | undefined;
    if (confDir && !podCidr)
      throw new UsageError('--conf-dir needs --pod-cidr: the node pod CIDR the configuration hands out');
    if (podCidr && !confDir) throw new UsageError('--pod-cidr is written into the configuration: give --conf-dir too');
    const network = (args.flags.network as string | undefined) ?? 'trellis';
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(network))
      throw new UsageError(`--network ${JSON.stringify(network)}: expected letters, digits, "_", "." or "-"`);
    const mtuText = (args.flags.mtu as string | undefined) ?? '1500';
    const mtu = Number(mtuText);
    if (!/^\d+$/.test(mtuText) || mtu < 576 || mtu > 65535)
      throw new UsageError(`--mtu ${JSON.stringify(mtuText)}: expected an integer from 576 to 65535`);
    if (podCidr) {
      const parsed = parseIpv4Cidr(podCidr);
      if (typeof parsed === 'string') throw new UsageError(`--pod-cidr: ${parsed}`);
      try {
        podRange(podCidr);
      } catch (e) {
        if (e instanceof PodRangeError) throw new UsageError(`--pod-cidr: ${e.message}`);
        throw e;
      }
    }
    for (const p of installPlugins(binDir)) io.out(`installed ${p}`);
    if (confDir && podCidr) {
      const dataDir = args.flags['ipam-data-dir'] as string | undefined;
      const file = installConfList(join(confDir, `10-${network}.conflist`), {
        network,
        mtu,
        podCidr,
        ...(dataDir ? { dataDir } : {}),
      });
      io.out(`wrote ${file}`);
    }
    return 0;
  },
};
