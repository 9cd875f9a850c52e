// request_headers_to_add / _to_remove and their response twins, compiled once per config.
// Levels are merged per route in Envoy's order (route, then virtual host, then route
// configuration: the least specific level is applied last and wins an overwrite, unless
// most_specific_header_mutations_wins). Within a level, removals come before additions.
import { L7ConfigError, bool, enumName, list, obj, str, strList, type EnvoyObject } from './config.js';
import { appendValue, joined, type HeaderMap } from './headers.js';

/** What header value substitutions (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x)%...) may read. */
export interface FormatContext {
  readonly protocol: string;
  readonly headers: HeaderMap;
  readonly peer: { readonly identity?: string; readonly address?: string; readonly port?: number };
  readonly upstreamCluster: string | undefined;
  readonly upstreamHost: string | undefined;
}

type Value = string | ((ctx: FormatContext) => string);

const enum Action {
  AppendIfExistsOrAdd = 0,
  AddIfAbsent = 1,
  OverwriteIfExistsOrAdd = 2,
  OverwriteIfExists = 3,
}

const ACTIONS = [
  'APPEND_IF_EXISTS_OR_ADD',
  'ADD_IF_ABSENT',
  'OVERWRITE_IF_EXISTS_OR_ADD',
  'OVERWRITE_IF_EXISTS',
] as const;

interface AddOp {
  readonly name: string;
  readonly value: Value;
  readonly action: Action;
  readonly keepEmpty: boolean;
}

interface Level {
  readonly remove: readonly string[];
  readonly add: readonly AddOp[];
}

/** The compiled mutations of one direction for one route; `undefined` when there are none. */
export class HeaderMutation {
  readonly #levels: readonly Level[];

  private constructor(levels: readonly Level[]) {
    this.#levels = levels;
  }

  /** Levels in application order; returns undefined when no level changes anything. */
  static of(levels: readonly (Level | undefined)[]): HeaderMutation | undefined {
    const real = levels.filter((l): l is Level => l !== undefined && (l.remove.length > 0 || l.add.length > 0));
    return real.length > 0 ? new HeaderMutation(real) : undefined;
  }

  apply(h: HeaderMap, ctx: FormatContext): void {
    for (const level of this.#levels) {
      for (const name of level.remove) if (h[name] !== undefined) delete h[name];
      for (const op of level.add) {
        const value = typeof op.value === 'string' ? op.value : op.value(ctx);
        if (value === '' && !op.keepEmpty) continue;
        switch (op.action) {
          case Action.AppendIfExistsOrAdd:
            appendValue(h, op.name, value);
            break;
          case Action.AddIfAbsent:
            if (h[op.name] === undefined) h[op.name] = value;
            break;
          case Action.OverwriteIfExistsOrAdd:
            h[op.name] = value;
            break;
          case Action.OverwriteIfExists:
            if (h[op.name] !== undefined) h[op.name] = value;
            break;
        }
      }
    }
  }
}

/** One level (route, virtual host or route configuration) of one direction. */
export function headerLevel(owner: EnvoyObject, direction: 'request' | 'response'): Level | undefined {
  const adds = list(owner[`${direction}_headers_to_add`]);
  const removes = strList(owner[`${direction}_headers_to_remove`]);
  if (adds.length === 0 && removes.length === 0) return undefined;
  return {
    remove: removes.map((n) => checkName(n.toLowerCase())),
    add: adds.map(addOp),
  };
}

function checkName(name: string): string {
  // Envoy refuses to mutate pseudo-headers and Host this way (host_rewrite_* exist for that).
  if (name === '' || name.startsWith(':') || name === 'host')
    throw new L7ConfigError(`header ${JSON.stringify(name)} cannot be added or removed by a route`);
  return name;
}

function addOp(o: EnvoyObject): AddOp {
  const header = obj(o.header) ?? {};
  const name = checkName((str(header.key) ?? '').toLowerCase());
  const raw = str(header.value) ?? (typeof header.raw_value === 'string' ? header.raw_value : '');
  let action = Action.AppendIfExistsOrAdd;
  const named = enumName(o.append_action, ACTIONS);
  const legacy = bool(o.append);
  // append_action wins when set to a non-default value; else the deprecated `append` BoolValue.
  if (named !== undefined && named !== 'APPEND_IF_EXISTS_OR_ADD') action = ACTIONS.indexOf(named as never) as Action;
  else if (legacy === false) action = Action.OverwriteIfExistsOrAdd;
  if ((action as number) < 0) throw new L7ConfigError(`unknown append_action ${String(o.append_action)}`);
  return { name, value: formatter(raw), action, keepEmpty: bool(o.keep_empty_value) === true };
}

type Command = (ctx: FormatContext) => string;

const COMMANDS: Readonly<Record<string, Command>> = {
  DOWNSTREAM_REMOTE_ADDRESS: (c) =>
    c.peer.address === undefined
      ? ''
      : c.peer.address.includes(':')
        ? `[${c.peer.address}]:${c.peer.port ?? 0}`
        : `${c.peer.address}:${c.peer.port ?? 0}`,
  DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: (c) => c.peer.address ?? '',
  DOWNSTREAM_PEER_URI_SAN: (c) => c.peer.identity ?? '',
  PROTOCOL: (c) => c.protocol,
  UPSTREAM_CLUSTER: (c) => c.upstreamCluster ?? '',
  UPSTREAM_REMOTE_ADDRESS: (c) => c.upstreamHost ?? '',
};

/**
 * Envoy's header value formatter, for the commands a mesh uses; unknown commands stay literal
 * (Envoy would reject them) and "%%" is a percent sign. Constant values stay strings.
 */
export function formatter(text: string): Value {
  if (!text.includes('%')) return text;
  const parts: Value[] = [];
  const re = /%%|%([A-Z_]+)(?:\(([^)]*)\))?%/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[0] === '%%') parts.push('%');
    else if (m[1] === 'REQ' && m[2]) {
      const name = m[2].split('?')[0]!.toLowerCase();
      parts.push((c) => joined(c.headers[name]) ?? '');
    } else if (m[1] && COMMANDS[m[1]]) parts.push(COMMANDS[m[1]]!);
    else parts.push(m[0]);
  }
  if (last < text.length) parts.push(text.slice(last));
  if (parts.every((p) => typeof p === 'string')) return parts.join('');
  return (ctx) => {
    let s = '';
    for (const p of parts) s += typeof p === 'string' ? p : p(ctx);
    return s;
  };
}
