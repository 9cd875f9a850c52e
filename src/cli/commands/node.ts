// trellis node: one node process (node proxy + the gateways/waypoints placed on the node),
// configured by the control plane over xDS.
import { UsageError } from '../../errors.js';
import { NodeProcess } from '../../proxy/node/node-process.js';
import { HELP_FLAG, type Command } from '../command.js';
import { hostPort } from '../host-port.js';

export const nodeCommand: Command = {
  name: 'node',
  summary: 'Run the node proxy for one Mesh node (HBONE, outbound proxies, gateways, waypoints)',
  usage: 'trellis node --name NODE [--xds 127.0.0.1:15010] [--metrics-listen HOST:PORT]',
  flags: [
    { name: 'name', type: 'string', valueName: 'NODE', description: "the node's name in the Mesh's spec.nodes" },
    { name: 'xds', type: 'string', valueName: 'HOST:PORT', description: 'the control plane, default 127.0.0.1:15010' },
    {
      name: 'metrics-listen',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'serve /metrics and /healthz/ready here (Istio: 15020)',
    },
    HELP_FLAG,
  ],
  async run(args, io) {
    const name = args.flags.name as string | undefined;
    if (!name) throw new UsageError('trellis node needs --name NODE (a node of the Mesh spec.nodes)');
    const xds = (args.flags.xds as string | undefined) ?? '127.0.0.1:15010';
    hostPort(xds, 'xds');
    const metrics = args.flags['metrics-listen'] as string | undefined;
    const node = new NodeProcess({
      node: name,
      xds,
      ...(metrics
        ? { metricsListen: (({ host, port }) => ({ address: host, port }))(hostPort(metrics, 'metrics-listen')) }
        : {}),
    });
    await node.start();
    if (!node.config?.hbone) {
      io.err(`trellis node: the control plane has no node ${JSON.stringify(name)} (yet); waiting for it`);
    } else {
      io.err(`trellis node ${name}: ready (HBONE ${node.config.hbone.address}:${node.config.hbone.port})`);
    }
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await node.close();
    return 0;
  },
};
