// trellis proxy-status: every xDS client and, per type, SYNCED / STALE / NACKED (istioctl habits).
import { CSDS_METADATA_KEY, fetchClientStatus, type CsdsResourceStatus } from '../../xds/csds-client.js';
import { HELP_FLAG, type Command } from '../command.js';
import { adminRequest, SERVER_FLAG, serverUrl } from '../control-plane-client.js';
import { OUTPUT_FLAG, renderTable, renderData, type OutputFormat } from '../output.js';

interface ClientInfo {
  readonly nodeId: string;
  readonly cluster?: string;
  readonly userAgentName?: string;
  readonly userAgentVersion?: string;
  readonly protocol?: string;
  readonly metadata?: Readonly<Record<string, unknown>>;
  readonly types: readonly {
    readonly typeUrl: string;
    readonly status: string;
    readonly nack?: { readonly message?: string };
  }[];
}

const COLUMNS: readonly [string, string][] = [
  ['CDS', 'envoy.config.cluster.v3.Cluster'],
  ['LDS', 'envoy.config.listener.v3.Listener'],
  ['EDS', 'envoy.config.endpoint.v3.ClusterLoadAssignment'],
  ['RDS', 'envoy.config.route.v3.RouteConfiguration'],
  ['SDS', 'envoy.extensions.transport_sockets.tls.v3.Secret'],
];

/** "22 ACKED" / "1 NACKED, 21 ACKED" / "-" when the client offers no CSDS. */
function csdsSummary(view: CsdsResourceStatus[] | string | undefined): string {
  if (view === undefined) return '-';
  if (typeof view === 'string') return view;
  const counts = new Map<string, number>();
  for (const r of view) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const order = ['NACKED', 'DOES_NOT_EXIST', 'REQUESTED', 'ACKED'];
  const rank = (k: string) => (order.includes(k) ? order.indexOf(k) : order.length);
  return [...counts.entries()]
    .sort(([a], [b]) => rank(a) - rank(b))
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
}

export const proxyStatusCommand: Command = {
  name: 'proxy-status',
  summary: 'Show every xDS client of the control plane and whether each type is SYNCED, STALE or NACKED',
  usage: 'trellis proxy-status [NODE_ID] [-o human|json|yaml] [--server URL]',
  flags: [OUTPUT_FLAG, SERVER_FLAG, HELP_FLAG],
  async run(args, io) {
    const r = await adminRequest(serverUrl(args.flags.server), '/debug/clients');
    let clients = r.body as ClientInfo[];
    const only = args.positionals[0];
    if (only !== undefined) clients = clients.filter((c) => c.nodeId === only);
    // Clients that advertise a CSDS endpoint are asked for their own view (CSDS backs the status).
    const csds = new Map<string, CsdsResourceStatus[] | string>();
    await Promise.all(
      clients.map(async (c) => {
        const address = c.metadata?.[CSDS_METADATA_KEY];
        if (typeof address !== 'string') return;
        try {
          csds.set(c.nodeId, await fetchClientStatus(address));
        } catch (e) {
          csds.set(c.nodeId, `unreachable (${(e as Error).message.split('\n')[0]})`);
        }
      }),
    );
    const format = (args.flags.output as OutputFormat | undefined) ?? 'human';
    if (format !== 'human') {
      io.out(
        renderData(
          clients.map((c) => (csds.has(c.nodeId) ? { ...c, csds: csds.get(c.nodeId) } : c)),
          format,
        ),
      );
      return 0;
    }
    if (clients.length === 0) {
      io.out(only ? `no xDS client with node id ${only}` : 'no xDS clients are connected');
      return only ? 1 : 0;
    }
    const rows = clients.map((c) => [
      c.nodeId,
      c.cluster ?? '',
      ...COLUMNS.map(([, t]) => {
        const ty = c.types.find((x) => x.typeUrl.endsWith(t));
        return ty ? (ty.status === 'NOT_SENT' ? 'NOT SENT' : ty.status) : 'NOT SENT';
      }),
      `${c.userAgentName ?? ''} ${c.userAgentVersion ?? ''}`.trim(),
      csdsSummary(csds.get(c.nodeId)),
    ]);
    const header = ['NAME', 'CLUSTER', ...COLUMNS.map(([h]) => h), 'CLIENT', 'CSDS (client view)'];
    io.out(renderTable(header, rows));
    for (const [node, view] of csds) {
      if (typeof view === 'string') continue;
      for (const r of view) if (r.status === 'NACKED') io.out(`${node}: client NACKED ${r.name}: ${r.error ?? ''}`);
    }
    for (const c of clients) {
      for (const t of c.types)
        if (t.status === 'NACKED')
          io.out(`${c.nodeId}: ${t.typeUrl.replace('type.googleapis.com/', '')} NACKED: ${t.nack?.message ?? ''}`);
    }
    return 0;
  },
};
