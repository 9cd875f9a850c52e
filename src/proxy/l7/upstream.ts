// How the engine opens a byte stream to an upstream endpoint. The embedder substitutes the
// connector (HBONE: an HTTP/2 CONNECT stream inside mTLS); the default is plain TCP.
import { connect, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EnvoyObject } from './config.js';

export interface UpstreamTarget {
  readonly address: string;
  readonly port: number;
  readonly clusterName: string;
  /** The Cluster resource (transport_socket, metadata... for the connector). */
  readonly cluster: EnvoyObject;
  /** The LbEndpoint. */
  readonly endpoint: EnvoyObject;
}

export type UpstreamConnector = (target: UpstreamTarget) => Duplex | Promise<Duplex>;

export const tcpConnector: UpstreamConnector = (target) => {
  const socket = connect({ host: target.address, port: target.port });
  socket.setNoDelay(true);
  return socket;
};

type SocketShim = Partial<Pick<Socket, 'setKeepAlive' | 'setNoDelay' | 'setTimeout' | 'ref' | 'unref'>>;

/**
 * node:http's Agent and ClientRequest call socket-only methods (setKeepAlive, ref, unref,
 * setNoDelay, setTimeout) on pooled connections; a tunnel stream does not have them. Missing
 * ones become no-ops so that any Duplex can be pooled.
 */
export function socketLike(stream: Duplex): Duplex {
  const s = stream as Duplex & SocketShim;
  const self = (): Socket => s as unknown as Socket;
  s.setKeepAlive ??= self;
  s.setNoDelay ??= self;
  s.setTimeout ??= self;
  s.ref ??= self;
  s.unref ??= self;
  return stream;
}
