// x-forwarded-client-cert as Envoy's SANITIZE_SET with Subject off and URI on: when the caller's
// SPIFFE ID is known (mTLS, HBONE), the header is replaced by "By=<our ID>;URI=<caller ID>";
// otherwise any client-sent value is removed, so nobody can claim an identity by header.
import type { HttpFilterFactory } from '../filter.js';

const XFCC = 'x-forwarded-client-cert';

export const xfccFilter: HttpFilterFactory = {
  name: 'xfcc',
  create({ identity }) {
    const by = identity ? `By=${identity};` : '';
    return {
      onRequest(ctx) {
        const peer = ctx.peer.identity;
        if (peer) ctx.headers[XFCC] = `${by}URI=${peer}`;
        else if (ctx.headers[XFCC] !== undefined) delete ctx.headers[XFCC];
      },
    };
  },
};
