// trellis up: the whole mesh of a config directory on this machine — the control plane (with
// a CA), one node process per Mesh node, and the declared local workloads, each pointed at its
// node's outbound proxy. Ctrl-C stops everything, workloads first.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatDiagnostic } from '../../config/diagnostic.js';
import { loadPaths } from '../../config/load.js';
import { UsageError } from '../../errors.js';
import { CertificateAuthority } from '../../identity/ca.js';
import { CA_FILES, loadCa, saveCa } from '../../identity/ca-store.js';
import { compileModel } from '../../model/compile.js';
import type { MeshModel } from '../../model/mesh-model.js';
import { parseGoDuration } from '../../util/duration.js';
import { TYPE_URLS, type Snapshot } from '../../xds/snapshot.js';
import { proxylessSnapshot } from '../../xds/translate/proxyless.js';
import { readTrellisMetadata } from '../../xds/struct.js';
import { HELP_FLAG, type Command } from '../command.js';
import { concurrencyFlag } from '../concurrency.js';
import { hostPort } from '../host-port.js';
import type { Io } from '../output.js';
import { Supervisor, waitForHttp, waitForPort } from '../supervisor.js';
import { ACCESS_LOG_CLI_FLAGS, accessLogFlags, observabilityFlag, tracingFlags } from './node.js';
import { withRuntimeAddresses, type RuntimeAddresses } from '../../config/runtime-addresses.js';
import { planNetns, runIdFor, type NetnsPlan } from '../../datapath/linux/netns/plan.js';
import { NetnsTopology, waitForListen } from '../../datapath/linux/netns/topology.js';
import { captureAvailable } from '../../datapath/linux/original-dst.js';

const TRELLIS_BIN = fileURLToPath(new URL('../../../../bin/trellis.js', import.meta.url));

/** What `trellis up --netns` built, for starting processes in it. */
interface NetnsRun {
  readonly plan: NetnsPlan;
  readonly runtimeFile: string;
  /** Pods' outbound TCP is captured by their node proxy (else they are given HTTP_PROXY); the reason when not. */
  readonly noCapture?: string;
}

interface Lock {
  readonly pid: number;
  readonly started: string;
  readonly config: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The outbound proxy address of each workload, from the node resources the control plane will serve. */
function outboundProxies(model: MeshModel, snap: Snapshot): Map<string, string> {
  const out = new Map<string, string>();
  for (const w of model.workloads) {
    if (!w.node) continue;
    const l = snap.resources(TYPE_URLS.listener).get(`trellis/${w.node}/outbound/${w.namespace}/${w.name}`);
    const sa = (l?.body.address as { socket_address?: { address: string; port_value: number } } | undefined)
      ?.socket_address;
    if (sa) out.set(w.id, `${sa.address}:${sa.port_value}`);
  }
  return out;
}

/** Workload id -> "node ip:port -> workload port (MODE)" of each plaintext inbound listener (PERMISSIVE / DISABLE ports). */
function plaintextInbounds(snap: Snapshot): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of snap.resources(TYPE_URLS.listener).values()) {
    if (!/^trellis\/[^/]+\/inbound-plaintext\//.test(l.name)) continue;
    const sa = (l.body.address as { socket_address?: { address: string; port_value: number } } | undefined)
      ?.socket_address;
    const md = readTrellisMetadata(l.body);
    if (!sa || typeof md.workload !== 'string') continue;
    const text = `${sa.address}:${sa.port_value} -> ${String(md.target)} (${String(md.mtls)})`;
    out.set(md.workload, [...(out.get(md.workload) ?? []), text]);
  }
  return out;
}

/** A curl the user can run against the first HTTP gateway listener with a route. */
function tryCommands(model: MeshModel): string[] {
  const out: string[] = [];
  for (const gw of model.gateways) {
    if (gw.role !== 'gateway' || !gw.address) continue;
    for (const l of gw.listeners) {
      if (l.protocol !== 'HTTP' || l.attachedRoutes === 0) continue;
      const route = model.routes.find((r) => r.attachedTo.includes(`${gw.id}/${l.name}`));
      const host = route?.hostnames.find((h) => !h.startsWith('*')) ?? l.hostname?.replace(/^\*\./, 'www.');
      const path = '/call';
      out.push(
        host
          ? `curl -s -H 'Host: ${host}' http://${gw.address}:${l.port}${path}`
          : `curl -s http://${gw.address}:${l.port}${path}`,
      );
    }
  }
  return out;
}

