import { abortable, guardedCall, throwIfAborted } from './backoff.js';
import { publish } from './diagnostics.js';
import { ClosedError, ValidationError } from './errors.js';
import { instanceEquals, makeSnapshot, patchSorted } from './instances.js';
import type { RegisteredKey } from './liveness/claims.js';
import { realTimers } from './liveness/clock.js';
import { message } from './liveness/context.js';
import type { SessionWrite } from './liveness/driver.js';
import type { LivenessEngine } from './liveness/engine.js';
import { holdProcess } from './liveness/process-ref.js';
import { childLogger, type Logger, silentLogger } from './logger.js';
import { Mirror, type MirrorFeed, type MirrorState, type MirrorView, QueueWatch } from './mirror.js';
import { ManagedRegistration } from './registration.js';
import type {
  CallOptions,
  DiscoveryEvent,
  RegisterOptions,
  Registration,
  ServiceDiscovery,
  ServiceInstance,
  ServiceWatch,
  Snapshot,
} from './types.js';
import {
  validateCallOptions,
  validateInstance,
  validateRegisterOptions,
  validateServiceName,
  validateWatchOptions,
} from './validation.js';

/**
 * The part of a discovery backend that talks to its server. Everything else (validation,
 * registration handles, keeping registrations alive, the per-service cache, watch fan-out, stale
 * handling, close) is {@link createServiceDiscovery}'s, shared by every backend.
 */
export interface DiscoveryDriver {
  /** Backend name: `memory`, `etcd`, `consul`, ... */
  readonly backend: string;
  /** The liveness engine that keeps this backend's registrations (its session driver writes them). */
  readonly liveness: LivenessEngine<unknown, unknown>;
  /**
   * The key and value that register `instance` with `ttlSeconds` through {@link liveness}. Throws a
   * `ValidationError` for an instance this backend cannot store (before any network call).
   */
  registration(instance: ServiceInstance, ttlSeconds: number): SessionWrite<unknown>;
  /**
   * Starts the one upstream (watch or poller) for `service`: first `feed.replace(list)`, then
   * updates in backend order, `feed.stale(error)` when unreachable. Returns a function that stops it.
   * Must keep retrying by itself (with backoff) until stopped.
   */
  watch(service: string, feed: MirrorFeed<ServiceInstance>): () => void;
  /** Names of services with at least one instance. */
  listServices(): Promise<string[]>;
  /** Rejects when the backend cannot be reached. Used by health reports. */
  ping(signal?: AbortSignal): Promise<void>;
  /** Releases connections; called after every registration is removed and every watch stopped. */
  close(): Promise<void>;
}

/** Options of {@link createServiceDiscovery}. */
export interface DiscoveryOptions {
  /** How long a service's cache (and its backend watch) lives after its last `getInstances` with no open watch. Default 300000 (5 min). */
  cacheIdleMs?: number;
  /** Events a watcher may fall behind before its backlog collapses into a catch-up `sync`. Default 1000. */
  maxQueuedEvents?: number;
  /** Clock for `syncedAt` (wall time shown to users). Default `Date.now`. */
  now?: () => number;
  /** Background reports (losses, recoveries). Default silent. */
  logger?: Logger;
  /**
   * After a watch re-syncs following an outage (or a backend reset), instances missing from the
   * fresh list stay listed this long, so that instances whose owners are re-registering never
   * disappear; those that do not come back are removed when it ends. Trade-off: an instance that
   * died during the outage is listed up to this much longer. Default 10000 (the default
   * registration ttl); 0 removes at once.
   */
  resyncGraceMs?: number;
}

/** One registration's line in a health report. */
export interface RegistrationReport {
  service: string;
  id: string;
  state: Registration['state'];
  /** How many times the backend dropped it since it was registered. */
  losses: number;
  /** Why it is recovering, while it is. */
  error?: string;
}

/** What {@link ManagedDiscovery.health} tells about this process. */
export interface DiscoveryHealth {
  backend: string;
  /**
   * The backend connection as this client's own watches and keepalives see it (no request is
   * made for it): `up`; `degraded` (a keepalive unanswered, or some watches stale); `down` (a
   * session lost and not yet replaced, or every watch stale); `unknown` (nothing watched or held yet).
   */
  connection: 'up' | 'degraded' | 'down' | 'unknown';
  /** `connection` is not `down` (or, when a ping was asked for, the ping got an answer). */
  reachable: boolean;
  /** When a ping was asked for: how long its answer took, in ms. */
  latencyMs?: number;
  /** Why not reachable (the ping's error, or the first stale watch's). */
  error?: string;
  registrations: RegistrationReport[];
  watches: { service: string; stale: boolean; syncedAt: number; subscribers: number }[];
}

