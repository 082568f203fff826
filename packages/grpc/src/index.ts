/**
 * `@rollcall/grpc`: `@grpc/grpc-js` channels that follow the registry (`registerResolver`), a
 * weighted balancing policy fed by instance weights (`rollcall_weighted`), and servers that
 * register the port they bound and leave gracefully (`serveGrpc`). Needs `@grpc/grpc-js` 1.14.
 *
 * @packageDocumentation
 */
export {
  type BalancingPolicy,
  type ResolverOptions,
  type ResolverRegistration,
  type ResolverStats,
  registerResolver,
  type WatchedService,
} from './resolver.js';
export { type GrpcServing, type ServeGrpcOptions, serveGrpc } from './server.js';
export { DEFAULT_SCHEME, expectedForm, InvalidTargetError } from './target.js';
export { registerWeightedPolicy, WEIGHTED_POLICY } from './weighted.js';
