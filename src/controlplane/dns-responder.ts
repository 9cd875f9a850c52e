// Cluster DNS for pods (CoreDNS's kubernetes plugin, in small): A records for every service
// host with an address — "<name>.<ns>.svc.<clusterDomain>" for Services (their VIP),
// ServiceEntry hosts (their addresses) —, NXDOMAIN inside the cluster domain for the rest,
// REFUSED for names outside it (no recursion: pods of `trellis up --netns` have no other
// resolver). UDP; answers are small and never truncated.
import { createSocket, type Socket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import type { MeshModel } from '../model/mesh-model.js';

const TTL_SECONDS = 5;

/** Host name (lowercase, no trailing dot) -> IPv4 addresses, from the model. */
export function dnsRecords(model: MeshModel | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of model?.services ?? []) {
    const v4 = s.addresses.filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
    if (v4.length) out.set(s.hostname.toLowerCase(), v4);
  }
  return out;
}

export interface DnsAnswer {
  readonly rcode: 'NOERROR' | 'NXDOMAIN' | 'REFUSED' | 'FORMERR';
  readonly addresses: readonly string[];
}

/** The answer for one question (pure). */
export function answer(name: string, type: string, records: ReadonlyMap<string, string[]>, domain: string): DnsAnswer {
  const host = name.toLowerCase().replace(/\.$/, '');
  const known = records.get(host);
  if (known) return { rcode: 'NOERROR', addresses: type === 'A' || type === 'ANY' ? known : [] };
  if (host === domain || host.endsWith(`.${domain}`)) return { rcode: 'NXDOMAIN', addresses: [] };
  return { rcode: 'REFUSED', addresses: [] };
}

export class DnsResponder {
  readonly #model: () => MeshModel | undefined;
  readonly #domain: () => string;
  #socket: Socket | undefined;
  /** Rebuilt when the model object changes (it is immutable). */
  #records: { model: MeshModel | undefined; map: Map<string, string[]> } = { model: undefined, map: new Map() };

  constructor(model: () => MeshModel | undefined) {
    this.#model = model;
    this.#domain = () => model()?.mesh.clusterDomain ?? 'cluster.local';
  }

  #current(): Map<string, string[]> {
    const m = this.#model();
    if (m !== this.#records.model) this.#records = { model: m, map: dnsRecords(m) };
    return this.#records.map;
  }

  async listen(host: string, port: number): Promise<number> {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    socket.on('message', (msg, rinfo) => {
      const reply = this.#reply(msg);
      if (reply) socket.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => resolve());
    });
    socket.on('error', () => undefined);
    this.#socket = socket;
    return socket.address().port;
  }

  #reply(msg: Buffer): Buffer | undefined {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return undefined; // not DNS: nothing to answer
    }
    // Only queries are answered: a response (QR set) gets nothing back, so two resolvers cannot loop.
    if (q.type === 'response') return undefined;
    const question = q.questions?.[0];
    const base = { type: 'response' as const, id: q.id ?? 0, questions: q.questions ?? [] };
    // NOTIFY, UPDATE...: not implemented (rcode 4).
    if (((q.flags ?? 0) >> 11) & 0xf) return dnsPacket.encode({ ...base, flags: 4 });
    if (!question) return dnsPacket.encode({ ...base, flags: dnsPacket.AUTHORITATIVE_ANSWER | 1 /* FORMERR */ });
    const a = answer(question.name, question.type, this.#current(), this.#domain());
    const rcode = { NOERROR: 0, FORMERR: 1, NXDOMAIN: 3, REFUSED: 5 }[a.rcode];
    return dnsPacket.encode({
      ...base,
      flags:
        (a.rcode === 'REFUSED' ? 0 : dnsPacket.AUTHORITATIVE_ANSWER) |
        ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED) |
        rcode,
      answers: a.addresses.map((data) => ({ type: 'A' as const, name: question.name, ttl: TTL_SECONDS, data })),
    });
  }

  close(): void {
    this.#socket?.close();
    this.#socket = undefined;
  }
}
