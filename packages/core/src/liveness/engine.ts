import { Backoff, type BackoffOptions } from '../backoff.js';
import { groupBy } from '../collections.js';
import {
  AbortedError,
  BackendUnavailableError,
  ClosedError,
  ConflictError,
  PermissionDeniedError,
  SessionGoneError,
} from '../errors.js';
import { Gate } from '../gate.js';
import { type Logger, silentLogger } from '../logger.js';
import { unboundedController } from '../signals.js';
import { HeldKey, type KeyListener, RegisteredKey } from './claims.js';
import { realTimers, type TimerHandle, type Timers } from './clock.js';
import { type EngineContext, type LivenessStats, message, pause } from './context.js';
import type { ClaimRef, PutOutcome, SessionDriver } from './driver.js';
import { SessionKeeper } from './keeper.js';
import { holdProcess } from './process-ref.js';
import type { LiveSession, SessionHandle } from './session.js';
import { isReleased, WritePath } from './write-path.js';

export type { LivenessStats } from './context.js';

/** Options of {@link LivenessEngine}, with their defaults. */
export interface LivenessOptions {
  /** Monotonic clock and timers. Default real timers on `performance.now()`. */
  timers?: Timers;
  /** Delays between re-registration and clean-up attempts. Default `new Backoff()` (100 ms doubling to 5 s). */
  backoff?: BackoffOptions;
  /** Losses, retries, conflicts, recoveries. Default silent. */
  logger?: Logger;
  /** How often every held key is checked against the server (missing keys put back, taken ones reported). Default 10000. */
  reconcileIntervalMs?: number;
  /** A session that holds no key is revoked after this long. Default 30000. */
  idleSessionMs?: number;
  /**
   * How long a first registration may wait without the server completing any write of this
   * engine before `register` rejects. A burst that the server works through (10,000 registrations
   * queued behind a bounded connection pool) is progress, not a failure. Default 10000.
   */
  establishTimeoutMs?: number;
  /** After a failed renewal, retries are at most this far apart (and at most a quarter of the ttl). Default 1000. */
  renewRetryMaxMs?: number;
  /**
   * Driver `put` calls in flight at once; the others wait their turn in order. A backend whose
   * write is several requests in a row over a bounded connection pool (Consul: an ownership read,
   * the registration, a read that shows it) passes its pool size, so a burst of registrations
   * finishes one after another instead of every one waiting for all. A write's session is counted
   * renewed from when its turn came, not from when it queued. Default unbounded.
   */
  maxConcurrentWrites?: number;
}

const DEFAULTS = {
  reconcileIntervalMs: 10_000,
  idleSessionMs: 30_000,
  establishTimeoutMs: 10_000,
  renewRetryMaxMs: 1000,
  maxConcurrentWrites: Number.POSITIVE_INFINITY,
};

/**
 * The one liveness machinery of Rollcall: it keeps every key the server ties to this client's life
 * (service registrations, lock and election keys, queue entries) for exactly as long as the client
 * lives, on any backend, through a {@link SessionDriver}'s primitives.
 *
 * - **Sessions**: granted on first use (one per ttl for `client` scope, one per key for `key`
 *   scope), renewed every ttl/3, retried at most `renewRetryMaxMs` apart after a failure. A session
 *   is `lost` when the server says so, or locally as soon as no renewal sent within the last ttl was
 *   acknowledged: from then on the server may expire it and give its locks to others. Sessions
 *   holding nothing are revoked after `idleSessionMs`.
 * - **One write path**: writes are group-committed per session; a write that lands on a session
 *   the engine has dropped meanwhile is written again on the current one (and the dropped session
 *   is revoked, undoing it); writes, re-writes and deletes of one key never overlap, so a release
 *   waits for a write in flight and a deregistered key never comes back.
 * - **Registrations** ({@link register}): put back after every loss with no retry limit (`lost`,
 *   then `restored`), checked every `reconcileIntervalMs` (and when a watch shows them touched): a
 *   missing key is put back; a key another live client holds is a {@link ConflictError} (`lost`),
 *   taken back once that client is gone. Never two processes overwriting each other.
 * - **Held keys** ({@link attach}): deleted as soon as their session is lost (before their `lost`
 *   signal aborts), never put back.
 * - **Process**: while anything is held the process stays alive; `close()` deletes and revokes
 *   everything; `abandon()` (a simulated crash) stops without a word to the server.
 */
