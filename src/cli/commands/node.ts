// trellis node: one node process (node proxy + the gateways/waypoints placed on the node),
// configured by the control plane over xDS; with --concurrency above 1, one worker process
// per core behind a primary that holds the xDS stream (Envoy's model).
import { availableParallelism } from 'node:os';
import { CAPTURE_TABLE, captureNftScript } from '../../datapath/linux/capture/nft-capture.js';
import { applyNft, deleteTable } from '../../datapath/linux/nft.js';
import { captureAvailable, originalDestination } from '../../datapath/linux/original-dst.js';
import { OUTBOUND_CAPTURE_PORT } from '../../proxy/node/capture-listener.js';
import { UsageError } from '../../errors.js';
import { NodeProcess, type NodeProcessOptions } from '../../proxy/node/node-process.js';
import { isNodeWorker, NodeWorkers, runNodeWorker } from '../../proxy/node/workers.js';
import type { Bind, NodeConfig } from '../../proxy/node/node-config.js';
import { ACCESS_LOG_FIELDS, isAccessLogField } from '../../proxy/l7/filters/access-log.js';
import type { FlagSpec } from '../args.js';
import { HELP_FLAG, type Command } from '../command.js';
import { concurrencyFlag } from '../concurrency.js';
import { hostPort } from '../host-port.js';

function logTo(node: string, worker?: string) {
  return (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void => {
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, component: 'node', node, ...(worker ? { worker } : {}), msg, ...fields })}\n`,
    );
  };
}

/** --otlp-endpoint / --trace-sampling, checked; undefined when tracing is off. */
export function tracingFlags(endpoint: unknown, sampling: unknown): NodeProcessOptions['tracing'] {
  if (endpoint === undefined) {
    if (sampling !== undefined) throw new UsageError('--trace-sampling needs --otlp-endpoint URL (where spans go)');
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(String(endpoint));
  } catch {
    throw new UsageError(`--otlp-endpoint ${String(endpoint)}: expected an http(s) URL, e.g. http://127.0.0.1:4318`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--otlp-endpoint ${String(endpoint)}: expected an http(s) URL, e.g. http://127.0.0.1:4318`);
  if (sampling === undefined) return { otlpEndpoint: url.href };
  const pct = Number(sampling);
  if (String(sampling).trim() === '' || !Number.isFinite(pct) || pct < 0 || pct > 100)
    throw new UsageError(`--trace-sampling ${String(sampling)}: expected a percentage from 0 to 100`);
  return { otlpEndpoint: url.href, samplingPercent: pct };
}

/** --access-log / --access-log-fields, checked; undefined when access logging is off (the default). */
export function accessLogFlags(path: unknown, fields: unknown): NodeProcessOptions['accessLog'] {
  if (path === undefined) {
    if (fields !== undefined) throw new UsageError('--access-log-fields needs --access-log PATH|- (where lines go)');
    return undefined;
  }
  const p = String(path);
  if (p.trim() === '') throw new UsageError('--access-log: expected a file path or - for stdout');
  if (fields === undefined) return { path: p };
  const names = String(fields)
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  const unknown = names.filter((f) => !isAccessLogField(f));
  if (names.length === 0 || unknown.length > 0)
    throw new UsageError(
      `--access-log-fields ${String(fields)}: ${unknown.length > 0 ? `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}` : 'no field'}; valid fields: ${ACCESS_LOG_FIELDS.join(', ')}`,
    );
  return { path: p, fields: names.filter(isAccessLogField) };
}

/** Shared with `trellis up`, which passes them to every node. */
export const ACCESS_LOG_CLI_FLAGS: readonly FlagSpec[] = [
  {
    name: 'access-log',
    type: 'string',
    valueName: 'PATH|-',
    description:
      'access logs of the gateways and waypoints: one JSON line per request, appended to PATH (shared by workers and nodes) or - for stdout; default off',
  },
  {
    name: 'access-log-fields',
    type: 'string',
    valueName: 'F1,F2,...',
    description: `keys of each line (Envoy's JSON access log names), default all: ${ACCESS_LOG_FIELDS.join(',')}`,
  },
];

/** --observability on|off (benchmarking/debugging switch); undefined when not given. */
export function observabilityFlag(v: unknown): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === 'on' || v === 'off') return v === 'on';
  throw new UsageError(`--observability ${String(v)}: expected on or off`);
}

