import { abortable } from './backoff.js';
import { ClosedError, ValidationError } from './errors.js';
import { instanceEquals, makeSnapshot, patchSorted } from './instances.js';
import { type Logger, silentLogger } from './logger.js';
import { type EventQueue, Mirror, type MirrorFeed, type MirrorState, type MirrorView } from './mirror.js';
import { ManagedRegistration, type RegistrationControl } from './registration.js';
import type {
  DiscoveryEvent,
  RegisterOptions,
  Registration,
  ServiceDiscovery,
  ServiceInstance,
  ServiceWatch,
  Snapshot,
} from './types.js';
import {
  validateInstance,
  validateRegisterOptions,
  validateServiceName,
  validateWatchOptions,
} from './validation.js';

/**
 * The part of a discovery backend that talks to its server. Everything else (validation,
 * registration handles, the per-service cache, watch fan-out, stale handling, close) is
 * {@link createServiceDiscovery}'s, shared by every backend.
 */
export interface DiscoveryDriver {
  /** Backend name: `memory`, `etcd`, `consul`, ... */
  readonly backend: string;
  /**
   * Puts the instance in the backend and keeps it there (heartbeats, lease keepalive) until
   * `control.signal` aborts. Resolves once a fresh read on any client sees it. When the backend
   * later drops it, call `control.lost(error)`, re-register with backoff and no retry limit,
   * then call `control.restored()`.
   */
  register(control: RegistrationControl, signal?: AbortSignal): Promise<void>;
  /** Removes the instance now (not after a TTL). */
  deregister(control: RegistrationControl): Promise<void>;
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
  /** Clock for `syncedAt`. Default `Date.now`. */
  now?: () => number;
  /** Background reports (losses, recoveries). Default silent. */
  logger?: Logger;
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
  /** Whether the backend answered a ping just now. */
  reachable: boolean;
  /** Why not, when not reachable. */
  error?: string;
  registrations: RegistrationReport[];
  watches: { service: string; stale: boolean; syncedAt: number; subscribers: number }[];
}

class DiscoveryView implements MirrorView<ServiceInstance, DiscoveryEvent> {
  private cached: { version: number; entriesVersion: number; snapshot: Snapshot } | undefined;
  constructor(private readonly service: string) {}

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
  equals = instanceEquals;
  sync: MirrorView<ServiceInstance, DiscoveryEvent>['sync'] = (state) => ({
    type: 'sync',
    snapshot: this.snapshot(state),
  });
  change: MirrorView<ServiceInstance, DiscoveryEvent>['change'] = (state, added, updated, removed) => {
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
  };
  stale: MirrorView<ServiceInstance, DiscoveryEvent>['stale'] = (state, error) => ({
    type: 'stale',
    snapshot: this.snapshot(state),
    error,
  });
}

interface CacheEntry {
  mirror: Mirror<ServiceInstance, DiscoveryEvent>;
  view: DiscoveryView;
  stop: () => void;
  lastUsed: number;
}

class Watch implements ServiceWatch {
  constructor(private readonly queue: EventQueue<DiscoveryEvent>) {}
  [Symbol.asyncIterator](): AsyncIterator<DiscoveryEvent> {
    return this.queue;
  }
  close(): void {
    this.queue.close();
  }
  [Symbol.dispose](): void {
    this.queue.close();
  }
}

function registrationKey(instance: ServiceInstance): string {
  return `${instance.service}/${instance.id}`;
}

/**
 * The {@link ServiceDiscovery} every backend shares: validation before any network call,
 * registration handles with `lost`/`restored`, one backend watch per service however many
 * callers watch or read it, last-known-good lists through outages, and a clean close.
 */
