// Polling without pile-ups: a tick is skipped while the previous request is still in flight,
// and a request that hangs is aborted rather than blocking every later tick.

const REQUEST_TIMEOUT_MS = 10_000;

/** Why a request was aborted on purpose (its answer would be stale): not an error to show. */
const RESTARTED = new DOMException('restarted', 'AbortError');

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Throws HttpError on a non-2xx answer, with the API's `{"error": "..."}` text when it sent one. */
export async function checkOk(res: Response): Promise<Response> {
  if (res.ok) return res;
  let message = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: unknown };
    if (typeof body.error === 'string') message = body.error;
  } catch {
    // Not JSON: the status line says enough.
  }
  throw new HttpError(res.status, message);
}

export async function getJson<T>(url: string, signal: AbortSignal): Promise<T> {
  const res = await checkOk(await fetch(url, { signal, cache: 'no-store' }));
  return (await res.json()) as T;
}

export class Poller {
  paused = false;
  #inFlight: AbortController | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly task: (signal: AbortSignal) => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    void this.tick();
    setInterval(() => void this.tick(), this.intervalMs);
  }

  /** Drops the request in flight (its answer is for old parameters) and polls now. */
  restart(): void {
    this.#inFlight?.abort(RESTARTED);
    this.#inFlight = undefined;
    void this.tick();
  }

  async tick(): Promise<void> {
    if (this.paused || this.#inFlight) return;
    const controller = new AbortController();
    this.#inFlight = controller;
    const timeout = setTimeout(() => controller.abort(new Error('request timed out')), REQUEST_TIMEOUT_MS);
    try {
      await this.task(controller.signal);
    } catch (error) {
      if (controller.signal.reason !== RESTARTED) this.onError(controller.signal.reason ?? error);
    } finally {
      clearTimeout(timeout);
      if (this.#inFlight === controller) this.#inFlight = undefined;
    }
  }
}
