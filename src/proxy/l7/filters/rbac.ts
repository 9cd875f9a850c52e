// envoy.filters.http.rbac: the AuthorizationPolicies a listener's HCM carries (a waypoint's
// per-service chains, a gateway's port), evaluated per request with the caller's verified
// SPIFFE ID and the HTTP attributes. Denied: 403 "RBAC: access denied" (Envoy's reply).
import { compileRbacFilters, REQUEST_AUTH_STATE, type CompiledRbac, type RequestAuth } from '../../rbac/evaluate.js';
import type { EnvoyObject } from '../config.js';
import type { HttpFilterFactory } from '../filter.js';

import type { RbacDecision } from '../../rbac/evaluate.js';
import type { LocalReply } from '../context.js';

const DENIED = {
  status: 403,
  body: 'RBAC: access denied',
  flag: 'RBAC',
  details: 'rbac_access_denied_matched_policy[none]',
} as const;

// Envoy's details name the policy that denied: rbac_access_denied_matched_policy[<name>], which
// access logs and flow records carry. Decisions are shared objects, so one reply per decision.
const replies = new WeakMap<RbacDecision, LocalReply>();

function deniedReply(d: RbacDecision): LocalReply {
  if (d.policy === undefined) return DENIED;
  let r = replies.get(d);
  if (!r) replies.set(d, (r = { ...DENIED, details: `rbac_access_denied_matched_policy[${d.policy}]` }));
  return r;
}

/** `httpFiltersFor(routeConfig)`: the HCM http_filters of the chain that routes with it. */
export function rbacFilter(httpFiltersFor: (routeConfig: string) => readonly EnvoyObject[]): HttpFilterFactory {
  return {
    name: 'envoy.filters.http.rbac',
    create() {
      const compiled = new Map<string, CompiledRbac>();
      const rbacFor = (routeConfig: string): CompiledRbac => {
        let c = compiled.get(routeConfig);
        if (!c) compiled.set(routeConfig, (c = compileRbacFilters(httpFiltersFor(routeConfig), 'l7')));
        return c;
      };
      return {
        onRequest(ctx) {
          const rbac = rbacFor(ctx.routeConfig);
          if (rbac.empty) return undefined;
          const requestAuth = ctx.filterState.get(REQUEST_AUTH_STATE) as RequestAuth | undefined;
          const decision = rbac.evaluate({
            ...(ctx.peer.identity ? { principal: ctx.peer.identity } : {}),
            ...(requestAuth ? { requestAuth } : {}),
            ...(ctx.peer.address ? { sourceIp: ctx.peer.address } : {}),
            http: {
              method: ctx.method,
              path: ctx.path,
              host: ctx.authority,
              // Host is :authority in HTTP/1.1 too (Envoy's view).
              header: (name) => (name === 'host' ? ctx.authority : ctx.header(name)),
            },
          });
          return decision.allowed ? undefined : deniedReply(decision);
        },
      };
    },
  };
}
