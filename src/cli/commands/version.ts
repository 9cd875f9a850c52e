import { VERSION } from '../../version.js';
import { HELP_FLAG, type Command } from '../command.js';
import { OUTPUT_FLAG, renderData, type OutputFormat } from '../output.js';

export const versionCommand: Command = {
  name: 'version',
  summary: 'Print the Trellis version',
  usage: 'trellis version [-o human|json|yaml]',
  flags: [OUTPUT_FLAG, HELP_FLAG],
  run(args, io) {
    const format = (args.flags.output as OutputFormat | undefined) ?? 'human';
    const info = { version: VERSION, node: process.version, platform: `${process.platform}/${process.arch}` };
    io.out(format === 'human' ? `trellis ${VERSION}` : renderData(info, format));
    return 0;
  },
};
