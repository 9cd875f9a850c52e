// The Envoy v3 / xDS protos, loaded at run time from the copy that ships inside
// @grpc/grpc-js-xds (never copied into this repository), all into ONE proto-loader package
// definition. Because every message type lives in the same protobufjs root, serializing an
// object that carries '@type' packs it into a google.protobuf.Any with that type_url,
// recursively (protobufjs' Any wrapper) — which is how snapshot bodies are written.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { XdsResource } from '../snapshot.js';

/** Every file we load; their imports come along. */
export const XDS_PROTO_FILES: readonly string[] = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/status/v3/csds.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/http/cors/v3/cors.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/jwt_authn/v3/config.proto',
  // What Trellis' own node proxies read besides: L4 authorization, upstream ports, upstream HTTP/2.
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  // What grpc-js-xds also understands inside clusters (aggregate clusters, LB policies).
  'envoy/extensions/clusters/aggregate/v3/cluster.proto',
  'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
  'envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto',
  'envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality.proto',
  'envoy/extensions/load_balancing_policies/pick_first/v3/pick_first.proto',
  // What DestinationRule LEAST_REQUEST / RANDOM become (load_balancing_policy, for Envoy and the L7 engine).
  'envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto',
  'envoy/extensions/load_balancing_policies/random/v3/random.proto',
  'envoy/extensions/load_balancing_policies/maglev/v3/maglev.proto',
  'xds/type/v3/typed_struct.proto',
  'udpa/type/v1/typed_struct.proto',
];

/** proto-loader options: field names as in the .proto, 64-bit ints and enums as strings, no defaults. */
export const XDS_PROTO_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

export const ADS_SERVICE_NAME = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';
export const DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';
export const DELTA_DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
export const DELTA_DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DeltaDiscoveryResponse';
/** The envoy.service.discovery.v3.Resource wrapper of incremental responses. */
export const DISCOVERY_RESOURCE = 'envoy.service.discovery.v3.Resource';
const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** The include directories: the package's deps/ trees plus protobufjs' own dir (google/protobuf). */
export function xdsProtoIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const xdsDir = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  return [
    ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDir, 'deps', d)),
    dirname(require.resolve('protobufjs/package.json')),
  ];
}

export interface XdsProtos {
  readonly packageDefinition: protoLoader.PackageDefinition;
  readonly grpcObject: grpc.GrpcObject;
  /** The generated client for AggregatedDiscoveryService (`.service` is the server definition). */
  readonly AdsClient: grpc.ServiceClientConstructor;
  /** The generated client for envoy.service.status.v3.ClientStatusDiscoveryService (CSDS). */
  readonly CsdsClient: grpc.ServiceClientConstructor;
  /** Whether a message type (full name, no leading dot) is loaded. */
  hasMessage(fullName: string): boolean;
  /** Encodes an object (fromObject form, '@type' Anys packed). Throws for an unknown type. */
  serialize(fullName: string, value: object): Buffer;
  /** Decodes with XDS_PROTO_OPTIONS. Throws for an unknown type. */
  deserialize(fullName: string, bytes: Buffer): Record<string, unknown>;
  /** Decodes a google.protobuf.Any (as proto-loader gives it) into '@type' + fields. */
  unpackAny(any: { type_url?: string; value?: Buffer | Uint8Array }): Record<string, unknown>;
}

let cached: XdsProtos | undefined;

function messageDef(
  def: protoLoader.PackageDefinition,
  fullName: string,
): protoLoader.MessageTypeDefinition<object, unknown> {
  const d = def[fullName] as Partial<protoLoader.MessageTypeDefinition<object, unknown>> | undefined;
  if (!d || d.format !== 'Protocol Buffer 3 DescriptorProto' || typeof d.serialize !== 'function') {
    throw new Error(`xDS protos: no message type ${fullName}`);
  }
  return d as protoLoader.MessageTypeDefinition<object, unknown>;
}

function lookup(root: grpc.GrpcObject, dotted: string): unknown {
  let cur: unknown = root;
  for (const part of dotted.split('.')) {
    cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[part] : undefined;
  }
  return cur;
}

/** Loads the protos once per process (~0.3 s). */
export function loadXdsProtos(): XdsProtos {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync([...XDS_PROTO_FILES], {
    ...XDS_PROTO_OPTIONS,
    includeDirs: xdsProtoIncludeDirs(),
  });
  const grpcObject = grpc.loadPackageDefinition(packageDefinition);
  const AdsClient = lookup(grpcObject, ADS_SERVICE_NAME) as grpc.ServiceClientConstructor | undefined;
  const CsdsClient = lookup(grpcObject, 'envoy.service.status.v3.ClientStatusDiscoveryService') as
    grpc.ServiceClientConstructor | undefined;
  if (typeof AdsClient !== 'function' || typeof CsdsClient !== 'function') {
    throw new Error('xDS protos: the ADS or CSDS service is missing from @grpc/grpc-js-xds/deps');
  }
  const protos: XdsProtos = {
    packageDefinition,
    grpcObject,
    AdsClient,
    CsdsClient,
    hasMessage: (fullName) =>
      (packageDefinition[fullName] as { format?: string } | undefined)?.format === 'Protocol Buffer 3 DescriptorProto',
    serialize: (fullName, value) => messageDef(packageDefinition, fullName).serialize(value),
    deserialize: (fullName, bytes) =>
      messageDef(packageDefinition, fullName).deserialize(bytes) as Record<string, unknown>,
    unpackAny: (any) => {
      const url = any.type_url ?? '';
      const name = url.slice(url.lastIndexOf('/') + 1);
      return { '@type': url, ...protos.deserialize(name, Buffer.from(any.value ?? new Uint8Array())) };
    },
  };
  cached = protos;
  return protos;
}

