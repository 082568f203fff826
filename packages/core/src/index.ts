/**
 * `@rollcall/core`: the contracts every backend shares (`ServiceDiscovery`, `KeyValueSource`,
 * `LockService`, `Backend`), validation rules and errors, DI tokens, balancers and pickers, health
 * probes and graceful shutdown, logging, and the diagnostics channels. Backend authors also use
 * `@rollcall/core/driver`.
 *
 * @packageDocumentation
 */

export type { BackoffOptions } from './backoff.js';
export {
  type Balancer,
  type BalancerOptions,
  type BalancerStrategy,
  createBalancer,
  createPicker,
  DEFAULT_MAX_RING_POINTS,
  DEFAULT_READY_TIMEOUT_MS,
  hash32,
  MAX_REPLICAS,
  MAX_RING_POINTS,
  type Picker,
  type ReadyOptions,
  ringPoints,
} from './balancers.js';
export {
  type ConfigMessage,
  type LockMessage,
  type MembershipMessage,
  type PhaseMessage,
  type RegistrationMessage,
  ROLLCALL_CHANNELS,
  type SessionMessage,
  type WatchMessage,
} from './diagnostics.js';
export type { DiscoveryHealth, DiscoveryOptions, HealthOptions, RegistrationReport } from './discovery.js';
export * from './errors.js';
export * from './health.js';
export {
  type AcquireOptions,
  DEFAULT_LOCK_TTL_SECONDS,
  type LockInfo,
  NotSupportedError,
} from './locks.js';
export * from './logger.js';
export type { SharedBackendOptions } from './options.js';
export * from './tokens.js';
export type * from './types.js';
export * from './validation.js';