/** Options of {@link ManagedDiscovery.health}. */
export interface HealthOptions {
  /** Also ping the backend now (one request), bounded by `timeoutMs`. Default false: probes send nothing. */
  ping?: boolean;
  /** Ping deadline in ms. Default 2000. */
  timeoutMs?: number;
}

/**
 * Turns a service's mirrored state into discovery events. Snapshots are cached by state version,
 * and a change patches the previous sorted list instead of re-sorting it. Also used by the
 * migrating backend's merged views.
 */
export class DiscoveryView implements MirrorView<ServiceInstance, DiscoveryEvent> {
  private cached: { version: number; entriesVersion: number; snapshot: Snapshot } | undefined;
  constructor(
    private readonly service: string,
    /** Told what changed; one observer is shared by every service's view. */
    private readonly observer?: ViewObserver,
  ) {}

  snapshot(state: MirrorState<ServiceInstance>): Snapshot {
    let cached = this.cached;
    if (cached?.version !== state.version) {
      // Only stale/syncedAt moved (a poll confirmed the list, an outage began): keep the same list.
      const instances =
        cached?.entriesVersion === state.entriesVersion
          ? cached.snapshot.instances
          : makeSnapshot(this.service, state.entries.values(), false, 0).instances;
      cached = {
        version: state.version,
        entriesVersion: state.entriesVersion,
        snapshot: Object.freeze({
          service: this.service,
          instances,
          stale: state.stale,
          syncedAt: state.syncedAt,
        }),
      };
      this.cached = cached;
    }
    return cached.snapshot;
  }

  equals(a: ServiceInstance, b: ServiceInstance): boolean {
    return instanceEquals(a, b);
  }

  sync(state: MirrorState<ServiceInstance>): DiscoveryEvent {
    return { type: 'sync', snapshot: this.snapshot(state) };
  }

  change(
    state: MirrorState<ServiceInstance>,
    added: [string, ServiceInstance][],
    updated: [string, ServiceInstance][],
    removed: [string, ServiceInstance][],
  ): DiscoveryEvent {
    if (this.observer && removed.length + updated.length > 0)
      this.observer.touched(this.service, [...removed.map(([id]) => id), ...updated.map(([id]) => id)]);
    const addedInstances = added.map(([, v]) => v);
    const updatedInstances = updated.map(([, v]) => v);
    const previous = this.cached;
    // The mirror bumps entriesVersion once per change: patch the previous list instead of re-sorting.
    if (previous?.entriesVersion === state.entriesVersion - 1) {
      const upserts =
        updatedInstances.length === 0 ? addedInstances : [...addedInstances, ...updatedInstances];
      const instances = patchSorted(
        previous.snapshot.instances,
        upserts,
        removed.map(([id]) => id),
      );
      this.cached = {
        version: state.version,
        entriesVersion: state.entriesVersion,
        snapshot: Object.freeze({
          service: this.service,
          instances,
          stale: state.stale,
          syncedAt: state.syncedAt,
        }),
      };
    }
    return {
      type: 'change',
      snapshot: this.snapshot(state),
      added: addedInstances,
      removed: removed.map(([, v]) => v),
      updated: updatedInstances,
    };
  }

  stale(state: MirrorState<ServiceInstance>, error: Error): DiscoveryEvent {
    return { type: 'stale', snapshot: this.snapshot(state), error };
  }

  emitted(
    kind: 'sync' | 'change',
    state: MirrorState<ServiceInstance>,
    added: number,
    removed: number,
    updated: number,
  ): void {
    this.observer?.emitted(this.service, kind, state.entries.size, added, removed, updated);
  }
}

/**
 * What the views of a {@link ManagedDiscovery} tell it. Methods on one shared object rather than
 * closures per service: a client caching thousands of services pays for them once.
 */
export interface ViewObserver {
  /** A change removed or updated these instances of `service` (the owner checks its own registrations). */
  touched(service: string, ids: string[]): void;
  /** A `sync` or `change` was emitted for `service`, now listing `instances` (for diagnostics). */
  emitted(
    service: string,
    kind: 'sync' | 'change',
    instances: number,
    added: number,
    removed: number,
    updated: number,
  ): void;
}

interface CacheEntry {
  mirror: Mirror<ServiceInstance, DiscoveryEvent>;
  view: DiscoveryView;
  stop: () => void;
  /** Monotonic ms of the last read or event delivered. */
  lastUsed: number;
  /** Reads waiting for the first answer: the entry is not swept while any is. */
  pins: number;
}

