// The Envoy v3 protos of envoy-protos.ts plus the TLS transport sockets and the RBAC filter,
// in a root of their own, for round-tripping server Listeners and mTLS Clusters.
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

export function securityRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => includeDirs.map((d) => join(d, target)).find((p) => existsSync(p)) ?? target;
  r.loadSync(
    [
      'envoy/config/listener/v3/listener.proto',
      'envoy/config/route/v3/route.proto',
      'envoy/config/cluster/v3/cluster.proto',
      'envoy/config/endpoint/v3/endpoint.proto',
      'envoy/extensions/transport_sockets/tls/v3/tls.proto',
      'envoy/extensions/transport_sockets/tls/v3/secret.proto',
      'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
      'envoy/extensions/filters/http/router/v3/router.proto',
      'envoy/extensions/filters/http/fault/v3/fault.proto',
      'envoy/extensions/filters/http/rbac/v3/rbac.proto',
    ],
    { keepCase: true },
  );
  r.resolveAll();
  root = r;
  return r;
}

/** Encodes a resource body ('@type' included) and decodes it back; throws when a field we wrote is lost. */
export function roundTripSecure(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const typeUrl = body['@type'] as string;
  const type = securityRoot().lookupType(typeUrl.replace('type.googleapis.com/', ''));
  const { '@type': _t, ...fields } = body;
  const back = type.toObject(type.decode(type.encode(type.fromObject(fields)).finish()), {
    enums: String,
    longs: Number,
    json: true,
  }) as Record<string, unknown>;
  const lost = missing(fields, back, '');
  if (lost.length) throw new Error(`${typeUrl}: fields lost in encoding (unknown to the proto?): ${lost.join(', ')}`);
  return back;
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
    const isEmpty =
      v !== null && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) && Object.keys(v).length === 0;
    if (g === undefined && !isEmpty && v !== 0 && v !== false && v !== '') out.push(`${path}.${k}`);
    else out.push(...missing(v, g, `${path}.${k}`));
  }
  return out;
}
