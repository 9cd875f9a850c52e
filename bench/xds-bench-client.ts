// Child process of `npm run bench:xds`: simulates many ADS clients — one stream and one node id
// each — multiplexed over a few grpc-js channels (each with its own subchannel, so its own
// HTTP/2 connection), ACKs every response at once and reports to the parent over IPC. Times
// are process.hrtime (CLOCK_MONOTONIC), which the parent process shares.
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { DISCOVERY_REQUEST, DISCOVERY_RESPONSE, loadXdsProtos } from '../src/xds/server/protos.js';

export type BenchMode = 'sotw' | 'delta';
/** The names one client subscribes to, per type URL, in request order (LDS, RDS, CDS, EDS). */
export type Profile = readonly (readonly [string, readonly string[]])[];

export type ToChild =
  | {
      cmd: 'start';
      port: number;
      mode: BenchMode;
      /** Node ids are `${prefix}-${first + i}`; client k subscribes with profiles[k % profiles.length]. */
      prefix: string;
      first: number;
      count: number;
      channels: number;
      profiles: Profile[];
    }
  | { cmd: 'arm' }
  /** After the change: the new version of each type that changed (SotW), the changed names per type (delta). */
  | { cmd: 'expect'; t0: number; sotw: Record<string, string>; delta: Record<string, string[]> }
  | { cmd: 'report' }
  | { cmd: 'sink'; bytes: number }
  | { cmd: 'stop' };

export interface ChildReport {
  /** Since 'arm'. */
  readonly responses: number;
  readonly resources: number;
  /** Serialized response bytes (without the 5-byte gRPC frame header, as the server counts them). */
  readonly bytes: number;
  /** Clients that received at least one response since 'arm'. */
  readonly clientsWithResponses: number;
  /** Clients whose subscription holds something that changed. */
  readonly affected: number;
  /** ms from the change to the ACK of the last expected response, one per converged affected client. */
  readonly convergeMs: number[];
  readonly errors: number;
  readonly firstError: string;
  /** This process's CPU time since 'arm', ms. */
  readonly cpuMs: number;
}

export type FromChild =
  | { ev: 'ready'; sinkPort: number }
  | { ev: 'progress'; synced: number; errors: number; firstError: string }
  | { ev: 'synced'; synced: number; cpuMs: number }
  | { ev: 'armed' }
  | { ev: 'converged' }
  | { ev: 'report'; report: ChildReport }
  | { ev: 'sinkReady' }
  | { ev: 'sinkDone'; at: number }
  | { ev: 'fatal'; message: string };

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';
const DELTA_REQUEST = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
const DELTA_RESPONSE = 'envoy.service.discovery.v3.DeltaDiscoveryResponse';

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

interface Decoded {
  readonly type: string;
  readonly version: string;
  readonly nonce: string;
  readonly resources: number;
  /** Delta only: names of the resources added/changed or removed. */
  readonly names: readonly string[];
  readonly bytes: number;
}

interface LogEntry {
  readonly type: string;
  readonly version: string;
  readonly names: readonly string[];
  readonly ackAt: number;
}

type Stream = grpc.ClientDuplexStream<object, Decoded>;

function send(msg: FromChild): void {
  process.send?.(msg);
}

class SimClient {
  stream: Stream | undefined;
  synced = false;
  /** SotW: types still without a response. Delta: `${type}\n${name}` not received yet. */
  readonly #waiting = new Set<string>();
  log: LogEntry[] = [];
  armed = false;
  /** What must still arrive after the change (`${type}\n${version}` or `${type}\n${name}`); undefined until 'expect'. */
  need: Set<string> | undefined;
  #affected = false;
  lastNeededAck = 0;
  convergedAt: number | undefined;
  responses = 0;
  resources = 0;
  bytes = 0;
  error: string | undefined;

  constructor(
    readonly nodeId: string,
    readonly profile: Profile,
    readonly mode: BenchMode,
  ) {
    for (const [type, names] of profile) {
      if (mode === 'sotw') this.#waiting.add(type);
      else for (const n of names) this.#waiting.add(`${type}\n${n}`);
    }
  }

