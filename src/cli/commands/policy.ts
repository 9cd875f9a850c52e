// trellis policy check | replay: a policy decision explained before traffic meets it, and the
// flows a proposed policy set would change.
import { UsageError } from '../../errors.js';
import type { MeshModel } from '../../model/mesh-model.js';
import { checkPolicy, type CheckResult } from '../../policy/check.js';
import { replayFlows, type ReplayResult } from '../../policy/replay.js';
import { viewFromPaths, viewOf, type PolicyView } from '../../policy/view.js';
import type { RequestAuth } from '../../proxy/rbac/evaluate.js';
import { didYouMean } from '../../util/did-you-mean.js';
import type { EnvoyObject } from '../../xds/translate/route-match.js';
import { HELP_FLAG, type Command } from '../command.js';
import { readFlagFile } from '../flag-file.js';
import { adminRequest, SERVER_FLAG, serverUrl } from '../control-plane-client.js';
import { OUTPUT_FLAG, renderData, renderTable, type Io, type OutputFormat } from '../output.js';

const SUBCOMMANDS = ['check', 'replay'] as const;
const NOT_A_RECORD = 'not a flow record';

/** The running control plane's model and the node Listeners it serves. */
async function viewFromServer(server: string): Promise<PolicyView> {
  const model = await adminRequest(server, '/debug/model');
  if (model.status !== 200 || model.body === null || typeof model.body !== 'object')
    throw new UsageError(
      `the control plane at ${server} has no configuration loaded yet (GET /debug/model: ${model.status})`,
    );
  const res = await adminRequest(server, '/debug/resources?type=listener');
  const listeners = new Map<string, EnvoyObject>();
  const byType = (res.body ?? {}) as Record<string, { resources?: EnvoyObject[] }>;
  for (const t of Object.values(byType))
    for (const l of t.resources ?? []) if (typeof l.name === 'string') listeners.set(l.name, l);
  return viewOf(model.body as MeshModel, listeners, `the control plane at ${server}`);
}

async function currentView(flags: Record<string, unknown>): Promise<PolicyView> {
  const paths = flags.filename as readonly string[] | undefined;
  return paths?.length ? viewFromPaths(paths, '-f') : viewFromServer(serverUrl(flags.server));
}

/** --jwt FILE: the token's claims, as RequestAuthentication would pass them on (not verified here). */
function requestAuthFrom(path: string): RequestAuth {
  const token = readFlagFile(path, 'jwt')
    .trim()
    .replace(/^Bearer\s+/i, '');
  const parts = token.split('.');
  let claims: unknown;
  try {
    claims = parts.length === 3 ? JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) : undefined;
  } catch {
    claims = undefined;
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims))
    throw new UsageError(`--jwt ${path}: not a JWT (expected header.payload.signature with a JSON object payload)`);
  const c = claims as Record<string, unknown>;
  if (typeof c.iss !== 'string' || typeof c.sub !== 'string')
    throw new UsageError(`--jwt ${path}: the token has no "iss" and "sub" claims, so no request principal`);
  return { principal: `${c.iss}/${c.sub}`, claims: c };
}

function headersFrom(list: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) {
    const i = h.indexOf('=');
    if (i <= 0) throw new UsageError(`--header ${h}: expected NAME=VALUE`);
    out[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1);
  }
  return out;
}

function printCheck(r: CheckResult, io: Io): void {
  const req = r.request ? ` ${r.request.method} ${r.request.path}` : '';
  io.out(`${r.from.workload ?? r.from.identity} -> ${r.to.service}:${r.to.port}${req}`);
  io.out(`  caller ${r.from.identity}${r.from.address ? ` at ${r.from.address}` : ''}`);
  io.out('');
  io.out(
    renderTable(
      ['ENDPOINT', 'ENFORCED BY', 'LAYER', 'VERDICT', 'POLICY', 'RULE'],
      r.steps.map((s) => [s.endpoint, s.enforcedBy, s.layer, s.verdict, s.policy ?? '-', s.rule ?? '-']),
    ),
  );
  io.out('');
  io.out(`Verdict: ${r.verdict}${r.policy ? ` (${r.policy}${r.rule ? ` ${r.rule}` : ''})` : ''}`);
  io.out(`  ${r.reason}`);
}

function printReplay(r: ReplayResult, io: Io): void {
  const skipped = Object.entries(r.skipped)
    .map(([why, n]) => `${n} ${why}`)
    .join(', ');
  io.out(`${r.records} flow records, ${r.replayed} replayed${skipped ? ` (skipped: ${skipped})` : ''}`);
  if (r.groups.length === 0) {
    io.out('No verdict would change.');
    return;
  }
  io.out(`${r.changed} flows would change:`);
  io.out('');
  io.out(
    renderTable(
      ['SOURCE', 'DESTINATION', 'FLOWS', 'NOW', 'PROPOSED', 'POLICY', 'RULE'],
      r.groups.map((g) => [
        g.source,
        g.destination,
        String(g.flows),
        g.before,
        g.after,
        g.policy ?? '-',
        g.rule ?? '-',
      ]),
    ),
  );
  const denied = r.groups.filter((g) => g.after === 'DENY' && !g.policy);
  if (denied.length) {
    io.out('');
    for (const g of denied) io.out(`  ${g.source} -> ${g.destination}: ${g.reason}`);
  }
}

