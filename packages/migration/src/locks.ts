import {
  type AcquireOptions,
  type Backend,
  ClosedError,
  describeValue,
  type Leadership,
  type Linked,
  type LockLease,
  type LockService,
  LockTimeoutError,
  linkSignals,
  ValidationError,
  validateId,
} from '@rollcall/core';
import { type MigrationPhase, PHASE_RULES, type Side } from './phases.js';

/** What the migrating lock service needs from its backend. */
export interface MigratingLocksOptions {
  phase(): MigrationPhase;
  ready(): Promise<void>;
}

/**
 * A lock (or leadership) held in every registry of the phase at the time it was taken, `from`
 * first. Its fencing token is `to`'s (the last one taken); its signal aborts when any is lost,
 * and then the others are released.
 */
class MigratingLease implements LockLease, Leadership {
  private readonly released = new AbortController();
  private readonly linked: Linked;
  private releasing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    /** In the order taken: released in reverse. */
    private readonly leases: readonly LockLease[],
    private readonly onRelease: (lease: MigratingLease) => void,
  ) {
    this.linked = linkSignals(...leases.map((l) => l.signal), this.released.signal);
    // Lost in one registry is lost: give the others up at once, or they would only block the next holder.
    this.linked.signal.addEventListener('abort', () => void this.release().catch(() => {}), { once: true });
  }

  get fencingToken(): bigint {
    return this.leases.at(-1)!.fencingToken;
  }

  /** The longest ttl among the registries' holds: how long the lock may outlive a holder that dies. */
  get ttlSeconds(): number {
    return Math.max(...this.leases.map((l) => l.ttlSeconds));
  }

  get signal(): AbortSignal {
    return this.linked.signal;
  }

  release(): Promise<void> {
    if (this.releasing) return this.releasing;
    // Set before aborting: the abort listener calls release() again.
    this.releasing = Promise.resolve().then(async () => {
      let failure: unknown;
      for (const lease of [...this.leases].reverse()) {
        await lease.release().catch((error: unknown) => {
          failure ??= error;
        });
      }
      if (failure !== undefined) throw failure;
    });
    this.released.abort(new ClosedError(`lock '${this.name}'`));
    this.linked.dispose();
    this.onRelease(this);
    return this.releasing;
  }

  resign(): Promise<void> {
    return this.release();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

function checkTimeout(timeoutMs: unknown): number | undefined {
  if (timeoutMs === undefined) return undefined;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0)
    throw new ValidationError(
      'options.timeoutMs',
      `must be a number of ms >= 0 (got ${describeValue(timeoutMs)})`,
    );
  return timeoutMs;
}

/**
 * Locks across two registries: until `done` a lock is taken in `from`, then in `to`, and held in
 * both, so that a client in any phase excludes clients in the adjacent phases (they share `to`
 * from `done` back to `dual-write`, and `from` from `dual-write` to `cutover`) and plain
 * `from` clients that have not moved yet. Everyone takes `from` before `to`: no two clients can
 * each hold one and wait for the other.
 */
export class MigratingLocks implements LockService {
  private readonly held = new Set<MigratingLease>();
  private readonly pending = new Set<AbortController>();
  private closed = false;

  constructor(
    private readonly backends: Readonly<Record<Side, Backend>>,
    private readonly options: MigratingLocksOptions,
  ) {}

  async acquire(name: string, options: AcquireOptions = {}): Promise<LockLease> {
    validateId(name, 'name');
    const timeoutMs = checkTimeout(options.timeoutMs);
    const sides = await this.sides();
    const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    const controller = new AbortController();
    const linked = options.signal ? linkSignals(controller.signal, options.signal) : undefined;
    this.pending.add(controller);
    const taken: LockLease[] = [];
    try {
      for (const [i, side] of sides.entries()) {
        const left = deadline === undefined ? undefined : Math.max(0, deadline - performance.now());
        taken.push(
          await this.backends[side].locks.acquire(name, {
            ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
            ...(left !== undefined ? { timeoutMs: left } : {}),
            signal: linked?.signal ?? controller.signal,
            // The first registry's queue is the one that orders waiters.
            ...(i === 0 && options.onQueued ? { onQueued: options.onQueued } : {}),
          } as AcquireOptions),
        );
      }
      return this.track(name, taken);
    } catch (error) {
      await this.undo(taken);
      if (controller.signal.aborted) throw controller.signal.reason;
      if (error instanceof LockTimeoutError && timeoutMs !== undefined)
        throw new LockTimeoutError(name, timeoutMs);
      throw error;
    } finally {
      linked?.dispose();
      this.pending.delete(controller);
    }
  }

  async tryAcquire(name: string, options: { ttlSeconds?: number } = {}): Promise<LockLease | undefined> {
    validateId(name, 'name');
    const sides = await this.sides();
    const taken: LockLease[] = [];
    try {
      for (const side of sides) {
        const lease = await this.backends[side].locks.tryAcquire(name, options);
        if (!lease) {
          await this.undo(taken);
          return undefined;
        }
        taken.push(lease);
      }
    } catch (error) {
      await this.undo(taken);
      throw error;
    }
    return this.track(name, taken);
  }

  async withLock<T>(
    name: string,
    fn: (lease: LockLease) => Promise<T>,
    options: { ttlSeconds?: number; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const lease = await this.acquire(name, options);
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }

  async campaign(
    election: string,
    value: string,
    options: { ttlSeconds?: number; signal?: AbortSignal } = {},
  ): Promise<Leadership> {
    validateId(election, 'election');
    const sides = await this.sides();
    const taken: LockLease[] = [];
    try {
      for (const side of sides) {
        const leadership = await this.backends[side].locks.campaign(election, value, options);
        taken.push({
          name: election,
          fencingToken: 0n,
          ttlSeconds: leadership.ttlSeconds,
          signal: leadership.signal,
          release: () => leadership.resign(),
          [Symbol.asyncDispose]: () => leadership.resign(),
        });
      }
    } catch (error) {
      await this.undo(taken);
      throw error;
    }
    return this.track(election, taken);
  }

  /** The leader in `to` (every leader holds `to` last), else in `from` until `done`. */
  async leader(election: string): Promise<string | undefined> {
    validateId(election, 'election');
    const sides = await this.sides();
    const inTo = await this.backends.to.locks.leader(election);
    if (inTo !== undefined || !sides.includes('from')) return inTo;
    return this.backends.from.locks.leader(election);
  }

  /** Releases every held lock and abandons every wait. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const controller of this.pending) controller.abort(new ClosedError('lock service'));
    await Promise.allSettled([...this.held].map((lease) => lease.release()));
  }

  private async sides(): Promise<readonly Side[]> {
    if (this.closed) throw new ClosedError('lock service');
    await this.options.ready();
    return PHASE_RULES[this.options.phase()].locks;
  }

  private track(name: string, leases: LockLease[]): MigratingLease {
    const lease = new MigratingLease(name, leases, (l) => this.held.delete(l));
    this.held.add(lease);
    return lease;
  }

  private async undo(taken: LockLease[]): Promise<void> {
    for (const lease of taken.reverse()) await lease.release().catch(() => {});
  }
}