  open(channel: grpc.Client, onSynced: () => void, onConverged: () => void, onError: (c: SimClient) => void): void {
    const protos = loadXdsProtos();
    const sotw = this.mode === 'sotw';
    const reqType = sotw ? DISCOVERY_REQUEST : DELTA_REQUEST;
    const resType = sotw ? DISCOVERY_RESPONSE : DELTA_RESPONSE;
    const stream = channel.makeBidiStreamRequest<object, Decoded>(
      ADS + (sotw ? 'StreamAggregatedResources' : 'DeltaAggregatedResources'),
      (req) => protos.serialize(reqType, req),
      (buf) => decode(protos.deserialize(resType, buf), buf.length, sotw),
    );
    this.stream = stream;
    const namesOf = new Map(this.profile.map(([t, n]) => [t, n]));
    stream.on('data', (r: Decoded) => {
      // ACK at once: SotW repeats the names it wants; delta only quotes the nonce.
      stream.write(
        sotw
          ? {
              type_url: r.type,
              resource_names: namesOf.get(r.type) ?? [],
              response_nonce: r.nonce,
              version_info: r.version,
            }
          : { type_url: r.type, response_nonce: r.nonce },
      );
      const ackAt = now();
      if (!this.synced) {
        if (sotw) this.#waiting.delete(r.type);
        else for (const n of r.names) this.#waiting.delete(`${r.type}\n${n}`);
        if (this.#waiting.size === 0) {
          this.synced = true;
          onSynced();
        }
      }
      if (!this.armed) return;
      this.responses++;
      this.resources += r.resources;
      this.bytes += r.bytes;
      const entry = { type: r.type, version: r.version, names: r.names, ackAt };
      this.log.push(entry);
      if (this.need && this.#satisfy(entry)) onConverged();
    });
    stream.on('error', (e: grpc.ServiceError) => {
      if (this.error !== undefined) return;
      this.error = `${grpc.status[e.code] ?? e.code}: ${e.details}`;
      onError(this);
    });
    // Subscribe like a proxyless client to one service: LDS, RDS, CDS, EDS (names known up front).
    let first = true;
    for (const [type, names] of this.profile) {
      const node = first
        ? { id: this.nodeId, cluster: 'trellis-bench', user_agent_name: 'trellis-xds-bench' }
        : undefined;
      first = false;
      stream.write(
        sotw
          ? { node, type_url: type, resource_names: names }
          : { node, type_url: type, resource_names_subscribe: names },
      );
    }
  }

  /** Sets what must arrive; returns true when it already has (nothing needed counts as not affected). */
  expect(sotw: Record<string, string>, delta: Record<string, string[]>): boolean {
    const need = new Set<string>();
    for (const [type, names] of this.profile) {
      if (this.mode === 'sotw') {
        const v = sotw[type];
        if (v !== undefined) need.add(`${type}\n${v}`);
      } else {
        const changed = new Set(delta[type] ?? []);
        for (const n of names) if (changed.has(n)) need.add(`${type}\n${n}`);
      }
    }
    this.need = need;
    this.#affected = need.size > 0;
    if (need.size === 0) return false;
    for (const e of this.log) if (this.#satisfy(e)) return true;
    return false;
  }

  get affected(): boolean {
    return this.#affected;
  }

  #satisfy(e: LogEntry): boolean {
    const need = this.need!;
    if (need.size === 0) return false;
    const before = need.size;
    if (this.mode === 'sotw') need.delete(`${e.type}\n${e.version}`);
    else for (const n of e.names) need.delete(`${e.type}\n${n}`);
    if (need.size < before) this.lastNeededAck = Math.max(this.lastNeededAck, e.ackAt);
    if (need.size === 0) {
      this.convergedAt = this.lastNeededAck;
      return true;
    }
    return false;
  }
}

function decode(m: Record<string, unknown>, bytes: number, sotw: boolean): Decoded {
  const type = String(m['type_url'] ?? '');
  const nonce = String(m['nonce'] ?? '');
  if (sotw) {
    const resources = (m['resources'] as unknown[] | undefined)?.length ?? 0;
    return { type, version: String(m['version_info'] ?? ''), nonce, resources, names: [], bytes };
  }
  const res = (m['resources'] as { name?: string }[] | undefined) ?? [];
  const removed = (m['removed_resources'] as string[] | undefined) ?? [];
  return {
    type,
    version: String(m['system_version_info'] ?? ''),
    nonce,
    resources: res.length,
    names: [...res.map((r) => r.name ?? ''), ...removed],
    bytes,
  };
}

// ---------------------------------------------------------------------------------------

const clients: SimClient[] = [];
const channels: grpc.Client[] = [];
let synced = 0;
let errors = 0;
let firstError = '';
let affected = 0;
let converged = 0;
let expecting = false;
let cpuAtArm = process.cpuUsage();
let progressTimer: NodeJS.Timeout | undefined;
let t0 = 0;

function maybeConverged(): void {
  if (expecting && converged >= affected) {
    expecting = false;
    send({ ev: 'converged' });
  }
}

async function start(msg: Extract<ToChild, { cmd: 'start' }>): Promise<void> {
  const cpu0 = process.cpuUsage();
  for (let c = 0; c < msg.channels; c++) {
    channels.push(
      new grpc.Client(`127.0.0.1:${msg.port}`, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
        // Distinct options as well, so no two channels ever share a subchannel.
        'trellis.bench.channel': `${process.pid}-${c}`,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      }),
    );
  }
  const onSynced = (): void => {
    synced++;
    if (synced === msg.count) {
      if (progressTimer) clearInterval(progressTimer);
      const cpu = process.cpuUsage(cpu0);
      send({ ev: 'synced', synced, cpuMs: (cpu.user + cpu.system) / 1000 });
    }
  };
  const onConverged = (): void => {
    converged++;
    maybeConverged();
  };
  const onError = (c: SimClient): void => {
    errors++;
    if (firstError === '') firstError = `${c.nodeId}: ${c.error ?? ''}`;
  };
  progressTimer = setInterval(() => send({ ev: 'progress', synced, errors, firstError }), 1000);
  for (let i = 0; i < msg.count; i++) {
    const k = msg.first + i;
    const client = new SimClient(`${msg.prefix}-${k}`, msg.profiles[k % msg.profiles.length]!, msg.mode);
    clients.push(client);
    client.open(channels[i % channels.length]!, onSynced, onConverged, onError);
    // Open streams in batches so the server sees a ramp rather than one burst of thousands.
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
}

function report(): ChildReport {
  const cpu = process.cpuUsage(cpuAtArm);
  let responses = 0;
  let resources = 0;
  let bytes = 0;
  let withResponses = 0;
  const convergeMs: number[] = [];
  for (const c of clients) {
    responses += c.responses;
    resources += c.resources;
    bytes += c.bytes;
    if (c.responses > 0) withResponses++;
    if (c.convergedAt !== undefined) convergeMs.push(c.convergedAt - t0);
  }
  return {
    responses,
    resources,
    bytes,
    clientsWithResponses: withResponses,
    affected,
    convergeMs,
    errors,
    firstError,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

// A TCP sink for the parent's raw-network floor.
let sinkExpected = 0;
let sinkReceived = 0;
const sink = createServer((socket) => {
  socket.on('data', (chunk: Buffer) => {
    sinkReceived += chunk.length;
    if (sinkExpected > 0 && sinkReceived >= sinkExpected) {
      sinkExpected = 0;
      send({ ev: 'sinkDone', at: now() });
    }
  });
  socket.on('error', () => undefined);
});

function stop(): void {
  if (progressTimer) clearInterval(progressTimer);
  for (const c of clients) {
    try {
      c.stream?.cancel();
    } catch {
      // already closed
    }
  }
  for (const ch of channels) ch.close();
  sink.close();
  setTimeout(() => process.exit(0), 50).unref();
}

process.on('disconnect', () => process.exit(0));
process.on('message', (raw: unknown) => {
  const msg = raw as ToChild;
  try {
    switch (msg.cmd) {
      case 'start':
        void start(msg).catch((e: unknown) => send({ ev: 'fatal', message: String(e) }));
        break;
      case 'arm':
        cpuAtArm = process.cpuUsage();
        for (const c of clients) c.armed = true;
        send({ ev: 'armed' });
        break;
      case 'expect':
        t0 = msg.t0;
        affected = 0;
        converged = 0;
        for (const c of clients) {
          if (c.expect(msg.sotw, msg.delta)) converged++;
          if (c.affected) affected++;
        }
        expecting = true;
        maybeConverged();
        break;
      case 'report':
        send({ ev: 'report', report: report() });
        break;
      case 'sink':
        sinkReceived = 0;
        sinkExpected = msg.bytes;
        send({ ev: 'sinkReady' });
        break;
      case 'stop':
        stop();
        break;
    }
  } catch (e) {
    send({ ev: 'fatal', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});

loadXdsProtos();
sink.listen(0, '127.0.0.1', () => {
  const addr = sink.address();
  send({ ev: 'ready', sinkPort: typeof addr === 'object' && addr ? addr.port : 0 });
});
