// The HBONE listener: HTTP/2 over mutual TLS (ALPN h2) on port 15008. Each CONNECT stream is
// one tunnelled connection to `:authority` (address:port, or host:port for a waypoint). The
// certificate presented is chosen by SNI (the identity the caller expects); the caller's
// certificate must be an X.509-SVID of our trust domain, verified before any stream is served.
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type Http2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Credentials } from './credentials.js';
import { verifyPeer } from './peer.js';

export interface TunnelRequest {
  readonly authority: string;
  /** The caller's SPIFFE ID (verified). */
  readonly peerIdentity: string;
  /** The identity we answered as (from SNI). */
  readonly localIdentity: string | undefined;
  readonly peerAddress: string;
  readonly peerPort: number;
  readonly stream: ServerHttp2Stream;
}

export interface HboneServerOptions {
  readonly credentials: () => Credentials;
  readonly onTunnel: (t: TunnelRequest) => void;
  /** A connection refused before any stream (TLS failure, peer not an SVID of ours). */
  readonly onRefused: (r: { peerAddress: string; reason: string; message: string; sni?: string }) => void;
}

/** HTTP/2 settings for tunnels: big windows (bulk TCP through one stream) and many streams. */
export const HBONE_SETTINGS = { initialWindowSize: 4 * 1024 * 1024, maxConcurrentStreams: 10_000 };
const SESSION_WINDOW = 16 * 1024 * 1024;

const verified = new WeakMap<Http2Session, string>();

export function createHboneServer(opts: HboneServerOptions): Http2SecureServer {
  const server = createSecureServer({
    SNICallback: (sni, cb) => {
      const ctx = opts.credentials().contextForSni(sni);
      if (ctx) cb(null, ctx);
      else cb(new Error(`no identity for SNI ${sni}`));
    },
    requestCert: true,
    // Verified below with the SPIFFE rules (and a reason for the flow record).
    rejectUnauthorized: false,
    ALPNProtocols: ['h2'],
    settings: HBONE_SETTINGS,
    minVersion: 'TLSv1.2',
  });
  server.on('tlsClientError', (err, socket) => {
    opts.onRefused({ peerAddress: socket.remoteAddress ?? '', reason: 'tls-handshake', message: err.message });
  });
  // Verified per session (http2 hands streams a proxy of the socket, so key by session).
  server.on('session', (session) => {
    session.on('error', () => undefined);
    const socket = session.socket as TLSSocket;
    const sni = (socket as TLSSocket & { servername?: string | false }).servername || undefined;
    const result = verifyPeer(socket, opts.credentials().bundles);
    if (!result.ok) {
      opts.onRefused({
        peerAddress: socket.remoteAddress ?? '',
        reason: result.reason,
        message: result.message,
        ...(sni ? { sni } : {}),
      });
      session.destroy();
      return;
    }
    verified.set(session, result.spiffeId);
    session.setLocalWindowSize(SESSION_WINDOW);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    const session = stream.session;
    const socket = session?.socket as TLSSocket | undefined;
    const peerIdentity = session ? verified.get(session) : undefined;
    if (!socket || !peerIdentity) {
      stream.respond({ ':status': 401 }, { endStream: true });
      return;
    }
    if (headers[constants.HTTP2_HEADER_METHOD] !== 'CONNECT' || !headers[':authority']) {
      stream.respond({ ':status': 405 }, { endStream: true });
      return;
    }
    const sni = (socket as TLSSocket & { servername?: string | false }).servername || '';
    opts.onTunnel({
      authority: String(headers[':authority']),
      peerIdentity,
      localIdentity: opts.credentials().identityForSni(sni),
      peerAddress: socket.remoteAddress ?? '',
      peerPort: socket.remotePort ?? 0,
      stream,
    });
  });
  return server;
}
