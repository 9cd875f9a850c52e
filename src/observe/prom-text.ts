// Reads the Prometheus text exposition format (version 0.0.4), as our own /metrics pages and
// any Prometheus client write it: one sample per line, `name{label="value",...} value [ts]`.
// Only the families asked for are parsed, so reading a large page costs one scan.

export interface PromSample {
  /** The sample's name (a histogram's `_bucket`, `_sum`, `_count` lines keep their suffix). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Line-level problems are skipped, not thrown: a scrape is best effort, as in Prometheus' relabeling of bad targets. */
export function parsePromText(text: string, wanted?: (name: string) => boolean): PromSample[] {
  const out: PromSample[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end);
    start = end + 1;
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const s = parseLine(line, wanted);
    if (s) out.push(s);
  }
  return out;
}

function parseLine(line: string, wanted: ((name: string) => boolean) | undefined): PromSample | undefined {
  let i = 0;
  while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
  const name = line.slice(0, i);
  if (!name || (wanted && !wanted(name))) return undefined;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (i < line.length && line[i] !== '}') {
      const eq = line.indexOf('=', i);
      if (eq < 0 || line[eq + 1] !== '"') return undefined;
      const key = line.slice(i, eq).trim();
      let j = eq + 2;
      let value = '';
      while (j < line.length && line[j] !== '"') {
        if (line[j] === '\\' && j + 1 < line.length) {
          const c = line[j + 1];
          value += c === 'n' ? '\n' : c;
          j += 2;
        } else value += line[j++];
      }
      if (j >= line.length) return undefined;
      labels[key] = value;
      i = j + 1;
      if (line[i] === ',') i++;
    }
    i++;
  }
  const rest = line.slice(i).trim();
  const space = rest.indexOf(' ');
  const value = parseValue(space < 0 ? rest : rest.slice(0, space));
  return value === undefined ? undefined : { name, labels, value };
}

function parseValue(s: string): number | undefined {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const n = Number(s);
  return s !== '' && !Number.isNaN(n) ? n : undefined;
}
