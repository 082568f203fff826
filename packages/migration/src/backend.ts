import {
  type Backend,
  ClosedError,
  ValidationError,
  validateOptionsObject,
  validateServiceName,
} from '@rollcall/core';
import { publish, sleep } from '@rollcall/core/driver';
import { ACK_SERVICE, Acknowledger, type FleetMember, fleetOf, newClientId } from './acks.js';
import { compareRegistries, type ServiceComparison } from './compare.js';
import { MigratingDiscovery } from './discovery.js';
import { MigrationBlockedError } from './errors.js';
import { MigratingKv } from './kv.js';
import { MigratingLocks } from './locks.js';
import { type MigratingOptions, resolveMigratingOptions } from './options.js';
import { PhaseFollower } from './phase-follower.js';
import { GATED_PHASES, type MigrationPhase, phaseIndex, type Side, validatePhase } from './phases.js';
import { type ShadowDifference, ShadowReport } from './shadow.js';

/** Listener of the `phase` event. */
export type PhaseListener = (phase: MigrationPhase, previous: MigrationPhase) => void;

/** How long `setPhase` waits for its own watch to deliver the write before applying it locally. */
const SET_PHASE_CONFIRM_MS = 10_000;
/** How long a client waits for its registrations to move before announcing a new phase anyway. */
const ANNOUNCE_AFTER_MS = 5_000;

/** A {@link Backend} spanning two registries during a move from `from` to `to`. */
export interface MigratingBackend extends Backend {
  readonly name: 'migrating';
  readonly discovery: MigratingDiscovery;
  readonly kv: MigratingKv;
  readonly locks: MigratingLocks;
  /** The phase this client follows now. */
  readonly phase: MigrationPhase;
  /** The registry being left. */
  readonly from: Backend;
  /** The registry being adopted. */
  readonly to: Backend;
  /** The normalized phase key on `to`. */
  readonly phaseKey: string;
  /** The comparison threshold in force. */
  readonly threshold: number;
  /** This client's id in the fleet list (see `ACK_SERVICE`). */
  readonly clientId: string;
  /**
   * Moves the whole fleet: checks the gate, writes the phase key, and resolves once this client
   * follows. A forward move into `dual-read`, `cutover` or `done` while a service is `blocked`
   * rejects with {@link MigrationBlockedError} unless `force` (logged as a warning). Backward
   * moves (rollback) are always allowed.
   */
  setPhase(phase: MigrationPhase, options?: { force?: boolean }): Promise<void>;
  /** Per service (or only `service`): counts in both registries, ids on one side only, verdict. */
  compare(service?: string): Promise<ServiceComparison[]>;
  /** `phase`: this client moved to another phase. Returns an unsubscribe function. */
  on(event: 'phase', listener: PhaseListener): () => void;
  /** Resolves once the phase is known (the key read, or the configured phase in force). */
  ready(): Promise<void>;
  /** The open differences between the registries this client sees (followed services, `shadow` and `dual-read`). */
  shadowReport(service?: string): ShadowDifference[];
  /** The fleet's clients and the phase each follows, from their presence records in `to`. */
  fleet(): Promise<FleetMember[]>;
}

class MigratingBackendImpl implements MigratingBackend {
  readonly name = 'migrating' as const;
  readonly discovery: MigratingDiscovery;
  readonly kv: MigratingKv;
  readonly locks: MigratingLocks;
  readonly from: Backend;
  readonly to: Backend;
  readonly phaseKey: string;
  readonly threshold: number;
  readonly clientId = newClientId();
  private readonly options: ReturnType<typeof resolveMigratingOptions>;
  private readonly follower: PhaseFollower;
  private readonly shadow: ShadowReport;
  private readonly acks: Acknowledger | undefined;
  private readonly listeners = new Set<PhaseListener>();
  private closing: Promise<void> | undefined;

  constructor(input: MigratingOptions) {
    const o = resolveMigratingOptions(input);
    this.options = o;
    this.from = o.from;
    this.to = o.to;
    this.phaseKey = o.phaseKey;
    this.threshold = o.threshold;
    const backends: Record<Side, Backend> = { from: o.from, to: o.to };
    this.follower = new PhaseFollower(o.to.kv, o.phaseKey, o.phase, o.logger, (next, previous) =>
      this.moved(next, previous),
    );
    this.shadow = new ShadowReport(o.logger, { from: o.from.name, to: o.to.name }, o.shadowGraceMs, o.now);
    const phase = () => this.follower.phase;
    const ready = () => this.follower.ready();
    const known = () => this.follower.known;
    this.discovery = new MigratingDiscovery(backends, {
      phase,
      ready,
      known,
      shadow: this.shadow,
      logger: o.logger,
      backoff: o.backoff,
      cacheIdleMs: o.cacheIdleMs,
      maxQueuedEvents: o.maxQueuedEvents,
      now: o.now,
    });
    this.kv = new MigratingKv(backends, {
      phase,
      ready,
      known,
      logger: o.logger,
      maxQueuedEvents: o.maxQueuedEvents,
      now: o.now,
    });
    this.locks = new MigratingLocks(backends, { phase, ready });
    this.acks = o.acknowledge
      ? new Acknowledger(o.to.discovery, this.clientId, o.logger, o.backoff)
      : undefined;
    this.follower.start(o.phaseReadTimeoutMs);
    // Registered first, so it runs before any call waiting for the phase resumes.
    void this.follower.ready().then(() => {
      if (!this.closing) this.apply(this.follower.phase);
    });
  }

