import { randomUUID } from 'node:crypto';
import { type AssembledBackend, createBackend, LivenessEngine } from '@rollcall/core/driver';
import { ConsulApi } from './api.js';
import { ConsulDiscoveryDriver } from './discovery.js';
import { ConsulKvDriver } from './kv.js';
import { ConsulLockSessions } from './lock-sessions.js';
import { ConsulLockDriver } from './locks.js';
import {
  CONSUL_MIN_DEREGISTER_MS,
  type ConsulOptions,
  type ConsulWatchMode,
  resolveOptions,
} from './options.js';
import { ConsulRegistrationSessions } from './registrations.js';

/** The Consul backend: discovery, key/value and locks over one agent connection. */
export interface ConsulBackend extends AssembledBackend {
  /** The agent's HTTP address, e.g. `http://127.0.0.1:8500` (never the token). */
  readonly address: string;
  /** The watch mode in use. */
  readonly watchMode: ConsulWatchMode;
  /** Number of upstream pollers this client runs for `service`: 0 or 1, however many watchers (diagnostics, tests). */
  pollerCount(service: string): number;
  /** Number of upstream blocking queries this client runs for a key prefix: 0 or 1 (diagnostics, tests). */
  kvWatchCount(prefix: string): number;
  /** Number of Consul sessions this client keeps for its locks: one per distinct TTL in use (diagnostics, tests). */
  lockSessionCount(): number;
  /** Checks of this client's registrations against the agent so far (periodic, and when a watch showed one touched; diagnostics, tests). */
  reconcileCount(): number;
}

const drivers = new WeakMap<ConsulBackend, { discovery: ConsulDiscoveryDriver; locks: ConsulLockDriver }>();

/**
 * Creates a backend on a Consul agent (the `consul` npm client, HTTP API v1). Options are validated
 * up front: bad ones throw a `ConfigError` listing every bad field. Nothing is sent until the first call.
 *
 * @example
 * const backend = createConsulBackend({ host: '127.0.0.1', port: 8500, token: process.env.CONSUL_HTTP_TOKEN });
 * await using registration = await backend.discovery.register({ id: 'a1', service: 'orders', host: '10.0.0.5', port: 8080 });
 */
export function createConsulBackend(options: ConsulOptions = {}): ConsulBackend {
  const resolved = resolveOptions(options);
  const { logger } = resolved;
  if (resolved.deregisterCriticalAfterMs < CONSUL_MIN_DEREGISTER_MS) {
    logger.info(
      {
        deregisterCriticalAfter: resolved.deregisterCriticalAfter,
      },
      'consul raises deregisterCriticalAfter below 1m to 1m',
    );
  }
  const api = new ConsulApi(resolved);
  const engineOptions = resolved.liveness;
  // Registrations: each an agent service whose TTL check the engine passes (one heartbeat per instance).
  const registrations = new LivenessEngine(
    new ConsulRegistrationSessions(api, {
      clientId: randomUUID(),
      deregisterCriticalAfter: resolved.deregisterCriticalAfter,
    }),
    {
      ...engineOptions,
      // A registration is a register call and a confirming read (up to 3 s): both within this.
      establishTimeoutMs: 2 * resolved.callTimeoutMs + 3000,
      // Each is a few requests in a row: as many at once as the pool has connections, so a burst of
      // 10,000 finishes one after another instead of interleaving in the pool's queue.
      maxConcurrentWrites: resolved.maxConnections,
    },
  );
  const driver = new ConsulDiscoveryDriver(api, registrations, {
    pollIntervalMs: resolved.pollIntervalMs,
    watchMode: resolved.watchMode,
    backoff: resolved.backoff,
    logger,
  });
  const kvDriver = new ConsulKvDriver(api, {
    waitMs: resolved.pollIntervalMs,
    backoff: resolved.backoff,
    logger,
    lockPrefix: resolved.lockPrefix,
  });
  // Locks: one Consul session per client (per TTL) holds every lock, election and queue key.
  const lockEngine = new LivenessEngine<string, never>(
    new ConsulLockSessions(api, { lockDelay: resolved.lockDelay }),
    {
      ...engineOptions,
      establishTimeoutMs: resolved.callTimeoutMs,
    },
  );
  const lockDriver = new ConsulLockDriver(api, lockEngine, {
    prefix: resolved.lockPrefix,
    lockDelay: resolved.lockDelay,
    backoff: resolved.backoff,
    logger,
  });
  const backend = createBackend(
    {
      name: 'consul',
      discovery: driver,
      discoveryOptions: resolved.discovery,
      kv: kvDriver,
      // Closed before discovery: held locks are released and every lock session destroyed (its
      // queue entries go with it), so that waiters elsewhere get the locks at once.
      locks: lockDriver,
      release: () => api.destroy(),
    },
    {
      address: api.address,
      watchMode: resolved.watchMode,
      pollerCount: (service: string) => driver.pollerCount(service),
      kvWatchCount: (prefix: string) => kvDriver.watchCount(prefix),
      lockSessionCount: () => lockDriver.sessionCount(),
      reconcileCount: () => registrations.snapshot().reconciles,
    },
  );
  drivers.set(backend, { discovery: driver, locks: lockDriver });
  return backend;
}

/**
 * Test hook: makes `backend` behave like a process killed without closing. Its heartbeats,
 * pollers and lock session renewals stop and nothing is deregistered or released, so its instances
 * leave watchers only when their TTL checks go critical, and its locks pass on only when Consul
 * invalidates its sessions (TTL to 2 x TTL later). `close()` afterwards releases local resources
 * and sends nothing.
 */
export function simulateCrash(backend: ConsulBackend): void {
  const found = drivers.get(backend);
  if (!found) throw new TypeError('simulateCrash: not a backend made by createConsulBackend');
  found.discovery.crash();
  found.locks.crash();
}
