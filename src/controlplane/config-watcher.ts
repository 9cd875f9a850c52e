// The control plane's view of its config directory: load, watch, reload. A reload with
// errors is rejected as a whole and the last good configuration keeps serving; the
// rejection is kept for the admin API and logged with its reasons.
import type { Diagnostic } from '../config/diagnostic.js';
import { loadPaths } from '../config/load.js';
import type { Resource } from '../config/resource.js';
import { TreeWatch } from './tree-watch.js';

export interface ConfigState {
  /** The configuration in force. */
  readonly resources: readonly Resource[];
  /** Problems of the configuration in force (warnings, infos). */
  readonly diagnostics: readonly Diagnostic[];
  readonly generation: number;
  readonly loadedAt: Date;
  /** The last rejected reload, if it came after the configuration in force. */
  readonly rejected?: { readonly at: Date; readonly errors: readonly Diagnostic[] };
}

export interface ConfigWatcherOptions {
  /** What to load; a function, since applied resources may appear or vanish. */
  readonly paths: () => readonly string[];
  /** Directories to watch for changes. */
  readonly watch: readonly string[];
  /** Changes within this window become one reload. */
  readonly debounceMs?: number;
  readonly onChange: (state: ConfigState) => void;
  readonly onReject?: (errors: readonly Diagnostic[]) => void;
}

export class ConfigWatcher {
  readonly #opts: ConfigWatcherOptions;
  #state: ConfigState;
  #watch: TreeWatch | undefined;
  #timer: NodeJS.Timeout | undefined;

  /** Loads once; throws nothing — an invalid initial config starts empty and reports why. */
  constructor(opts: ConfigWatcherOptions) {
    this.#opts = opts;
    const first = loadPaths(opts.paths());
    const errors = first.diagnostics.filter((d) => d.severity === 'error');
    this.#state =
      errors.length === 0
        ? { resources: first.resources, diagnostics: first.diagnostics, generation: 1, loadedAt: new Date() }
        : { resources: [], diagnostics: [], generation: 0, loadedAt: new Date(), rejected: { at: new Date(), errors } };
  }

  get state(): ConfigState {
    return this.#state;
  }

  start(): void {
    this.#watch = new TreeWatch(this.#opts.watch, () => this.#schedule());
    this.#watch.start();
  }

  /** Re-reads now (tests and `trellis apply` use this instead of waiting for the watcher). */
  reload(): ConfigState {
    const next = loadPaths(this.#opts.paths());
    const errors = next.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) {
      this.#state = { ...this.#state, rejected: { at: new Date(), errors } };
      this.#opts.onReject?.(errors);
      return this.#state;
    }
    this.#state = {
      resources: next.resources,
      diagnostics: next.diagnostics,
      generation: this.#state.generation + 1,
      loadedAt: new Date(),
    };
    this.#opts.onChange(this.#state);
    return this.#state;
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#watch?.close();
    this.#watch = undefined;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.reload(), this.#opts.debounceMs ?? 100);
  }
}
