// trellis bootstrap: the JSON GRPC_XDS_BOOTSTRAP points at, for proxyless gRPC clients and servers.
import { UsageError } from '../../errors.js';
import { grpcBootstrap } from '../../xds/bootstrap/grpc-bootstrap.js';
import { HELP_FLAG, type Command } from '../command.js';

export const bootstrapCommand: Command = {
  name: 'bootstrap',
  summary: 'Print the xDS bootstrap JSON for a proxyless gRPC client or server',
  usage:
    'trellis bootstrap --node ID [--xds HOST:PORT] [--cert-dir DIR] [--locality REGION/ZONE/SUBZONE] [--csds HOST:PORT]',
  flags: [
    { name: 'node', type: 'string', valueName: 'ID', description: 'the node id the control plane will see' },
    {
      name: 'xds',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'the control plane xDS address (default 127.0.0.1:15010)',
    },
    {
      name: 'cert-dir',
      type: 'string',
      valueName: 'DIR',
      description: 'SVID files (from "trellis ca issue") for mTLS: file_watcher provider',
    },
    { name: 'locality', type: 'string', valueName: 'R/Z/S', description: 'the client locality, region/zone/subzone' },
    {
      name: 'csds',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'where this client serves CSDS (grpc admin services), so proxy-status can ask it',
    },
    HELP_FLAG,
  ],
  run(args, io) {
    const node = args.flags.node as string | undefined;
    if (node === undefined) throw new UsageError('trellis bootstrap needs --node ID');
    const xds = (args.flags.xds as string | undefined) ?? '127.0.0.1:15010';
    if (!/^[^:\s]+:\d{1,5}$/.test(xds) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(xds)) {
      throw new UsageError(`--xds ${JSON.stringify(xds)} is not HOST:PORT`);
    }
    const [region, zone, subZone] = ((args.flags.locality as string | undefined) ?? '').split('/');
    const certDir = args.flags['cert-dir'] as string | undefined;
    const b = grpcBootstrap({
      nodeId: node,
      xdsAddress: xds,
      locality: { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { subZone } : {}) },
      ...(certDir !== undefined ? { certDir } : {}),
      ...(args.flags.csds !== undefined ? { csdsAddress: args.flags.csds as string } : {}),
    });
    io.out(JSON.stringify(b, null, 2));
    return 0;
  },
};
