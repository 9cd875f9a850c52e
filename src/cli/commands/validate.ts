// trellis validate -f PATH...: every problem, one line each, then a summary.
import { compareDiagnostics, formatDiagnostic, type Diagnostic } from '../../config/diagnostic.js';
import { loadPaths } from '../../config/load.js';
import { analysisDiagnostics } from '../analysis-diagnostics.js';
import { UsageError } from '../../errors.js';
import { compileModel } from '../../model/compile.js';
import { HELP_FLAG, type Command } from '../command.js';
import { OUTPUT_FLAG, renderData, type OutputFormat } from '../output.js';

export interface ValidationReport {
  readonly valid: boolean;
  readonly files: number;
  readonly resources: number;
  readonly errors: number;
  readonly warnings: number;
  readonly infos: number;
  readonly diagnostics: readonly Diagnostic[];
}

/** Load, check and compile; the report behind `trellis validate`. */
export function validatePaths(paths: readonly string[]): ValidationReport {
  const loaded = loadPaths(paths);
  const diagnostics: Diagnostic[] = [...loaded.diagnostics];
  if (loaded.resources.length > 0) {
    const model = compileModel(loaded.resources);
    diagnostics.push(...analysisDiagnostics(model.analysis, loaded.resources));
  }
  diagnostics.sort(compareDiagnostics);
  const count = (s: Diagnostic['severity']): number => diagnostics.filter((d) => d.severity === s).length;
  const errors = count('error');
  return {
    valid: errors === 0,
    files: loaded.files.length,
    resources: loaded.resources.length,
    errors,
    warnings: count('warning'),
    infos: count('info'),
    diagnostics,
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export const validateCommand: Command = {
  name: 'validate',
  summary: 'Check manifests: schema, references between resources, and mesh analysis',
  usage: 'trellis validate -f PATH [-f PATH ...] [-o human|json|yaml]',
  flags: [
    {
      name: 'filename',
      short: 'f',
      type: 'list',
      valueName: 'PATH',
      description: 'file or directory (recursive) to check; repeatable; "-" reads stdin',
    },
    OUTPUT_FLAG,
    HELP_FLAG,
  ],
  run(args, io) {
    const paths = [...((args.flags.filename as readonly string[] | undefined) ?? []), ...args.positionals];
    if (paths.length === 0)
      throw new UsageError('trellis validate needs at least one path: trellis validate -f DIR_OR_FILE');
    const format = (args.flags.output as OutputFormat | undefined) ?? 'human';
    const report = validatePaths(paths);
    if (format !== 'human') {
      io.out(renderData(report, format));
    } else {
      for (const d of report.diagnostics) io.out(formatDiagnostic(d));
      const notes = [
        report.warnings ? plural(report.warnings, 'warning') : '',
        report.infos ? plural(report.infos, 'info') : '',
      ]
        .filter(Boolean)
        .join(', ');
      const scope = `${plural(report.resources, 'resource')} in ${plural(report.files, 'file')}`;
      io.out(
        report.valid
          ? `✔ ${scope}: valid${notes ? ` (${notes})` : ''}`
          : `✘ ${scope}: ${plural(report.errors, 'error')}${notes ? `, ${notes}` : ''}`,
      );
    }
    return report.valid ? 0 : 1;
  },
};