export class LivenessEngine<S, V = string> {
  readonly stats: LivenessStats = {
    sessionsGranted: 0,
    sessions: 0,
    renewals: 0,
    renewalsAcked: 0,
    sessionsLost: 0,
    keysRestored: 0,
    reconciles: 0,
    conflicts: 0,
  };
  private readonly context: EngineContext<S, V>;
  private readonly keeper: SessionKeeper<S, V>;
  private readonly writes: WritePath<S, V>;
  private readonly timers: Timers;
  private readonly logger: Logger;
  private readonly reconcileIntervalMs: number;
  private readonly establishTimeoutMs: number;
  /** `key` scope: each registration's own session. */
  private readonly keySessions = new WeakMap<RegisteredKey<S, V>, LiveSession<S>>();
  /** The live registration of each key (one per key; a released one leaves at once). */
  private readonly registered = new Map<string, RegisteredKey<S, V>>();
  /**
   * Releases of keys in progress, by key: a registration of a key released just before (a
   * `register()` that gave up, retried) writes only once that release is done, and a release finding
   * its key registered again deletes nothing, so it never deletes the new registration's key.
   */
  private readonly undoing = new Map<string, Promise<void>>();
  /** Registrations to write again (lost, or found missing). */
  private readonly recovering = new Set<RegisteredKey<S, V>>();
  /** First writes in flight, oldest first, with when they began (monotonic ms) and how to fail them. */
  private readonly firstWrites = new Map<
    RegisteredKey<S, V>,
    { since: number; fail: (error: Error) => void }
  >();
  /** When the server last completed a write of this engine (monotonic ms): first writes wait from then. */
  private lastWriteAt = Number.NEGATIVE_INFINITY;
  /** Releases in progress: `close()` waits for them (a key written after its release began is still deleted). */
  private readonly releases = new Set<Promise<void>>();
  private firstWriteTimer: TimerHandle | undefined;
  /** Keys a watch showed touched: checked soon. */
  private readonly suspects = new Set<RegisteredKey<S, V>>();
  private recovery: Promise<void> | undefined;
  private wakeRecovery: (() => void) | undefined;
  private reconcileTimer: TimerHandle | undefined;
  private suspectTimer: TimerHandle | undefined;
  private state: 'open' | 'closing' | 'closed' | 'abandoned' = 'open';
  private closing: Promise<void> | undefined;
  /** Aborted by close() and abandon(): ends every wait and retry. */
  private readonly lifetime = unboundedController();
  private heldKeys = 0;
  private releaseProcess: (() => void) | undefined;

  constructor(
    private readonly driver: SessionDriver<S, V>,
    options: LivenessOptions = {},
  ) {
    this.timers = options.timers ?? realTimers;
    this.logger = options.logger ?? silentLogger;
    this.reconcileIntervalMs = options.reconcileIntervalMs ?? DEFAULTS.reconcileIntervalMs;
    this.establishTimeoutMs = options.establishTimeoutMs ?? DEFAULTS.establishTimeoutMs;
    this.context = {
      driver,
      timers: this.timers,
      logger: this.logger,
      backoff: options.backoff ?? {},
      stats: this.stats,
      lifetime: this.lifetime.signal,
      running: () => this.state === 'open' || this.state === 'closing',
      isRegistered: (key) => this.registered.has(key),
    };
    this.keeper = new SessionKeeper(
      this.context,
      {
        idleSessionMs: options.idleSessionMs ?? DEFAULTS.idleSessionMs,
        renewRetryMaxMs: options.renewRetryMaxMs ?? DEFAULTS.renewRetryMaxMs,
      },
      (session, error, remote) => this.lost(session, error, remote),
    );
    this.writes = new WritePath(
      this.context,
      this.keeper,
      new Gate(options.maxConcurrentWrites ?? DEFAULTS.maxConcurrentWrites),
    );
  }

