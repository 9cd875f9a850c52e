// trellis apply | get | delete: the control plane's resources, kubectl-style.
import { readFileSync } from 'node:fs';
import { formatDiagnostic, type Diagnostic } from '../../config/diagnostic.js';
import { kindByName, kindNames } from '../../config/kinds/registry.js';
import { UsageError } from '../../errors.js';
import { didYouMean } from '../../util/did-you-mean.js';
import { HELP_FLAG, type Command } from '../command.js';
import { adminRequest, SERVER_FLAG, serverUrl } from '../control-plane-client.js';
import { OUTPUT_FLAG, renderTable, renderData, type OutputFormat } from '../output.js';

interface StoreReply {
  readonly ok: boolean;
  readonly changed?: readonly string[];
  readonly diagnostics?: readonly Diagnostic[];
  readonly message?: string;
  readonly generation?: number;
}

function readInput(paths: readonly string[]): string {
  return paths
    .map((p) => {
      try {
        return readFileSync(p === '-' ? 0 : p, 'utf8');
      } catch (e) {
        throw new UsageError(
          `-f ${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
        );
      }
    })
    .join('\n---\n');
}

function report(reply: StoreReply, verb: string, io: { out(t: string): void; err(t: string): void }): number {
  if (reply.ok) {
    for (const c of reply.changed ?? []) io.out(`${c.split('/').filter(Boolean).join('/')} ${verb}`);
    return 0;
  }
  if (reply.message) io.err(`error: ${reply.message}`);
  for (const d of reply.diagnostics ?? []) io.err(formatDiagnostic(d));
  return 1;
}

function canonicalKind(kind: string): string {
  const names = kindNames();
  const found = names.find(
    (n) => n.toLowerCase() === kind.toLowerCase() || `${n.toLowerCase()}s` === kind.toLowerCase(),
  );
  if (!found) throw new UsageError(`unknown kind ${JSON.stringify(kind)}${didYouMean(kind, names)}`);
  return found;
}

export const applyCommand: Command = {
  name: 'apply',
  summary: 'Create or update resources in the running control plane',
  usage: 'trellis apply -f FILE [-f FILE ...] [--server URL]',
  flags: [
    {
      name: 'filename',
      short: 'f',
      type: 'list',
      valueName: 'FILE',
      description: 'YAML/JSON resources; "-" reads stdin',
    },
    SERVER_FLAG,
    HELP_FLAG,
  ],
  async run(args, io) {
    const files = (args.flags.filename as readonly string[] | undefined) ?? [];
    if (files.length === 0) throw new UsageError('trellis apply needs -f FILE');
    const r = await adminRequest(serverUrl(args.flags.server), '/apply', { method: 'POST', body: readInput(files) });
    return report(r.body as StoreReply, 'configured', io);
  },
};

export const deleteCommand: Command = {
  name: 'delete',
  summary: 'Delete resources applied to the running control plane',
  usage: 'trellis delete KIND NAME [-n NAMESPACE] [--server URL]   |   trellis delete -f FILE',
  flags: [
    {
      name: 'filename',
      short: 'f',
      type: 'list',
      valueName: 'FILE',
      description: 'delete the resources this file names',
    },
    { name: 'namespace', short: 'n', type: 'string', valueName: 'NS', description: 'namespace (default "default")' },
    SERVER_FLAG,
    HELP_FLAG,
  ],
  async run(args, io) {
    const server = serverUrl(args.flags.server);
    const targets: { kind: string; name: string; namespace?: string }[] = [];
    const files = (args.flags.filename as readonly string[] | undefined) ?? [];
    if (files.length > 0) {
      const { parseAllDocuments } = await import('yaml');
      for (const doc of parseAllDocuments(readInput(files))) {
        const v = doc.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string } } | null;
        if (v?.kind && v.metadata?.name)
          targets.push({
            kind: v.kind,
            name: v.metadata.name,
            ...(v.metadata.namespace ? { namespace: v.metadata.namespace } : {}),
          });
      }
    } else {
      const [kind, name] = args.positionals;
      if (kind === undefined || name === undefined) throw new UsageError('trellis delete needs KIND NAME (or -f FILE)');
      const ns = args.flags.namespace as string | undefined;
      targets.push({ kind: canonicalKind(kind), name, ...(ns ? { namespace: ns } : {}) });
    }
    let code = 0;
    for (const t of targets) {
      const q = new URLSearchParams({ kind: t.kind, name: t.name, ...(t.namespace ? { namespace: t.namespace } : {}) });
      const r = await adminRequest(server, `/resources?${q}`, { method: 'DELETE' });
      code = Math.max(code, report(r.body as StoreReply, 'deleted', io));
    }
    return code;
  },
};

export const getCommand: Command = {
  name: 'get',
  summary: 'List the resources in force in the running control plane',
  usage: 'trellis get KIND [NAME] [-n NAMESPACE] [-o human|json|yaml] [--server URL]',
  flags: [
    { name: 'namespace', short: 'n', type: 'string', valueName: 'NS', description: 'only this namespace' },
    OUTPUT_FLAG,
    SERVER_FLAG,
    HELP_FLAG,
  ],
  async run(args, io) {
    const [kindArg, name] = args.positionals;
    if (kindArg === undefined) throw new UsageError('trellis get needs a KIND, e.g. "trellis get httproutes"');
    const kind = canonicalKind(kindArg);
    const q = new URLSearchParams({
      kind,
      ...(name ? { name } : {}),
      ...(args.flags.namespace ? { namespace: args.flags.namespace as string } : {}),
    });
    const r = await adminRequest(serverUrl(args.flags.server), `/resources?${q}`);
    const items = r.body as {
      metadata: { name: string; namespace?: string; creationTimestamp?: string };
      source: string;
    }[];
    const format = (args.flags.output as OutputFormat | undefined) ?? 'human';
    if (format !== 'human') {
      io.out(renderData(name && items.length === 1 ? items[0] : { apiVersion: 'v1', kind: 'List', items }, format));
      return name && items.length === 0 ? 1 : 0;
    }
    if (items.length === 0) {
      io.err(name ? `error: ${kind} ${name} not found` : `No ${kind} resources found.`);
      return name ? 1 : 0;
    }
    const namespaced = kindByName(kind)?.namespaced ?? true;
    const rows = items.map((i) => [
      ...(namespaced ? [i.metadata.namespace ?? 'default'] : []),
      i.metadata.name,
      i.source,
    ]);
    const header = [...(namespaced ? ['NAMESPACE'] : []), 'NAME', 'SOURCE'];
    io.out(renderTable(header, rows));
    return 0;
  },
};
