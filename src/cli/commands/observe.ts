// trellis observe: the nodes' flow records (L4 connections and L7 requests) through the control
// plane's relay (GET /flows), filtered there, with hubble observe's habits: one line per flow,
// --from/--to/--verdict/--http-status, --since, -f to follow, -o jsonl for machines (and for
// `trellis policy replay --flows`).
import { UsageError } from '../../errors.js';
import { parseGoDuration } from '../../util/duration.js';
import type { FlowRecord } from '../../observe/flows.js';
import { LAST_SEQ_HEADER } from '../../observe/flow-buffer.js';
import { checkHttpStatus, UNREACHABLE_HEADER, VERDICTS } from '../../controlplane/flow-relay.js';
import { HELP_FLAG, type Command } from '../command.js';
import { ControlPlaneUnreachable, SERVER_FLAG, serverUrl } from '../control-plane-client.js';
import type { Io } from '../output.js';

const FOLLOW_POLL_MS = 500;
const REQUEST_TIMEOUT_MS = 10_000;

type Flow = FlowRecord & { seq?: number; type?: string };

/** "WorkloadEntry/shop/orders" -> "shop/orders"; spiffe://td/ns/shop/sa/api -> "shop/api"; else the service or address. */
function endpointName(e: Flow['source'] & { service?: string }): string {
  const w = e.workload ? /^[^/]+\/([^/]+\/[^/#]+)/.exec(e.workload)?.[1] : undefined;
  const id = e.identity ? /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(e.identity) : null;
  const name = w ?? (id ? `${id[1]}/${id[2]}` : undefined) ?? e.service ?? e.address ?? 'unknown';
  const where = e.service && e.service !== name ? e.service : e.address && e.address !== name ? e.address : undefined;
  return where ? `${name} (${where})` : name;
}

function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace('T', ' ').replace('Z', '');
}

/** Hubble's one-line summary: time [node] source -> destination point VERDICT (summary) policy/reason. */
export function flowLine(f: Flow): string {
  const point = f.observationPoint ?? (f.direction === 'inbound' ? 'node-inbound' : 'node-outbound');
  const summary = f.l7
    ? `HTTP ${f.l7.method} ${f.l7.path} ${f.l7.status || 'reset'} ${Math.round(f.l7.latencyMs * 10) / 10}ms${f.l7.flags.length ? ` ${f.l7.flags.join(',')}` : ''}`
    : `TCP ${f.via ?? '-'}${f.tls === 'none' ? ' plaintext' : ''}${f.durationMs !== undefined ? ` ${f.bytesSent ?? 0}B/${f.bytesReceived ?? 0}B ${f.durationMs}ms` : ''}`;
  const why = [f.policy ? `policy ${f.policy}` : '', f.reason ?? '', f.traceId ? `trace ${f.traceId}` : '']
    .filter(Boolean)
    .join('; ');
  return `${clock(f.time)} [${f.node}] ${endpointName(f.source)} -> ${endpointName(f.destination)} ${point} ${f.verdict} (${summary})${why ? ` ${why}` : ''}`;
}

async function fetchFlows(server: string, query: URLSearchParams): Promise<{ flows: Flow[]; last: number }> {
  let res: Response;
  try {
    res = await fetch(`${server}/flows?${query.toString()}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (e) {
    const cause = (e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message;
    throw new ControlPlaneUnreachable(
      `cannot reach the control plane at ${server} (${cause}); is "trellis controlplane" running? (--server URL)`,
    );
  }
  const text = await res.text();
  if (res.status !== 200) throw new ControlPlaneUnreachable(`${server}/flows answered ${res.status}: ${text.trim()}`);
  const flows = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Flow);
  const unreachable = res.headers.get(UNREACHABLE_HEADER);
  if (unreachable) process.stderr.write(`warning: nodes not answering: ${unreachable}\n`);
  return { flows, last: Number(res.headers.get(LAST_SEQ_HEADER) ?? 0) };
}

function print(io: Io, format: string, flows: readonly Flow[]): void {
  if (flows.length === 0) return;
  if (format === 'jsonl')
    // The record as the node wrote it (replay reads these lines): without the relay's seq.
    io.out(flows.map(({ seq: _s, ...f }) => JSON.stringify(f)).join('\n'));
  else io.out(flows.map(flowLine).join('\n'));
}

export const observeCommand: Command = {
  name: 'observe',
  summary: 'Show the flow records (connections and HTTP requests) the nodes recorded, hubble observe style',
  usage:
    'trellis observe [--server URL] [--from X] [--to Y] [--verdict FORWARDED|DENIED|ERROR] [--http-status 5xx|404] [--since 5m] [-f] [-o human|json|jsonl]',
  flags: [
    SERVER_FLAG,
    {
      name: 'from',
      type: 'string',
      valueName: 'X',
      description: 'source workload ("ns/name"), identity or service (substring)',
    },
    {
      name: 'to',
      type: 'string',
      valueName: 'Y',
      description: 'destination workload ("ns/name"), identity or service (substring)',
    },
    {
      name: 'verdict',
      type: 'string',
      valueName: 'VERDICT',
      choices: VERDICTS,
      description: 'FORWARDED, DENIED or ERROR',
    },
    {
      name: 'http-status',
      type: 'string',
      valueName: 'STATUS',
      description: 'L7 records with this status (404) or class (5xx)',
    },
    { name: 'since', type: 'string', valueName: 'DURATION', description: 'only flows newer than this (5m, 30s, 1h)' },
    { name: 'follow', short: 'f', type: 'boolean', description: 'keep printing new flows until Ctrl-C' },
    {
      name: 'output',
      short: 'o',
      type: 'string',
      valueName: 'FORMAT',
      choices: ['human', 'json', 'jsonl'],
      description:
        'human (default), json (an array) or jsonl (one record a line, as trellis policy replay --flows reads)',
    },
    HELP_FLAG,
  ],
  async run(args, io) {
    if (args.positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const server = serverUrl(args.flags.server);
    const format = (args.flags.output as string | undefined) ?? 'human';
    const follow = args.flags.follow === true;
    if (follow && format === 'json') throw new UsageError('flag --output json cannot follow (-f); use -o jsonl');
    const query = new URLSearchParams();
    for (const name of ['from', 'to'] as const) {
      const v = args.flags[name] as string | undefined;
      if (v !== undefined && v.trim() === '') throw new UsageError(`flag --${name} needs a non-empty value`);
      if (v !== undefined) query.set(name, v);
    }
    if (args.flags.verdict !== undefined) query.set('verdict', args.flags.verdict as string);
    const status = args.flags['http-status'] as string | undefined;
    if (status !== undefined) {
      const bad = checkHttpStatus(status);
      if (bad) throw new UsageError(`flag --http-status: ${bad}`);
      query.set('http_status', status);
    }
    const since = args.flags.since as string | undefined;
    if (since !== undefined) {
      const ms = parseGoDuration(since);
      if (ms === undefined)
        throw new UsageError(`flag --since: expected a duration like 5m, 30s or 1h, got ${JSON.stringify(since)}`);
      query.set('since_time', String(Date.now() - ms));
    }
    const first = await fetchFlows(server, query);
    if (format === 'json') {
      io.out(
        JSON.stringify(
          first.flows.map(({ seq: _s, ...f }) => f),
          null,
          2,
        ),
      );
      return 0;
    }
    print(io, format, first.flows);
    if (!follow) return 0;
    // Follow: poll after the last relay seq seen, until Ctrl-C (SIGINT/SIGTERM end the loop).
    let cursor = first.last;
    let stopped = false;
    let wake: (() => void) | undefined;
    const stop = (): void => {
      stopped = true;
      wake?.();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      while (!stopped) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, FOLLOW_POLL_MS);
        });
        if (stopped) break;
        query.set('since', String(cursor));
        const next = await fetchFlows(server, query);
        print(io, format, next.flows);
        cursor = next.last;
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  },
};
