// trellis controlplane: watch a config directory, compile it, serve it over xDS (ADS),
// with an admin API. A bad reload keeps the last good configuration serving.
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatDiagnostic } from '../../config/diagnostic.js';
import { AppliedStore } from '../../controlplane/applied-store.js';
import { NodeSecrets } from '../../controlplane/node-secrets.js';
import { loadCa } from '../../identity/ca-store.js';
import type { CertificateAuthority } from '../../identity/ca.js';
import { ControlPlaneMetrics } from '../../controlplane/metrics.js';
import { loadPaths } from '../../config/load.js';
import { UsageError } from '../../errors.js';
import { startAdminServer } from '../../controlplane/admin-server.js';
import { FlowRelay } from '../../controlplane/flow-relay.js';
import { TelemetryScraper } from '../../controlplane/telemetry-scraper.js';
import { DnsResponder } from '../../controlplane/dns-responder.js';
import { DatapathController } from '../../controlplane/datapath-controller.js';
import { readRuntimeAddresses, withRuntimeAddresses, type RuntimeAddresses } from '../../config/runtime-addresses.js';
import { ConfigWatcher, type ConfigState } from '../../controlplane/config-watcher.js';
import { SnapshotCache } from '../../controlplane/snapshot-cache.js';
import { AdsServer } from '../../xds/server/ads-server.js';
import { HELP_FLAG, type Command } from '../command.js';
import { hostPort } from '../host-port.js';

/** The node proxies' SVIDs over SDS, from the CA in `dir`, with the Mesh's lifetime and trust domain. */
function nodeSecrets(dir: string, paths: readonly string[]): { secrets: NodeSecrets; ca: CertificateAuthority } {
  const ca = loadCa(dir);
  const mesh = loadPaths(paths).resources.find((r) => r.kind === 'Mesh');
  const spec = mesh?.kind === 'Mesh' ? mesh.spec : undefined;
  const trustDomain = spec?.trustDomain ?? 'cluster.local';
  if (ca.trustDomain !== trustDomain) {
    throw new UsageError(
      `--ca ${dir} is a CA for trust domain ${ca.trustDomain}, but the Mesh's trust domain is ${trustDomain}`,
    );
  }
  return { secrets: new NodeSecrets(ca, spec?.certificates.workloadTTL ?? '24h'), ca };
}

/** Per Mesh node, the PEM chains of the SVIDs it is served over SDS (for their expiry). */
function* workloadChains(cache: SnapshotCache, secrets: NodeSecrets): Generator<[string, string[]]> {
  for (const node of cache.model?.nodes ?? []) {
    const chains: string[] = [];
    for (const s of secrets.secretsFor(node.name)) {
      const chain = (s.body as { tls_certificate?: { certificate_chain?: { inline_bytes?: Buffer } } }).tls_certificate
        ?.certificate_chain?.inline_bytes;
      if (chain) chains.push(chain.toString('utf8'));
    }
    yield [node.name, chains];
  }
}

/** .trellis inside the config directory (config walks skip dot-directories), or beside a config file. */
function defaultStateDir(configPath: string): string {
  try {
    return statSync(configPath).isDirectory() ? join(configPath, '.trellis') : join(dirname(configPath), '.trellis');
  } catch {
    return '.trellis';
  }
}