  /** The backend this engine keeps keys on. */
  get backend(): string {
    return this.driver.backend;
  }

  /** True until `close()` or `abandon()`. */
  get isOpen(): boolean {
    return this.state === 'open';
  }

  // ---------------------------------------------------------------- registrations

  /**
   * Keeps `key` = `value` on the server for as long as this client lives (a registration).
   * `established` settles once the first write landed: it rejects with {@link ConflictError} when
   * another live client holds the key, and with the driver's error (or a `BackendUnavailableError`
   * after `establishTimeoutMs`) when it could not be written; the write is then undone in the
   * background. After that, losses are reported to `listener` and repaired with no retry limit.
   * A key has one registration at a time: registering it again before releasing it throws.
   */
  register(key: string, value: V, ttlSeconds: number, listener: KeyListener): RegisteredKey<S, V> {
    this.assertOpen();
    if (this.registered.has(key))
      throw new Error(`liveness: '${key}' is already registered; release it first`);
    const claim = new RegisteredKey<S, V>(key, value, ttlSeconds, listener);
    this.registered.set(key, claim);
    this.retain();
    claim.established = this.establish(claim);
    // The caller awaits it; never an unhandled rejection when it does not.
    claim.established.catch(() => {});
    this.scheduleReconcile();
    return claim;
  }

  /**
   * Removes a registration: waits for a write of it in flight, then deletes it from every session
   * it may have been written on. Rejects when the server cannot take the delete now; it is then
   * retried in the background until it can. Idempotent.
   */
  release(claim: RegisteredKey<S, V>): Promise<void> {
    if (claim.releasing) return claim.releasing;
    claim.state = 'closed';
    this.recovering.delete(claim);
    this.suspects.delete(claim);
    const tracked = this.registered.get(claim.key) === claim;
    if (tracked) this.registered.delete(claim.key);
    const releasing = (async () => {
      try {
        await claim.inflight;
        const session = claim.session;
        claim.session = undefined;
        if (session) {
          session.registrations.delete(claim);
          this.keeper.emptied(session);
        }
        const own = this.keySessions.get(claim);
        const targets = [...claim.sentOn].filter((s) => s.state !== 'ended' || s === own);
        claim.sentOn.clear();
        if (this.state === 'abandoned') return;
        // Registered again meanwhile: the new registration's write replaces the key (deleting it
        // now would delete that registration, or race its write).
        if (!this.registered.has(claim.key))
          await Promise.all(targets.map((s) => this.writes.remove(s, [claim.key])));
        if (own) this.keeper.end(own);
      } finally {
        if (tracked) this.unretain();
      }
    })();
    claim.releasing = releasing;
    this.releases.add(releasing);
    this.undoing.set(claim.key, releasing);
    const settled = () => {
      this.releases.delete(releasing);
      if (this.undoing.get(claim.key) === releasing) this.undoing.delete(claim.key);
    };
    void releasing.then(settled, settled);
    return releasing;
  }

  /** Checks `claim` against the server soon (a watch showed its key deleted or changed). */
  verify(claim: RegisteredKey<S, V>): void {
    if (claim.state !== 'active' || this.state !== 'open') return;
    this.suspects.add(claim);
    this.suspectTimer ??= this.timers.setTimeout(() => {
      this.suspectTimer = undefined;
      const batch = [...this.suspects];
      this.suspects.clear();
      void this.reconcile(batch);
    }, 0);
  }

