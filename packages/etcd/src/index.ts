/**
 * `@rollcall/etcd`: the Rollcall backend on etcd v3 (discovery and live configuration), on the
 * `etcd3` client.
 *
 * @packageDocumentation
 */
export { createEtcdBackend, type EtcdBackend, type EtcdBackendStats, simulateCrash } from './backend.js';
export {
  ETCD_DEFAULTS,
  ETCD_OPTION_NAMES,
  type EtcdAuthOptions,
  type EtcdOptions,
  type EtcdTlsOptions,
  type ResolvedEtcdOptions,
  resolveEtcdOptions,
} from './options.js';
