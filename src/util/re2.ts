import { RE2 } from 're2-wasm';

/**
 * Checks a pattern with the RE2 engine (the syntax Envoy, Gateway API and Cilium use).
 * Returns the engine's message when the pattern is not valid RE2.
 */
export function re2Problem(pattern: string): string | undefined {
  try {
    new RE2(pattern, 'u');
    return undefined;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // "Invalid regular expression: /a(b/u: missing ): a(b" -> "missing ): a(b"
    const m = /^Invalid regular expression: \/.*\/u: (.*)$/s.exec(msg);
    return `invalid RE2 regular expression: ${(m ? m[1]! : msg).replace(/\\\//g, '/')}`;
  }
}
