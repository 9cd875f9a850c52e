// The Envoy v3 protos shipped in @grpc/grpc-js-xds, loaded into one protobufjs root for tests.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const includeDirs = [
  ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)),
  dirname(require.resolve('protobufjs/package.json')),
];

let root: protobuf.Root | undefined;

export function envoyRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => includeDirs.map((d) => join(d, target)).find((p) => existsSync(p)) ?? target;
  r.loadSync(
    [
      'envoy/config/listener/v3/listener.proto',
      'envoy/config/route/v3/route.proto',
      'envoy/config/cluster/v3/cluster.proto',
      'envoy/config/endpoint/v3/endpoint.proto',
      'envoy/extensions/transport_sockets/tls/v3/secret.proto',
      'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
      'envoy/extensions/filters/http/router/v3/router.proto',
      'envoy/extensions/filters/http/fault/v3/fault.proto',
      'envoy/extensions/filters/http/cors/v3/cors.proto',
      'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
      'envoy/extensions/transport_sockets/tls/v3/tls.proto',
      'envoy/extensions/filters/http/rbac/v3/rbac.proto',
      'envoy/extensions/filters/network/rbac/v3/rbac.proto',
      'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
      'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
    ],
    { keepCase: true },
  );
  r.resolveAll();
  root = r;
  return r;
}

/** Encodes a resource body ('@type' included) with its proto and decodes it back. */
export function roundTrip(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const typeUrl = body['@type'] as string;
  const type = envoyRoot().lookupType(typeUrl.replace('type.googleapis.com/', ''));
  const { '@type': _t, ...fields } = body;
  const msg = type.fromObject(fields);
  const back = type.toObject(type.decode(type.encode(msg).finish()), {
    enums: String,
    longs: Number,
    json: true,
  }) as Record<string, unknown>;
  // fromObject silently drops unknown fields: every field we wrote must survive the round trip.
  const lost = missing(fields, back, '');
  if (lost.length) throw new Error(`${typeUrl}: fields lost in encoding (unknown to the proto?): ${lost.join(', ')}`);
  return back;
}

/** A resource as an xDS client's proto-loader hands it over: longs and enums as strings, defaults filled in. */
export function decodedAsClient(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const type = envoyRoot().lookupType((body['@type'] as string).replace('type.googleapis.com/', ''));
  const { '@type': _t, ...fields } = body;
  return type.toObject(type.decode(type.encode(type.fromObject(fields)).finish()), {
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    json: true,
  });
}

function missing(sent: unknown, got: unknown, path: string): string[] {
  if (sent === null || typeof sent !== 'object' || Buffer.isBuffer(sent)) return [];
  if (Array.isArray(sent)) {
    if (!Array.isArray(got) || got.length !== sent.length) return [path || '(root)'];
    return sent.flatMap((v, i) => missing(v, got[i], `${path}[${i}]`));
  }
  const out: string[] = [];
  for (const [k, v] of Object.entries(sent as Record<string, unknown>)) {
    if (v === undefined) continue;
    const g = (got as Record<string, unknown> | undefined)?.[k];
    // Empty messages ({}) and default scalars may legitimately vanish on the wire.
    const isEmpty =
      v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) && Object.keys(v).length === 0;
    if (g === undefined && !isEmpty && v !== 0 && v !== false && v !== '') out.push(`${path}.${k}`);
    else out.push(...missing(v, g, `${path}.${k}`));
  }
  return out;
}
