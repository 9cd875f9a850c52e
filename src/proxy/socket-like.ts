// HTTP/1.1 clients and servers in Node call socket methods (setKeepAlive, setNoDelay, ref,
// unref...) that an HTTP/2 stream (a tunnelled connection) does not have: no-ops there.
// Http2Stream's writev also garbles a batch that mixes strings (node:http writes its head as a
// latin1 string) with buffers; batches are joined into one buffer (one DATA frame) instead.
import type { Duplex } from 'node:stream';

const NOOPS = ['setKeepAlive', 'setNoDelay', 'ref', 'unref'] as const;
const patched = new WeakSet<Duplex>();

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };

export function socketLike<T extends Duplex>(stream: T): T {
  if (patched.has(stream)) return stream;
  patched.add(stream);
  const s = stream as unknown as Record<string, unknown>;
  for (const m of NOOPS) if (typeof s[m] !== 'function') s[m] = () => stream;
  const write = s._write as ((c: Buffer, e: string, cb: (e?: Error | null) => void) => void) | undefined;
  if (typeof s._writev === 'function' && typeof write === 'function') {
    s._writev = function (this: Duplex, chunks: Chunk[], cb: (e?: Error | null) => void): void {
      const bufs = chunks.map((c) => (typeof c.chunk === 'string' ? Buffer.from(c.chunk, c.encoding) : c.chunk));
      write.call(this, bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs), 'buffer', cb);
    };
  }
  return stream;
}