function registrationKey(instance: Pick<ServiceInstance, 'service' | 'id'>): string {
  return `${instance.service}/${instance.id}`;
}

/**
 * The {@link ServiceDiscovery} every backend shares: validation before any network call,
 * registration handles kept alive by the backend's liveness engine, one backend watch per service
 * however many callers watch or read it, last-known-good lists through outages, and a clean close.
 */
export class ManagedDiscovery implements ServiceDiscovery {
  readonly backend: string;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly registrations = new Map<
    string,
    { registration: ManagedRegistration; claim: RegisteredKey<unknown, unknown> }
  >();
  private readonly options: Required<Omit<DiscoveryOptions, 'logger'>> & { logger: Logger };
  private closing: Promise<void> | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  /** Shared by every cached service's view. */
  private readonly observer: ViewObserver = {
    touched: (service, ids) => this.touched(service, ids),
    emitted: (service, kind, instances, added, removed, updated) =>
      publish.membership(() => ({
        backend: this.backend,
        service,
        kind,
        instances,
        added,
        removed,
        updated,
      })),
  };

  constructor(
    private readonly driver: DiscoveryDriver,
    options: DiscoveryOptions = {},
  ) {
    this.backend = driver.backend;
    this.options = {
      cacheIdleMs: options.cacheIdleMs ?? 300_000,
      maxQueuedEvents: options.maxQueuedEvents ?? 1000,
      now: options.now ?? Date.now,
      logger: options.logger ?? silentLogger,
      resyncGraceMs: options.resyncGraceMs ?? 10_000,
    };
  }

  async register(instance: ServiceInstance, options?: RegisterOptions): Promise<Registration> {
    const valid = validateInstance(instance);
    const { ttlSeconds, signal } = validateRegisterOptions(options);
    this.assertOpen();
    const key = registrationKey(valid);
    if (this.registrations.has(key)) {
      throw new ValidationError(
        'instance.id',
        `'${valid.id}' of service '${valid.service}' is already registered by this client; deregister it first`,
      );
    }
    const entry = this.driver.registration(valid, ttlSeconds);
    const liveness = this.driver.liveness;
    const logger = this.options.logger;
    const registration: ManagedRegistration = new ManagedRegistration(
      valid,
      ttlSeconds,
      () => {
        if (this.registrations.get(key)?.registration === registration) this.registrations.delete(key);
        return liveness.release(claim);
      },
      (e) => logger.error({ error: String(e) }, 'registration listener threw'),
      this.backend,
    );
    // Losses are rare: the child logger (carrying service and id) is made only when one is logged.
    const log = () => childLogger(logger, { service: valid.service, id: valid.id });
    registration.on('lost', (error) =>
      log().warn({ error: error?.message }, 'registration lost; re-registering'),
    );
    registration.on('restored', () => log().info({}, 'registration restored'));
    const claim = liveness.register(entry.key, entry.value, ttlSeconds, registration);
    this.registrations.set(key, { registration, claim });
    try {
      await abortable(claim.established, signal);
    } catch (error) {
      // Nothing may stay behind: the engine undoes whatever part of the write reached the backend,
      // in the background (a write still in flight is deleted once it lands).
      void registration.deregister().catch(() => {});
      if (this.closing) throw new ClosedError('discovery');
      throw error;
    }
    if (this.closing) {
      await registration.deregister();
      throw new ClosedError('discovery');
    }
    registration.announce(undefined);
    return registration;
  }

  async getInstances(service: string, options?: CallOptions): Promise<Snapshot> {
    validateServiceName(service);
    const signal = validateCallOptions(options);
    this.assertOpen();
    throwIfAborted(signal);
    const entry = this.entry(service);
    entry.lastUsed = realTimers.now();
    if (!entry.mirror.state.hasData) {
      entry.pins += 1;
      try {
        await guardedCall(signal, () => entry.mirror.ready());
      } finally {
        entry.pins -= 1;
        entry.lastUsed = realTimers.now();
      }
    }
    return entry.view.snapshot(entry.mirror.state);
  }

  watch(service: string, options?: { signal?: AbortSignal }): ServiceWatch {
    validateServiceName(service);
    const signal = validateWatchOptions(options);
    this.assertOpen();
    const entry = this.entry(service);
    // An open watch keeps the process alive, as an open socket would.
    const release = holdProcess();
    const queue = entry.mirror.subscribe(() => {
      entry.lastUsed = realTimers.now();
      release();
    });
    queue.closeOn(signal);
    return new QueueWatch(queue);
  }

  async listServices(options?: CallOptions): Promise<string[]> {
    const signal = validateCallOptions(options);
    this.assertOpen();
    const names = await guardedCall(signal, () => this.driver.listServices());
    return [...new Set(names)].sort();
  }