/** Every '@type' in a fromObject-form tree. */
function anyTypeUrls(value: unknown, out: Set<string>): Set<string> {
  if (Array.isArray(value)) for (const v of value) anyTypeUrls(v, out);
  else if (value && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(value)) {
      if (k === '@type' && typeof v === 'string') out.add(v);
      else anyTypeUrls(v, out);
    }
  }
  return out;
}

export class ResourceEncodingError extends Error {
  constructor(
    readonly resourceName: string,
    readonly typeUrl: string,
    message: string,
  ) {
    super(`cannot encode ${typeUrl} ${resourceName}: ${message}`);
    this.name = 'ResourceEncodingError';
  }
}

// Encoded resources, shared by every stream that sends them: XdsResource objects are frozen
// and immutable, so the bytes of one never change, and a resource sent to N clients is
// encoded once.
const encodedResources = new WeakMap<XdsResource, Buffer>();

/**
 * The bytes of DiscoveryResponse field 2 (`repeated google.protobuf.Any resources`) holding
 * this one resource: tag, length and the Any. Throws ResourceEncodingError when a '@type'
 * anywhere in the body names a message we did not load (protobufjs would silently write an
 * empty Any instead) or when the body does not fit the message.
 */
export function encodeResourceField(resource: XdsResource): Buffer {
  const hit = encodedResources.get(resource);
  if (hit) return hit;
  const protos = loadXdsProtos();
  const bodyType = resource.body['@type'];
  if (bodyType !== resource.typeUrl) {
    throw new ResourceEncodingError(resource.name, resource.typeUrl, `its '@type' is ${String(bodyType)}`);
  }
  for (const url of anyTypeUrls(resource.body, new Set())) {
    const name = url.slice(url.lastIndexOf('/') + 1);
    if (!url.startsWith(TYPE_URL_PREFIX) || !protos.hasMessage(name)) {
      throw new ResourceEncodingError(
        resource.name,
        resource.typeUrl,
        `unknown '@type' ${url} (expected ${TYPE_URL_PREFIX}<a message in ${XDS_PROTO_FILES.length} loaded Envoy/xDS protos>)`,
      );
    }
  }
  let bytes: Buffer;
  try {
    bytes = protos.serialize(DISCOVERY_RESPONSE, { resources: [resource.body] });
  } catch (e) {
    throw new ResourceEncodingError(resource.name, resource.typeUrl, e instanceof Error ? e.message : String(e));
  }
  encodedResources.set(resource, bytes);
  return bytes;
}

export interface DiscoveryResponseHeader {
  readonly version_info: string;
  readonly type_url: string;
  readonly nonce: string;
}

/**
 * A serialized DiscoveryResponse: the header fields, then each resource's cached field bytes.
 * Protobuf parsers accept fields in any order and append repeated fields, so concatenation
 * is a valid encoding of the whole message.
 */
export function encodeDiscoveryResponse(header: DiscoveryResponseHeader, resourceFields: readonly Buffer[]): Buffer {
  const head = loadXdsProtos().serialize(DISCOVERY_RESPONSE, header);
  return resourceFields.length === 0 ? head : Buffer.concat([head, ...resourceFields]);
}

// ---------------------------------------------------------------------------------------
// Incremental (delta) xDS.

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** Tag of field 2, wire type 2 (length-delimited): `resources` in both responses, `resource` in Resource. */
const FIELD_2_LEN = Buffer.from([0x12]);

const encodedDeltaResources = new WeakMap<XdsResource, Buffer>();

/**
 * The bytes of DeltaDiscoveryResponse field 2 (`repeated Resource resources`) holding this
 * one resource as `Resource {name, version, resource: Any}`. The Any is the cached bytes of
 * encodeResourceField (DiscoveryResponse.resources and Resource.resource are both field 2,
 * length-delimited, so those bytes are the Resource's `resource` field as they are); cached
 * per resource like them. Throws ResourceEncodingError as encodeResourceField does.
 */
export function encodeDeltaResourceField(resource: XdsResource): Buffer {
  const hit = encodedDeltaResources.get(resource);
  if (hit) return hit;
  const any = encodeResourceField(resource);
  const head = loadXdsProtos().serialize(DISCOVERY_RESOURCE, { name: resource.name, version: resource.version });
  const length = head.length + any.length;
  const bytes = Buffer.concat([FIELD_2_LEN, varint(length), head, any]);
  encodedDeltaResources.set(resource, bytes);
  return bytes;
}

export interface DeltaDiscoveryResponseHeader {
  readonly system_version_info: string;
  readonly type_url: string;
  readonly nonce: string;
  readonly removed_resources: readonly string[];
}

/** A serialized DeltaDiscoveryResponse: the header fields, then each resource's cached field bytes. */
export function encodeDeltaDiscoveryResponse(
  header: DeltaDiscoveryResponseHeader,
  resourceFields: readonly Buffer[],
): Buffer {
  const head = loadXdsProtos().serialize(DELTA_DISCOVERY_RESPONSE, {
    ...header,
    removed_resources: [...header.removed_resources],
  });
  return resourceFields.length === 0 ? head : Buffer.concat([head, ...resourceFields]);
}
