// The bootstrap JSON a proxyless gRPC client or server reads (GRPC_XDS_BOOTSTRAP), as
// grpc-js-xds expects it (docs: xds-interop notes §1).
import { svidPaths } from '../../identity/svid-files.js';
import { CSDS_METADATA_KEY } from '../csds-client.js';

export interface BootstrapOptions {
  readonly nodeId: string;
  /** host:port of the control plane's xDS listener. */
  readonly xdsAddress: string;
  readonly cluster?: string;
  readonly locality?: { readonly region?: string; readonly zone?: string; readonly subZone?: string };
  /** A directory written by `trellis ca issue` (or the node): cert-chain.pem, key.pem, bundle.pem. */
  readonly certDir?: string;
  /** How often grpc-js re-reads the certificate files. */
  readonly refreshInterval?: string;
  /** Where the client serves CSDS (grpc.addAdminServicesToServer), for `trellis proxy-status`. */
  readonly csdsAddress?: string;
}

export function grpcBootstrap(o: BootstrapOptions): Record<string, unknown> {
  const locality: Record<string, string> = {};
  if (o.locality?.region) locality.region = o.locality.region;
  if (o.locality?.zone) locality.zone = o.locality.zone;
  if (o.locality?.subZone) locality.sub_zone = o.locality.subZone;
  const b: Record<string, unknown> = {
    xds_servers: [{ server_uri: o.xdsAddress, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: {
      id: o.nodeId,
      cluster: o.cluster ?? o.nodeId,
      locality,
      metadata: { TRELLIS_PROXYLESS: 'true', ...(o.csdsAddress ? { [CSDS_METADATA_KEY]: o.csdsAddress } : {}) },
    },
    // Istio's template for xDS-enabled gRPC servers: the server Listener is named by its address.
    server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
  };
  if (o.certDir !== undefined) {
    const p = svidPaths(o.certDir);
    b.certificate_providers = {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: p.certificateFile,
          private_key_file: p.privateKeyFile,
          ca_certificate_file: p.caCertificateFile,
          refresh_interval: o.refreshInterval ?? '10s',
        },
      },
    };
  }
  return b;
}
