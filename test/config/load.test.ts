import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import type { Diagnostic } from '../../src/config/diagnostic.js';
import { runCli } from '../helpers/run-cli.js';

function runCliIn(dir: string) {
  return runCli(['validate', '-f', dir]);
}

function withFiles(files: Record<string, string | Buffer>, fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-load-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      const p = join(dir, name);
      mkdirSync(join(p, '..'), { recursive: true });
      writeFileSync(p, content);
    }
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function errors(ds: readonly Diagnostic[]): Diagnostic[] {
  return ds.filter((d) => d.severity === 'error');
}

function only(ds: readonly Diagnostic[]): Diagnostic {
  const errs = errors(ds);
  assert.equal(errs.length, 1, `expected exactly one error, got: ${JSON.stringify(errs, null, 1)}`);
  return errs[0]!;
}

const SERVICE = `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: prod
spec:
  selector:
    app: api
  ports:
    - name: http
      port: 8080
`;

function route(rules: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  namespace: prod
spec:
  parentRefs:
    - name: gw
  rules:
${rules}`;
}

test('directories are walked recursively; multi-document YAML, JSON and HuJSON all load', () => {
  const hujson = `// a HuJSON file: comments and trailing commas
{
  "apiVersion": "v1",
  "kind": "Namespace",
  "metadata": { "name": "prod", /* inline */ },
}
`;
  const json = JSON.stringify([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'b' } },
  ]);
  withFiles(
    {
      'x/svc.yaml': `${SERVICE}---\n# comment-only document\n---\n${SERVICE.replace('name: api', 'name: web')}`,
      'ns.hujson': hujson,
      'more/deeper/list.json': json,
      'notes.txt': 'ignored',
    },
    (dir) => {
      const r = loadPaths([dir]);
      assert.deepEqual(errors(r.diagnostics), []);
      assert.deepEqual(r.resources.map((x) => `${x.kind}/${x.name}`).sort(), [
        'Namespace/a',
        'Namespace/b',
        'Namespace/prod',
        'Service/api',
        'Service/web',
      ]);
      assert.equal(r.files.length, 3);
    },
  );
});

test('a kubectl List is expanded into its items, with positions inside the list', () => {
  const list = `apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata:
      name: ok
  - apiVersion: v1
    kind: Namespace
    metadata:
      name: Bad_Name
`;
  withFiles({ 'l.yaml': list }, (dir) => {
    const r = loadPaths([dir]);
    const e = only(r.diagnostics);
    assert.equal(e.field, 'metadata.name');
    assert.equal(e.line, 11);
    assert.equal(r.resources.length, 1);
  });
});

test('upstream defaults are applied', () => {
  withFiles({ 'r.yaml': route('    - backendRefs:\n        - name: api\n          port: 8080\n') }, (dir) => {
    const r = loadPaths([dir]);
    assert.deepEqual(errors(r.diagnostics), []);
    const res = r.resources[0]!;
    assert.equal(res.kind, 'HTTPRoute');
    if (res.kind !== 'HTTPRoute') return;
    const rule = res.spec.rules![0]!;
    assert.deepEqual(rule.matches, [{ path: { type: 'PathPrefix', value: '/' } }]);
    assert.equal(rule.backendRefs![0]!.weight, 1);
    assert.equal(res.spec.parentRefs![0]!.kind, 'Gateway');
    assert.equal(res.spec.parentRefs![0]!.group, 'gateway.networking.k8s.io');
  });
});

test('empty files are reported (warning) and an input with no resources is an error', () => {
  withFiles({ 'empty.yaml': '', 'comments.yaml': '# nothing here\n' }, (dir) => {
    const r = loadPaths([dir]);
    const warnings = r.diagnostics.filter((d) => d.code === 'TRELLIS_ERR_EMPTY');
    assert.equal(warnings.length, 2);
    assert.equal(only(r.diagnostics).code, 'TRELLIS_ERR_NO_RESOURCES');
  });
});

test('a document with no kind, or no apiVersion, is not a resource', () => {
  withFiles(
    { 'a.yaml': 'apiVersion: v1\nmetadata:\n  name: x\n', 'b.yaml': 'Kind: Service\napiversion: v1\n' },
    (dir) => {
      const r = loadPaths([dir]);
      const es = errors(r.diagnostics);
      assert.equal(es.length, 2);
      assert.ok(es.every((e) => e.code === 'TRELLIS_ERR_NOT_A_RESOURCE'));
      assert.match(es[0]!.message, /no kind/);
      assert.match(es[1]!.message, /did you mean "Kind"/);
    },
  );
});

