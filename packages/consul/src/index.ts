/**
 * `@rollcall/consul`: the Rollcall backend on a Consul agent.
 *
 * @packageDocumentation
 */
export { ConsulHttpError } from './api.js';
export { type ConsulBackend, createConsulBackend, simulateCrash } from './backend.js';
export { CONSUL_MAX_META, checkIdOf, decodeHealthEntry, registrationBody, serviceIdOf } from './codec.js';
export { KV_MIN_INTERVAL_MS } from './kv.js';
export { CONSUL_MIN_SESSION_TTL_SECONDS, LOCK_DELAY_RETRY_MAX_MS, LOCK_WAIT_MS } from './locks.js';
export {
  CONSUL_MAX_LOCK_DELAY_MS,
  CONSUL_MIN_DEREGISTER_MS,
  CONSUL_OPTION_NAMES,
  type ConsulOptions,
  type ConsulWatchMode,
  MIN_POLL_INTERVAL_MS,
  parseGoDuration,
  type ResolvedConsulOptions,
  resolveOptions as resolveConsulOptions,
} from './options.js';
