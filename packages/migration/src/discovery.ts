import {
  type Backend,
  type BackoffOptions,
  type CallOptions,
  ClosedError,
  type DiscoveryEvent,
  type Logger,
  type RegisterOptions,
  type Registration,
  type ServiceDiscovery,
  type ServiceInstance,
  type ServiceWatch,
  type Snapshot,
  ValidationError,
  validateCallOptions,
  validateInstance,
  validateRegisterOptions,
  validateServiceName,
  validateWatchOptions,
} from '@rollcall/core';
import { abortable, DiscoveryView, guardedCall, QueueWatch, throwIfAborted } from '@rollcall/core/driver';
import { followSide, MergedCollection, type MergePlan, type OpenSide } from './merged.js';
import { type MigrationPhase, PHASE_RULES, type Side } from './phases.js';
import { MigratingRegistration } from './registration.js';
import type { ShadowReport } from './shadow.js';

/** What the migrating discovery needs from its backend. */
export interface MigratingDiscoveryOptions {
  /** The phase now. */
  phase(): MigrationPhase;
  /** Resolves once the phase is known. */
  ready(): Promise<void>;
  /** True once the phase is known (so reads need not wait). */
  known(): boolean;
  shadow: ShadowReport;
  logger: Logger;
  backoff: BackoffOptions;
  cacheIdleMs: number;
  maxQueuedEvents: number;
  now: () => number;
}

interface Entry {
  merged: MergedCollection<ServiceInstance, DiscoveryEvent>;
  view: DiscoveryView;
  lastUsed: number;
  /** Reads waiting for the first answer: the view is not swept while any is. */
  pins: number;
}

/** The discovery plan of a phase: where reads come from and what is followed beside them. */
export function discoveryPlan(phase: MigrationPhase): MergePlan {
  const rules = PHASE_RULES[phase];
  return { read: rules.discovery, watch: rules.watch };
}

/** Follows one service in one registry for a merged view: its watch, and its first read's failure. */
function openService(backends: Readonly<Record<Side, Backend>>, service: string): OpenSide<ServiceInstance> {
  return (side, sink) => {
    const discovery = backends[side].discovery;
    return followSide(
      sink,
      () => discovery.watch(service),
      (event: DiscoveryEvent) => {
        const at = event.snapshot.syncedAt;
        if (event.type === 'sync')
          sink.replace(
            event.snapshot.instances.map((i) => [i.id, i]),
            at,
          );
        else if (event.type === 'change')
          sink.apply(
            [...event.added, ...event.updated].map((i) => [i.id, i]),
            event.removed.map((i) => i.id),
            at,
          );
        else sink.stale(event.error);
      },
      // The shared cache's first read tells.
      () => discovery.getInstances(service),
    );
  };
}

/**
 * Discovery across two registries by the phase's rules: registrations written to each registry
 * of the phase, reads from `from`, `to` or both merged, one merged view per service shared by
 * every watcher and reader (each holding one watch per registry it reads).
 */