test('a wrong apiVersion for a kind names the served versions', () => {
  withFiles(
    {
      'a.yaml':
        SERVICE.replace('apiVersion: v1', 'apiVersion: networking.istio.io/v1') +
        '---\n' +
        route('    - {}\n').replace('gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v2'),
    },
    (dir) => {
      const es = errors(loadPaths([dir]).diagnostics);
      assert.equal(es.length, 2);
      assert.ok(es.every((e) => e.code === 'TRELLIS_ERR_API_VERSION' && e.field === 'apiVersion'));
      assert.match(es[0]!.expected!, /apiVersion v1/);
      assert.match(es[1]!.expected!, /gateway\.networking\.k8s\.io\/v1 or gateway\.networking\.k8s\.io\/v1beta1/);
    },
  );
});

test('unknown kinds get a did-you-mean; kinds from the ecosystem that Trellis does not read say what to use', () => {
  withFiles(
    {
      'a.yaml': SERVICE.replace('kind: Service', 'kind: Servce'),
      'b.yaml': 'apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: g\n',
    },
    (dir) => {
      const es = errors(loadPaths([dir]).diagnostics);
      assert.match(es[0]!.message, /unknown kind "Servce" \(did you mean "Service"\?\)/);
      assert.match(es[1]!.message, /Gateway API kind/);
    },
  );
});

test('tabs, duplicate keys and syntax errors are reported with their position, other documents still load', () => {
  withFiles(
    {
      'tabs.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: x\n',
      'dup.yaml': `${SERVICE}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  name: m\n`,
      'dup.json': '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "name": "b"}}',
      'broken.json': '{"apiVersion": "v1", "kind": ',
    },
    (dir) => {
      const r = loadPaths([dir]);
      const byFile = new Map(errors(r.diagnostics).map((d) => [d.file!.split('/').pop(), d]));
      assert.equal(byFile.get('tabs.yaml')!.code, 'TRELLIS_ERR_SYNTAX');
      assert.match(byFile.get('tabs.yaml')!.message, /tab/);
      assert.equal(byFile.get('tabs.yaml')!.line, 4);
      assert.equal(byFile.get('dup.yaml')!.code, 'TRELLIS_ERR_DUPLICATE_KEY');
      assert.match(byFile.get('dup.yaml')!.message, /duplicate key "name"/);
      assert.equal(byFile.get('dup.yaml')!.line, 17);
      assert.equal(byFile.get('dup.json')!.code, 'TRELLIS_ERR_DUPLICATE_KEY');
      assert.equal(byFile.get('broken.json')!.code, 'TRELLIS_ERR_SYNTAX');
      assert.deepEqual(
        r.resources.map((x) => x.name),
        ['api'],
      );
    },
  );
});

test('a YAML alias bomb is refused quickly, without expanding it', () => {
  let bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let i = 1; i < 10; i++) {
    const prev = String.fromCharCode(96 + i);
    bomb += `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${prev}`).join(',')}]\n`;
  }
  withFiles({ 'bomb.yaml': bomb }, (dir) => {
    const t = performance.now();
    const e = only(loadPaths([dir]).diagnostics);
    assert.ok(performance.now() - t < 2000, 'alias bomb took too long');
    assert.equal(e.code, 'TRELLIS_ERR_ALIAS_LIMIT');
  });
});

test('ordinary anchors and merge keys still work', () => {
  const text = `apiVersion: v1
kind: Service
metadata:
  name: api
  labels: &l
    app: api
spec:
  selector: *l
  ports:
    - name: http
      port: 80
