import {
  AbortedError,
  type AcquireOptions,
  type Backend,
  type CallOptions,
  ClosedError,
  type Leadership,
  type LockLease,
  type LockService,
  LockTimeoutError,
  ValidationError,
  validateCallOptions,
  validateElectionValue,
  validateId,
  validateOptionsObject,
  validateSignal,
  validateTimeoutMs,
  validateTtl,
} from '@rollcall/core';
import {
  abortable,
  boundedLockWait,
  guardedCall,
  type Linked,
  linkSignals,
  throwIfAborted,
  withLockOf,
} from '@rollcall/core/driver';
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

/**
 * The options every lock call shares, checked as core checks them, before any network call. The
 * ttl is passed on as given: each registry applies its own default and minimum.
 */
function checkOptions(options: unknown): {
  raw: Record<string, unknown>;
  ttl: { ttlSeconds?: number };
  signal: AbortSignal | undefined;
} {
  const raw = validateOptionsObject(options);
  const ttl =
    raw.ttlSeconds === undefined ? {} : { ttlSeconds: validateTtl(raw.ttlSeconds, 'options.ttlSeconds') };
  return { raw, ttl, signal: validateSignal(raw.signal) };
}

function validateOnQueued(onQueued: unknown): (() => void) | undefined {
  if (onQueued === undefined) return undefined;
  if (typeof onQueued !== 'function') throw new ValidationError('options.onQueued', 'must be a function');
  return onQueued as () => void;
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

  async acquire(name: string, options?: AcquireOptions): Promise<LockLease> {
    validateId(name, 'name');
    const { raw, ttl, signal } = checkOptions(options);
    const timeoutMs = validateTimeoutMs(raw.timeoutMs);
    const onQueued = validateOnQueued(raw.onQueued);
    return this.wait(name, timeoutMs, signal, (side, first, wait) =>
      this.backends[side].locks.acquire(name, {
        ...ttl,
        signal: wait,
        // The first registry's queue is the one that orders waiters.
        ...(first && onQueued ? { onQueued } : {}),
      } as AcquireOptions),
    );
  }

  async tryAcquire(
    name: string,
    options?: { ttlSeconds?: number; signal?: AbortSignal },
  ): Promise<LockLease | undefined> {
    validateId(name, 'name');
    const { ttl, signal } = checkOptions(options);
    this.assertOpen();
    throwIfAborted(signal);
    const inner = { ...ttl, ...(signal ? { signal } : {}) };
    const attempt = (async () => {
      const sides = await this.sides();
      const taken: LockLease[] = [];
      try {
        for (const side of sides) {
          const lease = await this.backends[side].locks.tryAcquire(name, inner);
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
    })();
    try {
      return await guardedCall(signal, () => attempt);
    } catch (error) {
      // Given up while it was being taken: a lock granted after all is released at once.
      if (signal?.aborted)
        attempt.then(
          (lease) => lease?.release().catch(() => {}),
          () => {},
        );
      throw error;
    }
  }

  withLock<T>(
    name: string,
    fn: (lease: LockLease) => Promise<T>,
    options?: { ttlSeconds?: number; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<T> {
    return withLockOf(this, name, fn, options);
  }

  async campaign(
    election: string,
    value: string,
    options?: { ttlSeconds?: number; signal?: AbortSignal },
  ): Promise<Leadership> {
    validateId(election, 'election');
    validateElectionValue(value);
    const { ttl, signal } = checkOptions(options);
    return this.wait(election, undefined, signal, async (side, _first, wait) => {
      const leadership = await this.backends[side].locks.campaign(election, value, { ...ttl, signal: wait });
      return {
        name: election,
        fencingToken: 0n,
        ttlSeconds: leadership.ttlSeconds,
        signal: leadership.signal,
        release: () => leadership.resign(),
        [Symbol.asyncDispose]: () => leadership.resign(),
      };
    });
  }

  /** The leader in `to` (every leader holds `to` last), else in `from` until `done`. */
  async leader(election: string, options?: CallOptions): Promise<string | undefined> {
    validateId(election, 'election');
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, async () => {
      const sides = await this.sides();
      const call = signal ? { signal } : undefined;
      const inTo = await this.backends.to.locks.leader(election, call);
      if (inTo !== undefined || !sides.includes('from')) return inTo;
      return this.backends.from.locks.leader(election, call);
    });
  }

  /** Releases every held lock and abandons every wait. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const controller of this.pending) controller.abort(new ClosedError('lock service'));
    await Promise.allSettled([...this.held].map((lease) => lease.release()));
  }

  /**
   * Takes a lock (or leadership) in every registry of the phase, in order, as core's lock service
   * waits: `timeoutMs` ends the wait with a {@link LockTimeoutError}, the caller's `signal` with an
   * {@link AbortedError}, `close()` with a {@link ClosedError}; the registries' waits are withdrawn
   * and what was taken is given up.
   */
  private async wait(
    name: string,
    timeoutMs: number | undefined,
    callerSignal: AbortSignal | undefined,
    takeIn: (side: Side, first: boolean, signal: AbortSignal) => Promise<LockLease>,
  ): Promise<MigratingLease> {
    this.assertOpen();
    throwIfAborted(callerSignal);
    return boundedLockWait(name, timeoutMs, callerSignal, this.pending, async (signal) => {
      const taken: LockLease[] = [];
      try {
        const sides = await abortable(this.sides(), signal);
        for (const [i, side] of sides.entries()) taken.push(await takeIn(side, i === 0, signal));
        if (signal.aborted) throw signal.reason;
        return this.track(name, taken);
      } catch (error) {
        await this.undo(taken);
        throw error;
      }
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('lock service');
  }

  /** The registries locks are taken on in the phase (once it is known). */
  private async sides(): Promise<readonly Side[]> {
    await this.options.ready();
    this.assertOpen();
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
