// Analysis messages from the compiled model -> diagnostics positioned in the user's files.
import type { AnalysisMessage } from '../model/mesh-model.js';
import type { Diagnostic, Severity } from '../config/diagnostic.js';
import { parseFieldPath } from '../config/field-path.js';
import type { Resource } from '../config/resource.js';

const SEVERITY: Readonly<Record<AnalysisMessage['level'], Severity>> = {
  Error: 'error',
  Warning: 'warning',
  Info: 'info',
};

export function analysisDiagnostics(
  messages: readonly AnalysisMessage[],
  resources: readonly Resource[],
): Diagnostic[] {
  const byKey = new Map(resources.map((r) => [`${r.kind}/${r.namespace ?? ''}/${r.name}`, r]));
  return messages.map((m) => {
    const r = byKey.get(`${m.resource.kind}/${m.resource.namespace ?? ''}/${m.resource.name}`);
    const pos = r?.source.locate(m.field ? parseFieldPath(m.field) : []);
    const d: { -readonly [K in keyof Diagnostic]: Diagnostic[K] } = {
      severity: SEVERITY[m.level],
      code: m.code,
      message: /^(IST|TRL)\d/.test(m.code)
        ? `${m.message} (${m.code} ${m.name})`
        : `${m.message} (${m.name}=${m.status ?? 'False'}, reason ${m.code})`,
      resource: m.resource,
    };
    if (r) d.file = r.source.file;
    if (pos) {
      d.line = pos.line;
      d.column = pos.column;
    }
    if (m.field) d.field = m.field;
    return d;
  });
}