export class MigratingDiscovery implements ServiceDiscovery {
  readonly backend = 'migrating';
  private readonly cache = new Map<string, Entry>();
  private readonly registrations = new Map<string, MigratingRegistration | 'pending'>();
  private closing: Promise<void> | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly backends: Readonly<Record<Side, Backend>>,
    private readonly options: MigratingDiscoveryOptions,
  ) {}

  async register(instance: ServiceInstance, options?: RegisterOptions): Promise<Registration> {
    const valid = validateInstance(instance);
    const { ttlSeconds, signal } = validateRegisterOptions(options);
    this.assertOpen();
    // Aborted already: nothing is sent to either registry.
    throwIfAborted(signal);
    const key = `${valid.service}/${valid.id}`;
    if (this.registrations.has(key)) {
      throw new ValidationError(
        'instance.id',
        `'${valid.id}' of service '${valid.service}' is already registered by this client; deregister it first`,
      );
    }
    this.registrations.set(key, 'pending');
    try {
      if (!this.options.known()) await abortable(this.options.ready(), signal);
      const wanted = PHASE_RULES[this.options.phase()].register;
      const results = await Promise.allSettled(
        wanted.map((side) =>
          this.backends[side].discovery.register(valid, { ttlSeconds, ...(signal ? { signal } : {}) }),
        ),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      const made = new Map<Side, Registration>();
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') made.set(wanted[i]!, r.value);
      });
      if (failed) {
        // Nothing half-registered stays behind.
        await Promise.allSettled([...made.values()].map((r) => r.deregister()));
        throw failed.reason;
      }
      const registration = new MigratingRegistration(valid, ttlSeconds, this.backends, wanted, made, {
        logger: this.options.logger,
        backoff: this.options.backoff,
        onRemove: () => this.registrations.delete(key),
      });
      this.registrations.set(key, registration);
      if (this.closing) {
        await registration.deregister();
        throw new ClosedError('discovery');
      }
      // The phase may have moved while the writes were in flight.
      void registration.reconcile(PHASE_RULES[this.options.phase()].register);
      return registration;
    } catch (error) {
      if (this.registrations.get(key) === 'pending') this.registrations.delete(key);
      throw error;
    }
  }

  async getInstances(service: string, options?: CallOptions): Promise<Snapshot> {
    validateServiceName(service);
    const signal = validateCallOptions(options);
    this.assertOpen();
    throwIfAborted(signal);
    if (!this.options.known()) await abortable(this.options.ready(), signal);
    const entry = this.entry(service);
    entry.lastUsed = this.options.now();
    if (!entry.merged.state.hasData) {
      entry.pins += 1;
      try {
        await abortable(entry.merged.ready(), signal);
      } finally {
        entry.pins -= 1;
        entry.lastUsed = this.options.now();
      }
    }
    return entry.view.snapshot(entry.merged.state);
  }

  watch(service: string, options?: { signal?: AbortSignal }): ServiceWatch {
    validateServiceName(service);
    const signal = validateWatchOptions(options);
    this.assertOpen();
    const entry = this.entry(service);
    const queue = entry.merged.subscribe(() => {
      entry.lastUsed = this.options.now();
    });
    queue.closeOn(signal);
    return new QueueWatch(queue);
  }

  async listServices(options?: CallOptions): Promise<string[]> {
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, async () => {
      await this.options.ready();
      const read = PHASE_RULES[this.options.phase()].discovery;
      const call = signal ? { signal } : undefined;
      if (read !== 'union') return this.backends[read].discovery.listServices(call);
      const results = await Promise.allSettled([
        this.backends.from.discovery.listServices(call),
        this.backends.to.discovery.listServices(call),
      ]);
      const answered = results.filter((r): r is PromiseFulfilledResult<string[]> => r.status === 'fulfilled');
      if (answered.length === 0) throw (results[1] as PromiseRejectedResult).reason;
      return [...new Set(answered.flatMap((r) => r.value))].sort();
    });
  }

  /** Moves every view and registration to `phase`'s rules. Resolves once registrations moved. */
  applyPhase(phase: MigrationPhase): Promise<void> {
    const plan = discoveryPlan(phase);
    for (const entry of this.cache.values()) entry.merged.setPlan(plan);
    const wanted = PHASE_RULES[phase].register;
    return Promise.all(
      [...this.registrations.values()].map((r) => (r === 'pending' ? undefined : r.reconcile(wanted))),
    ).then(() => {});
  }

  /** The registrations this client holds now. */
  get activeRegistrations(): MigratingRegistration[] {
    return [...this.registrations.values()].filter((r): r is MigratingRegistration => r !== 'pending');
  }

  /** The merged view of `service`, if this client follows it (tests and stats). */
  view(service: string): MergedCollection<ServiceInstance, DiscoveryEvent> | undefined {
    return this.cache.get(service)?.merged;
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
    const results = await Promise.allSettled(this.activeRegistrations.map((r) => r.deregister()));
    for (const entry of this.cache.values()) entry.merged.close();
    this.cache.clear();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private entry(service: string): Entry {
    let entry = this.cache.get(service);
    if (!entry) {
      const view = new DiscoveryView(service);
      const merged = new MergedCollection(view, openService(this.backends, service), {
        subject: `service '${service}'`,
        maxQueued: this.options.maxQueuedEvents,
        now: this.options.now,
        observe: (from, to) => this.options.shadow.observe(service, this.options.phase(), from, to),
      });
      entry = { merged, view, lastUsed: this.options.now(), pins: 0 };
      this.cache.set(service, entry);
      if (this.options.known()) merged.setPlan(discoveryPlan(this.options.phase()));
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

  /** Drops views nobody watched or read for `cacheIdleMs`, ending their watches in both registries. */
  sweep(): void {
    const cutoff = this.options.now() - this.options.cacheIdleMs;
    for (const [service, entry] of this.cache) {
      if (entry.merged.subscriberCount === 0 && entry.pins === 0 && entry.lastUsed <= cutoff) {
        entry.merged.close();
        this.cache.delete(service);
      }
    }
  }

  private assertOpen(): void {
    if (this.closing) throw new ClosedError('discovery');
  }
}