export const upCommand: Command = {
  name: 'up',
  summary: 'Run a whole mesh on this machine: control plane, one node process per Mesh node, and the workloads',
  usage:
    'trellis up -f DIR [--state-dir DIR] [--xds-listen 127.0.0.1:15010] [--admin-listen 127.0.0.1:15014] [--concurrency N] [--otlp-endpoint URL [--trace-sampling PERCENT]] [--access-log PATH|- [--access-log-fields F,...]] [--observability on|off] [--netns]',
  flags: [
    { name: 'config', short: 'f', type: 'list', valueName: 'DIR', description: 'config directory (or file)' },
    {
      name: 'state-dir',
      type: 'string',
      valueName: 'DIR',
      description: 'CA, logs and the run lock (default: .trellis in the config directory)',
    },
    { name: 'xds-listen', type: 'string', valueName: 'HOST:PORT', description: 'default 127.0.0.1:15010' },
    { name: 'admin-listen', type: 'string', valueName: 'HOST:PORT', description: 'default 127.0.0.1:15014' },
    {
      name: 'concurrency',
      type: 'string',
      valueName: 'N',
      // The nodes of `trellis up` share one machine, so one worker each unless asked.
      description: 'worker processes per node (trellis node --concurrency), default 1',
    },
    {
      name: 'otlp-endpoint',
      type: 'string',
      valueName: 'URL',
      description: 'trace the gateways and waypoints to this OTLP/HTTP collector (trellis node --otlp-endpoint)',
    },
    {
      name: 'trace-sampling',
      type: 'string',
      valueName: 'PERCENT',
      description: 'share of new traces sampled, 0-100 (trellis node --trace-sampling), default 1',
    },
    // Every node appends to the same file (atomic line appends); each line names its proxy.
    ...ACCESS_LOG_CLI_FLAGS,
    {
      name: 'observability',
      type: 'string',
      valueName: 'on|off',
      description: 'trellis node --observability: off for benchmarks and debugging, default on',
    },
    {
      name: 'netns',
      type: 'boolean',
      description:
        'root: every node and every workload in its own network namespace, pods attached by the CNI plugin, addresses from the Mesh network CIDRs',
    },
    HELP_FLAG,
  ],
  async run(args, io) {
    const paths = [...((args.flags.config as readonly string[] | undefined) ?? []), ...args.positionals];
    if (paths.length === 0) throw new UsageError('trellis up needs -f DIR (for example: trellis up -f examples/shop)');
    const xds = hostPort((args.flags['xds-listen'] as string | undefined) ?? '127.0.0.1:15010', 'xds-listen');
    const admin = hostPort((args.flags['admin-listen'] as string | undefined) ?? '127.0.0.1:15014', 'admin-listen');
    const concurrency = concurrencyFlag(args.flags.concurrency as string | undefined) ?? 1;
    // Passed through to every node as given.
    const tracingArgs = [
      ...(args.flags['otlp-endpoint'] !== undefined ? ['--otlp-endpoint', String(args.flags['otlp-endpoint'])] : []),
      ...(args.flags['trace-sampling'] !== undefined ? ['--trace-sampling', String(args.flags['trace-sampling'])] : []),
    ];
    tracingFlags(args.flags['otlp-endpoint'], args.flags['trace-sampling']); // usage errors here, not in a node's log
    const accessLog = accessLogFlags(args.flags['access-log'], args.flags['access-log-fields']);
    const observability = observabilityFlag(args.flags.observability);
    tracingArgs.push(
      // Absolute: a node's working directory need not be ours.
      ...(accessLog ? ['--access-log', accessLog.path === '-' ? '-' : resolve(accessLog.path)] : []),
      ...(accessLog?.fields ? ['--access-log-fields', accessLog.fields.join(',')] : []),
      ...(observability !== undefined ? ['--observability', observability ? 'on' : 'off'] : []),
    );
    for (const p of paths) if (!existsSync(p)) throw new UsageError(`-f ${p}: no such file or directory`);
    const first = resolve(paths[0]!);
    const configDir = statSync(first).isDirectory() ? first : dirname(first);
    const stateDir = resolve((args.flags['state-dir'] as string | undefined) ?? join(configDir, '.trellis'));

    const loaded = loadPaths(paths);
    const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) {
      for (const d of errors) io.err(formatDiagnostic(d));
      io.err(
        `trellis up: ${errors.length} error(s) in ${paths.join(', ')}; nothing started (trellis validate -f ... shows all)`,
      );
      return 1;
    }
    const model = compileModel(loaded.resources);
    if (model.nodes.length === 0) {
      io.err(
        `trellis up: ${paths.join(', ')} declares no nodes: add spec.nodes to a trellis.dev/v1alpha1 Mesh (see examples/shop/mesh.yaml)`,
      );
      return 1;
    }

    const netns = args.flags.netns === true;
    if (netns && process.getuid?.() !== 0)
      throw new UsageError('--netns needs root: it creates network namespaces, links and routes');

    mkdirSync(stateDir, { recursive: true });
    const lockFile = join(stateDir, 'up.lock');
    if (existsSync(lockFile)) {
      try {
        const lock = JSON.parse(readFileSync(lockFile, 'utf8')) as Lock;
        if (alive(lock.pid)) {
          io.err(
            `trellis up is already running for ${lock.config} (pid ${lock.pid}, since ${lock.started}); stop it with Ctrl-C in its terminal, or: kill ${lock.pid}`,
          );
          return 1;
        }
      } catch {
        // An unreadable lock is stale.
      }
    }
    writeFileSync(lockFile, JSON.stringify({ pid: process.pid, started: new Date().toISOString(), config: configDir }));

    const caDir = join(stateDir, 'ca');
    if (!existsSync(join(caDir, CA_FILES.caCert))) {
      const ca = CertificateAuthority.createRoot({
        trustDomain: model.mesh.trustDomain,
        ttlMs: parseGoDuration(model.mesh.certificates.rootTTL) ?? 87_600 * 3_600_000,
      });
      saveCa(ca, caDir);
    } else if (loadCa(caDir).trustDomain !== model.mesh.trustDomain) {
      io.err(`trellis up: ${caDir} holds a CA for another trust domain; remove it or use --state-dir`);
      rmSync(lockFile, { force: true });
      return 1;
    }

    const sup = new Supervisor(join(stateDir, 'logs'));
    let stopping = false;
    sup.onExit = (p, code, signal) => {
      if (!stopping) io.err(`trellis up: ${p.name} exited (${signal ?? `code ${code}`}); its log: ${p.log}`);
    };
    let topology: NetnsTopology | undefined;
    // Ctrl-C or SIGTERM may come while starting: setup stops at its next step (abort) and only
    // then is everything it made removed, so nothing is started after the teardown. Repeated
    // signals during the teardown are ignored (process.on, not once).
    const abort = new AbortController();
    let signalled: () => void = () => undefined;
    const signal = new Promise<void>((done) => (signalled = done));
    const onSignal = (): void => {
      if (!abort.signal.aborted) abort.abort();
      signalled();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let stopped: Promise<void> | undefined;
    // Once, whoever asks first (a signal while starting, a failure, Ctrl-C).
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        stopping = true;
        await sup.stopAll();
        await topology?.down().catch((e: Error) => io.err(`trellis up: removing the network namespaces: ${e.message}`));
        rmSync(lockFile, { force: true });
      })());
    try {
      let run = { model, xds, netns: undefined as NetnsRun | undefined };
      if (netns) {
        const plan = planNetns(model, runIdFor(stateDir));
        topology = new NetnsTopology(plan, { stateDir, clusterDomain: model.mesh.clusterDomain });
        const podIps = await topology.up(abort.signal);
        const runtime: RuntimeAddresses = {
          nodes: Object.fromEntries(plan.nodes.map((n) => [n.name, n.underlayIp])),
          workloads: Object.fromEntries(podIps),
          services: Object.fromEntries(plan.serviceVips),
          nodeNamespaces: Object.fromEntries(plan.nodes.map((n) => [n.name, `/var/run/netns/${n.netns}`])),
        };
        const runtimeFile = join(stateDir, 'runtime-addresses.json');
        const noCapture = captureAvailable();
        writeFileSync(runtimeFile, `${JSON.stringify(runtime, null, 2)}\n`);
        run = {
          model: compileModel(withRuntimeAddresses(loaded.resources, runtime)),
          // The nodes reach the control plane over the bridge (the host's address on it).
          xds: args.flags['xds-listen'] === undefined ? { host: plan.bridge.address, port: xds.port } : xds,
          netns: { plan, runtimeFile, ...(noCapture ? { noCapture } : {}) },
        };
      }
      await startAll(sup, io, {
        paths,
        model: run.model,
        stateDir,
        caDir,
        xds: run.xds,
        admin,
        configDir,
        concurrency,
        tracingArgs,
        netns: run.netns,
        abort: abort.signal,
      });
      abort.signal.throwIfAborted();
    } catch (e) {
      if (abort.signal.aborted) {
        io.err('trellis up: interrupted while starting; stopping what was started');
        await stop();
        return 130;
      }
      io.err(`trellis up: ${(e as Error).message}; stopping what was started`);
      await stop();
      return 1;
    }
    await signal;
    io.out('trellis up: stopping (workloads, nodes, control plane)...');
    await stop();
    io.out('trellis up: stopped');
    return 0;
  },
};

