// The destination a redirected TCP connection was really addressed to, through the
// native/original-dst addon (getsockopt SO_ORIGINAL_DST: Node has no API for it). The addon is
// optional: it is built by `npm run build:native` and loaded lazily, once, on first use, so
// every other part of Trellis works without a C toolchain; `captureAvailable()` says why
// capture cannot work when it cannot.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

interface Addon {
  originalDst(fd: number): OriginalDestination;
}

// This module runs as dist/src/datapath/linux/original-dst.js; the addon is built in place.
const ADDON_PATH = fileURLToPath(
  new URL('../../../../native/original-dst/build/Release/original_dst.node', import.meta.url),
);

let loaded: { readonly addon: Addon } | { readonly reason: string } | undefined;

function load(): { readonly addon: Addon } | { readonly reason: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux')
    loaded = { reason: `transparent capture needs Linux (this is ${process.platform})` };
  else if (!existsSync(ADDON_PATH))
    loaded = { reason: 'the original-dst addon is not built: run npm run build:native' };
  else {
    try {
      loaded = { addon: createRequire(import.meta.url)(ADDON_PATH) as Addon };
    } catch (e) {
      loaded = { reason: `the original-dst addon (${ADDON_PATH}) does not load: ${(e as Error).message}` };
    }
  }
  return loaded;
}

/** Undefined when original destinations can be read, else why not. */
export function captureAvailable(): string | undefined {
  const l = load();
  return 'reason' in l ? l.reason : undefined;
}

/**
 * The file descriptor of a connected net.Socket. Node keeps it on the libuv handle, which is
 * not public API (but stable for years, and what every SO_* addon reads); this is the one place
 * that reaches into it.
 */
function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
}

/**
 * Where the peer addressed this connection before nat redirected it. For a connection that
 * was not redirected, that is simply the socket's own local address. Throws when the addon is
 * unavailable, the socket has no descriptor (closed), or the kernel has no conntrack entry
 * for it (no nat in this network namespace: ENOENT).
 */
export function originalDestination(socket: Socket): OriginalDestination {
  const l = load();
  if ('reason' in l) throw new Error(l.reason);
  const fd = socketFd(socket);
  if (fd === undefined) throw new Error('original destination: the socket has no file descriptor (closed?)');
  return l.addon.originalDst(fd);
}
