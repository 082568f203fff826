import diagnostics from 'node:diagnostics_channel';

/**
 * Rollcall's `node:diagnostics_channel` channels: what operators watch, published where it
 * happens, for APM tools and `@rollcall/otel` to subscribe to. Publishing costs nothing while a
 * channel has no subscriber: messages are only built when one listens (`hasSubscribers`).
 *
 * Subscribe with `diagnostics_channel.subscribe(ROLLCALL_CHANNELS.registration, (message) => ...)`.
 */
export const ROLLCALL_CHANNELS = {
  /** {@link RegistrationMessage}: a registration changed state. */
  registration: 'rollcall:registration',
  /** {@link SessionMessage}: a liveness session (an etcd lease, a Consul session or check) changed state. */
  session: 'rollcall:session',
  /** {@link WatchMessage}: a watch went stale, or came back (a re-sync). */
  watch: 'rollcall:watch',
  /** {@link MembershipMessage}: the instances of a watched service changed (or were read in full). */
  membership: 'rollcall:membership',
  /** Tracing channel (`start`, `end`, `asyncStart`, `asyncEnd`, `error`) around every lock and leadership wait: {@link LockMessage}. */
  lockAcquire: 'rollcall:lock:acquire',
  /** {@link LockMessage}: a lock or leadership is held, lost, or released. */
  lock: 'rollcall:lock',
  /** {@link ConfigMessage}: live configuration applied or refused an update. */
  config: 'rollcall:config',
  /** {@link PhaseMessage}: a migrating backend moved to another phase. */
  migrationPhase: 'rollcall:migration:phase',
} as const;

/** A registration's state change. */
export interface RegistrationMessage {
  backend: string;
  service: string;
  id: string;
  state: 'active' | 'recovering' | 'closed';
  /** The state before (`undefined` for the first, `active`, once registered). */
  previous: 'active' | 'recovering' | 'closed' | undefined;
  /** Why, for `recovering`. */
  error?: Error;
}

/** A liveness session's state change: how the backend's connection looks from its keepalives. */
export interface SessionMessage {
  backend: string;
  ttlSeconds: number;
  state: 'alive' | 'unconfirmed' | 'lost' | 'ended';
  previous: 'alive' | 'unconfirmed' | 'lost' | 'ended' | undefined;
  error?: Error;
}

/** A watch went stale or came back. */
export interface WatchMessage {
  backend: string;
  /** What is watched: `service 'web'`, `prefix 'configs/'`. */
  subject: string;
  stale: boolean;
  /** Why it is stale (when `stale`). */
  error?: Error;
  /** How long it was stale (when it came back). */
  staleMs?: number;
}

/** The instances of a watched service after a change (or a full read: `sync`). */
export interface MembershipMessage {
  backend: string;
  service: string;
  kind: 'sync' | 'change';
  /** Instances listed now. */
  instances: number;
  added: number;
  removed: number;
  updated: number;
}

/** A lock or leadership event. */
export interface LockMessage {
  backend: string;
  kind: 'lock' | 'election';
  name: string;
  event?: 'held' | 'lost' | 'released';
  fencingToken?: bigint;
  ttlSeconds?: number;
  /** For `held`: how long the wait took. For `released` and `lost`: how long it was held. */
  durationMs?: number;
  error?: Error;
}

/** Live configuration applied or refused an update. */
export interface ConfigMessage {
  prefix: string;
  outcome: 'applied' | 'refused';
  /** For `applied`: the top-level fields that changed (every field for the first value). */
  changedKeys?: string[];
  /** For `refused`: the backend keys at fault (full keys), when known. */
  keys?: string[];
  /** For `refused`: why. */
  error?: Error;
}

/** A migrating backend's phase change. */
export interface PhaseMessage {
  phase: string;
  previous: string;
}

/** The tracing channel around lock and leadership waits. */
export const lockAcquireChannel = diagnostics.tracingChannel<unknown, LockMessage>(
  ROLLCALL_CHANNELS.lockAcquire,
);

function publisher<M>(name: string): (message: () => M) => void {
  const channel = diagnostics.channel(name);
  return (message) => {
    if (channel.hasSubscribers) channel.publish(message());
  };
}

/** Publishing functions: each builds its message only when someone subscribes. */
export const publish = {
  registration: publisher<RegistrationMessage>(ROLLCALL_CHANNELS.registration),
  session: publisher<SessionMessage>(ROLLCALL_CHANNELS.session),
  watch: publisher<WatchMessage>(ROLLCALL_CHANNELS.watch),
  membership: publisher<MembershipMessage>(ROLLCALL_CHANNELS.membership),
  lock: publisher<LockMessage>(ROLLCALL_CHANNELS.lock),
  config: publisher<ConfigMessage>(ROLLCALL_CHANNELS.config),
  migrationPhase: publisher<PhaseMessage>(ROLLCALL_CHANNELS.migrationPhase),
};

/** Runs a lock wait inside the lock tracing channel (a plain call when nobody subscribes). */
export function traceLockAcquire<T>(message: () => LockMessage, wait: () => Promise<T>): Promise<T> {
  if (!lockAcquireChannel.hasSubscribers) return wait();
  return lockAcquireChannel.tracePromise(wait, message());
}
