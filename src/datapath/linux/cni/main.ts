// The CNI plugin executables' entry point (`trellis cni install` writes the wrappers that run
// it): "interface" is the trellis-cni plugin (veth, addresses, routes), "ipam" the
// trellis-ipam plugin (pod CIDR allocations). Imports only the datapath: a runtime starts a
// plugin for every pod, so start-up time counts.
import { ipamPlugin } from '../ipam/ipam-plugin.js';
import { interfacePlugin } from './interface-plugin.js';
import { readStdin, runPlugin, type CniPlugin } from './run.js';

const plugins: Record<string, () => CniPlugin> = { interface: interfacePlugin, ipam: ipamPlugin };
const which = process.argv[2] ?? '';
const make = plugins[which];
if (!make) {
  process.stderr.write(
    `usage: main.js interface|ipam (CNI_* in the environment, the network configuration on stdin)\n`,
  );
  process.exit(2);
}
process.exitCode = await runPlugin(make(), {
  env: process.env,
  stdin: readStdin,
  stdout: (s) => process.stdout.write(`${s}\n`),
});
