// The route's request_headers_to_add/_to_remove and response_headers_to_add/_to_remove
// (route, virtual host and route configuration levels, merged when the route table compiled).
import type { HttpFilter, HttpFilterFactory } from '../filter.js';

const filter: HttpFilter = {
  onRequest(ctx) {
    ctx.route?.requestHeaders?.apply(ctx.headers, ctx);
  },
  onResponseHeaders(ctx, _status, headers) {
    ctx.route?.responseHeaders?.apply(headers, ctx);
  },
};

export const headerMutationFilter: HttpFilterFactory = {
  name: 'header-mutation',
  // Stateless: the mutations are compiled into the route table.
  create: () => filter,
};
