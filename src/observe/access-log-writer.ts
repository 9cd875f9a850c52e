// A buffered, non-blocking line writer for access logs: requests append lines to memory, a timer
// writes them out in batches through an fs stream, and when the disk (or the reader of stdout)
// cannot keep up, lines over the bound are dropped and counted instead of slowing requests down
// or growing memory without limit (Envoy's access log flush behaves the same way).
//
// Several writers may share one file: every node of `trellis up` and every worker of a node
// open the same PATH with O_APPEND. Each batch goes out as one write(2) of whole lines, and an
// O_APPEND write to a regular file is placed at the end as a unit, so lines never interleave.
// On stdout (`-`, often a pipe shared with the workers and the flow records) a batch is cut into
// writes of at most PIPE_BUF bytes, the size the kernel keeps atomic on a pipe.
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';

/** Linux PIPE_BUF: writes up to this size to a pipe are not interleaved with other writers'. */
const PIPE_BUF = 4096;
/** Largest single write to a file: big enough to batch, small enough to keep memory flat. */
const FILE_CHUNK = 64 * 1024;

export interface AccessLogWriterOptions {
  /** A file path (opened for append, created if missing) or "-" for stdout. */
  readonly path: string;
  /** Lines waiting (in memory and in the stream) above this many bytes are dropped; default 4 MiB. */
  readonly maxBufferedBytes?: number;
  /** How often buffered lines are written; default 100 ms. */
  readonly flushIntervalMs?: number;
  /** Told once when the file cannot be written (lines are dropped from then on). */
  readonly onError?: (e: Error) => void;
}

export class AccessLogWriter {
  readonly #out: Writable;
  readonly #ownsStream: boolean;
  readonly #chunk: number;
  readonly #max: number;
  readonly #intervalMs: number;
  readonly #onError: ((e: Error) => void) | undefined;
  #lines: string[] = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #blocked = false;
  #failed = false;
  #closed = false;
  #dropped = 0;
  #written = 0;

  constructor(opts: AccessLogWriterOptions) {
    this.#max = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.#intervalMs = opts.flushIntervalMs ?? 100;
    this.#onError = opts.onError;
    if (opts.path === '-') {
      this.#out = process.stdout;
      this.#ownsStream = false;
      this.#chunk = PIPE_BUF;
    } else {
      const s: WriteStream = createWriteStream(opts.path, { flags: 'a' });
      this.#out = s;
      this.#ownsStream = true;
      this.#chunk = FILE_CHUNK;
    }
    this.#out.on('error', (e: Error) => {
      if (this.#failed) return;
      this.#failed = true;
      this.#dropped += this.#lines.length;
      this.#lines = [];
      this.#bytes = 0;
      this.#onError?.(e);
    });
    this.#out.on('drain', () => {
      this.#blocked = false;
      if (this.#lines.length > 0) this.#schedule();
    });
  }

  /** Lines dropped because the buffer was over its bound or the file failed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Lines handed to the stream so far. */
  get written(): number {
    return this.#written;
  }

  /** Queues one line (without its newline). Never blocks; false when the line was dropped. */
  write(line: string): boolean {
    // Bytes, roughly: access log lines are mostly ASCII, and the bound is only a bound.
    const n = line.length + 1;
    if (this.#closed || this.#failed || this.#bytes + this.#out.writableLength + n > this.#max) {
      this.#dropped++;
      return false;
    }
    this.#lines.push(line);
    this.#bytes += n;
    this.#schedule();
    return true;
  }

  #schedule(): void {
    if (this.#timer || this.#blocked) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, this.#intervalMs);
    // Pending lines alone never keep the process alive; close() flushes them.
    this.#timer.unref();
  }

  /** Writes what is buffered, in chunks of whole lines, until the stream asks to wait. */
  /** `force` (on close): write everything, the stream keeps what it cannot write yet. */
  #flush(force = false): void {
    if (this.#failed) return;
    const lines = this.#lines;
    let i = 0;
    while (i < lines.length && (force || !this.#blocked)) {
      let chunk = '';
      const start = i;
      // A line longer than a chunk goes out alone (atomicity cannot be kept for it anyway).
      while (i < lines.length && (i === start || chunk.length + lines[i]!.length + 1 <= this.#chunk)) {
        chunk += `${lines[i]!}\n`;
        i++;
      }
      this.#bytes -= chunk.length;
      this.#written += i - start;
      if (!this.#out.write(chunk)) this.#blocked = true;
    }
    this.#lines = i === lines.length ? [] : lines.slice(i);
    if (this.#lines.length > 0 && !this.#blocked) this.#schedule();
  }

  /** Writes every buffered line, then closes the file (stdout stays open). Later lines are dropped. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#flush(true);
    await new Promise<void>((resolve) => {
      if (this.#failed) return resolve();
      if (this.#ownsStream) {
        this.#out.once('error', () => resolve());
        this.#out.end(() => resolve());
      } else if (this.#out.writableLength === 0) resolve();
      else this.#out.once('drain', () => resolve());
    });
  }
}
