// envoy.type.matcher.v3.StringMatcher and RegexMatcher compiled to predicates, shared by the
// L7 engine (routes, headers) and RBAC. ignore_case folds ASCII only,
// as Envoy (absl::EqualsIgnoreCase) does, and without allocating per call.
import { re2Problem } from '../../util/re2.js';
import { get, isObj, oneOf } from './values.js';

export type StringTest = (s: string) => boolean;

const MEMBERS = ['exact', 'prefix', 'suffix', 'contains', 'safe_regex'] as const;

const fold = (c: number): number => (c >= 65 && c <= 90 ? c + 32 : c);

function lowerAscii(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** s[at .. at+e.length) equals e, where e is already ASCII-lowercased. */
function equalsFoldedAt(s: string, at: number, e: string): boolean {
  for (let i = 0; i < e.length; i++) if (fold(s.charCodeAt(at + i)) !== e.charCodeAt(i)) return false;
  return true;
}

/** Returns the predicate, or a problem (the caller makes the matcher UNKNOWN). */
export function stringMatcher(m: unknown): StringTest | string {
  if (!isObj(m)) return 'string matcher is not an object';
  const r = oneOf(m, MEMBERS, 'match_pattern');
  if ('problem' in r) return `string matcher: ${r.problem}`;
  if (r.kind === 'safe_regex') return regexMatcher(r.value);
  if (typeof r.value !== 'string') return `string matcher: ${r.kind} is not a string`;
  const ignoreCase = get(m, 'ignore_case') === true;
  const e = ignoreCase ? lowerAscii(r.value) : r.value;
  switch (r.kind) {
    case 'exact':
      return ignoreCase ? (s) => s.length === e.length && equalsFoldedAt(s, 0, e) : (s) => s === e;
    case 'prefix':
      return ignoreCase ? (s) => s.length >= e.length && equalsFoldedAt(s, 0, e) : (s) => s.startsWith(e);
    case 'suffix':
      return ignoreCase
        ? (s) => s.length >= e.length && equalsFoldedAt(s, s.length - e.length, e)
        : (s) => s.endsWith(e);
    case 'contains':
      return ignoreCase
        ? (s) => {
            for (let at = 0; at + e.length <= s.length; at++) if (equalsFoldedAt(s, at, e)) return true;
            return false;
          }
        : (s) => s.includes(e);
  }
}

/** envoy.type.matcher.v3.RegexMatcher ({regex}); a full match as Envoy's RE2 FullMatch. */
export function regexMatcher(m: unknown): StringTest | string {
  const regex = isObj(m) ? get(m, 'regex') : undefined;
  if (typeof regex !== 'string') return 'safe_regex has no regex';
  const re = compileRegex(regex);
  if (typeof re === 'string') return re;
  // The same peer or path is tested again and again (one connection, many requests): remember the last.
  let lastInput: string | undefined;
  let lastResult = false;
  return (s) => {
    if (s !== lastInput) {
      lastResult = re.test(s);
      lastInput = s;
    }
    return lastResult;
  };
}

const compiled = new Map<string, RegExp | string>();

/**
 * RE2 syntax -> an anchored JS RegExp. The pattern is first checked with RE2 itself (Envoy
 * rejects anything else); the few RE2-only spellings with a JS equivalent are rewritten;
 * what JS still cannot express is reported rather than approximated.
 */
export function compileRegex(pattern: string): RegExp | string {
  const hit = compiled.get(pattern);
  if (hit !== undefined) return hit;
  const result = toJsRegex(pattern);
  if (compiled.size >= 1000) compiled.clear();
  compiled.set(pattern, result);
  return result;
}

function toJsRegex(pattern: string): RegExp | string {
  const problem = re2Problem(pattern);
  if (problem !== undefined) return `safe_regex ${JSON.stringify(pattern)}: ${problem}`;
  let body = pattern;
  let flags = '';
  // Leading inline flags (?i) (?s) (?is) become JS flags ((?m) would also move our own anchors).
  const lead = /^\(\?([is]+)\)/.exec(body);
  if (lead) {
    flags = [...new Set(lead[1]!)].join('');
    body = body.slice(lead[0].length);
  }
  if (/\[:\^?[a-z]+:\]/.test(body))
    return `safe_regex ${JSON.stringify(pattern)}: POSIX character classes are not supported here`;
  body = rewriteRe2Only(body);
  // Unicode mode only: without it JS silently reads RE2 escapes such as \pL or \Q as letters.
  try {
    return new RegExp(`^(?:${body})$`, flags + 'u');
  } catch {
    return `safe_regex ${JSON.stringify(pattern)}: valid RE2 that JavaScript regular expressions cannot express`;
  }
}

/** RE2 spellings JS lacks but can express: \A, \z, (?P<name>. Escapes are skipped as a whole. */
function rewriteRe2Only(p: string): string {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\' && i + 1 < p.length) {
      const n = p[++i]!;
      if (n === 'A') out += '^';
      else if (n === 'z') out += '$';
      else if (n === 'p' || n === 'P')
        out += p[i + 1] === '{' ? c + n : `${c}${n}{${p[++i] ?? ''}}`; // \pL -> \p{L}
      // RE2 lets any punctuation be escaped; JS unicode mode does not (\- \# ...): use \xHH.
      else if (/[!-/:-@[-`{-~]/.test(n)) out += `\\x${n.charCodeAt(0).toString(16).padStart(2, '0')}`;
      else out += c + n;
    } else if (c === '(' && p.startsWith('(?P<', i)) {
      out += '(?<';
      i += 3;
    } else out += c;
  }
  return out;
}
