// npm run bench:config — load and compile 5,000 Services + 5,000 WorkloadEntries + 5,000 HTTPRoutes,
// then a one-resource change. Anchor: parsing the same bytes with js-yaml alone (the floor any
// YAML-reading tool pays), measured in the same run.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import * as jsyaml from 'js-yaml';
import { parseAllDocuments } from 'yaml';
import { loadDocuments, loadPaths } from '../src/config/load.js';
import { readConfigFile } from '../src/config/source/read-files.js';
import { compileModel, ModelCompiler } from '../src/model/compile.js';
import { namespaceOf, serviceFile } from './generated-mesh.js';
import type { Resource } from '../src/config/resource.js';

const SERVICES = Number(process.env.TRELLIS_BENCH_SERVICES ?? 5000);
const NAMESPACES = 50;
const RUNS = Number(process.env.TRELLIS_BENCH_RUNS ?? 5);

/** One directory per namespace, one file per service (its Service, WorkloadEntry and HTTPRoute). */
function generate(dir: string): void {
  const shape = { services: SERVICES, namespaces: NAMESPACES };
  for (let n = 0; n < NAMESPACES; n++) mkdirSync(join(dir, `team-${n}`));
  for (let i = 0; i < SERVICES; i++) {
    writeFileSync(join(dir, namespaceOf(shape, i), `svc-${i}.yaml`), serviceFile(shape, i, { headerMatch: true }));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

function ms(x: number): string {
  return `${x.toFixed(1)} ms`;
}

/** The control plane's loop: one file re-read after each edit, and the long-lived compiler recompiles. */
function measureChanges(dir: string): number[] {
  const files = readdirSync(dir).flatMap((ns) => readdirSync(join(dir, ns)).map((f) => join(dir, ns, f)));
  let current = loadPaths([dir]).resources;
  const compiler = new ModelCompiler();
  compiler.compile(current);
  global.gc?.();
  const WARMUP = 5;
  const times: number[] = [];
  for (let k = 0; k < WARMUP + 40; k++) {
    const target = files[(k * 7) % files.length]!;
    const text = readFileSync(target, 'utf8');
    writeFileSync(
      target,
      text.replace(/weight: (\d+)/, (_, w: string) => `weight: ${(Number(w) % 99) + 1}`),
    );
    const t = performance.now();
    const reread = loadDocuments(readConfigFile(target).documents);
    const next = [...current.filter((r) => r.source.file !== target), ...reread.resources];
    const changed = compiler.compile(next);
    if (k >= WARMUP) times.push(performance.now() - t);
    current = next;
    if (k === 0 && JSON.stringify(changed) !== JSON.stringify(compileModel(next))) {
      throw new Error('incremental compile differs from a fresh one');
    }
  }
  return times;
}

if (process.argv[2] === '--changes') {
  process.stdout.write(JSON.stringify(measureChanges(process.argv[3]!)));
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-config-'));
try {
  generate(dir);
  const files = readdirSync(dir).flatMap((ns) => readdirSync(join(dir, ns)).map((f) => join(dir, ns, f)));
  const bytes = files.reduce((s, f) => s + readFileSync(f).length, 0);

  // The other YAML parser Trellis uses (slow path: files with errors or anchors), once.
  const t0 = performance.now();
  for (const f of files) parseAllDocuments(readFileSync(f, 'utf8'));
  const yamlPackage = performance.now() - t0;

  const anchor: number[] = [];
  const load: number[] = [];
  const compile: number[] = [];
  const change: number[] = [];
  let resources: readonly Resource[] = [];
  let heapMiB = 0;
  for (let run = 0; run < RUNS; run++) {
    let t = performance.now();
    for (const f of files) jsyaml.loadAll(readFileSync(f, 'utf8'), undefined, { schema: jsyaml.CORE_SCHEMA });
    anchor.push(performance.now() - t);

    resources = [];
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    t = performance.now();
    const loaded = loadPaths([dir]);
    load.push(performance.now() - t);
    if (loaded.diagnostics.some((d) => d.severity === 'error')) {
      throw new Error(`generated config has errors: ${JSON.stringify(loaded.diagnostics.slice(0, 3))}`);
    }
    resources = loaded.resources;
    t = performance.now();
    const model = compileModel(resources);
    compile.push(performance.now() - t);
    global.gc?.();
    // The first run is measured: later ones start with the previous run's garbage still counted.
    if (run === 0) heapMiB = (process.memoryUsage().heapUsed - heapBefore) / 1048576;
    if (model.routes.length !== SERVICES) throw new Error('routes missing');
    if (model.services.length !== SERVICES)
      throw new Error(`expected ${SERVICES} services, got ${model.services.length}`);
  }

  // One resource changes at a time, measured in a fresh process that, like the control plane,
  // has loaded and compiled the configuration once (this process's heap is full of the runs above).
  const child = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--changes', dir], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (child.status !== 0) throw new Error(`change phase failed: ${child.stderr}`);
  change.push(...(JSON.parse(child.stdout) as number[]));

  const total = median(load) + median(compile);
  const rows: [string, string, string, string][] = [
    ['YAML parse only (anchor: js-yaml, same bytes)', ms(median(anchor)), '', '1.00'],
    [
      'YAML parse only, `yaml` package (slow path), 1 run',
      ms(yamlPackage),
      '',
      (yamlPackage / median(anchor)).toFixed(2),
    ],
    ['load: read + parse + validate + defaults', ms(median(load)), '', (median(load) / median(anchor)).toFixed(2)],
    ['compile: resources -> mesh model', ms(median(compile)), '', ''],
    ['load + compile', ms(total), '< 2000 ms', total < 2000 ? 'met' : 'MISSED'],
    [
      'one-resource change (median of 40): re-read + recompile',
      ms(median(change)),
      '< 50 ms',
      median(change) < 50 ? 'met' : 'MISSED',
    ],
    ['one-resource change, 90th percentile', ms(percentile(change, 0.9)), '', ''],
    ['heap held by resources + model', `${heapMiB.toFixed(1)} MiB`, '', ''],
  ];
  console.log(
    `\nbench:config — ${SERVICES} Services + ${SERVICES} WorkloadEntries + ${SERVICES} HTTPRoutes in ${files.length} files (${(bytes / 1048576).toFixed(1)} MiB), ${resources.length} resources; median of ${RUNS} runs; node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}\n`,
  );
  const w = [56, 14, 11, 8];
  console.log(['measure', 'Trellis', 'target', 'ratio'].map((h, i) => h.padEnd(w[i]!)).join(' | '));
  console.log(w.map((n) => '-'.repeat(n)).join('-|-'));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i]!)).join(' | '));
} finally {
  if (!process.env.TRELLIS_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  else console.log(dir);
}
