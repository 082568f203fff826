/**
 * `@rollcall/etcd`: the Rollcall backend on etcd v3 (discovery and live configuration), on the
 * `etcd3` client.
 *
 * @packageDocumentation
 */
export { createEtcdBackend, type EtcdBackend, type EtcdBackendStats, simulateCrash } from './backend.js';
export { type CallOptions, EtcdConnection, isTransient } from './connection.js';
export { EtcdDiscoveryDriver } from './discovery.js';
export { Interner } from './intern.js';
export { EtcdKvDriver } from './kv.js';
export { LeaseKeeper, type LeaseStats } from './leases.js';
export {
  ETCD_DEFAULTS,
  type EtcdAuthOptions,
  type EtcdOptions,
  type EtcdTlsOptions,
  type ResolvedEtcdOptions,
  resolveEtcdOptions,
} from './options.js';
export { type PrefixCodec, PrefixWatch } from './prefix-watch.js';