export const nodeCommand: Command = {
  name: 'node',
  summary: 'Run the node proxy for one Mesh node (HBONE, outbound proxies, gateways, waypoints)',
  usage:
    'trellis node --name NODE [--xds 127.0.0.1:15010] [--metrics-listen HOST:PORT] [--concurrency N] [--otlp-endpoint URL [--trace-sampling PERCENT]] [--access-log PATH|- [--access-log-fields F,...]] [--capture]',
  flags: [
    { name: 'name', type: 'string', valueName: 'NODE', description: "the node's name in the Mesh's spec.nodes" },
    { name: 'xds', type: 'string', valueName: 'HOST:PORT', description: 'the control plane, default 127.0.0.1:15010' },
    {
      name: 'metrics-listen',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'serve /metrics and /healthz/ready here (Istio: 15020)',
    },
    {
      name: 'concurrency',
      type: 'string',
      valueName: 'N',
      description: 'worker processes, each with its own connections and upstream pools (default: one per core)',
    },
    {
      name: 'otlp-endpoint',
      type: 'string',
      valueName: 'URL',
      description: 'trace the gateways and waypoints: OTLP/HTTP collector (spans POSTed to URL/v1/traces)',
    },
    {
      name: 'trace-sampling',
      type: 'string',
      valueName: 'PERCENT',
      description: 'share of new traces sampled, 0-100 (default 1); error responses are always exported',
    },
    ...ACCESS_LOG_CLI_FLAGS,
    {
      name: 'observability',
      type: 'string',
      valueName: 'on|off',
      description:
        'off: no request metrics, tracing or access logs in the gateways and waypoints (for benchmarks and debugging), default on',
    },
    {
      name: 'capture',
      type: 'boolean',
      description:
        "root, Linux: redirect the pods' outbound TCP (from trellis-cni interfaces) into this node proxy on :15001 (nftables + SO_ORIGINAL_DST)",
    },
    HELP_FLAG,
  ],
  async run(args, io) {
    const name = args.flags.name as string | undefined;
    if (!name) throw new UsageError('trellis node needs --name NODE (a node of the Mesh spec.nodes)');
    const tracing = tracingFlags(args.flags['otlp-endpoint'], args.flags['trace-sampling']);
    const accessLog = accessLogFlags(args.flags['access-log'], args.flags['access-log-fields']);
    const observability = observabilityFlag(args.flags.observability);
    const more = {
      ...(accessLog ? { accessLog } : {}),
      ...(observability !== undefined ? { observability } : {}),
      // Every worker accepts captured connections (the cluster's shared listener); the primary installs the rules.
      ...(args.flags.capture === true
        ? { capture: { port: OUTBOUND_CAPTURE_PORT, resolve: originalDestination } }
        : {}),
    };
    if (isNodeWorker()) {
      const worker = process.env.TRELLIS_NODE_WORKER ?? '0';
      runNodeWorker(name, Number(worker), logTo(name, worker), tracing, more);
      // The worker lives until the primary tells it to stop (it exits the process itself).
      await new Promise<never>(() => undefined);
    }
    const xds = (args.flags.xds as string | undefined) ?? '127.0.0.1:15010';
    hostPort(xds, 'xds');
    const metrics = args.flags['metrics-listen'] as string | undefined;
    const metricsListen: Bind | undefined = metrics
      ? (({ host, port }) => ({ address: host, port }))(hostPort(metrics, 'metrics-listen'))
      : undefined;
    const concurrency = concurrencyFlag(args.flags.concurrency as string | undefined) ?? availableParallelism();
    const log = logTo(name);
    const capture = args.flags.capture === true;
    if (capture) {
      const unavailable = captureAvailable();
      if (unavailable) throw new UsageError(`--capture: ${unavailable}`);
      if (process.getuid?.() !== 0) throw new UsageError('--capture needs root (nftables rules)');
      await applyNft(
        captureNftScript({
          outboundPort: OUTBOUND_CAPTURE_PORT,
          ...(metricsListen ? { metricsPort: metricsListen.port } : {}),
        }),
      );
    }
    const node: { config: NodeConfig | undefined; start(): Promise<void>; close(): Promise<void> } =
      concurrency === 1
        ? new NodeProcess({
            node: name,
            xds,
            log,
            ...(metricsListen ? { metricsListen } : {}),
            ...(tracing ? { tracing } : {}),
            ...more,
          })
        : new NodeWorkers({ node: name, xds, concurrency, log, ...(metricsListen ? { metricsListen } : {}) });
    await node.start();
    if (!node.config?.hbone) {
      io.err(`trellis node: the control plane has no node ${JSON.stringify(name)} (yet); waiting for it`);
    } else {
      io.err(
        `trellis node ${name}: ready (HBONE ${node.config.hbone.address}:${node.config.hbone.port}, ${concurrency} worker${concurrency === 1 ? '' : 's'})`,
      );
    }
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await node.close();
    if (capture) await deleteTable('ip', CAPTURE_TABLE).catch(() => undefined);
    return 0;
  },
};
