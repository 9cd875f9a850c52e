// How the engine opens a byte stream to an upstream endpoint. The embedder substitutes the
// connector (HBONE: an HTTP/2 CONNECT stream inside mTLS); the default is plain TCP.
import { connect } from 'node:net';
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
