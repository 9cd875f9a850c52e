// The embedded store behind `trellis apply|delete`: resources applied through the admin API,
// kept as one YAML file next to the watched config (a dot-directory, which config walks skip)
// and loaded with it. Every change is tried against the whole configuration first: an apply
// that would not load (schema errors, a duplicate of a file's resource) is refused and
// nothing changes.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import type { Diagnostic } from '../config/diagnostic.js';
import { loadDocuments, loadPaths } from '../config/load.js';
import { parseConfigText } from '../config/source/read-files.js';
import { isPlainObject } from '../config/schema/schema.js';
import { kindByName } from '../config/kinds/registry.js';

export interface StoreResult {
  readonly ok: boolean;
  readonly status: number;
  readonly changed: readonly string[];
  readonly diagnostics: readonly Diagnostic[];
  readonly message?: string;
}

function keyOfDoc(v: Record<string, unknown>): string {
  const meta = isPlainObject(v.metadata) ? v.metadata : {};
  const group =
    typeof v.apiVersion === 'string' && v.apiVersion.includes('/')
      ? v.apiVersion.slice(0, v.apiVersion.lastIndexOf('/'))
      : '';
  return `${group}/${String(v.kind)}/${typeof meta.namespace === 'string' ? meta.namespace : ''}/${String(meta.name)}`;
}

export class AppliedStore {
  readonly file: string;
  readonly #configPaths: readonly string[];

  constructor(stateDir: string, configPaths: readonly string[]) {
    this.file = join(stateDir, 'applied.yaml');
    this.#configPaths = configPaths;
  }

  /** The paths to load: the user's config plus the applied resources. */
  paths(): string[] {
    return existsSync(this.file) ? [...this.#configPaths, this.file] : [...this.#configPaths];
  }

  #read(): Map<string, Record<string, unknown>> {
    const docs = new Map<string, Record<string, unknown>>();
    if (!existsSync(this.file)) return docs;
    for (const d of parseConfigText(this.file, readFileSync(this.file)).documents) {
      if (isPlainObject(d.value)) docs.set(keyOfDoc(d.value), d.value);
    }
    return docs;
  }

  /** Validates `text` (YAML/JSON documents), then the whole configuration with it, then commits. */
  apply(text: string): StoreResult {
    const parsed = parseConfigText('<apply>', Buffer.from(text));
    const alone = loadDocuments(parsed.documents);
    const errors = [...parsed.problems, ...alone.diagnostics].filter((d) => d.severity === 'error');
    if (errors.length > 0) return { ok: false, status: 422, changed: [], diagnostics: errors };
    if (alone.resources.length === 0)
      return { ok: false, status: 400, changed: [], diagnostics: [], message: 'no resources in the request' };
    const docs = this.#read();
    const changed: string[] = [];
    for (const d of parsed.documents) {
      if (!isPlainObject(d.value)) continue;
      docs.set(keyOfDoc(d.value), d.value);
      changed.push(keyOfDoc(d.value));
    }
    return this.#commit(docs, changed);
  }

  /** Deletes applied resources; a resource that comes from a config file cannot be deleted here. */
  delete(keys: readonly { kind: string; namespace?: string; name: string }[]): StoreResult {
    const docs = this.#read();
    const changed: string[] = [];
    for (const k of keys) {
      const namespaced = kindByName(k.kind)?.namespaced ?? true;
      const ns = namespaced ? (k.namespace ?? 'default') : undefined;
      const match = [...docs.entries()].find(([, v]) => {
        const meta = isPlainObject(v.metadata) ? v.metadata : {};
        const vNs = namespaced ? (typeof meta.namespace === 'string' ? meta.namespace : 'default') : undefined;
        return v.kind === k.kind && meta.name === k.name && vNs === ns;
      })?.[0];
      if (match === undefined) {
        const inFiles = loadPaths(this.#configPaths).resources.find(
          (r) => r.kind === k.kind && r.name === k.name && r.namespace === ns,
        );
        const id = ns === undefined ? `${k.kind}/${k.name}` : `${k.kind}/${ns}/${k.name}`;
        return inFiles
          ? {
              ok: false,
              status: 409,
              changed: [],
              diagnostics: [],
              message: `${id} is defined in ${inFiles.source.file}; edit or remove it there`,
            }
          : {
              ok: false,
              status: 404,
              changed: [],
              diagnostics: [],
              message: `${id} not found among applied resources`,
            };
      }
      docs.delete(match);
      changed.push(match);
    }
    return this.#commit(docs, changed);
  }

  #commit(docs: Map<string, Record<string, unknown>>, changed: string[]): StoreResult {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const sorted = [...docs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
    writeFileSync(tmp, sorted.map((v) => stringify(v)).join('---\n'), { mode: 0o600 });
    const trial = loadPaths([...this.#configPaths, ...(sorted.length ? [tmp] : [])]);
    const errors = trial.diagnostics
      .filter((d) => d.severity === 'error')
      .map((d) => (d.file === tmp ? { ...d, file: '<applied>' } : d));
    if (errors.length > 0) {
      rmSync(tmp, { force: true });
      return {
        ok: false,
        status: 409,
        changed: [],
        diagnostics: errors,
        message: 'the configuration would not load with this change',
      };
    }
    if (sorted.length === 0) {
      rmSync(tmp, { force: true });
      rmSync(this.file, { force: true });
    } else {
      renameSync(tmp, this.file);
    }
    return { ok: true, status: 200, changed, diagnostics: [] };
  }
}