async function startAll(
  sup: Supervisor,
  io: Io,
  o: {
    paths: readonly string[];
    model: MeshModel;
    stateDir: string;
    caDir: string;
    xds: { host: string; port: number };
    admin: { host: string; port: number };
    concurrency: number;
    configDir: string;
    tracingArgs: readonly string[];
    netns?: NetnsRun;
    /** Interrupted: stop before the next process is started. */
    abort?: AbortSignal;
  },
): Promise<void> {
  const node = process.execPath;
  const plan = o.netns?.plan;
  /** The argv that runs a command inside a namespace of the plan (as is, without --netns). */
  const inNetns = (netnsName: string | undefined, argv: readonly string[]): string[] =>
    netnsName ? ['ip', 'netns', 'exec', netnsName, ...argv] : [...argv];
  const cp = sup.start('controlplane', [
    node,
    TRELLIS_BIN,
    'controlplane',
    ...o.paths.flatMap((p) => ['--config', p]),
    '--ca',
    o.caDir,
    '--state-dir',
    o.stateDir,
    '--xds-listen',
    `${o.xds.host}:${o.xds.port}`,
    '--admin-listen',
    `${o.admin.host}:${o.admin.port}`,
    ...(o.netns
      ? ['--runtime-addresses', o.netns.runtimeFile, '--dns-listen', `${o.netns.plan.bridge.address}:53`]
      : []),
  ]);
  await waitForPort(o.xds.host, o.xds.port, 20_000, () => !cp.exited && !o.abort?.aborted).catch((e: Error) => {
    throw new Error(`the control plane did not start (${e.message}); see ${cp.log}`);
  });
  o.abort?.throwIfAborted();

  const nodes = o.model.nodes.map((n) => {
    const p = sup.start(
      n.name,
      inNetns(plan?.nodes.find((x) => x.name === n.name)?.netns, [
        node,
        TRELLIS_BIN,
        'node',
        '--name',
        n.name,
        '--xds',
        `${o.xds.host}:${o.xds.port}`,
        '--metrics-listen',
        `${n.address}:${n.ports.metrics}`,
        '--concurrency',
        String(o.concurrency),
        ...o.tracingArgs,
        ...(o.netns && !o.netns.noCapture ? ['--capture'] : []),
      ]),
      { stdoutFile: `${n.name}.flows.jsonl` },
    );
    return { n, p };
  });
  for (const { n, p } of nodes) {
    await waitForHttp(
      `http://${n.address}:${n.ports.metrics}/healthz/ready`,
      30_000,
      () => !p.exited && !o.abort?.aborted,
    ).catch((e: Error) => {
      throw new Error(`node ${n.name} did not become ready (${e.message}); see ${p.log}`);
    });
  }

  o.abort?.throwIfAborted();
  // The node resources the control plane serves: where each workload's proxies listen.
  const snap = proxylessSnapshot(o.model);
  const proxies = outboundProxies(o.model, snap);
  const plaintext = plaintextInbounds(snap);
  const started: string[] = [];
  const waits: Promise<void>[] = [];
  for (const w of o.model.workloads) {
    if (!w.command || !w.node) continue;
    // Captured pods need no proxy setting: their connections reach the node proxy anyway.
    const proxy = o.netns && !o.netns.noCapture ? undefined : proxies.get(w.id);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...(proxy ? { HTTP_PROXY: `http://${proxy}`, http_proxy: `http://${proxy}` } : {}),
      TRELLIS_NODE: w.node,
      TRELLIS_IDENTITY: w.identity,
      TRELLIS_WORKLOAD_ADDRESS: w.address,
    };
    for (const e of w.env ?? []) env[e.name] = e.value;
    const cwd = w.workingDir ? resolve(o.configDir, w.workingDir) : o.configDir;
    const argv = w.command[0] === 'node' ? [process.execPath, ...w.command.slice(1)] : [...w.command];
    const pod = plan?.pods.find((p) => p.workload === w.id);
    const proc = sup.start(`${w.namespace}.${w.name}`, inNetns(pod?.netns, argv), { cwd, env });
    waits.push(
      ...[...new Set(Object.values(w.ports))].map((port) =>
        // In namespaces: listening inside the pod (policy may rightly refuse the host's connection).
        (pod
          ? waitForListen(pod.netns, port, 20_000, () => !proc.exited && !o.abort?.aborted)
          : waitForPort(w.address, port, 20_000, () => !proc.exited && !o.abort?.aborted)
        ).catch((e: Error) =>
          io.err(
            `trellis up: workload ${w.namespace}/${w.name} is not serving ${w.address}:${port} (${e.message}); see ${proc.log}`,
          ),
        ),
      ),
    );
    started.push(
      `  ${w.namespace}/${w.name}`.padEnd(28) +
        `on ${w.node}, serves ${w.address}:${Object.values(w.ports).join(',')}, ${o.netns && !o.netns.noCapture ? 'captured' : `HTTP_PROXY=${proxy ?? '-'}`}` +
        (w.upstreams ?? []).map((u) => `, ${u.localAddress}:${u.localPort} -> ${u.host}:${u.port}`).join('') +
        (plaintext.get(w.id) ?? []).map((p) => `, plaintext ${p}`).join(''),
    );
  }

  await Promise.all(waits);
  o.abort?.throwIfAborted();
  io.out(`trellis up: ${o.configDir}`);
  io.out(`  control plane        xDS ${o.xds.host}:${o.xds.port}, admin http://${o.admin.host}:${o.admin.port}`);
  io.out(`  dashboard            http://${o.admin.host}:${o.admin.port}/dashboard`);
  for (const { n } of nodes) {
    const gws = n.gateways.map((g) => g.split('/').slice(1).join('/')).join(', ');
    io.out(
      `  node ${n.name}`.padEnd(23) +
        ` HBONE ${n.address}:${n.ports.hbone}, metrics http://${n.address}:${n.ports.metrics}/metrics${gws ? `, runs ${gws}` : ''}`,
    );
  }
  for (const gw of o.model.gateways) {
    if (gw.role !== 'gateway' || !gw.address) continue;
    for (const l of gw.listeners)
      io.out(`  gateway ${gw.namespace}/${gw.name}`.padEnd(23) + ` ${l.protocol} ${gw.address}:${l.port}`);
  }
  for (const s of started) io.out(s);
  io.out(`  logs                 ${join(o.stateDir, 'logs')} (flow records: <node>.flows.jsonl)`);
  const tries = tryCommands(o.model);
  if (tries.length) {
    io.out('Try:');
    for (const t of tries) io.out(`  ${t}`);
  }
  io.out('Ctrl-C stops everything.');
}
