import { guardedCall, throwIfAborted } from './backoff.js';
import { publish, traceLockAcquire } from './diagnostics.js';
import { AbortedError, ClosedError, LockTimeoutError, RollcallError, ValidationError } from './errors.js';
import { whileHeld } from './liveness/process-ref.js';
import { type Logger, silentLogger } from './logger.js';
import { linkSignals } from './signals.js';
import type { CallOptions, Leadership, LockLease, LockService } from './types.js';
import {
  validateCallOptions,
  validateElectionValue,
  validateId,
  validateOptionsObject,
  validateSignal,
  validateTimeoutMs,
  validateTtl,
} from './validation.js';

/** A lock (or leadership) the backend granted to this client. */
export interface HeldLock {
  /** Strictly increases with each holder of the same name (etcd: create revision; Consul: modify index). */
  readonly fencingToken: bigint;
  /** Aborts when the backend no longer guarantees the lock (lease or session lost). */
  readonly lost: AbortSignal;
  /** Gives the lock up; the next waiter gets it at once. */
  release(): Promise<void>;
}

/** One lock or election that is held or waited for, as {@link LockDriver.list} reports it. */
export interface LockInfo {
  kind: 'lock' | 'election';
  /** The lock or election name. */
  name: string;
  /**
   * Who holds it, when someone does: an election's leader value; for a lock, the backend's own
   * holder identity (etcd: the lease id in hex, Consul: `host:pid` of the holder, memory: the session).
   */
  holder?: string;
  /** The holder's fencing token, when the backend can tell it from a listing. */
  token?: bigint;
  /** Requests queued behind the holder. */
  waiters: number;
}

/** The backend (or this configuration of it) cannot do what was asked, e.g. enumerate lock holders. */
export class NotSupportedError extends RollcallError {
  constructor(backend: string, what: string) {
    super('ERR_NOT_SUPPORTED', `${backend}: ${what} is not supported by this backend`);
  }
}

/**
 * The part of a lock backend that talks to its server. Validation, timeouts, `withLock`,
 * lease handles and idempotent release are {@link createLockService}'s.
 */
export interface LockDriver {
  readonly backend: string;
  /** Smallest TTL the backend honours, in seconds (etcd 2, Consul 10). */
  readonly minTtlSeconds: number;
  /**
   * Queues this client for `name` (first come, first served) and resolves once it holds the lock.
   * Calls `queued()` once the request is in the backend's queue. When `signal` aborts first,
   * withdraws the request from the backend (nothing left behind) and rejects.
   */
  acquire(name: string, ttlSeconds: number, signal: AbortSignal, queued: () => void): Promise<HeldLock>;
  /** Takes the lock only if nobody holds or waits for it now. */
  tryAcquire(name: string, ttlSeconds: number): Promise<HeldLock | undefined>;
  /** Like `acquire`, on the election `election`, publishing `value` as the leader's value once it leads. */
  campaign(election: string, value: string, ttlSeconds: number, signal: AbortSignal): Promise<HeldLock>;
  /** The value of the current leader, if any. */
  leader(election: string): Promise<string | undefined>;
  /**
   * Every lock and election that is held or waited for now, in any order (for tools and
   * dashboards). Optional: a backend that cannot enumerate holders leaves it out.
   */
  list?(): Promise<LockInfo[]>;
  /** Called when the service starts closing, before held locks are released (e.g. stop withdrawing waits one by one). */
  beginClose?(): void;
  /** Called after held locks are released and waits abandoned: end the driver's loops and sessions. */
  close?(): Promise<void>;
}

/** Options of {@link LockService.acquire} as implemented by Rollcall, with its extensions. */
export interface AcquireOptions {
  /** Seconds the lock outlives a holder that stops heartbeating (dies). Default 15, at least the backend's minimum. */
  ttlSeconds?: number;
  /** Give up after this many ms with a {@link LockTimeoutError}. Default: wait for ever (as does `Infinity`, or anything above 2^31-1 ms, which no timer can wait). */
  timeoutMs?: number;
  /** Give up when aborted, with an {@link AbortedError}. */
  signal?: AbortSignal;
  /** Called once the request is queued in the backend (to sequence callers in tests and tools). */
  onQueued?: () => void;
}

/** Default lock and leadership TTL in seconds. */
export const DEFAULT_LOCK_TTL_SECONDS = 15;

class ManagedLease implements LockLease, Leadership {
  private readonly released = new AbortController();
  private releasing: Promise<void> | undefined;
  readonly signal: AbortSignal;

  constructor(
    readonly name: string,
    private readonly held: HeldLock,
    readonly ttlSeconds: number,
  ) {
    // The holder must stop when the lock is lost, and the handle is dead once released. (Not
    // AbortSignal.any: a backend's `lost` may be a long-lived session signal; see linkSignals.)
    this.signal = linkSignals(held.lost, this.released.signal).signal;
  }

