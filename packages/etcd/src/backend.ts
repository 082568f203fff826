import { type Backend } from '@rollcall/core';
import { type AssembledBackend, createBackend, LivenessEngine } from '@rollcall/core/driver';
import { EtcdConnection } from './connection.js';
import { EtcdDiscoveryDriver } from './discovery.js';
import { EtcdKvDriver } from './kv.js';
import { EtcdLockDriver } from './locks.js';
import { type EtcdOptions, resolveEtcdOptions } from './options.js';
import { EtcdSessionDriver } from './sessions.js';

/** What an etcd backend reports about its connection, for tests, benchmarks and health pages. */
export interface EtcdBackendStats {
  /** Leases held now (one per distinct TTL in use; normally 1, 0 before the first registration or lock). */
  leases: number;
  /** Leases granted since the start (grows only when one was lost and replaced, or revoked when idle). */
  leasesGranted: number;
  /** Keepalive requests sent on the keepalive stream since the start. */
  keepalives: number;
  /** Keepalive acknowledgements received since the start. */
  keepaliveAcks: number;
  /** Times a lease was lost (etcd said so, or no keepalive was acknowledged within its TTL). */
  leaseLosses: number;
  /** Registrations put back after a loss (lease lost, key deleted by someone else). */
  registrationsRestored: number;
  /** Checks of this client's registrations and lock keys against etcd (periodic, and when a watch showed one touched). */
  reconciles: number;
  /** Registrations found held by another live client. */
  conflicts: number;
  /** etcd watches held now, by watched service. */
  serviceWatches: Record<string, number>;
  /** etcd watches held now, by key/value prefix. */
  kvWatches: Record<string, number>;
  /** Full reads of watched prefixes (first syncs and re-syncs). */
  watchReads: number;
  /** Re-syncs forced because a watch's history was compacted away (or the server cancelled the watch). */
  forcedSyncs: number;
  /** Watch connection losses (each followed by `stale`, then a re-sync). */
  watchDisconnects: number;
  /** Watches cancelled by etcd for lack of permission (not a compaction): each re-read after a backoff. */
  watchCancels: number;
  /** Locks and leaderships this client holds now. */
  locksHeld: number;
  /** Lock and campaign requests of this client waiting in a queue now. */
  lockWaiters: number;
  /** Times a waiting lock request or a held lock read its key's state again after its watch ended. */
  lockRechecks: number;
  /** Lock watches cancelled by etcd because their start revision was compacted away (each followed by a fresh read). */
  lockWatchCancels: number;
}

/** The etcd backend: discovery, key/value and locks over one etcd3 client. */
export interface EtcdBackend extends AssembledBackend {
  /** The options in force, with defaults applied (the password is not repeated here). */
  readonly options: {
    endpoints: readonly string[];
    namespace: string;
    kvPrefix: string;
    callTimeoutMs: number;
    dialTimeoutMs: number;
  };
  /** Counters of leases, keepalives and watches. */
  stats(): EtcdBackendStats;
  /** Number of etcd watches this client holds for `service`. */
  upstreams(service: string): number;
}

const internals = new WeakMap<
  EtcdBackend,
  { discovery: EtcdDiscoveryDriver; kv: EtcdKvDriver; locks: EtcdLockDriver; crash: () => void }
>();

/**
 * Creates an etcd backend. No connection is made until the first call; bad options throw a
 * `ConfigError` listing every bad field at once.
 *
 * @example
 * const backend = createEtcdBackend({ endpoints: ['http://10.0.0.5:2379'] });
 * await using registration = await backend.discovery.register({ id: 'a1', service: 'orders', host: '10.0.0.9', port: 8080 });
 */
export function createEtcdBackend(options: EtcdOptions = {}): EtcdBackend {
  const resolved = resolveEtcdOptions(options);
  const conn = new EtcdConnection(resolved);
  const sessions = new EtcdSessionDriver(conn);
  // One engine for registrations and locks: one lease per client (per TTL) for both.
  const liveness = new LivenessEngine(sessions, {
    ...resolved.liveness,
    establishTimeoutMs: resolved.callTimeoutMs,
  });
  conn.onReachable(() => liveness.nudge());
  const discoveryDriver = new EtcdDiscoveryDriver(conn, liveness);
  const kvDriver = new EtcdKvDriver(conn);
  const lockDriver = new EtcdLockDriver(conn, liveness);
  const backend = createBackend(
    {
      name: 'etcd',
      discovery: discoveryDriver,
      discoveryOptions: resolved.discovery,
      kv: kvDriver,
      // Locks are closed before discovery: held locks are released (their keys deleted, so the next
      // waiters proceed at once) and waits withdrawn while the lease still lives; then discovery
      // deregisters every instance, stops the watches, revokes the lease(s) and closes the client.
      locks: lockDriver,
      release: () => {
        sessions.close();
        conn.close();
      },
    },
    {
      options: Object.freeze({
        endpoints: Object.freeze([...resolved.endpoints]),
        namespace: resolved.namespace,
        kvPrefix: resolved.kvPrefix,
        callTimeoutMs: resolved.callTimeoutMs,
        dialTimeoutMs: resolved.dialTimeoutMs,
      }),
      stats(): EtcdBackendStats {
        const engine = liveness.snapshot();
        return {
          leases: engine.sessions,
          leasesGranted: engine.sessionsGranted,
          keepalives: sessions.counters.keepalives,
          keepaliveAcks: sessions.counters.keepaliveAcks,
          leaseLosses: engine.sessionsLost,
          registrationsRestored: engine.keysRestored,
          reconciles: engine.reconciles,
          conflicts: engine.conflicts,
          serviceWatches: discoveryDriver.watches.toRecord(),
          kvWatches: kvDriver.watches.toRecord(),
          watchReads: conn.watchStats.reads,
          forcedSyncs: conn.watchStats.forcedSyncs,
          watchDisconnects: conn.watchStats.disconnects,
          watchCancels: conn.watchStats.cancels,
          locksHeld: lockDriver.heldCount,
          lockWaiters: lockDriver.waitingCount,
          lockRechecks: lockDriver.counters.rechecks,
          lockWatchCancels: lockDriver.counters.watchCancels,
        };
      },
      upstreams: (service: string) => discoveryDriver.upstreams(service),
    },
  );
  internals.set(backend, {
    discovery: discoveryDriver,
    kv: kvDriver,
    locks: lockDriver,
    crash: () => {
      sessions.close();
      conn.close(true);
    },
  });
  return backend;
}

/**
 * For tests: makes `backend` behave like a killed process. Keepalives stop and the connection
 * drops without revoking the lease or deleting anything, so its instances disappear from every
 * watcher, and its locks pass to the next waiter, only when the lease expires (within the TTL).
 * Later calls throw `ClosedError`; `close()` still resolves.
 */
export function simulateCrash(backend: Backend): void {
  const parts = internals.get(backend as EtcdBackend);
  if (!parts) throw new TypeError('simulateCrash: not an etcd backend made by createEtcdBackend');
  parts.kv.stopAll();
  parts.locks.crash();
  parts.discovery.crash();
  parts.crash();
}
