// Responses the engine makes itself: errors (404 no route, 503, 504...), filter denials, direct
// responses and redirects. A locally generated error for a gRPC request is a trailers-only
// response (HTTP 200 + grpc-status), as Envoy sends it, so gRPC clients see a status code.
import type { LocalReply } from './context.js';
import type { Exchange } from './exchange.js';
import type { HeaderMap } from './headers.js';

/** A filter threw: the request is answered, not dropped. */
export const FILTER_ERROR: LocalReply = { status: 500, body: 'filter error', details: 'filter_error' };

/** Envoy's Grpc::Utility::httpToGrpcStatus. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** grpc-message is percent-encoded outside printable ASCII (gRPC over HTTP/2 spec). */
export function encodeGrpcMessage(s: string): string {
  let out = '';
  for (const b of Buffer.from(s)) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** An error (or filter) reply. After the response has started, the stream is reset instead. */
export function sendLocalReply(ex: Exchange, reply: LocalReply): void {
  if (reply.flag) ex.addResponseFlag(reply.flag);
  if (reply.details) ex.details = reply.details;
  if (ex.closed) return;
  if (ex.responseStarted) {
    ex.reset();
    return;
  }
  const body = reply.body ?? '';
  if (ex.isGrpc) {
    const headers: HeaderMap = {
      'content-type': 'application/grpc',
      'grpc-status': String(reply.grpcStatus ?? grpcStatusForHttp(reply.status)),
      'grpc-message': encodeGrpcMessage(body),
      ...reply.headers,
    };
    // Headers a filter added may be refused: then without them.
    if (!ex.respond(200, headers, true, false))
      ex.respond(200, { 'content-type': 'application/grpc', 'grpc-status': headers['grpc-status'] }, true, false);
    return;
  }
  sendResponse(ex, reply.status, body === '' ? undefined : Buffer.from(body), reply.headers);
}

/** A complete response with an optional body (direct responses, redirects, local errors). */
export function sendResponse(ex: Exchange, status: number, body: Buffer | undefined, extra?: HeaderMap): void {
  const headers: HeaderMap = body
    ? { 'content-type': 'text/plain', 'content-length': String(body.length) }
    : { 'content-length': '0' };
  const base = extra ? { ...headers } : undefined;
  if (extra) Object.assign(headers, extra);
  // Headers a filter added may be refused: then without them.
  if (!ex.respond(status, headers, body === undefined, false) && base)
    ex.respond(status, base, body === undefined, false);
  if (body) {
    ex.write(body);
    ex.finish(undefined);
  }
}
