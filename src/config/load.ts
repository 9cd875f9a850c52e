// Files -> validated resources + diagnostics. Never throws for anything a user wrote.
import { fieldOf, type Diagnostic, type ResourceKey } from './diagnostic.js';
import { checkResource } from './kinds/check-resource.js';
import { apiVersionOf, type KindDefinition } from './kinds/kind.js';
import { kindByName, kindNames } from './kinds/registry.js';
import { unsupportedAdvice } from './kinds/unsupported.js';
import type { Resource } from './resource.js';
import { isPlainObject, type Issue, type Path } from './schema/schema.js';
import { collectFiles, readConfigFile } from './source/read-files.js';
import type { SourceDocument } from './source/source-document.js';
import { closest, didYouMean } from '../util/did-you-mean.js';
import { freezeDeep } from '../util/freeze.js';

export interface LoadResult {
  readonly resources: readonly Resource[];
  readonly diagnostics: readonly Diagnostic[];
  readonly files: readonly string[];
}

const ISSUE_CODES: Readonly<Record<Issue['code'], string>> = {
  'unknown-field': 'TRELLIS_ERR_UNKNOWN_FIELD',
  required: 'TRELLIS_ERR_MISSING_FIELD',
  limit: 'TRELLIS_ERR_LIMIT_EXCEEDED',
  type: 'TRELLIS_ERR_INVALID_VALUE',
  enum: 'TRELLIS_ERR_INVALID_VALUE',
  range: 'TRELLIS_ERR_INVALID_VALUE',
  format: 'TRELLIS_ERR_INVALID_VALUE',
  conflict: 'TRELLIS_ERR_INVALID_VALUE',
  invalid: 'TRELLIS_ERR_INVALID_VALUE',
};

/** Loads every file under `paths` (files, or directories walked recursively). */
export function loadPaths(paths: readonly string[]): LoadResult {
  const { files, problems } = collectFiles(paths);
  const diagnostics: Diagnostic[] = [...problems];
  const documents: SourceDocument[] = [];
  for (const file of files) {
    const parsed = readConfigFile(file);
    diagnostics.push(...parsed.problems);
    documents.push(...parsed.documents);
  }
  const loaded = loadDocuments(documents);
  diagnostics.push(...loaded.diagnostics);
  if (loaded.resources.length === 0 && !diagnostics.some((d) => d.severity === 'error')) {
    diagnostics.push({
      severity: 'error',
      code: 'TRELLIS_ERR_NO_RESOURCES',
      message: `no resources found in ${paths.join(', ')}`,
      expected: 'YAML (.yaml, .yml) or JSON/HuJSON (.json, .hujson) files holding resources',
    });
  }
  return { resources: loaded.resources, diagnostics, files };
}

/** Documents -> resources. Duplicates (same kind, namespace, name) are errors on the later one. */
export function loadDocuments(documents: readonly SourceDocument[]): {
  resources: Resource[];
  diagnostics: Diagnostic[];
} {
  const resources: Resource[] = [];
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, Resource>();
  for (const doc of expandLists(documents, diagnostics)) {
    const r = toResource(doc, diagnostics);
    if (!r) continue;
    const id = `${r.group}/${r.kind}/${r.namespace ?? ''}/${r.name}`;
    const first = seen.get(id);
    if (first) {
      const at = first.source.locate([]);
      const pos = r.source.locate([]);
      diagnostics.push({
        severity: 'error',
        code: 'TRELLIS_ERR_DUPLICATE_RESOURCE',
        file: doc.file,
        line: pos.line,
        column: pos.column,
        resource: keyOfParts(r.kind, r.namespace, r.name),
        message: `defined twice: also at ${first.source.file}:${at.line}:${at.column}`,
        expected: 'one resource per kind, namespace and name (rename one, or delete one of them)',
      });
      continue;
    }
    seen.set(id, r);
    resources.push(r);
  }
  return { resources, diagnostics };
}

/** `kind: List` (what `kubectl get -o yaml` prints) becomes one document per item. */
function* expandLists(documents: readonly SourceDocument[], diagnostics: Diagnostic[]): Generator<SourceDocument> {
  for (const doc of documents) {
    const v = doc.value;
    if (isPlainObject(v) && v.kind === 'List' && (v.apiVersion === 'v1' || v.apiVersion === undefined)) {
      if (!Array.isArray(v.items)) {
        diagnostics.push(
          at(
            doc,
            ['items'],
            'TRELLIS_ERR_NOT_A_RESOURCE',
            'a List needs an "items" list',
            'items: a list of resources',
          ),
        );
        continue;
      }
      for (let i = 0; i < v.items.length; i++) {
        const prefix: Path = [...doc.prefix, 'items', i];
        yield { file: doc.file, index: doc.index, value: v.items[i], prefix, locate: doc.locate };
      }
    } else {
      yield doc;
    }
  }
}