export class ManagedDiscovery implements ServiceDiscovery {
  readonly backend: string;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly registrations = new Map<string, ManagedRegistration>();
  private readonly options: Required<Omit<DiscoveryOptions, 'logger'>> & { logger: Logger };
  private closing: Promise<void> | undefined;
  private sweeper: NodeJS.Timeout | undefined;

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
    const registration = new ManagedRegistration(
      valid,
      ttlSeconds,
      (r) => this.remove(r),
      (e) => this.options.logger.error('registration listener threw', { error: String(e) }),
    );
    registration.on('lost', (error) =>
      this.options.logger.warn('registration lost; re-registering', {
        service: valid.service,
        id: valid.id,
        error: error?.message,
      }),
    );
    registration.on('restored', () =>
      this.options.logger.info('registration restored', { service: valid.service, id: valid.id }),
    );
    this.registrations.set(key, registration);
    try {
      await abortable(this.driver.register(registration, signal), signal);
    } catch (error) {
      // Nothing may stay behind: undo whatever part of the write reached the backend.
      this.registrations.delete(key);
      await registration.deregister().catch(() => {});
      throw error;
    }
    if (this.closing) {
      await registration.deregister();
      throw new ClosedError('discovery');
    }
    return registration;
  }

  async getInstances(service: string): Promise<Snapshot> {
    validateServiceName(service);
    this.assertOpen();
    const entry = this.entry(service);
    entry.lastUsed = this.options.now();
    const state = entry.mirror.state;
    if (!state.hasData) await entry.mirror.ready();
    return entry.view.snapshot(entry.mirror.state);
  }

  watch(service: string, options?: { signal?: AbortSignal }): ServiceWatch {
    validateServiceName(service);
    const signal = validateWatchOptions(options);
    this.assertOpen();
    const entry = this.entry(service);
    const queue = entry.mirror.subscribe(() => {
      entry.lastUsed = this.options.now();
    });
    queue.closeOn(signal);
    return new Watch(queue);
  }

  async listServices(): Promise<string[]> {
    this.assertOpen();
    const names = await this.driver.listServices();
    return [...new Set(names)].sort();
  }

  /** Backend reachability (a ping bounded by `timeoutMs`, default 2000) and the state of this client's registrations and watches. */
  async health(timeoutMs = 2000): Promise<DiscoveryHealth> {
    let reachable = true;
    let error: string | undefined;
    try {
      await this.driver.ping(AbortSignal.timeout(timeoutMs));
    } catch (e) {
      reachable = false;
      error = e instanceof Error ? e.message : String(e);
    }
    return {
      backend: this.backend,
      reachable,
      ...(error ? { error } : {}),
      registrations: [...this.registrations.values()].map((r) => ({
        service: r.instance.service,
        id: r.instance.id,
        state: r.state,
        losses: r.lossCount,
        ...(r.lastError ? { error: r.lastError.message } : {}),
      })),
      watches: [...this.cache.entries()].map(([service, e]) => ({
        service,
        stale: e.mirror.state.stale,
        syncedAt: e.mirror.state.syncedAt,
        subscribers: e.mirror.subscriberCount,
      })),
    };
  }

  /** The registrations this client holds now. */
  get activeRegistrations(): Registration[] {
    return [...this.registrations.values()];
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
    const results = await Promise.allSettled([...this.registrations.values()].map((r) => r.deregister()));
    for (const entry of this.cache.values()) {
      entry.stop();
      entry.mirror.close();
    }
    this.cache.clear();
    await this.driver.close();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async remove(registration: ManagedRegistration): Promise<void> {
    this.registrations.delete(registrationKey(registration.instance));
    await this.driver.deregister(registration);
  }

  private entry(service: string): CacheEntry {
    let entry = this.cache.get(service);
    if (!entry) {
      const view = new DiscoveryView(service);
      const mirror = new Mirror<ServiceInstance, DiscoveryEvent>(view, {
        backend: this.backend,
        subject: `service '${service}'`,
        maxQueued: this.options.maxQueuedEvents,
        now: this.options.now,
      });
      const stop = this.driver.watch(service, mirror);
      entry = { mirror, view, stop, lastUsed: this.options.now() };
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
    const cutoff = this.options.now() - this.options.cacheIdleMs;
    for (const [service, entry] of this.cache) {
      if (entry.mirror.subscriberCount === 0 && entry.lastUsed <= cutoff) {
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
