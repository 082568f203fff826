/**
 * `@rollcall/core/driver`: the machinery a backend is built on, for backend authors.
 *
 * Applications import `@rollcall/core` (contracts, errors, DI tokens, balancers, probes,
 * logging). A backend is a few driver primitives over what this entry point exports:
 *
 * - {@link SessionDriver}: sessions (grant, renew, revoke) and conditional writes of the keys they
 *   keep alive, for the one {@link LivenessEngine} that keeps registrations and held locks alive,
 *   re-establishes them and deletes a lost hold's key;
 * - {@link DiscoveryDriver}: a watch feeding a {@link Mirror} per service, service listing, ping;
 * - {@link KvDriver} and {@link LockDriver};
 * - {@link createBackend} assembles them into a `Backend` with the shared discovery, key/value
 *   and lock services (validation, caching, timeouts, `withLock`, handles).
 *
 * Its tests are one call per compliance suite of `@rollcall/testkit`. See the core README's
 * "Writing a backend" and `docs/contract.md`. This entry point follows the same version policy as
 * the main one (docs/versioning.md): breaking changes only in a major version.
 *
 * @packageDocumentation
 */
export { type AssembledBackend, type BackendDrivers, createBackend } from './backend.js';
export {
  abortable,
  Backoff,
  guardedCall,
  type RetryOptions,
  retryForever,
  sleep,
  throwIfAborted,
} from './backoff.js';
export { groupBy } from './collections.js';
export { lockAcquireChannel, publish, traceLockAcquire } from './diagnostics.js';
export {
  createServiceDiscovery,
  type DiscoveryDriver,
  DiscoveryView,
  ManagedDiscovery,
  type ViewObserver,
} from './discovery.js';
export { Gate } from './gate.js';
export {
  byId,
  diffInstances,
  type InstanceDiff,
  instanceEquals,
  makeSnapshot,
  patchSorted,
} from './instances.js';
export { createKeyValueSource, type KeyValueOptions, type KvDriver, ManagedKeyValueSource } from './kv.js';
export * from './liveness/claims.js';
export * from './liveness/clock.js';
export * from './liveness/context.js';
export type * from './liveness/driver.js';
export * from './liveness/engine.js';
export * from './liveness/keeper.js';
export * from './liveness/process-ref.js';
export * from './liveness/session.js';
export {
  boundedLockWait,
  createLockService,
  type HeldLock,
  type LockDriver,
  ManagedLockService,
  withLockOf,
} from './locks.js';
export * from './mirror.js';
export { checkSharedOptions, describeValue, SHARED_OPTION_NAMES, type SharedOptions } from './options.js';
export { ManagedRegistration } from './registration.js';
export { type Linked, linkSignals, unboundedController } from './signals.js';
export { UpstreamCounter } from './upstreams.js';