  get fencingToken(): bigint {
    return this.held.fencingToken;
  }

  release(): Promise<void> {
    if (!this.releasing) {
      this.released.abort(new ClosedError(`lock '${this.name}'`));
      this.releasing = this.held.release();
    }
    return this.releasing;
  }

  resign(): Promise<void> {
    return this.release();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

function validateOnQueued(onQueued: unknown): () => void {
  if (onQueued === undefined) return () => {};
  if (typeof onQueued !== 'function') throw new ValidationError('options.onQueued', 'must be a function');
  return onQueued as () => void;
}

/**
 * Runs a wait for a lock or a leadership as Rollcall's lock services bound it: `run` gets one
 * signal that aborts after `timeoutMs` (the wait rejects with a {@link LockTimeoutError}), when the
 * caller's signal aborts ({@link AbortedError}), or when the service closes (it aborts the wait's
 * controller in `pending` with a {@link ClosedError}, which the wait rejects with).
 */
export async function boundedLockWait<T>(
  name: string,
  timeoutMs: number | undefined,
  callerSignal: AbortSignal | undefined,
  pending: Set<AbortController>,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const linked = callerSignal ? linkSignals(controller.signal, callerSignal) : undefined;
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(new LockTimeoutError(name, timeoutMs)), timeoutMs);
  pending.add(controller);
  try {
    return await run(linked?.signal ?? controller.signal);
  } catch (error) {
    const reason: unknown = controller.signal.aborted
      ? controller.signal.reason
      : callerSignal?.aborted
        ? callerSignal.reason
        : undefined;
    if (reason instanceof LockTimeoutError || reason instanceof ClosedError) throw reason;
    if (callerSignal?.aborted)
      throw error instanceof AbortedError ? error : new AbortedError(callerSignal.reason);
    throw error;
  } finally {
    clearTimeout(timer);
    linked?.dispose();
    pending.delete(controller);
  }
}

/** A wait for a lock or a leadership, as {@link ManagedLockService} runs it. */
interface WaitRequest {
  kind: 'lock' | 'election';
  name: string;
  ttl: number;
  timeoutMs: number | undefined;
  callerSignal: AbortSignal | undefined;
  /** Asks the driver; `signal` aborts on timeout, the caller's signal or close. */
  start: (signal: AbortSignal) => Promise<HeldLock>;
}

/**
 * The {@link LockService} every backend shares: validation before any network call,
 * `timeoutMs` and `signal` (withdrawing the request from the backend), idempotent release,
 * `withLock`, and leadership handles.
 */
export class ManagedLockService implements LockService {
  private closed = false;
  private readonly open = new Set<ManagedLease>();
  private readonly pending = new Set<AbortController>();

  private warnedTtl = false;

  constructor(
    private readonly driver: LockDriver,
    private readonly logger: Logger = silentLogger,
  ) {}

  /**
   * The ttl a lock is taken with. Any ttl the contract allows (2 s and up) is accepted on every
   * backend, so the same code runs everywhere; where the backend cannot do less (Consul's sessions:
   * 10 s), its minimum is used, said once in a warning and in the lease's `ttlSeconds`.
   */
  private ttl(ttlSeconds: unknown): number {
    const min = this.driver.minTtlSeconds;
    const asked = validateTtl(
      ttlSeconds === undefined ? DEFAULT_LOCK_TTL_SECONDS : ttlSeconds,
      'options.ttlSeconds',
    );
    if (asked >= min) return asked;
    if (!this.warnedTtl) {
      this.warnedTtl = true;
      this.logger.warn(
        {
          ttlSeconds: asked,
          minimumSeconds: min,
        },
        `${this.driver.backend}: a lock ttl below the backend's minimum is raised to it`,
      );
    }
    return min;
  }

  async acquire(name: string, options?: AcquireOptions): Promise<LockLease> {
    validateId(name, 'name');
    const o = validateOptionsObject(options);
    const ttl = this.ttl(o.ttlSeconds);
    const timeoutMs = validateTimeoutMs(o.timeoutMs);
    const callerSignal = validateSignal(o.signal);
    const onQueued = validateOnQueued(o.onQueued);
    return this.wait({
      kind: 'lock',
      name,
      ttl,
      timeoutMs,
      callerSignal,
      start: (signal) => this.driver.acquire(name, ttl, signal, onQueued),
    });
  }

