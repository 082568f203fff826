/**
 * Dependency-injection tokens, as `Symbol.for('rollcall.<Name>')` so that two copies of
 * `@rollcall/core` in one process still agree on them.
 */
export const TYPES = {
  Backend: Symbol.for('rollcall.Backend'),
  ServiceDiscovery: Symbol.for('rollcall.ServiceDiscovery'),
  KeyValueSource: Symbol.for('rollcall.KeyValueSource'),
  LockService: Symbol.for('rollcall.LockService'),
  RollcallConfig: Symbol.for('rollcall.RollcallConfig'),
  /** A `LiveConfigFactory` from the `rollcall` package: `(options) => Promise<LiveConfig<T>>` over the bound backend's kv. */
  LiveConfigFactory: Symbol.for('rollcall.LiveConfigFactory'),
  /**
   * Optional, bound by the application: the `Logger` (pino, bunyan, `consoleLogger()`, ...) the
   * container's backend and live configs report to. Unbound: they stay silent.
   */
  Logger: Symbol.for('rollcall.Logger'),
} as const;
