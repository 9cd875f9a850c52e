// HBONE client: one HTTP/2-over-mTLS session per (our identity, the peer's expected identity,
// peer address), multiplexing every tunnelled connection as a CONNECT stream (ztunnel's pool
// key). The peer must present exactly the identity the destination is expected to have; the
// session is used only after that check, so no tunnel byte reaches an impostor.
import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Credentials } from './credentials.js';
import { sniFor } from './credentials.js';
import { verifyPeer } from './peer.js';
import { HBONE_SETTINGS } from './server.js';

export interface TunnelTarget {
  /** The peer's HBONE listener, "ip:port". */
  readonly peer: string;
  /** CONNECT :authority: the destination "ip:port" (or "host:port" for a waypoint). */
  readonly authority: string;
  readonly sourceIdentity: string;
  readonly destinationIdentity: string;
}

export class TunnelError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    /** The HTTP status the peer answered the CONNECT with, when it did (403: denied by policy). */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'TunnelError';
  }
}

interface PooledSession {
  readonly session: ClientHttp2Session;
  readonly ready: Promise<void>;
}

export class HbonePool {
  readonly #credentials: () => Credentials;
  readonly #sessions = new Map<string, PooledSession>();

  constructor(credentials: () => Credentials) {
    this.#credentials = credentials;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** A tunnelled connection; rejects with a TunnelError (reason) when the peer or the destination refuses. */
  async open(t: TunnelTarget): Promise<ClientHttp2Stream> {
    const pooled = this.#session(t);
    await pooled.ready;
    const stream = pooled.session.request(
      { [constants.HTTP2_HEADER_METHOD]: 'CONNECT', [constants.HTTP2_HEADER_AUTHORITY]: t.authority },
      { endStream: false },
    );
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => reject(new TunnelError('stream-error', e.message));
      stream.once('error', fail);
      stream.once('response', (headers) => {
        stream.off('error', fail);
        const status = Number(headers[':status']);
        if (status === 200) {
          resolve(stream);
          return;
        }
        const reason = String(headers['trellis-reason'] ?? `status-${status}`);
        stream.destroy();
        reject(new TunnelError(reason, `${t.peer} refused the tunnel to ${t.authority}: ${status} ${reason}`, status));
      });
    });
  }

  #session(t: TunnelTarget): PooledSession {
    const key = `${t.sourceIdentity}|${t.destinationIdentity}|${t.peer}`;
    const hit = this.#sessions.get(key);
    if (hit && !hit.session.closed && !hit.session.destroyed) return hit;
    const creds = this.#credentials();
    const svid = creds.svid(t.sourceIdentity);
    const [host, port] = splitHostPort(t.peer);
    const session = h2connect(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, {
      cert: svid?.chain,
      key: svid?.key,
      ca: creds.bundlePem || undefined,
      servername: sniFor(t.destinationIdentity),
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      settings: HBONE_SETTINGS,
      minVersion: 'TLSv1.2',
    });
    const ready = new Promise<void>((resolve, reject) => {
      if (!svid) {
        reject(new TunnelError('no-certificate', `no SVID for ${t.sourceIdentity} on this node`));
        session.destroy();
        return;
      }
      session.once('error', (e) => reject(new TunnelError('connect-failed', `${t.peer}: ${e.message}`)));
      session.once('connect', () => {
        const result = verifyPeer(session.socket as TLSSocket, creds.bundles, t.destinationIdentity);
        if (!result.ok) {
          reject(new TunnelError(result.reason, `${t.peer} is not ${t.destinationIdentity}: ${result.message}`));
          session.destroy();
          return;
        }
        session.setLocalWindowSize(16 * 1024 * 1024);
        resolve();
      });
    });
    ready.catch(() => undefined);
    session.on('error', () => undefined);
    const pooled = { session, ready };
    session.once('close', () => {
      if (this.#sessions.get(key) === pooled) this.#sessions.delete(key);
    });
    ready.catch(() => {
      if (this.#sessions.get(key) === pooled) this.#sessions.delete(key);
    });
    this.#sessions.set(key, pooled);
    return pooled;
  }

  close(): void {
    for (const p of this.#sessions.values()) p.session.close();
    this.#sessions.clear();
  }
}

export function splitHostPort(hp: string): [string, number] {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i).replace(/^\[|\]$/g, ''), Number(hp.slice(i + 1))];
}
