// Resources and models from YAML text in tests, failing the test on any parse or load error.
import assert from 'node:assert/strict';
import { loadDocuments } from '../../src/config/load.js';
import type { Resource } from '../../src/config/resource.js';
import { parseYamlFile } from '../../src/config/source/yaml-documents.js';
import { compileModel } from '../../src/model/compile.js';
import type { MeshModel } from '../../src/model/mesh-model.js';

export function resourcesFromYaml(yaml: string, file = 'test.yaml'): Resource[] {
  const parsed = parseYamlFile(file, yaml);
  assert.deepEqual(parsed.problems, []);
  const r = loadDocuments(parsed.documents);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error'),
    [],
  );
  return r.resources;
}

export function modelFromYaml(yaml: string, file = 'test.yaml'): MeshModel {
  return compileModel(resourcesFromYaml(yaml, file));
}
