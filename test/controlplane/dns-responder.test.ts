// Cluster DNS: A records for service hosts from the model, NXDOMAIN inside the cluster domain,
// REFUSED outside it; over real UDP, read back with dns-packet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { join } from 'node:path';
import { loadPaths } from '../../src/config/load.js';
import { withRuntimeAddresses } from '../../src/config/runtime-addresses.js';
import { compileModel } from '../../src/model/compile.js';
import { answer, dnsRecords, DnsResponder } from '../../src/controlplane/dns-responder.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const resources = loadPaths([join(REPO_ROOT, 'examples/shop')]).resources;
const model = compileModel(
  withRuntimeAddresses(resources, {
    nodes: {},
    workloads: {},
    services: { 'shop/api': '10.96.0.2', 'shop/orders': '10.96.0.3' },
  }),
);

test('answers: known host, NXDOMAIN in the cluster domain, REFUSED outside, NODATA for AAAA', () => {
  const records = dnsRecords(model);
  assert.deepEqual(records.get('api.shop.svc.cluster.local'), ['10.96.0.2']);
  assert.equal(records.has('frontend.shop.svc.cluster.local'), false, 'no VIP: no record');
  assert.deepEqual(answer('API.shop.svc.cluster.local.', 'A', records, 'cluster.local'), {
    rcode: 'NOERROR',
    addresses: ['10.96.0.2'],
  });
  assert.deepEqual(answer('api.shop.svc.cluster.local', 'AAAA', records, 'cluster.local'), {
    rcode: 'NOERROR',
    addresses: [],
  });
  assert.equal(
    answer('api.shop.svc.cluster.local.shop.svc.cluster.local', 'A', records, 'cluster.local').rcode,
    'NXDOMAIN',
  );
  assert.equal(answer('example.com', 'A', records, 'cluster.local').rcode, 'REFUSED');
});

type Answer = dnsPacket.Packet & { rcode?: string };

async function ask(port: number, name: string): Promise<Answer> {
  const socket = createSocket('udp4');
  try {
    const reply = new Promise<Buffer>((resolve, reject) => {
      socket.once('message', resolve);
      setTimeout(() => reject(new Error('no DNS answer')), 2000);
    });
    socket.send(
      dnsPacket.encode({ type: 'query', id: 42, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }),
      port,
      '127.0.0.1',
    );
    return dnsPacket.decode(await reply) as Answer;
  } finally {
    socket.close();
  }
}

test('over UDP: the answer, its id, and the rcode', async () => {
  const dns = new DnsResponder(() => model);
  const port = await dns.listen('127.0.0.1', 0);
  try {
    const ok = await ask(port, 'orders.shop.svc.cluster.local');
    assert.equal(ok.id, 42);
    assert.equal(ok.rcode, 'NOERROR');
    assert.deepEqual(
      ok.answers?.map((a) => (a.type === 'A' ? a.data : '')),
      ['10.96.0.3'],
    );
    assert.equal((await ask(port, 'nope.shop.svc.cluster.local')).rcode, 'NXDOMAIN');
    assert.equal((await ask(port, 'example.com')).rcode, 'REFUSED');
  } finally {
    dns.close();
  }
});