  async tryAcquire(
    name: string,
    options?: { ttlSeconds?: number; signal?: AbortSignal },
  ): Promise<LockLease | undefined> {
    validateId(name, 'name');
    const o = validateOptionsObject(options);
    const ttl = this.ttl(o.ttlSeconds);
    const signal = validateSignal(o.signal);
    this.assertOpen();
    // Already aborted: send nothing (starting the attempt would take the lock, then give it back).
    throwIfAborted(signal);
    const attempt = whileHeld(this.driver.tryAcquire(name, ttl));
    let held: HeldLock | undefined;
    try {
      held = await guardedCall(signal, () => attempt);
    } catch (error) {
      // Given up while it was being taken: a lock granted after all is released at once.
      if (signal?.aborted)
        attempt.then(
          (h) => h?.release().catch(() => {}),
          () => {},
        );
      throw error;
    }
    return held ? this.track('lock', name, held, ttl, 0) : undefined;
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
    const o = validateOptionsObject(options);
    const ttl = this.ttl(o.ttlSeconds);
    const callerSignal = validateSignal(o.signal);
    return this.wait({
      kind: 'election',
      name: election,
      ttl,
      timeoutMs: undefined,
      callerSignal,
      start: (signal) => this.driver.campaign(election, value, ttl, signal),
    });
  }

  async leader(election: string, options?: CallOptions): Promise<string | undefined> {
    validateId(election, 'election');
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, () => this.driver.leader(election));
  }

  /** Whether {@link list} works on this backend. */
  get listable(): boolean {
    return typeof this.driver.list === 'function';
  }

  /**
   * Every lock and election held or waited for now, on every client (locks first, by name).
   * Throws {@link NotSupportedError} when the backend cannot enumerate holders.
   */
  async list(): Promise<LockInfo[]> {
    this.assertOpen();
    if (!this.driver.list) throw new NotSupportedError(this.driver.backend, 'listing locks');
    const items = await whileHeld(this.driver.list());
    return items.sort((a, b) =>
      a.kind === b.kind ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.kind === 'lock' ? -1 : 1,
    );
  }

  /** Releases every held lock and abandons every wait. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.driver.beginClose?.();
    for (const controller of this.pending) controller.abort(new ClosedError('lock service'));
    await Promise.allSettled([...this.open].map((lease) => lease.release()));
    await this.driver.close?.();
  }

  /** Waits for a lock or a leadership (traced on `rollcall:lock:acquire` when subscribed). */
  private wait(request: WaitRequest): Promise<ManagedLease> {
    const { kind, name, ttl } = request;
    return traceLockAcquire(
      () => ({ backend: this.driver.backend, kind, name, ttlSeconds: ttl }),
      () => this.waitUntraced(request),
    );
  }

  private async waitUntraced({
    kind,
    name,
    ttl,
    timeoutMs,
    callerSignal,
    start,
  }: WaitRequest): Promise<ManagedLease> {
    this.assertOpen();
    const startedAt = performance.now();
    return boundedLockWait(name, timeoutMs, callerSignal, this.pending, async (signal) => {
      const held = await whileHeld(start(signal));
      return this.track(kind, name, held, ttl, performance.now() - startedAt);
    });
  }

  private track(
    kind: 'lock' | 'election',
    name: string,
    held: HeldLock,
    ttl: number,
    waitedMs: number,
  ): ManagedLease {
    const lease = new ManagedLease(name, held, ttl);
    this.open.add(lease);
    const heldAt = performance.now();
    const backend = this.driver.backend;
    publish.lock(() => ({
      backend,
      kind,
      name,
      event: 'held',
      fencingToken: held.fencingToken,
      ttlSeconds: ttl,
      durationMs: waitedMs,
    }));
    lease.signal.addEventListener(
      'abort',
      () => {
        this.open.delete(lease);
        // Released by its holder, or lost (the backend no longer guarantees it).
        const lost = held.lost.aborted;
        publish.lock(() => ({
          backend,
          kind,
          name,
          event: lost ? 'lost' : 'released',
          fencingToken: held.fencingToken,
          durationMs: performance.now() - heldAt,
          ...(lost && held.lost.reason instanceof Error ? { error: held.lost.reason } : {}),
        }));
      },
      { once: true },
    );
    return lease;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('lock service');
  }
}

/** Builds the shared {@link LockService} over a backend's driver. */
export function createLockService(driver: LockDriver, logger?: Logger): ManagedLockService {
  return new ManagedLockService(driver, logger);
}

/**
 * `LockService.withLock` over any service's `acquire`: acquires, runs `fn`, and releases however
 * `fn` ends. For lock services built on others (the migrating backend's).
 */
export async function withLockOf<T>(
  locks: Pick<LockService, 'acquire'>,
  name: string,
  fn: (lease: LockLease) => Promise<T>,
  options?: { ttlSeconds?: number; timeoutMs?: number; signal?: AbortSignal },
): Promise<T> {
  if (typeof fn !== 'function') throw new ValidationError('fn', 'must be a function (lease) => Promise');
  const lease = await locks.acquire(name, options);
  try {
    return await fn(lease);
  } finally {
    await lease.release();
  }
}
