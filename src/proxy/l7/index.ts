// Public surface of the L7 engine.
export { L7Engine, defaultFilters, type L7EngineOptions, type ListenOptions, type Listener } from './engine.js';
export type { PeerInfo, RequestContext, LocalReply, DownstreamProtocol } from './context.js';
export { L7ConfigError, type EnvoyObject, type L7Config } from './config.js';
export { tcpConnector, type UpstreamConnector, type UpstreamTarget } from './upstream.js';
export type {
  FilterConfigView,
  FilterResult,
  HttpFilter,
  HttpFilterFactory,
  RetryDecision,
  UpstreamAttempt,
  UpstreamFailure,
} from './filter.js';
export { ResponseFlag, type AccessLogRecord, type AccessLogger } from './access-log.js';
export type { HeaderMap, HeaderValue } from './headers.js';
export type { RouteEntry, VirtualHostEntry } from './route-table.js';
export { xfccFilter } from './filters/xfcc.js';
export { headerMutationFilter } from './filters/header-mutation.js';
export { retryFilter } from './filters/retry.js';
export { ClusterCircuits, circuitBreakerFilter } from './filters/circuit-breaker.js';
