import { type AssembledBackend, type Backend, createBackend } from '@rollcall/core';
import { EtcdConnection } from './connection.js';
import { EtcdDiscoveryDriver } from './discovery.js';
import { EtcdKvDriver } from './kv.js';
import { EtcdLockDriver } from './locks.js';
import { type EtcdOptions, resolveEtcdOptions } from './options.js';

/** What an etcd backend reports about its connection, for tests, benchmarks and health pages. */
export interface EtcdBackendStats {
  /** Leases held now (one per distinct registration TTL; normally 1, 0 before the first registration). */
  leases: number;
  /** Leases granted since the start (grows only when etcd dropped one and it was replaced). */
  leasesGranted: number;
  /** Keepalive requests sent on the keepalive stream(s) since the start. */
  keepalives: number;
  /** Keepalive acknowledgements received since the start. */
  keepaliveAcks: number;
  /** Times etcd dropped a lease and its registrations were re-put. */
  leaseLosses: number;
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
  { discovery: EtcdDiscoveryDriver; kv: EtcdKvDriver; locks: EtcdLockDriver }
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
  const discoveryDriver = new EtcdDiscoveryDriver(conn);
  const kvDriver = new EtcdKvDriver(conn);
  // Locks put their keys on the discovery driver's lease keepers: one lease per client (per TTL) for both.
  const lockDriver = new EtcdLockDriver(conn, (ttl) => discoveryDriver.keeper(ttl));
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
        const keepers = [...discoveryDriver.keepers.values()];
        return {
          leases: keepers.filter((k) => k.hasLease).length,
          leasesGranted: keepers.reduce((n, k) => n + k.stats.granted, 0),
          keepalives: keepers.reduce((n, k) => n + k.stats.keepalives, 0),
          keepaliveAcks: keepers.reduce((n, k) => n + k.stats.keepaliveAcks, 0),
          leaseLosses: keepers.reduce((n, k) => n + k.stats.losses, 0),
          serviceWatches: discoveryDriver.watches.toRecord(),
          kvWatches: kvDriver.watches.toRecord(),
          watchReads: conn.watchStats.reads,
          forcedSyncs: conn.watchStats.forcedSyncs,
          watchDisconnects: conn.watchStats.disconnects,
          locksHeld: lockDriver.heldCount,
          lockWaiters: lockDriver.waitingCount,
          lockRechecks: lockDriver.counters.rechecks,
          lockWatchCancels: lockDriver.counters.watchCancels,
        };
      },
      upstreams: (service: string) => discoveryDriver.upstreams(service),
    },
  );
  internals.set(backend, { discovery: discoveryDriver, kv: kvDriver, locks: lockDriver });
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
}