  get phase(): MigrationPhase {
    return this.follower.phase;
  }

  ready(): Promise<void> {
    return this.follower.ready();
  }

  async setPhase(phase: MigrationPhase, options?: { force?: boolean }): Promise<void> {
    const target = validatePhase(phase);
    const { force } = validateOptionsObject(options);
    if (force !== undefined && typeof force !== 'boolean')
      throw new ValidationError('options.force', 'must be a boolean');
    this.assertOpen();
    await this.follower.ready();
    const current = this.phase;
    if (phaseIndex(target) > phaseIndex(current) && GATED_PHASES.has(target)) {
      const comparison = await this.compare().catch((error: unknown) => {
        // A registry that cannot be read cannot pass the gate; `force` overrides that too.
        if (!force) throw error;
        this.options.logger.warn({}, `forced move to '${target}' without a comparison: ${String(error)}`);
        return [];
      });
      const blocked = comparison.filter((c) => c.verdict === 'blocked');
      if (blocked.length > 0) {
        if (!force) throw new MigrationBlockedError(target, blocked);
        this.options.logger.warn(
          {
            from: current,
            blocked: blocked.map((c) => `${c.service} (from ${c.from}, to ${c.to})`),
          },
          `forced move to '${target}' past ${blocked.length} blocked service(s)`,
        );
      }
    }
    await this.to.kv.put(this.phaseKey, target);
    if (!(await this.follower.reach(target, SET_PHASE_CONFIRM_MS))) {
      this.options.logger.warn(
        {},
        `the phase key watch did not deliver '${target}' in time; following it now`,
      );
      this.follower.adopt(target);
    }
  }

  async compare(service?: string): Promise<ServiceComparison[]> {
    if (service !== undefined) validateServiceName(service);
    this.assertOpen();
    return compareRegistries(this.from, this.to, this.threshold, service);
  }

  on(event: 'phase', listener: PhaseListener): () => void {
    if (event !== 'phase') throw new TypeError(`unknown event '${String(event)}'`);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  shadowReport(service?: string): ShadowDifference[] {
    return this.shadow.differences(service);
  }

  async fleet(): Promise<FleetMember[]> {
    this.assertOpen();
    return fleetOf(await this.to.discovery.getInstances(ACK_SERVICE));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.follower.close();
      this.shadow.close();
      this.kv.close();
      try {
        await this.locks.close();
        await this.acks?.close();
        await this.discovery.close();
      } finally {
        await Promise.allSettled([this.from.close(), this.to.close()]);
      }
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private moved(next: MigrationPhase, previous: MigrationPhase): void {
    this.options.logger.info({ phase: next, previous }, `migration phase '${previous}' -> '${next}'`);
    publish.migrationPhase(() => ({ phase: next, previous }));
    // Before the phase is known nothing reads or registers yet: `ready` applies the phase then.
    if (this.follower.known && !this.closing) this.apply(next);
    for (const listener of [...this.listeners]) {
      try {
        listener(next, previous);
      } catch (error) {
        this.options.logger.error({ error: String(error) }, 'phase listener threw');
      }
    }
  }

  /** Moves reads, writes and registrations to `phase`, then announces it in the fleet list. */
  private apply(phase: MigrationPhase): void {
    this.kv.applyPhase(phase);
    const moved = this.discovery.applyPhase(phase);
    if (this.acks) {
      const acks = this.acks;
      void Promise.race([moved, sleep(ANNOUNCE_AFTER_MS)]).then(() => {
        if (this.phase === phase && !this.closing) return acks.publish(phase);
      });
    }
  }

  private assertOpen(): void {
    if (this.closing) throw new ClosedError('migrating backend');
  }
}

/**
 * Creates the migrating backend over two backends. Options are validated at once (a
 * `ConfigError` lists every bad field); the phase key is then followed in the background, and
 * calls wait for its first read (at most `phaseReadTimeoutMs`).
 *
 * @example
 * const backend = createMigratingBackend({
 *   from: createConsulBackend({ host: 'consul.internal' }),
 *   to: createEtcdBackend({ endpoints: ['http://etcd.internal:2379'] }),
 *   phase: 'dual-write',
 * });
 */
export function createMigratingBackend(options: MigratingOptions): MigratingBackend {
  return new MigratingBackendImpl(options);
}