  /**
   * The first write of `claim`, bounded by `establishTimeoutMs` without progress (no write of this
   * engine completed). Every first write in flight shares one deadline timer (they all have the
   * same timeout, so the oldest is always the next due): a registration costs no timer or
   * AbortSignal of its own.
   */
  private establish(claim: RegisteredKey<S, V>): Promise<void> {
    const attempt = this.firstWrite(claim);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: unknown) => {
        if (settled) return;
        settled = true;
        this.firstWrites.delete(claim);
        if (error === undefined) return resolve();
        // Undo in the background whatever part of the write reached the server (a write still in
        // flight is deleted once it lands).
        if (claim.state !== 'closed') void this.release(claim).catch(() => {});
        reject(error);
      };
      this.firstWrites.set(claim, { since: this.timers.now(), fail: settle });
      this.armFirstWrites();
      // firstWrite resolves with nothing: settle() then resolves.
      attempt.then(settle, settle);
    });
  }

  /** Arms the shared deadline of first writes: at the oldest one's. */
  private armFirstWrites(): void {
    if (this.firstWriteTimer !== undefined) return;
    const oldest = this.firstWrites.values().next().value;
    if (!oldest) return;
    const due = (pending: { since: number }) =>
      Math.max(pending.since, this.lastWriteAt) + this.establishTimeoutMs;
    this.firstWriteTimer = this.timers.setTimeout(() => {
      this.firstWriteTimer = undefined;
      const now = this.timers.now();
      for (const [claim, pending] of [...this.firstWrites]) {
        if (due(pending) > now) break;
        pending.fail(
          new BackendUnavailableError(
            this.driver.backend,
            `register '${claim.key}': not written, and no write answered by the server, within ${this.establishTimeoutMs} ms`,
          ),
        );
      }
      this.armFirstWrites();
    }, due(oldest) - this.timers.now());
  }

  private async firstWrite(claim: RegisteredKey<S, V>): Promise<void> {
    // An earlier registration of this key still being released: its delete must not land after
    // this write (awaited only when there is one: this is every registration's path).
    const undoing = this.undoing.get(claim.key);
    if (undoing) await undoing.catch(() => {});
    const removal = this.writes.removal(claim.key);
    if (removal) await removal;
    for (;;) {
      if (claim.state === 'closed') throw new AbortedError('released');
      // Client scope with a usable session (every registration but the first): no await needed.
      const session =
        (this.driver.scope === 'client' ? this.keeper.peek(claim.ttlSeconds) : undefined) ??
        (await this.sessionFor(claim));
      let outcome: PutOutcome;
      try {
        outcome = await this.writes.put(session, claim);
      } catch (error) {
        // The server dropped the session under the write: write it again on a new one.
        if (error instanceof SessionGoneError) continue;
        throw error;
      }
      this.lastWriteAt = this.timers.now();
      if (isReleased(claim)) throw new AbortedError('released');
      if (outcome === 'conflict') {
        this.stats.conflicts += 1;
        throw new ConflictError(
          claim.key,
          `${this.driver.backend}: '${claim.key}' is registered by another live client; deregister it there first (or use another id)`,
        );
      }
      // Dropped while the write was in flight: it may have landed on the dropped session (which is
      // revoked, undoing it); write it on the current one.
      if (!session.usable) continue;
      this.bind(claim, session);
      claim.state = 'active';
      return;
    }
  }

  /** The session a registration is written on: the ttl's shared one, or (key scope) its own. */
  private async sessionFor(claim: RegisteredKey<S, V>): Promise<LiveSession<S>> {
    if (this.driver.scope === 'client') return this.keeper.currentFor(claim.ttlSeconds);
    const own = this.keySessions.get(claim);
    if (own?.usable) return own;
    if (own) this.keeper.end(own);
    const session = await this.keeper.grant(claim.ttlSeconds, claim.key);
    this.keySessions.set(claim, session);
    return session;
  }

  private bind(claim: RegisteredKey<S, V>, session: LiveSession<S>): void {
    if (claim.session && claim.session !== session) claim.session.registrations.delete(claim);
    claim.session = session;
    session.registrations.add(claim);
    // The write on `session` replaced the key wherever else it was.
    claim.sentOn.clear();
    claim.sentOn.add(session);
    this.timers.clearTimeout(session.idleTimer);
  }

  /** A registration's key is gone from the server (or taken): report it and write it again. */
  private keyLost(claim: RegisteredKey<S, V>, error: Error): void {
    if (claim.state === 'closed') return;
    const session = claim.session;
    claim.session = undefined;
    session?.registrations.delete(claim);
    if (claim.state === 'active') {
      claim.state = 'recovering';
      claim.listener.lost(error);
    }
    this.recovering.add(claim);
    this.runRecovery();
  }

  private markConflict(claim: RegisteredKey<S, V>): void {
    if (claim.conflict || claim.state === 'closed') return;
    claim.conflict = true;
    this.stats.conflicts += 1;
    const error = new ConflictError(
      claim.key,
      `${this.driver.backend}: '${claim.key}' is now held by another live client; it is taken back once that client is gone`,
    );
    this.logger.warn(
      {
        key: claim.key,
      },
      `${this.driver.backend}: a registration is held by another live client`,
    );
    const session = claim.session;
    claim.session = undefined;
    session?.registrations.delete(claim);
    this.recovering.add(claim);
    if (claim.state === 'active') claim.state = 'recovering';
    claim.listener.lost(error);
  }

  // ---------------------------------------------------------------- recovery

  private runRecovery(): void {
    if (this.recovery) {
      this.wakeRecovery?.();
      return;
    }
    if (this.state !== 'open') return;
    this.recovery = this.recoveryLoop().finally(() => {
      this.recovery = undefined;
      if (this.state === 'open' && this.due().length > 0) this.runRecovery();
      else this.keeper.revokeDropped();
    });
  }

  /** Registrations to write again now (those in conflict wait for the reconciler). */
  private due(): RegisteredKey<S, V>[] {
    return [...this.recovering].filter((c) => !c.conflict && c.state !== 'closed');
  }

  private async recoveryLoop(): Promise<void> {
    const backoff = new Backoff(this.context.backoff);
    let failures = 0;
    for (;;) {
      if (this.state !== 'open') return;
      const due = this.due();
      if (due.length === 0) return;
      try {
        await this.rewrite(due);
        if (failures > 0)
          this.logger.info({ failures }, `${this.driver.backend}: registrations written again`);
        failures = 0;
        backoff.reset();
      } catch (error) {
        if (this.state !== 'open') return;
        failures += 1;
        const delayMs = backoff.next();
        (failures === 1 ? this.logger.warn : this.logger.debug).call(
          this.logger,
          {
            registrations: due.length,
            attempt: failures,
            delayMs: Math.round(delayMs),
            error: message(error),
          },
          `${this.driver.backend}: re-registering failed; retrying`,
        );
        if (error instanceof PermissionDeniedError)
          this.logger.error(
            {
              error: message(error),
            },
            `${this.driver.backend}: re-registration refused by the server`,
          );
        await this.pause(delayMs);
      }
    }
  }

  /** Sleeps `ms`, or less when nudged or closed. */
  private pause(ms: number): Promise<void> {
    return pause(this.context, ms, (wake) => {
      this.wakeRecovery = wake;
    });
  }

  /** Writes each claim again on its current session; rejects with the first failure (the rest are done). */
  private async rewrite(claims: RegisteredKey<S, V>[]): Promise<void> {
    const failures: unknown[] = [];
    const one = async (claim: RegisteredKey<S, V>, session: LiveSession<S>) => {
      try {
        await this.rewriteOne(claim, session);
      } catch (error) {
        failures.push(error);
      }
    };
    if (this.driver.scope === 'client') {
      await Promise.all(
        [...groupBy(claims, (c) => c.ttlSeconds)].map(async ([ttl, group]) => {
          let session: LiveSession<S>;
          try {
            session = await this.keeper.currentFor(ttl);
          } catch (error) {
            failures.push(error);
            return;
          }
          await Promise.all(group.map((c) => one(c, session)));
        }),
      );
    } else {
      await Promise.all(
        claims.map(async (claim) => {
          let session: LiveSession<S>;
          try {
            session = await this.sessionFor(claim);
          } catch (error) {
            failures.push(error);
            return;
          }
          await one(claim, session);
        }),
      );
    }
    if (failures.length > 0) throw failures[0];
  }

  private async rewriteOne(claim: RegisteredKey<S, V>, session: LiveSession<S>): Promise<void> {
    if (claim.state === 'closed') return;
    let outcome: PutOutcome;
    try {
      outcome = await this.writes.put(session, claim);
    } catch (error) {
      if (error instanceof SessionGoneError) return; // stays due: written on the next session
      throw error;
    }
    if (isReleased(claim) || !this.recovering.has(claim)) return;
    if (outcome === 'conflict') {
      this.markConflict(claim);
      return;
    }
    if (!session.usable) return; // stays due
    this.recovering.delete(claim);
    this.bind(claim, session);
    const wasRecovering = claim.state === 'recovering';
    claim.state = 'active';
    if (wasRecovering) {
      this.stats.keysRestored += 1;
      claim.listener.restored();
    }
  }

  // ---------------------------------------------------------------- held keys (locks)

  /**
   * The session of `ttlSeconds` to write held keys on (granting it when there is none), for lock
   * drivers. `client` scope only. Rejects when `signal` aborts first or the grant fails.
   */
  async session(ttlSeconds: number, signal?: AbortSignal): Promise<SessionHandle<S>> {
    this.assertOpen();
    if (this.driver.scope !== 'client')
      throw new TypeError(`${this.driver.backend}: held keys need a client-scope session driver`);
    const session = await this.keeper.currentFor(ttlSeconds, signal);
    // In use: not idle for another while.
    this.keeper.emptied(session);
    return session;
  }

  /**
   * Tracks `key`, written on `handle` by the caller, as a key that must go when the session is
   * lost: it is then deleted (the server may still hold the session) and `lost` aborts. Also
   * lost when a reconciliation finds it missing or taken. Attaching to a session that is already
   * lost returns a key that is lost at once (and deletes it).
   */
  attach(handle: SessionHandle<S>, key: string): HeldKey<S> {
    const session = handle as LiveSession<S>;
    const held: HeldKey<S> = new HeldKey<S>(key, session, (h, remove) => this.releaseHeld(h, remove));
    if (!session.usable || this.state === 'abandoned') {
      // Lost locally: the server may still hold the session, and now the key.
      if (session.state === 'lost')
        this.writes.removeInBackground(session, [key], 'delete a key written on a lost session');
      held.lose(session.lost.reason ?? new ClosedError(`${this.driver.backend} session`));
      return held;
    }
    session.held.add(held);
    this.timers.clearTimeout(session.idleTimer);
    this.retain();
    this.scheduleReconcile();
    return held;
  }

  /**
   * Asks the server now whether `handle` still lives (a renewal out of turn, shared with one in
   * flight): `alive`, `gone` (it is then lost, with everything on it), or `unknown` (unreachable).
   */
  async check(handle: SessionHandle<S>): Promise<'alive' | 'gone' | 'unknown'> {
    const session = handle as LiveSession<S>;
    if (!session.usable) return 'gone';
    await this.keeper.renew(session);
    if (!session.usable) return 'gone';
    return session.state === 'alive' && session.failures === 0 ? 'alive' : 'unknown';
  }

  /**
   * The server said `handle` does not exist (a write naming it was refused): it is lost now, with
   * everything on it (registrations are written again on a new one).
   */
  invalidate(handle: SessionHandle<S>, error: Error): void {
    this.keeper.lose(
      handle as LiveSession<S>,
      error instanceof SessionGoneError ? error : new SessionGoneError(this.driver.backend, error.message),
      true,
    );
  }

  private releaseHeld(held: HeldKey<S>, remove: boolean): Promise<void> {
    const session = held.session;
    const tracked = session.held.delete(held);
    held.ended = true;
    if (!tracked) return Promise.resolve();
    this.unretain();
    this.keeper.emptied(session);
    if (!remove || !session.usable) return Promise.resolve();
    return this.writes.remove(session, [held.key]);
  }

  /**
   * `session` is lost: said by the server (`remote`), or not confirmed within its ttl (the server
   * may still hold it). Its held keys are deleted (when the server may still hold them) before
   * their `lost` aborts; its registrations are reported lost and written again elsewhere; a session
   * lost locally is revoked once they are.
   */
  private lost(session: LiveSession<S>, error: Error, remote: boolean): void {
    const held = [...session.held];
    const registrations = [...session.registrations] as RegisteredKey<S, V>[];
    if (held.length + registrations.length > 0)
      this.logger.warn(
        {
          ttlSeconds: session.ttlSeconds,
          registrations: registrations.length,
          held: held.length,
          error: error.message,
        },
        `${this.driver.backend}: session lost`,
      );
    session.held.clear();
    if (!remote && held.length > 0)
      this.writes.removeInBackground(
        session,
        held.map((h) => h.key),
        'delete the keys of a lost session',
      );
    for (const h of held) {
      (h as HeldKey<S>).lose(
        new BackendUnavailableError(this.driver.backend, `'${h.key}' lost: ${error.message}`, {
          cause: error,
        }),
      );
      this.unretain();
    }
    session.registrations.clear();
    for (const claim of registrations) {
      claim.session = undefined;
      if (remote) claim.sentOn.delete(session);
      if (claim.state === 'active') {
        claim.state = 'recovering';
        claim.listener.lost(error);
      }
      this.recovering.add(claim);
    }
    if (registrations.length > 0) this.runRecovery();
    else if (!this.recovery) this.keeper.revokeDropped();
  }

  // ---------------------------------------------------------------- reconciliation

  private scheduleReconcile(): void {
    if (this.reconcileTimer || this.state !== 'open' || this.heldKeys === 0) return;
    this.reconcileTimer = this.timers.setTimeout(() => {
      this.reconcileTimer = undefined;
      void this.reconcile().finally(() => this.scheduleReconcile());
    }, this.reconcileIntervalMs);
  }

  /**
   * Checks registrations (all, or `only`) and held keys against the server: a registration whose
   * key is missing is written again, one another live client holds is a conflict (and one in
   * conflict whose key is free again is written again); a held key that is missing or taken is lost.
   */
  async reconcile(only?: readonly RegisteredKey<S, V>[]): Promise<void> {
    if (this.state !== 'open') return;
    type Item =
      | { kind: 'registration'; claim: RegisteredKey<S, V>; session: LiveSession<S> }
      | { kind: 'held'; held: HeldKey<S> };
    const items: Item[] = [];
    for (const claim of only ?? this.registered.values()) {
      if (claim.state === 'active' && claim.session?.usable)
        items.push({ kind: 'registration', claim, session: claim.session });
      else if (claim.state === 'recovering' && claim.conflict) {
        // Checked against the session it would be written on (granted now if there is none: the
        // one it was on may have been lost while it waited).
        const target = await this.sessionFor(claim).catch(() => undefined);
        if (target?.usable) items.push({ kind: 'registration', claim, session: target });
      }
    }
    if (!only)
      for (const session of this.keeper.all())
        if (session.usable) for (const h of session.held) items.push({ kind: 'held', held: h as HeldKey<S> });
    if (items.length === 0) return;
    this.stats.reconciles += 1;
    const refs: ClaimRef<S>[] = items.map((item) =>
      item.kind === 'registration'
        ? { session: item.session.value, key: item.claim.key }
        : { session: item.held.session.value, key: item.held.key },
    );
    let answers: Awaited<ReturnType<SessionDriver<S, V>['inspect']>>;
    try {
      answers = await this.driver.inspect(refs, this.keeper.ours());
    } catch (error) {
      this.logger.debug(
        {
          error: message(error),
        },
        `${this.driver.backend}: reconciliation could not read the keys`,
      );
      return;
    }
    items.forEach((item, i) => {
      const answer = answers[i];
      if (item.kind === 'held') {
        const h = item.held;
        if (answer === 'current' || h.ended || !h.session.usable) return;
        h.session.held.delete(h);
        this.unretain();
        this.keeper.emptied(h.session);
        h.lose(
          new BackendUnavailableError(
            this.driver.backend,
            `'${h.key}' is gone from the server (deleted, or taken by another client)`,
          ),
        );
        return;
      }
      const { claim, session } = item;
      if (claim.state === 'closed') return;
      if (claim.conflict) {
        if (answer === 'absent') {
          claim.conflict = false;
          this.logger.info(
            {
              key: claim.key,
            },
            `${this.driver.backend}: a registration's id is free again; taking it back`,
          );
          this.recovering.add(claim);
          this.runRecovery();
        }
        return;
      }
      if (claim.session !== session || claim.state !== 'active') return;
      if (answer === 'foreign') this.markConflict(claim);
      else if (answer === 'absent') {
        this.logger.warn(
          {
            key: claim.key,
          },
          `${this.driver.backend}: a registration's key disappeared; putting it back`,
        );
        this.keyLost(
          claim,
          new BackendUnavailableError(
            this.driver.backend,
            `'${claim.key}' disappeared from the server (deleted by someone else?)`,
          ),
        );
      }
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * The server is reachable again (or its state may have changed): renew every session now, retry
   * pending re-registrations at once, and check every key soon.
   */
  nudge(): void {
    if (this.state !== 'open') return;
    this.keeper.renewAll();
    this.wakeRecovery?.();
    this.timers.clearTimeout(this.reconcileTimer);
    this.reconcileTimer = undefined;
    if (this.heldKeys > 0)
      this.reconcileTimer = this.timers.setTimeout(() => {
        this.reconcileTimer = undefined;
        void this.reconcile().finally(() => this.scheduleReconcile());
      }, 0);
  }

  /**
   * Releases every registration and held key, then revokes every session the server may hold.
   * Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.state === 'abandoned') return;
      this.state = 'closing';
      this.timers.clearTimeout(this.reconcileTimer);
      this.timers.clearTimeout(this.suspectTimer);
      this.wakeRecovery?.();
      await Promise.allSettled([...this.registered.values()].map((c) => this.release(c)));
      // Also the releases begun before (a first write that timed out is undone once it lands).
      await Promise.allSettled([...this.releases]);
      const held = this.keeper.all().flatMap((s) => [...s.held] as HeldKey<S>[]);
      await Promise.allSettled(held.map((h) => h.release()));
      await this.recovery;
      const sessions = this.keeper.all();
      this.keeper.stopAll();
      if (this.driver.scope === 'client')
        await Promise.allSettled(
          sessions.map((s) =>
            this.driver.revoke(s.value).catch((error) =>
              this.logger.warn(
                {
                  ttlSeconds: s.ttlSeconds,
                  error: message(error),
                },
                `${this.driver.backend}: session not revoked on close; it expires by its ttl`,
              ),
            ),
          ),
        );
      for (const s of sessions) this.keeper.end(s);
      this.state = 'closed';
      this.lifetime.abort(new ClosedError(`${this.driver.backend} backend`));
      this.releaseProcess?.();
      this.releaseProcess = undefined;
    })();
    return this.closing;
  }

  /** A simulated crash: every timer and retry stops; nothing is sent to the server. */
  abandon(): void {
    if (this.state === 'closed' || this.state === 'abandoned') return;
    this.state = 'abandoned';
    this.timers.clearTimeout(this.reconcileTimer);
    this.timers.clearTimeout(this.suspectTimer);
    const error = new ClosedError(`${this.driver.backend} backend`);
    for (const s of this.keeper.all()) {
      for (const h of s.held) (h as HeldKey<S>).lose(error);
      s.held.clear();
    }
    this.keeper.abandonAll(error);
    this.recovering.clear();
    this.lifetime.abort(error);
    this.releaseProcess?.();
    this.releaseProcess = undefined;
  }

  /**
   * The backend connection as this engine's keepalives see it: `lost` while registrations wait to
   * be written again (a session was lost and not yet replaced), `unconfirmed` while a session's
   * renewals go unanswered, `up` while every session is confirmed, `unknown` with no session.
   */
  connection(): 'up' | 'unconfirmed' | 'lost' | 'unknown' {
    if (this.due().length > 0) return 'lost';
    return this.keeper.connection();
  }

  /** Sessions held now, and counters. */
  snapshot(): LivenessStats {
    return { ...this.stats, sessions: this.keeper.usableCount };
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new ClosedError(`${this.driver.backend} backend`);
  }

  private retain(): void {
    this.heldKeys += 1;
    if (this.heldKeys === 1) this.releaseProcess ??= holdProcess();
  }

  private unretain(): void {
    this.heldKeys -= 1;
    if (this.heldKeys === 0) {
      this.releaseProcess?.();
      this.releaseProcess = undefined;
    }
  }
}
