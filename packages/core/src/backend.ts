import {
  createServiceDiscovery,
  type DiscoveryDriver,
  type DiscoveryOptions,
  type ManagedDiscovery,
} from './discovery.js';
import { createKeyValueSource, type KvDriver, type ManagedKeyValueSource } from './kv.js';
import { createLockService, type LockDriver, type ManagedLockService } from './locks.js';
import type { Backend } from './types.js';

/** What a backend package hands {@link createBackend}: the drivers that talk to its server, and its cleanup. */
export interface BackendDrivers {
  /** `memory`, `etcd`, `consul`, ... */
  name: string;
  discovery: DiscoveryDriver;
  kv: KvDriver;
  locks: LockDriver;
  /** Options of the shared discovery (cache idle time, queue bound, clock, logger). */
  discoveryOptions?: DiscoveryOptions;
  /** Runs last, once everything is closed (even if a step failed): release connections. */
  release?(): void | Promise<void>;
}

/** A backend made by {@link createBackend}: the shared services, typed as such. */
export interface AssembledBackend extends Backend {
  readonly discovery: ManagedDiscovery;
  readonly kv: ManagedKeyValueSource;
  readonly locks: ManagedLockService;
}

/**
 * Builds a {@link Backend} from a backend's drivers: the shared discovery, key/value and lock
 * services, and the one `close()` order every backend needs. It ends the kv watches; releases
 * held locks and withdraws waits while the lease or session still lives (so waiters elsewhere
 * proceed at once); deregisters every instance and ends the watches (the discovery driver then
 * revokes its lease or stops its heartbeats); and finally runs `release`. Idempotent. `extras`
 * (stats, test hooks) are copied onto the backend.
 */
export function createBackend<E extends object = Record<never, never>>(
  drivers: BackendDrivers,
  extras?: E,
): AssembledBackend & E {
  const discovery = createServiceDiscovery(drivers.discovery, drivers.discoveryOptions);
  const maxQueuedEvents = drivers.discoveryOptions?.maxQueuedEvents;
  const kv = createKeyValueSource(drivers.kv, maxQueuedEvents ? { maxQueuedEvents } : {});
  const locks = createLockService(drivers.locks, drivers.discoveryOptions?.logger);
  let closing: Promise<void> | undefined;
  const backend = Object.assign(
    {
      name: drivers.name,
      discovery,
      kv,
      locks,
      close(): Promise<void> {
        closing ??= (async () => {
          kv.close();
          try {
            await locks.close();
            await discovery.close();
          } finally {
            await drivers.release?.();
          }
        })();
        return closing;
      },
      [Symbol.asyncDispose](): Promise<void> {
        return backend.close();
      },
    },
    extras,
  ) as AssembledBackend & E;
  return backend;
}
