// Runs inside a "node" network namespace for test/datapath/original-dst.test.ts (started with
// `ip netns exec <node> node capture-child.js '<json>'`): capture listeners that answer
// "captured:<port>" and report each connection as a JSON line on stdout, plus plain servers
// answering "direct" (the node's own services, reached without capture). Prints "ready" once
// everything listens; runs until killed.
import { createServer } from 'node:net';
import { CaptureListener } from '../../src/proxy/node/capture-listener.js';
import { originalDestination } from '../../src/datapath/linux/original-dst.js';

const { capturePorts, directPorts } = JSON.parse(process.argv[2] ?? '{}') as {
  capturePorts: number[];
  directPorts: number[];
};

const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

for (const port of capturePorts)
  await CaptureListener.start({
    port,
    resolve: originalDestination,
    handler: (socket, original, source) => {
      say({ listener: port, original, source });
      socket.end(`captured:${port}`);
    },
    log: (level, msg, fields) => say({ listener: port, level, msg, fields }),
  });
for (const port of directPorts)
  await new Promise<void>((resolve) => createServer((s) => s.end('direct')).listen(port, '0.0.0.0', () => resolve()));
process.stdout.write('ready\n');
