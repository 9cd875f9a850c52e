// The client side of the locality failover test, in its own process: grpc-js-xds keeps
// retrying a control plane after the test stops it, which would keep the test process alive.
// Protocol: prints {"ports":{a,b}} once its backends listen, reads one line "XDS_ADDRESS",
// runs the scenario, prints {"result":...} and exits.
import { echoService } from './controlplane.js';
import * as grpc from '@grpc/grpc-js';
import { createInterface } from 'node:readline';

async function backend(name: string, port = 0): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(echoService, {
    who: (_c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { name }),
  });
  const p = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, bound) =>
      e ? reject(e) : resolve(bound),
    ),
  );
  return { port: p, server };
}

type EchoClient = grpc.Client & {
  who: (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { name: string }) => void) => void;
};

function who(client: EchoClient): Promise<string> {
  return new Promise((resolve) =>
    client.who({}, { deadline: Date.now() + 2000 }, (e, r) => resolve(e ? `error:${e.code}` : r!.name)),
  );
}

async function until(client: EchoClient, want: string, withinMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < withinMs) {
    if ((await who(client)) === want) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 50));
  }
  return -1;
}

const hardStop = setTimeout(() => process.exit(3), 50_000);
let a = await backend('zone-a');
const b = await backend('zone-b');
process.stdout.write(`${JSON.stringify({ ports: { a: a.port, b: b.port } })}\n`);
const xds = await new Promise<string>((resolve) => createInterface({ input: process.stdin }).once('line', resolve));
const { register } = (await import('@grpc/grpc-js-xds')) as { register: () => void };
register();
const bootstrap = {
  xds_servers: [{ server_uri: xds.trim(), channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
  node: { id: 'zone-a-client', cluster: 'test', locality: { region: 'eu', zone: 'zone-a' } },
};
const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
const client = new Client('xds:///echo.demo.svc.cluster.local:8080', grpc.credentials.createInsecure(), {
  'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
}) as unknown as EchoClient;

const before: string[] = [];
for (let i = 0; i < 50; i++) before.push(await who(client));
const portA = a.port;
a.server.forceShutdown();
const failoverMs = await until(client, 'zone-b', 10_000);
const during: string[] = [];
for (let i = 0; i < 20; i++) during.push(await who(client));
a = await backend('zone-a', portA);
const failbackMs = await until(client, 'zone-a', 20_000);
process.stdout.write(`${JSON.stringify({ result: { before, failoverMs, during, failbackMs } })}\n`);
clearTimeout(hardStop);
client.close();
a.server.forceShutdown();
b.server.forceShutdown();
process.exit(0);