`;
  withFiles({ 'a.yaml': text }, (dir) => {
    const r = loadPaths([dir]);
    assert.deepEqual(errors(r.diagnostics), []);
  });
});

test('a 10 MB file is refused with the limit, quickly', () => {
  const big = `${SERVICE}---\n`.repeat(Math.ceil((10 * 1024 * 1024) / (SERVICE.length + 4)));
  withFiles({ 'big.yaml': big }, (dir) => {
    const t = performance.now();
    const e = only(loadPaths([dir]).diagnostics);
    assert.equal(e.code, 'TRELLIS_ERR_FILE_TOO_LARGE');
    assert.match(e.message, /10\.0 MiB, over the 8 MiB limit/);
    assert.ok(performance.now() - t < 1000);
  });
});

test('non-UTF-8 bytes are reported with their line', () => {
  const bytes = Buffer.concat([
    Buffer.from('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: caf'),
    Buffer.from([0xe9]),
    Buffer.from('\n'),
  ]);
  withFiles({ 'latin1.yaml': bytes }, (dir) => {
    const e = only(loadPaths([dir]).diagnostics);
    assert.equal(e.code, 'TRELLIS_ERR_ENCODING');
    assert.equal(e.line, 4);
    assert.match(e.message, /0xe9/);
  });
});

test('missing metadata.name is a missing field at its path', () => {
  withFiles({ 'a.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n' }, (dir) => {
    const e = only(loadPaths([dir]).diagnostics);
    assert.equal(e.code, 'TRELLIS_ERR_MISSING_FIELD');
    assert.equal(e.field, 'metadata.name');
  });
});

test('invalid RE2 in an HTTPRoute RegularExpression match and in a CiliumNetworkPolicy path', () => {
  const cnp = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: p
spec:
  endpointSelector: {}
  ingress:
    - toPorts:
        - ports:
            - port: "80"
          rules:
            http:
              - path: "/v1/(?=lookahead)"
`;
  const r = route(
    '    - matches:\n        - path:\n            type: RegularExpression\n            value: "/(a"\n      backendRefs:\n        - name: api\n          port: 8080\n',
  );
  withFiles({ 'cnp.yaml': cnp, 'route.yaml': r }, (dir) => {
    const es = errors(loadPaths([dir]).diagnostics);
    assert.equal(es.length, 2);
    assert.equal(es[0]!.field, 'spec.ingress[0].toPorts[0].rules.http[0].path');
    assert.match(es[0]!.message, /invalid RE2 regular expression/);
    assert.equal(es[1]!.field, 'spec.rules[0].matches[0].path.value');
    assert.match(es[1]!.message, /invalid RE2 regular expression: missing \)/);
    assert.equal(es[1]!.line, 13);
  });
});

test('negative and non-integer backend weights', () => {
  withFiles(
    {
      'r.yaml': route(
        '    - backendRefs:\n        - name: a\n          port: 80\n          weight: -1\n        - name: b\n          port: 80\n          weight: 1.5\n',
      ),
    },
    (dir) => {
      const es = errors(loadPaths([dir]).diagnostics);
      assert.deepEqual(
        es.map((e) => e.field),
        ['spec.rules[0].backendRefs[0].weight', 'spec.rules[0].backendRefs[1].weight'],
      );
      assert.match(es[0]!.message, /-1 is out of range/);
      assert.match(es[1]!.message, /must be an integer, got number 1.5/);
    },
  );
});

test('NetworkPolicy: invalid CIDR, and except outside its cidr', () => {
  const np = (cidr: string, except: string) => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
spec:
  podSelector: {}
  ingress:
    - from:
        - ipBlock:
            cidr: ${cidr}
            except: [${except}]
`;
  withFiles({ 'a.yaml': np('10.0.0.0/33', '10.0.1.0/24'), 'b.yaml': np('10.0.0.0/16', '10.1.0.0/24') }, (dir) => {
    const es = errors(loadPaths([dir]).diagnostics);
    assert.equal(es.length, 2);
    assert.equal(es[0]!.field, 'spec.ingress[0].from[0].ipBlock.cidr');
    assert.equal(es[1]!.field, 'spec.ingress[0].from[0].ipBlock.except[0]');
  });
});

test('ports outside 1-65535', () => {
  withFiles({ 'a.yaml': SERVICE.replace('port: 8080', 'port: 70000') }, (dir) => {
    const e = only(loadPaths([dir]).diagnostics);
    assert.equal(e.field, 'spec.ports[0].port');
    assert.equal(e.expected, 'a port number 1-65535');
  });
});

test('an HTTPRoute with more than 16 rules, or a rule with more than 64 matches, hits the upstream limits', () => {
  const rule = '    - backendRefs:\n        - name: a\n          port: 80\n';
  const matches = Array.from({ length: 65 }, (_, i) => `        - path:\n            value: /p${i}\n`).join('');
  withFiles(
    { 'a.yaml': route(rule.repeat(17)), 'b.yaml': route(`    - matches:\n${matches}`).replace('name: r', 'name: r2') },
    (dir) => {
      const es = errors(loadPaths([dir]).diagnostics);
      assert.equal(es.length, 2);
      assert.equal(es[0]!.code, 'TRELLIS_ERR_LIMIT_EXCEEDED');
      assert.equal(es[0]!.field, 'spec.rules');
      assert.equal(es[0]!.expected, 'at most 16');
      assert.equal(es[1]!.field, 'spec.rules[0].matches');
      assert.equal(es[1]!.expected, 'at most 64');
    },
  );
});

test('the same kind/namespace/name twice is an error naming both places', () => {
  withFiles({ 'a.yaml': SERVICE, 'b.yaml': `# again\n${SERVICE}` }, (dir) => {
    const r = loadPaths([dir]);
    const e = only(r.diagnostics);
    assert.equal(e.code, 'TRELLIS_ERR_DUPLICATE_RESOURCE');
    assert.match(e.file!, /b\.yaml$/);
    assert.equal(e.line, 2);
    assert.match(e.message, /a\.yaml:1:1/);
    assert.equal(r.resources.length, 1);
  });
});

