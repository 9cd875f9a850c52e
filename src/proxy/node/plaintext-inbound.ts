// The plaintext inbound path of a node (PeerAuthentication PERMISSIVE or DISABLE): one TCP
// listener per local workload port that accepts plaintext, on the node's address at the port
// the translation gave it. Each accepted connection gets the same L4 authorization as an HBONE
// tunnel to that port, but with no principal (a plaintext peer proves no identity, so
// principal-based ALLOW rules do not match it, as in Istio), then is spliced to the workload.
// Every connection gets a flow record with `tls: "none"`. A port that turns STRICT loses its
// listener, and the connections it had are cut: tightening the mode takes effect at once.
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import type { FlowRecord } from '../../observe/flows.js';
import type { RbacDecision } from '../rbac/evaluate.js';
import type { Bind, PlaintextInbound } from './node-config.js';

export type FlowSink = (f: Omit<FlowRecord, 'time' | 'node'>, phase: 'open' | 'close' | 'once') => void;
export type LogSink = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

interface Running {
  readonly server: Server;
  readonly sockets: Set<Socket>;
}

function keyOf(p: PlaintextInbound): string {
  return `${p.name}@${p.address}:${p.port}@${p.target.address}:${p.target.port}@${p.identity}`;
}

function listen(server: Server, bind: Bind): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(bind.port, bind.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export class PlaintextInboundListeners {
  readonly #flow: FlowSink;
  readonly #log: LogSink;
  readonly #running = new Map<string, Running>();
  /** The current config of each listener (by key): its RBAC is read per connection, so a policy change needs no rebind. */
  #current = new Map<string, PlaintextInbound>();

  constructor(flow: FlowSink, log: LogSink) {
    this.#flow = flow;
    this.#log = log;
  }

  /** Opens the listeners wanted, closes those no longer wanted; unchanged ones keep their sockets. */
  async apply(wanted: readonly PlaintextInbound[]): Promise<void> {
    this.#current = new Map(wanted.map((p) => [keyOf(p), p]));
    for (const [key, r] of this.#running) {
      if (this.#current.has(key)) continue;
      this.#running.delete(key);
      await stop(r);
    }
    for (const [key, p] of this.#current) {
      if (this.#running.has(key)) continue;
      const sockets = new Set<Socket>();
      const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
        sockets.add(client);
        client.once('close', () => sockets.delete(client));
        this.#accept(key, client, sockets);
      });
      const address = `${p.address}:${p.port}`;
      try {
        await listen(server, p);
        this.#running.set(key, { server, sockets });
        this.#log('info', 'plaintext inbound listening', {
          workload: p.workload,
          address,
          target: `${p.target.address}:${p.target.port}`,
          mtls: p.mode,
        });
      } catch (e) {
        this.#log('error', 'plaintext inbound failed to listen', { workload: p.workload, address, error: String(e) });
      }
    }
  }

  #accept(key: string, client: Socket, sockets: Set<Socket>): void {
    client.on('error', () => undefined);
    const p = this.#current.get(key);
    const source = { address: client.remoteAddress ?? '' };
    if (!p) {
      client.destroy();
      return;
    }
    const target = `${p.target.address}:${p.target.port}`;
    const destination = { identity: p.identity, address: target, workload: p.workload };
    const base = { direction: 'inbound', source, destination, via: 'plaintext', tls: 'none' } as const;
    const decision = p.rbac.evaluate({
      sourceIp: source.address,
      ...(client.remotePort !== undefined ? { sourcePort: client.remotePort } : {}),
      destinationIp: p.target.address,
      destinationPort: p.target.port,
    });
    if (!decision.allowed) {
      client.destroy();
      this.#flow(
        {
          ...base,
          verdict: 'DENIED',
          reason: deniedReason(decision, p.allowPolicies),
          ...(decision.policy !== undefined ? { policy: decision.policy } : {}),
        },
        'once',
      );
      return;
    }
    const started = Date.now();
    const up = netConnect({ port: p.target.port, host: p.target.address, noDelay: true, allowHalfOpen: true });
    sockets.add(up);
    up.once('close', () => sockets.delete(up));
    let opened = false;
    up.once('connect', () => {
      opened = true;
      this.#flow({ ...base, verdict: 'FORWARDED' }, 'open');
      client.pipe(up).pipe(client);
    });
    up.once('error', (e: Error) => {
      client.destroy();
      if (!opened) this.#flow({ ...base, verdict: 'ERROR', reason: `workload-unreachable: ${e.message}` }, 'once');
    });
    client.once('close', () => up.destroy());
    up.once('close', () => {
      // end, not destroy: what the workload sent may still be queued for the client.
      client.end();
      if (opened)
        this.#flow(
          {
            ...base,
            verdict: 'FORWARDED',
            // The workload socket's own counters: what it answered is what the peer was sent.
            bytesSent: up.bytesRead,
            bytesReceived: up.bytesWritten,
            durationMs: Date.now() - started,
          },
          'close',
        );
    });
  }

  /** Closes every listener and its connections. */
  async close(): Promise<void> {
    this.#current = new Map();
    const all = [...this.#running.values()];
    this.#running.clear();
    await Promise.all(all.map(stop));
  }
}

/**
 * A flow record's reason for an L4 denial: the DENY policy that matched names itself; when no
 * ALLOW policy matched, the ALLOW policies in force are named, so the record says what to change.
 */
export function deniedReason(decision: RbacDecision, allowPolicies: readonly string[]): string {
  if (decision.policy !== undefined || allowPolicies.length === 0) return `denied: ${decision.reason}`;
  return `denied: ${decision.reason} (ALLOW policies in force: ${allowPolicies.join(', ')})`;
}

function stop(r: Running): Promise<void> {
  for (const s of r.sockets) s.destroy();
  return new Promise<void>((resolve) => r.server.close(() => resolve()));
}
