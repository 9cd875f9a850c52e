// What an RBAC decision is made on: the connection's and, at L7, the request's attributes.

export interface RbacAttributes {
  /** The peer's authenticated identity, the SPIFFE ID URI "spiffe://td/ns/x/sa/y" (undefined: plaintext peer). */
  readonly principal?: string;
  readonly sourceIp?: string;
  readonly sourcePort?: number;
  readonly destinationIp?: string;
  readonly destinationPort?: number;
  /**
   * The request's verified JWT (RequestAuthentication, set by the jwt_authn filter): Istio's
   * request.auth.principal "<iss>/<sub>" and the token's claims (request.auth.claims[...]).
   * undefined: no valid token came with the request.
   */
  readonly requestAuth?: RequestAuth;
  /** The TLS SNI; undefined: none was sent (matched as "", as Envoy does). */
  readonly sni?: string;
  readonly http?: {
    readonly method: string;
    /** With the query string. */
    readonly path: string;
    readonly host: string;
    /** Lowercase name; repeated headers joined with ",". */
    header(name: string): string | undefined;
  };
}

export interface RequestAuth {
  readonly principal: string;
  readonly claims: Readonly<Record<string, unknown>>;
}

/** The ctx.filterState key under which the jwt_authn filter leaves the request's RequestAuth for RBAC. */
export const REQUEST_AUTH_STATE = Symbol.for('trellis.request-auth');