  /**
   * How this client sees the backend and its own registrations and watches. By default it sends
   * nothing: the connection state comes from what the watches and keepalives already track (a
   * probe every second from 100 pods costs the registry nothing). `ping: true` also asks the
   * backend now. A number is taken as `{ ping: true, timeoutMs }`.
   */
  async health(options: HealthOptions | number = {}): Promise<DiscoveryHealth> {
    const o = typeof options === 'number' ? { ping: true, timeoutMs: options } : options;
    const watches = [...this.cache.entries()].map(([service, e]) => ({
      service,
      stale: e.mirror.state.stale,
      syncedAt: e.mirror.state.syncedAt,
      subscribers: e.mirror.subscriberCount,
      error: e.mirror.state.error,
    }));
    const stale = watches.filter((w) => w.stale);
    const sessions = this.driver.liveness.connection();
    let connection: DiscoveryHealth['connection'];
    if (sessions === 'lost' || (watches.length > 0 && stale.length === watches.length)) connection = 'down';
    else if (sessions === 'unconfirmed' || stale.length > 0) connection = 'degraded';
    else if (sessions === 'up' || watches.length > 0) connection = 'up';
    else connection = 'unknown';
    let reachable = connection !== 'down';
    let error = stale[0]?.error?.message;
    let latencyMs: number | undefined;
    if (o.ping) {
      const started = realTimers.now();
      try {
        await guardedCall(undefined, () => this.driver.ping(AbortSignal.timeout(o.timeoutMs ?? 2000)));
        reachable = true;
        error = undefined;
        latencyMs = Math.round((realTimers.now() - started) * 10) / 10;
      } catch (e) {
        reachable = false;
        error = message(e);
      }
    }
    return {
      backend: this.backend,
      connection,
      reachable,
      ...(latencyMs === undefined ? {} : { latencyMs }),
      ...(error ? { error } : {}),
      registrations: [...this.registrations.values()].map(({ registration: r }) => ({
        service: r.instance.service,
        id: r.instance.id,
        state: r.state,
        losses: r.lossCount,
        ...(r.lastError ? { error: r.lastError.message } : {}),
      })),
      watches: watches.map(({ error: _error, ...w }) => w),
    };
  }

  /** The registrations this client holds now. */
  get activeRegistrations(): Registration[] {
    return [...this.registrations.values()].map((r) => r.registration);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async shutdown(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    // Deregister first, so the instances leave every watcher at once rather than after a TTL.
    const results = await Promise.allSettled(
      [...this.registrations.values()].map(({ registration }) => registration.deregister()),
    );
    for (const entry of this.cache.values()) {
      entry.stop();
      entry.mirror.close();
    }
    this.cache.clear();
    await this.driver.close();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** A watch showed instances of `service` removed or changed: if any is ours, check it now. */
  private touched(service: string, ids: string[]): void {
    for (const id of ids) {
      const own = this.registrations.get(`${service}/${id}`);
      if (own) this.driver.liveness.verify(own.claim);
    }
  }

  private entry(service: string): CacheEntry {
    let entry = this.cache.get(service);
    if (!entry) {
      const view = new DiscoveryView(service, this.observer);
      const mirror = new Mirror<ServiceInstance, DiscoveryEvent>(view, {
        backend: this.backend,
        subject: `service '${service}'`,
        maxQueued: this.options.maxQueuedEvents,
        now: this.options.now,
        resyncGraceMs: this.options.resyncGraceMs,
      });
      const stop = this.driver.watch(service, mirror);
      entry = { mirror, view, stop, lastUsed: realTimers.now(), pins: 0 };
      this.cache.set(service, entry);
      this.startSweeper();
    }
    return entry;
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    const every = Math.max(1000, Math.min(30_000, this.options.cacheIdleMs));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /** Drops caches nobody watched or read for `cacheIdleMs`, stopping their backend watches. */
  sweep(): void {
    const cutoff = realTimers.now() - this.options.cacheIdleMs;
    for (const [service, entry] of this.cache) {
      if (entry.mirror.subscriberCount === 0 && entry.pins === 0 && entry.lastUsed <= cutoff) {
        entry.stop();
        entry.mirror.close();
        this.cache.delete(service);
      }
    }
  }

  private assertOpen(): void {
    if (this.closing) throw new ClosedError('discovery');
  }
}

/** Builds the shared {@link ServiceDiscovery} over a backend's driver. */
export function createServiceDiscovery(
  driver: DiscoveryDriver,
  options?: DiscoveryOptions,
): ManagedDiscovery {
  return new ManagedDiscovery(driver, options);
}
