// The client side of the DestinationRule LB policy end-to-end test, in its own process (a
// grpc-js-xds client keeps retrying its control plane after the test stops it).
// Protocol: prints {"ports":{a,b}} once its backends listen, reads one line "XDS_ADDRESS",
// makes 40 calls, prints {"result":{names}}, then exits on the next stdin line.
import { echoService } from './controlplane.js';
import * as grpc from '@grpc/grpc-js';
import { createInterface } from 'node:readline';

async function backend(name: string): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(echoService, {
    who: (_c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { name }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, port };
}

type EchoClient = grpc.Client & {
  who: (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { name: string }) => void) => void;
};

const hardStop = setTimeout(() => process.exit(3), 50_000);
const backends = await Promise.all([backend('a'), backend('b')]);
process.stdout.write(`${JSON.stringify({ ports: { a: backends[0].port, b: backends[1].port } })}\n`);
const lines = createInterface({ input: process.stdin });
const xds = await new Promise<string>((resolve) => lines.once('line', resolve));
const { register } = (await import('@grpc/grpc-js-xds')) as { register: () => void };
register();
const bootstrap = {
  xds_servers: [{ server_uri: xds.trim(), channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
  node: { id: 'lb-policy-client', cluster: 'test', locality: { region: 'eu', zone: 'zone-a' } },
};
const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
const client = new Client('xds:///echo.demo.svc.cluster.local:8080', grpc.credentials.createInsecure(), {
  'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
}) as unknown as EchoClient;
const names: string[] = [];
for (let i = 0; i < 40; i++) {
  names.push(
    await new Promise<string>((resolve) =>
      client.who({}, { deadline: Date.now() + 5000 }, (e, r) => resolve(e ? `error:${e.code}` : r!.name)),
    ),
  );
}
process.stdout.write(`${JSON.stringify({ result: { names } })}\n`);
// Stay connected until the test has read the control plane's view of this client (ACK state).
await new Promise((resolve) => lines.once('line', resolve));
clearTimeout(hardStop);
client.close();
for (const b of backends) b.server.forceShutdown();
process.exit(0);