function toResource(doc: SourceDocument, diagnostics: Diagnostic[]): Resource | undefined {
  const v = doc.value;
  if (!isPlainObject(v)) {
    diagnostics.push(
      at(
        doc,
        [],
        'TRELLIS_ERR_NOT_A_RESOURCE',
        `this document is ${Array.isArray(v) ? 'a list' : `a ${typeof v}`}, not a resource`,
        'a mapping with apiVersion, kind, metadata and spec',
      ),
    );
    return undefined;
  }
  const name = isPlainObject(v.metadata) && typeof v.metadata.name === 'string' ? v.metadata.name : undefined;
  const kindText = typeof v.kind === 'string' ? v.kind : undefined;
  if (kindText === undefined || typeof v.apiVersion !== 'string') {
    const missing = kindText === undefined ? 'kind' : 'apiVersion';
    const near = closest(missing, Object.keys(v));
    const hint = near !== undefined && near !== missing ? ` (did you mean ${JSON.stringify(near)}?)` : '';
    diagnostics.push(
      at(
        doc,
        v[missing] === undefined ? [] : [missing],
        'TRELLIS_ERR_NOT_A_RESOURCE',
        `document has no ${missing}${hint}`,
        `${missing}: a string such as ${missing === 'kind' ? '"HTTPRoute"' : '"gateway.networking.k8s.io/v1"'}`,
      ),
    );
    return undefined;
  }
  const apiVersion = v.apiVersion;
  const slash = apiVersion.lastIndexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const key = name === undefined ? undefined : keyOfParts(kindText, nsOf(v), name);

  const def = kindByName(kindText);
  if (!def || def.group !== group) {
    const advice = unsupportedAdvice(group, kindText);
    if (advice) {
      diagnostics.push(
        at(doc, ['kind'], 'TRELLIS_ERR_UNKNOWN_KIND', `${apiVersion} ${kindText}: ${advice}`, undefined, key),
      );
    } else if (def) {
      diagnostics.push(apiVersionProblem(doc, def, apiVersion, key));
    } else {
      diagnostics.push(
        at(
          doc,
          ['kind'],
          'TRELLIS_ERR_UNKNOWN_KIND',
          `unknown kind ${JSON.stringify(kindText)}${didYouMean(kindText, kindNames())}`,
          `one of ${kindNames().join(', ')}`,
          key,
        ),
      );
    }
    return undefined;
  }
  if (!def.versions.includes(version)) {
    diagnostics.push(apiVersionProblem(doc, def, apiVersion, key));
    return undefined;
  }

  const checked = checkResource(def, v);
  for (const issue of checked.issues) {
    diagnostics.push(at(doc, issue.path, ISSUE_CODES[issue.code], issue.message, issue.expected, key, issue.atKey));
  }
  if (!checked.value) return undefined;

  const metadata = checked.value.metadata;
  let namespace: string | undefined;
  if (def.namespaced) {
    namespace = metadata.namespace ?? 'default';
  } else if (metadata.namespace !== undefined) {
    diagnostics.push({
      ...at(
        doc,
        ['metadata', 'namespace'],
        'TRELLIS_ERR_INVALID_VALUE',
        `${kindText} is cluster-scoped; metadata.namespace is ignored`,
      ),
      severity: 'warning',
    });
  }
  const source = {
    file: doc.file,
    index: doc.index,
    locate: (path: Path, atKey?: boolean) => doc.locate([...doc.prefix, ...path], atKey),
  };
  // Resources are immutable values: the model shares their parts and caches by identity.
  return freezeDeep(
    {
      kind: kindText,
      group,
      apiVersion,
      metadata,
      namespace,
      name: metadata.name,
      source,
      ...(checked.value.body as object),
    } as Resource,
    12,
  );
}

function nsOf(v: Record<string, unknown>): string | undefined {
  const kind = typeof v.kind === 'string' ? kindByName(v.kind) : undefined;
  const ns = isPlainObject(v.metadata) && typeof v.metadata.namespace === 'string' ? v.metadata.namespace : undefined;
  if (kind && !kind.namespaced) return undefined;
  return ns ?? 'default';
}

function keyOfParts(kind: string, namespace: string | undefined, name: string): ResourceKey {
  return namespace === undefined ? { kind, name } : { kind, namespace, name };
}

function apiVersionProblem(
  doc: SourceDocument,
  def: KindDefinition,
  apiVersion: string,
  key: ResourceKey | undefined,
): Diagnostic {
  const served = `apiVersion ${def.versions.map((ver) => apiVersionOf(def.group, ver)).join(' or ')}`;
  return at(
    doc,
    ['apiVersion'],
    'TRELLIS_ERR_API_VERSION',
    `${def.kind} is not served under ${JSON.stringify(apiVersion)}`,
    served,
    key,
  );
}

function at(
  doc: SourceDocument,
  path: Path,
  code: string,
  message: string,
  expected?: string,
  resource?: ResourceKey,
  atKey?: boolean,
): Diagnostic {
  const pos = doc.locate([...doc.prefix, ...path], atKey);
  const d: { -readonly [K in keyof Diagnostic]: Diagnostic[K] } = {
    severity: 'error',
    code,
    file: doc.file,
    line: pos.line,
    column: pos.column,
    message,
  };
  if (expected !== undefined) d.expected = expected;
  if (resource !== undefined) d.resource = resource;
  const field = fieldOf(path);
  if (field !== undefined) d.field = field;
  return d;
}
