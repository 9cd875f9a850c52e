// Watches config directories for any change, including files replaced by rename (how editors,
// `sed -i`, `kubectl`-style tools and atomic writers save). Node 20's recursive fs.watch on
// Linux watches each file once and keeps watching the replaced inode, so after the first
// atomic save of a file its changes go unseen; here every directory gets its own
// non-recursive watch (inotify on the directory reports renames into it), and the set of
// watched directories follows the tree. Skips what the loader skips (dot-directories such as
// the state dir `.trellis`, node_modules), so logs written there do not trigger reloads.
import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

function skipped(name: string): boolean {
  return name.startsWith('.') || name === 'node_modules';
}

function directoriesUnder(root: string, out: Set<string>): void {
  out.add(root);
  let entries;
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory() && !skipped(e.name)) directoriesUnder(join(root, e.name), out);
}

export class TreeWatch {
  readonly #roots: readonly { dir: string; only?: string }[];
  readonly #onChange: () => void;
  readonly #watchers = new Map<string, FSWatcher>();

  /** `paths`: directories (watched with everything below) or files (their directory, filtered to the file). */
  constructor(paths: readonly string[], onChange: () => void) {
    this.#roots = paths.map((p) => {
      const abs = resolve(p);
      try {
        if (statSync(abs).isDirectory()) return { dir: abs };
      } catch {
        // Not there (yet): watch where it would appear.
      }
      return { dir: dirname(abs), only: basename(abs) };
    });
    this.#onChange = onChange;
  }

  start(): void {
    this.#sync();
  }

  /** Adds watches for new directories and drops those of removed ones. */
  #sync(): void {
    const wanted = new Map<string, string | undefined>();
    for (const r of this.#roots) {
      if (r.only !== undefined) wanted.set(r.dir, r.only);
      else {
        const dirs = new Set<string>();
        directoriesUnder(r.dir, dirs);
        for (const d of dirs) wanted.set(d, undefined);
      }
    }
    for (const [dir, w] of this.#watchers) {
      if (!wanted.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const [dir, only] of wanted) {
      if (this.#watchers.has(dir)) continue;
      try {
        const w = watch(dir, (_event, name) => {
          const n = name?.toString();
          if (only !== undefined && n !== undefined && n !== only) return;
          if (n !== undefined && skipped(n)) return;
          this.#sync();
          this.#onChange();
        });
        w.on('error', () => {
          w.close();
          this.#watchers.delete(dir);
        });
        this.#watchers.set(dir, w);
      } catch {
        // Gone meanwhile: picked up again by the next change in its parent.
      }
    }
  }

  close(): void {
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }
}