/** One structured log line on stderr. */
function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), level, component: 'controlplane', msg, ...fields })}\n`,
  );
}

export const controlplaneCommand: Command = {
  name: 'controlplane',
  summary: 'Serve a config directory over xDS (ADS) to proxies and proxyless gRPC clients',
  usage:
    'trellis controlplane --config DIR [--xds-listen 127.0.0.1:15010] [--admin-listen 127.0.0.1:15014] [--state-dir DIR] [--runtime-addresses FILE] [--dns-listen HOST:PORT]',
  flags: [
    {
      name: 'config',
      short: 'f',
      type: 'list',
      valueName: 'DIR',
      description: 'config directory (or file); watched for changes',
    },
    {
      name: 'xds-listen',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'xDS (ADS) listener, default 127.0.0.1:15010',
    },
    {
      name: 'admin-listen',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'admin HTTP API, default 127.0.0.1:15014',
    },
    {
      name: 'state-dir',
      type: 'string',
      valueName: 'DIR',
      description: 'where resources from "trellis apply" are kept (default: .trellis in the config directory)',
    },
    {
      name: 'runtime-addresses',
      type: 'string',
      valueName: 'FILE',
      description: 'pod IPs, node addresses and Service VIPs a runtime assigned (trellis up --netns writes it)',
    },
    {
      name: 'dns-listen',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'answer DNS for service names (UDP) there, for pods',
    },
    {
      name: 'ca',
      type: 'string',
      valueName: 'DIR',
      description: "a CA directory (trellis ca init): serve each Mesh node its workloads' SVIDs over SDS",
    },
    HELP_FLAG,
  ],
  async run(args, io) {
    const paths = [...((args.flags.config as readonly string[] | undefined) ?? []), ...args.positionals];
    if (paths.length === 0) throw new UsageError('trellis controlplane needs --config DIR');
    const xds = hostPort((args.flags['xds-listen'] as string | undefined) ?? '127.0.0.1:15010', 'xds-listen');
    const admin = hostPort((args.flags['admin-listen'] as string | undefined) ?? '127.0.0.1:15014', 'admin-listen');

    const stateDir = (args.flags['state-dir'] as string | undefined) ?? defaultStateDir(paths[0]!);
    const store = new AppliedStore(stateDir, paths);
    const caDir = args.flags.ca as string | undefined;
    const withCa = caDir === undefined ? undefined : nodeSecrets(caDir, store.paths());
    const secrets = withCa?.secrets;
    const cache = new SnapshotCache(secrets);
    const ads = new AdsServer();
    const metrics = new ControlPlaneMetrics({
      clients: () => ads.clients(),
      generation: () => config.state.generation,
      ...(withCa ? { ca: () => withCa.ca } : {}),
      ...(secrets ? { workloadCerts: () => workloadChains(cache, secrets) } : {}),
    });
    let runtime: RuntimeAddresses | undefined;
    const runtimeFile = args.flags['runtime-addresses'] as string | undefined;
    if (runtimeFile !== undefined) {
      try {
        runtime = readRuntimeAddresses(runtimeFile);
      } catch (e) {
        throw new UsageError(`--runtime-addresses ${(e as Error).message}`);
      }
    }
    const dnsAt = args.flags['dns-listen'] as string | undefined;
    const dnsListen = dnsAt === undefined ? undefined : hostPort(dnsAt, 'dns-listen');
    const datapath = runtime?.nodeNamespaces ? new DatapathController(runtime.nodeNamespaces, log) : undefined;
    /** Applies a configuration to the cache and records its translation time. */
    const apply = (resources: ConfigState['resources'], generation: number) => {
      const effective = runtime ? withRuntimeAddresses(resources, runtime) : resources;
      const model = cache.update(effective, generation);
      void datapath?.update(model, effective);
      const push = cache.pushes.at(-1);
      if (push) metrics.translated(push);
      return model;
    };
    const config = new ConfigWatcher({
      paths: () => store.paths(),
      watch: paths,
      onChange: (s) => {
        const model = apply(s.resources, s.generation);
        metrics.configReload('applied');
        log('info', 'configuration applied', {
          generation: s.generation,
          resources: s.resources.length,
          services: model.services.length,
          analysis: model.analysis.length,
        });
      },
      onReject: (errors) => {
        metrics.configReload('rejected');
        log('warn', 'configuration rejected; the last good configuration keeps serving', {
          errors: errors.length,
          first: errors.slice(0, 5).map(formatDiagnostic),
        });
      },
    });
    const initial = config.state;
    if (initial.rejected) {
      metrics.configReload('rejected');
      log('error', 'initial configuration has errors; serving nothing until it is fixed', {
        first: initial.rejected.errors.slice(0, 5).map(formatDiagnostic),
      });
    } else {
      apply(initial.resources, initial.generation);
      metrics.configReload('applied');
      log('info', 'configuration applied', { generation: initial.generation, resources: initial.resources.length });
    }

    let xdsPort: number;
    try {
      xdsPort = await ads.start({ source: cache, address: `${xds.host}:${xds.port}`, metrics });
    } catch (e) {
      throw new UsageError(`cannot listen for xDS on ${xds.host}:${xds.port}: ${(e as Error).message}`);
    }
    const telemetry = new TelemetryScraper({ model: () => cache.model });
    let adminPort: number;
    let adminServer;
    try {
      ({ server: adminServer, port: adminPort } = await startAdminServer(
        {
          config,
          cache,
          store,
          clients: () => ads.clients(),
          metrics: () => metrics.render(),
          flows: new FlowRelay(() => cache.model, datapath ? [() => datapath.drops()] : []),
          telemetry,
        },
        admin.host,
        admin.port,
      ));
    } catch (e) {
      await ads.close();
      throw new UsageError(`cannot listen for the admin API on ${admin.host}:${admin.port}: ${(e as Error).message}`);
    }
    const dns = dnsListen ? new DnsResponder(() => cache.model) : undefined;
    if (dns && dnsListen) {
      try {
        await dns.listen(dnsListen.host, dnsListen.port);
      } catch (e) {
        adminServer.close();
        await ads.close();
        throw new UsageError(`cannot answer DNS on ${dnsListen.host}:${dnsListen.port}: ${(e as Error).message}`);
      }
    }
    config.start();
    telemetry.start();
    io.out(
      `trellis controlplane: xDS on ${xds.host}:${xdsPort}, admin on http://${admin.host}:${adminPort}, dashboard http://${admin.host}:${adminPort}/dashboard, watching ${paths.join(', ')}`,
    );
    log('info', 'serving', { xds: `${xds.host}:${xdsPort}`, admin: `${admin.host}:${adminPort}` });

    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log('info', 'shutting down', { signal });
        resolve();
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
    config.close();
    telemetry.stop();
    dns?.close();
    secrets?.close();
    adminServer.close();
    await ads.close();
    return 0;
  },
};
