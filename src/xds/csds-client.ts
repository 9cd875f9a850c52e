// Asking an xDS client what it holds (CSDS, envoy.service.status.v3): the client's own view
// of each resource (ACKED, NACKED with the error, REQUESTED, DOES_NOT_EXIST). gRPC clients
// serve it when they call grpc.addAdminServicesToServer.
import * as grpc from '@grpc/grpc-js';
import { loadXdsProtos } from './server/protos.js';

export interface CsdsResourceStatus {
  readonly typeUrl: string;
  readonly name: string;
  readonly status: string;
  readonly error?: string;
}

/** Node metadata key under which a client advertises its CSDS address (trellis bootstrap --csds). */
export const CSDS_METADATA_KEY = 'TRELLIS_CSDS_ADDRESS';

interface GenericXdsConfig {
  type_url?: string;
  name?: string;
  client_status?: string;
  error_state?: { details?: string } | null;
}

export async function fetchClientStatus(address: string, timeoutMs = 3000): Promise<CsdsResourceStatus[]> {
  const { CsdsClient } = loadXdsProtos();
  const client = new CsdsClient(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    FetchClientStatus(
      req: object,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: { config?: { generic_xds_configs?: GenericXdsConfig[] }[] }) => void,
    ): void;
  };
  try {
    const reply = await new Promise<{ config?: { generic_xds_configs?: GenericXdsConfig[] }[] }>((resolve, reject) =>
      client.FetchClientStatus({}, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r ?? {}))),
    );
    const out: CsdsResourceStatus[] = [];
    for (const c of reply.config ?? []) {
      for (const g of c.generic_xds_configs ?? []) {
        const s: CsdsResourceStatus = {
          typeUrl: g.type_url ?? '',
          name: g.name ?? '',
          status: g.client_status ?? 'UNKNOWN',
          ...(g.error_state?.details ? { error: g.error_state.details } : {}),
        };
        out.push(s);
      }
    }
    return out;
  } finally {
    client.close();
  }
}
