// trellis policy replay: recorded flows against a proposed set of policies. Each inbound flow a
// node recorded (the destination's enforcement point, where the verdict was made) is decided
// again with the proposed config's RBAC filters for that listener and the proposed mTLS mode of
// that port; every flow whose verdict would change is listed, grouped by source and destination.
// This is the safe path from PERMISSIVE to STRICT (plaintext flows that STRICT would refuse) and
// from allow-all to default-deny (flows no proposed ALLOW rule covers).
import { get, isObj } from '../proxy/envoy/values.js';
import { compileRbacFilters, type CompiledRbac } from '../proxy/rbac/evaluate.js';
import type { EnvoyObject } from '../xds/translate/route-match.js';
import { explainDenial, type Verdict } from './check.js';
import { sourceOf } from '../proxy/rbac/policy-names.js';
import type { PolicyView } from './view.js';

export interface ReplayGroup {
  /** The caller: its SPIFFE ID, or "plaintext <ip>". */
  readonly source: string;
  /** "shop/orders 127.0.0.2:9090" — the destination workload and port. */
  readonly destination: string;
  readonly flows: number;
  readonly before: Verdict;
  readonly after: Verdict;
  /** The proposed policy and rule that decide now (or the reason nothing does). */
  readonly policy?: string;
  readonly rule?: string;
  readonly reason: string;
}

export interface ReplayResult {
  readonly records: number;
  readonly replayed: number;
  /** Records not replayed, by why (outbound records, errors, unknown destinations...). */
  readonly skipped: Readonly<Record<string, number>>;
  readonly changed: number;
  readonly groups: readonly ReplayGroup[];
}

interface FlowLike {
  readonly node?: unknown;
  readonly direction?: unknown;
  readonly verdict?: unknown;
  readonly reason?: unknown;
  readonly tls?: unknown;
  readonly via?: unknown;
  readonly source?: { readonly identity?: unknown; readonly address?: unknown };
  readonly destination?: { readonly workload?: unknown; readonly address?: unknown };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** "ip:port" / "[v6]:port" -> [ip, port]. */
function splitHostPort(text: string): [string, number] | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  return m ? [m[1]!, Number(m[2])] : undefined;
}

export function replayFlows(records: readonly unknown[], proposed: PolicyView): ReplayResult {
  const skipped: Record<string, number> = {};
  const skip = (why: string): void => {
    skipped[why] = (skipped[why] ?? 0) + 1;
  };
  const compiled = new Map<string, CompiledRbac>();
  const workloads = new Map(proposed.model.workloads.map((w) => [w.id, w]));
  const groups = new Map<string, ReplayGroup>();
  let replayed = 0;
  let changed = 0;

  for (const raw of records) {
    if (!isObj(raw)) {
      skip('lines that are not flow records');
      continue;
    }
    const f = raw as FlowLike;
    if (isObj(raw.l7)) {
      skip('L7 records (HTTP requests at a waypoint or gateway)');
      continue;
    }
    if (f.direction !== 'inbound') {
      skip('outbound records (decided at the destination)');
      continue;
    }
    if (f.verdict !== 'FORWARDED' && f.verdict !== 'DENIED') {
      skip('errors (no verdict was made)');
      continue;
    }
    if (f.via === 'waypoint') {
      skip('to a waypoint (L7 decisions need the HTTP request)');
      continue;
    }
    if (f.verdict === 'DENIED' && typeof f.reason === 'string' && !f.reason.startsWith('denied')) {
      // Refused before policy: a bad certificate, no such destination...
      skip('refused before policy (identity, unknown destination)');
      continue;
    }
    const node = str(f.node);
    const dest = str(f.destination?.address);
    const hp = dest ? splitHostPort(dest) : undefined;
    const workloadId = str(f.destination?.workload);
    if (!node || !hp) {
      skip('no destination address');
      continue;
    }
    const [ip, port] = hp;
    const plaintext = f.tls === 'none' || f.via === 'plaintext';
    const identity = plaintext ? undefined : str(f.source?.identity);
    const srcAddr = str(f.source?.address);
    const sourceIp = srcAddr ? (splitHostPort(srcAddr)?.[0] ?? srcAddr) : undefined;
    const before: Verdict = f.verdict === 'FORWARDED' ? 'ALLOW' : 'DENY';

    const w = workloadId ? workloads.get(workloadId) : undefined;
    let after: Verdict;
    let reason: string;
    let policy: string | undefined;
    let rule: string | undefined;
    const listenerName = `trellis/${node}/inbound/${ip}:${port}`;
    const listener = proposed.listeners.get(listenerName);
    if (!listener || !w) {
      after = 'DENY';
      reason = `the proposed config has no workload at ${ip}:${port} on ${node}`;
    } else if (plaintext && proposed.security.mtlsMode(w, port) === 'STRICT') {
      after = 'DENY';
      reason = 'plaintext refused: the port is STRICT mTLS in the proposed config';
      policy = 'PeerAuthentication';
    } else {
      let rbac = compiled.get(listenerName);
      if (!rbac) compiled.set(listenerName, (rbac = compileRbacFilters(filtersOf(listener), 'l4')));
      const attrs = {
        ...(identity ? { principal: identity } : {}),
        ...(sourceIp ? { sourceIp } : {}),
        destinationIp: ip,
        destinationPort: port,
      };
      const d = rbac.evaluate(attrs);
      after = d.allowed ? 'ALLOW' : 'DENY';
      const src = sourceOf(d);
      policy = src?.policy;
      rule = src?.rule;
      reason = d.allowed || src ? d.reason : explainDenial(filtersOf(listener), 'l4', attrs, d, 'there');
    }
    replayed++;
    if (after === before) continue;
    changed++;
    const source = identity ?? `plaintext ${sourceIp ?? 'unknown'}`;
    const destination = `${w ? `${w.namespace}/${w.name}` : (workloadId ?? '?')} ${ip}:${port}`;
    const key = `${source}\u0000${destination}\u0000${before}\u0000${after}\u0000${policy ?? ''}\u0000${rule ?? ''}`;
    const g = groups.get(key);
    groups.set(
      key,
      g
        ? { ...g, flows: g.flows + 1 }
        : {
            source,
            destination,
            flows: 1,
            before,
            after,
            ...(policy ? { policy } : {}),
            ...(rule ? { rule } : {}),
            reason,
          },
    );
  }
  const sorted = [...groups.values()].sort((a, b) =>
    a.destination < b.destination
      ? -1
      : a.destination > b.destination
        ? 1
        : a.source < b.source
          ? -1
          : a.source > b.source
            ? 1
            : 0,
  );
  return { records: records.length, replayed, skipped, changed, groups: sorted };
}

function filtersOf(listener: EnvoyObject): EnvoyObject[] {
  const chains = get(listener, 'filter_chains');
  const first = Array.isArray(chains) ? (chains[0] as unknown) : undefined;
  const filters = isObj(first) ? get(first, 'filters') : undefined;
  return Array.isArray(filters) ? (filters as EnvoyObject[]) : [];
}
