// Names of the per-service-port chains, per-endpoint chains and affinity sets. Stable (the same
// service port and endpoint always get the same name, so an affinity set survives a re-apply
// that keeps its endpoint), readable in `nft list`, and valid nft identifiers whatever the
// service is called: kube-proxy's scheme, a short hash of the full name first (unique even when
// the readable rest is cut, and visually distinct for near-identical names), then the name.
import { createHash } from 'node:crypto';

/** nft takes longer names (255), but these are for people reading `nft list ruleset`. */
export const MAX_NAME_LENGTH = 96;

/** Characters nft accepts in an unquoted identifier after the first, which must be a letter. */
const UNSAFE = /[^A-Za-z0-9_./-]/g;

function hashed(prefix: string, full: string): string {
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8).toUpperCase();
  const name = `${prefix}${hash}-${full.replace(UNSAFE, '_')}`;
  return name.length > MAX_NAME_LENGTH ? name.slice(0, MAX_NAME_LENGTH) : name;
}

/** "ns/name/tcp/http" for a Service, "ns/name/host/tcp/http" for a ServiceEntry host. */
export function servicePortKey(serviceId: string, protocol: string, portName: string): string {
  const [, ...rest] = serviceId.split('/');
  return `${rest.join('/')}/${protocol}/${portName}`;
}

/** The chain that picks an endpoint for one service port. */
export function serviceChainName(portKey: string): string {
  return hashed('service-', portKey);
}

function endpointKey(portKey: string, address: string, port: number): string {
  return `${portKey}__${address}/${port}`;
}

/** The chain that DNATs to one endpoint of one service port. */
export function endpointChainName(portKey: string, address: string, port: number): string {
  return hashed('endpoint-', endpointKey(portKey, address, port));
}

/** The set of clients stuck to one endpoint of one service port (ClientIP affinity). */
export function affinitySetName(portKey: string, address: string, port: number): string {
  return hashed('affinity-', endpointKey(portKey, address, port));
}
