/**
 * Instrument and attribute names. No OpenTelemetry semantic convention covers service discovery,
 * so Rollcall's own names live under `rollcall.*`, in the style of gRPC's resolver and xDS client
 * metrics; standard attributes (`error.type`) are used where they apply.
 */

/** The instrumentation scope (meter and tracer name). */
export const INSTRUMENTATION_SCOPE = '@rollcall/otel';

/** Every instrument `instrumentRollcall` creates, and the span name. */
export const METRICS = {
  /** Gauge, `1` / `0` per `rollcall.backend`: whether the backend confirms this process's liveness sessions. */
  backendConnected: 'rollcall.backend.connected',
  /** Gauge, `{registration}` per backend, service and `rollcall.registration.state` (`active`, `recovering`). */
  registrationState: 'rollcall.registration.state',
  /** Counter, `{loss}`: a registration the backend dropped (`active` -> `recovering`). */
  registrationLosses: 'rollcall.registration.losses',
  /** Gauge, `{instance}` per backend and service: the instances a watch of this process lists. */
  serviceInstances: 'rollcall.service.instances',
  /** Counter, `{instance}` per `rollcall.membership.change` (`added`, `removed`, `updated`). */
  membershipChanges: 'rollcall.membership.changes',
  /** Counter, `{sync}`: full lists a service watch read (its first read and every re-sync). */
  watchSyncs: 'rollcall.watch.syncs',
  /** Counter, `{reconnect}`: a stale watch came back (stale -> fresh). */
  watchReconnects: 'rollcall.watch.reconnects',
  /** Histogram, `s`: how long a watch stayed stale, recorded when it comes back. */
  watchStaleDuration: 'rollcall.watch.stale.duration',
  /** Histogram, `s`: how long a lock or leadership wait took, per `rollcall.lock.outcome`. */
  lockAcquireDuration: 'rollcall.lock.acquire.duration',
  /** Gauge, `{lock}`: locks and leaderships this process holds now. */
  lockHeld: 'rollcall.lock.held',
  /** Counter, `{lock}`: held locks and leaderships lost (session expired, key deleted). */
  lockLost: 'rollcall.lock.lost',
  /** Counter, `{update}`: configuration updates a live config applied. */
  configApplied: 'rollcall.config.applied',
  /** Counter, `{update}`: configuration updates a live config refused (the last good one stays). */
  configRefused: 'rollcall.config.refused',
  /** Gauge per `rollcall.migration.phase`: `1` for the current phase, `0` for the others seen. */
  migrationPhase: 'rollcall.migration.phase',
} as const;

/** The span around each lock or leadership wait. */
export const LOCK_ACQUIRE_SPAN = 'rollcall.lock.acquire';

/** Attribute names. */
export const ATTRIBUTES = {
  /** Backend name: `memory`, `etcd`, `consul`, `migrating`. */
  backend: 'rollcall.backend',
  /** Service name. */
  service: 'rollcall.service',
  registrationState: 'rollcall.registration.state',
  membershipChange: 'rollcall.membership.change',
  /** What a watch follows, as Rollcall names it: `service 'web'`, `prefix 'configs/'`. */
  watchSubject: 'rollcall.watch.subject',
  /** `lock` or `election`. */
  lockKind: 'rollcall.lock.kind',
  lockName: 'rollcall.lock.name',
  /** `acquired`, `timeout`, `aborted`, `closed` or `error`. */
  lockOutcome: 'rollcall.lock.outcome',
  lockTtl: 'rollcall.lock.ttl',
  /** On the span of a wait that got the lock (a decimal string: tokens are 64-bit). */
  lockFencingToken: 'rollcall.lock.fencing_token',
  /** The live config's key prefix. */
  configPrefix: 'rollcall.config.prefix',
  migrationPhase: 'rollcall.migration.phase',
  /** The error's class name (`LockTimeoutError`, `AbortError`, `ConfigError`, ...). */
  errorType: 'error.type',
} as const;
