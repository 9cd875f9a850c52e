// What the router sees of an upstream connection pool, whatever the protocol (h1-upstream.ts,
// h2-upstream.ts): a request is an UpstreamRequest plus UpstreamHandlers callbacks. Pools are per
// endpoint and per engine (Envoy's per-worker pools); connections come from the connector.
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { isPromise } from './filter.js';
import type { HeaderMap } from './headers.js';
import type { UpstreamConnector, UpstreamTarget } from './upstream.js';

/** What an upstream request is built from (the Exchange). */
export interface UpstreamSource {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Request headers without pseudo-headers and hop-by-hop headers; consumed (mutated) by the pool. */
  readonly headers: HeaderMap;
  /** The request body, or undefined when the request has none. */
  readonly body: Readable | undefined;
  bytesReceived: number;
}

/** overflow: the cluster's max_pending_requests is reached (no connection to wait for). */
export type UpstreamFailureReason = 'connect' | 'reset' | 'refused' | 'protocol' | 'overflow';

export interface UpstreamHandlers {
  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void;
  onUpstreamData(chunk: Buffer): void;
  onUpstreamEnd(trailers: HeaderMap | undefined): void;
  onUpstreamError(reason: UpstreamFailureReason, error: Error | undefined): void;
}

export interface UpstreamRequest {
  /** Response body flow control (downstream backpressure). */
  pause(): void;
  resume(): void;
  /** Cancels the request (reset); no handler is called afterwards. */
  abort(): void;
}

export interface UpstreamPool {
  readonly protocol: 'http1' | 'http2';
  readonly target: UpstreamTarget;
  request(src: UpstreamSource, handlers: UpstreamHandlers): UpstreamRequest;
  /** Keeps serving requests in flight, closes connections as they become idle. */
  drain(): void;
  /** Closes every connection now. */
  close(): void;
}

/** The connector failed: no connection was made (UF), as opposed to a reset of one (UC). */
export class UpstreamConnectError extends Error {}

/**
 * Opens a connection through the connector and resolves once it is connected, so connect
 * failures are told apart from resets. A TCP socket still connecting is waited for.
 */
export function openConnection(connector: UpstreamConnector, target: UpstreamTarget): Duplex | Promise<Duplex> {
  let r: Duplex | Promise<Duplex>;
  try {
    r = connector(target);
  } catch (e) {
    return Promise.reject(new UpstreamConnectError(String((e as Error).message ?? e), { cause: e }));
  }
  const fail = (e: unknown): never => {
    throw e instanceof UpstreamConnectError
      ? e
      : new UpstreamConnectError(String((e as Error).message ?? e), { cause: e });
  };
  const ready = isPromise<Duplex>(r) ? r.then(whenConnected, fail) : whenConnected(r);
  return isPromise<Duplex>(ready) ? ready.then(undefined, fail) : ready;
}

function whenConnected(s: Duplex): Duplex | Promise<Duplex> {
  if (!(s as Partial<Socket>).connecting) return s;
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => {
      s.removeListener('connect', onConnect);
      reject(e);
    };
    const onConnect = () => {
      s.removeListener('error', onError);
      resolve(s);
    };
    s.once('error', onError);
    s.once('connect', onConnect);
  });
}