function readFlows(path: string): unknown[] {
  const text = readFlagFile(path, 'flows');
  const out: unknown[] = [];
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (!l) return;
    // Node output can carry other lines; they are counted, not fatal.
    if (!l.startsWith('{')) {
      out.push(NOT_A_RECORD);
      return;
    }
    try {
      out.push(JSON.parse(l));
    } catch (e) {
      throw new UsageError(`--flows ${path}:${i + 1}: not a JSON flow record (${(e as Error).message})`);
    }
  });
  return out;
}

export const policyCommand: Command = {
  name: 'policy',
  summary: 'Explain a policy verdict (check) or the flows a proposed policy set would change (replay)',
  usage: [
    'trellis policy check [-f DIR] --from WORKLOAD|SPIFFE_ID --to SERVICE:PORT [--method M --path P --header K=V --jwt FILE] [-o json]',
    '       trellis policy replay --flows FILE --with DIR [-f DIR] [-o json]',
  ].join('\n'),
  flags: [
    {
      name: 'filename',
      short: 'f',
      type: 'list',
      valueName: 'DIR',
      description: 'manifests in force (default: the running control plane, --server)',
    },
    {
      name: 'from',
      type: 'string',
      valueName: 'WORKLOAD',
      description: 'check: NAMESPACE/NAME, NAME.NAMESPACE or spiffe://...',
    },
    { name: 'to', type: 'string', valueName: 'SERVICE:PORT', description: 'check: a service host name and port' },
    { name: 'method', type: 'string', valueName: 'M', description: 'check: HTTP method (default GET)' },
    { name: 'path', type: 'string', valueName: 'P', description: 'check: HTTP path (default /)' },
    { name: 'header', type: 'list', valueName: 'K=V', description: 'check: a request header (repeatable)' },
    {
      name: 'jwt',
      type: 'string',
      valueName: 'FILE',
      description: 'check: a JWT whose claims the request carries (not verified)',
    },
    {
      name: 'flows',
      type: 'string',
      valueName: 'FILE',
      description: 'replay: flow records, JSON lines (<node>.flows.jsonl)',
    },
    { name: 'with', type: 'list', valueName: 'DIR', description: 'replay: the proposed manifests' },
    SERVER_FLAG,
    OUTPUT_FLAG,
    HELP_FLAG,
  ],
  async run(args, io) {
    const sub = args.positionals[0];
    if (sub === undefined) throw new UsageError('trellis policy needs a subcommand: check or replay');
    if (!(SUBCOMMANDS as readonly string[]).includes(sub))
      throw new UsageError(`unknown subcommand "policy ${sub}"${didYouMean(sub, SUBCOMMANDS)}`);
    const format = (args.flags.output as OutputFormat | undefined) ?? 'human';
    const flags = args.flags as Record<string, unknown>;

    if (sub === 'check') {
      const from = flags.from as string | undefined;
      const to = flags.to as string | undefined;
      if (!from) throw new UsageError('trellis policy check needs --from WORKLOAD|SPIFFE_ID');
      if (!to)
        throw new UsageError('trellis policy check needs --to SERVICE:PORT (e.g. api.prod.svc.cluster.local:8080)');
      const view = await currentView(flags);
      const result = checkPolicy(view, {
        from,
        to,
        ...(flags.method ? { method: flags.method as string } : {}),
        ...(flags.path ? { path: flags.path as string } : {}),
        headers: headersFrom(flags.header as readonly string[] | undefined),
        ...(flags.jwt ? { requestAuth: requestAuthFrom(flags.jwt as string) } : {}),
      });
      if (format === 'human') printCheck(result, io);
      else io.out(renderData(result, format));
      // Like grep: 1 when denied, so scripts and CI can gate on it.
      return result.verdict === 'ALLOW' ? 0 : 1;
    }

    const flowsFile = flags.flows as string | undefined;
    const proposedPaths = flags.with as readonly string[] | undefined;
    if (!flowsFile) throw new UsageError('trellis policy replay needs --flows FILE (flow records, JSON lines)');
    if (!proposedPaths?.length) throw new UsageError('trellis policy replay needs --with DIR (the proposed manifests)');
    const records = readFlows(flowsFile);
    const proposed = viewFromPaths(proposedPaths, '--with');
    const result = replayFlows(records, proposed);
    if (format === 'human') printReplay(result, io);
    else io.out(renderData(result, format));
    return 0;
  },
};