test('a path that does not exist is a read error', () => {
  const r = loadPaths(['/nonexistent/trellis-config']);
  assert.equal(r.diagnostics[0]!.code, 'TRELLIS_ERR_FILE_READ');
  assert.match(r.diagnostics[0]!.message, /no such file or directory/);
});

test('garbage: deep nesting and binary-looking text never crash the loader', () => {
  withFiles(
    { 'deep.yaml': '['.repeat(100000), 'junk.yaml': '::: - ] } {\n  - ? : ! % @\n', 'scalar.yaml': 'just a string\n' },
    (dir) => {
      const r = loadPaths([dir]);
      assert.equal(r.resources.length, 0);
      assert.ok(errors(r.diagnostics).length >= 3);
    },
  );
});

test('Service names are DNS-1035 labels and namespaces DNS-1123 labels, as Kubernetes requires', () => {
  withFiles(
    { 'a.yaml': SERVICE.replace('name: api', 'name: 1api').replace('namespace: prod', 'namespace: a.b') },
    (dir) => {
      const es = errors(loadPaths([dir]).diagnostics)
        .map((e) => e.field)
        .sort();
      assert.deepEqual(es, ['metadata.name', 'metadata.namespace']);
    },
  );
});

test('a merge key without anchors in the file is merged, not an unknown field', () => {
  const text = `apiVersion: v1
kind: Namespace
metadata:
  <<: {name: merged}
`;
  withFiles({ 'a.yaml': text }, (dir) => {
    const r = loadPaths([dir]);
    assert.deepEqual(errors(r.diagnostics), []);
    assert.equal(r.resources[0]!.name, 'merged');
  });
});

test('thousands of regular expressions validate without exhausting the RE2 engine', () => {
  const matches = (r: number) =>
    Array.from(
      { length: 16 },
      (_, i) => `        - path:\n            type: RegularExpression\n            value: "/r${r}/m${i}/[a-z]+"\n`,
    ).join('');
  const routes = Array.from({ length: 40 }, (_, k) =>
    route(Array.from({ length: 8 }, (_, r) => `    - matches:\n${matches(k * 8 + r)}`).join('')).replace(
      'name: r\n',
      `name: r${k}\n`,
    ),
  ).join('---\n');
  withFiles({ 'many.yaml': routes }, (dir) => {
    const r = loadPaths([dir]);
    assert.deepEqual(errors(r.diagnostics), []);
    assert.equal(r.resources.length, 40);
  });
});

test('prototype names as user strings do not crash the model', () => {
  const gw = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: g }
spec:
  gatewayClassName: constructor
  listeners: [{ name: l, port: 80, protocol: toString }]
`;
  withFiles({ 'gw.yaml': gw }, (dir) => {
    const r = runCliIn(dir);
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stdout + r.stderr, /internal error/);
    assert.match(r.stdout, /GatewayClass not found: "constructor"/);
  });
});

test('very deep JSON nesting is a syntax error, not a crash', () => {
  withFiles(
    {
      'deep.json': `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"},"status":${'['.repeat(20000)}${']'.repeat(20000)}}`,
    },
    (dir) => {
      const r = loadPaths([dir]);
      assert.ok(r.diagnostics.length > 0);
    },
  );
});
