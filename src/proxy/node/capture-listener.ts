// The node proxy's capture listener: the port the nft capture rules redirect pods' outbound
// TCP to (15001, Istio's outbound capture port; the same class serves inbound capture on
// 15006). Every accepted connection was addressed to somewhere else; the kernel's conntrack
// entry remembers where (SO_ORIGINAL_DST), and the handler gets that original destination with
// the client's address. A connection addressed to the listener itself was not redirected
// (something dialled the capture port directly): proxying it to its "original destination"
// would connect the proxy to itself forever, so it is closed.
import { createServer, type Server, type Socket } from 'node:net';
import type { LogSink } from './plaintext-inbound.js';

export const OUTBOUND_CAPTURE_PORT = 15001;

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export type CaptureHandler = (socket: Socket, original: Endpoint, source: Endpoint) => void;

export interface CaptureListenerOptions {
  /** Default 15001. 0 picks a free port (tests). */
  readonly port?: number;
  /** Default 0.0.0.0 (the capture rules are IPv4). */
  readonly host?: string;
  readonly handler: CaptureHandler;
  readonly log?: LogSink;
  /**
   * How the original destination is read: SO_ORIGINAL_DST (src/datapath/linux/original-dst.ts,
   * given by the caller: the proxy does not reach into the datapath), or a stand-in in tests.
   */
  readonly resolve: (socket: Socket) => Endpoint;
}

/** "::ffff:10.0.0.1" (an IPv4 peer on a dual-stack socket) -> "10.0.0.1". */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class CaptureListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #opts: CaptureListenerOptions;

  private constructor(opts: CaptureListenerOptions) {
    this.#opts = opts;
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
  }

  static async start(opts: CaptureListenerOptions): Promise<CaptureListener> {
    const l = new CaptureListener(opts);
    await new Promise<void>((resolve, reject) => {
      l.#server.once('error', reject);
      l.#server.listen(opts.port ?? OUTBOUND_CAPTURE_PORT, opts.host ?? '0.0.0.0', () => {
        l.#server.off('error', reject);
        resolve();
      });
    });
    return l;
  }

  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** Stops listening and destroys the connections it accepted that are still open. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const source: Endpoint = { address: unmapped(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
    let original: Endpoint;
    try {
      const o = this.#opts.resolve(socket);
      original = { address: unmapped(o.address), port: o.port };
    } catch (e) {
      this.#opts.log?.('warn', 'capture: no original destination; connection closed', {
        source: `${source.address}:${source.port}`,
        error: (e as Error).message,
      });
      socket.destroy();
      return;
    }
    if (original.port === socket.localPort && original.address === unmapped(socket.localAddress ?? '')) {
      this.#opts.log?.('warn', 'capture: connection addressed to the capture port itself (not redirected); closed', {
        source: `${source.address}:${source.port}`,
        destination: `${original.address}:${original.port}`,
      });
      socket.destroy();
      return;
    }
    this.#opts.handler(socket, original, source);
  }
}
