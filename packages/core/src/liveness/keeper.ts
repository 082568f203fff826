import { abortable } from '../backoff.js';
import { publish } from '../diagnostics.js';
import { BackendUnavailableError, ClosedError, SessionGoneError } from '../errors.js';
import { type EngineContext, message, retryInBackground } from './context.js';
import type { SessionState } from './session.js';
import { LiveSession } from './session.js';

/**
 * Keeps the sessions of one engine alive: grants them (one grant at a time per ttl), renews each
 * every ttl/3 (retrying at most `renewRetryMaxMs` apart after a failure), and declares one lost —
 * through `onLost` — when the server says it is gone (`remote`) or when no renewal sent within the
 * last ttl was acknowledged (the server may expire it from then on). Sessions holding nothing are
 * revoked after `idleSessionMs`; sessions lost locally are revoked once the engine says so.
 */
export class SessionKeeper<S, V> {
  /** `client` scope: the session in use per ttl. */
  private readonly current = new Map<number, LiveSession<S>>();
  private readonly granting = new Map<number, Promise<LiveSession<S>>>();
  /** Sessions the server may still hold: their owners may be overwritten, and `close()` revokes them. */
  private readonly sessions = new Set<LiveSession<S>>();
  /** Sessions lost locally that the server may still hold: revoked once their registrations live elsewhere. */
  private readonly dropped = new Set<LiveSession<S>>();
  /** The renewal in flight per session (a renewal out of turn shares it). */
  private readonly renewals = new WeakMap<LiveSession<S>, Promise<void>>();
  private oursCache: ReadonlySet<string> | undefined;

  constructor(
    private readonly context: EngineContext<S, V>,
    private readonly options: { idleSessionMs: number; renewRetryMaxMs: number },
    /** A session is lost (the keeper has already stopped its timers and forgotten it as current). */
    private readonly onLost: (session: LiveSession<S>, error: Error, remote: boolean) => void,
  ) {}

  /**
   * The usable session of `ttlSeconds`, granting one (shared by concurrent callers) when there is
   * none. With `signal`, the wait for a grant ends (rejects) when it aborts.
   */
  currentFor(ttlSeconds: number, signal?: AbortSignal): Promise<LiveSession<S>> {
    const session = this.current.get(ttlSeconds);
    if (session?.usable) return Promise.resolve(session);
    let granting = this.granting.get(ttlSeconds);
    if (!granting) {
      granting = this.grant(ttlSeconds).finally(() => this.granting.delete(ttlSeconds));
      granting.then(
        (s) => this.current.set(ttlSeconds, s),
        () => {},
      );
      this.granting.set(ttlSeconds, granting);
    }
    return abortable(granting, signal, (reason) => reason);
  }

  /** The current session of `ttlSeconds`, if there is a usable one. */
  peek(ttlSeconds: number): LiveSession<S> | undefined {
    const session = this.current.get(ttlSeconds);
    return session?.usable ? session : undefined;
  }

  /** Grants a new session (for `key` scope: the session of `key`). */
  async grant(ttlSeconds: number, key?: string): Promise<LiveSession<S>> {
    const { driver, timers } = this.context;
    if (!this.context.running()) throw new ClosedError(`${driver.backend} backend`);
    const startedAt = timers.now();
    const value = await driver.grant(ttlSeconds, this.context.lifetime, key);
    const session = new LiveSession<S>(value, driver.ownerOf(value), ttlSeconds, startedAt);
    if (!this.context.running()) {
      void driver.revoke(value).catch(() => {});
      throw new ClosedError(`${driver.backend} backend`);
    }
    this.sessions.add(session);
    this.oursCache = undefined;
    this.context.stats.sessionsGranted += 1;
    publish.session(() => ({ backend: driver.backend, ttlSeconds, state: 'alive', previous: undefined }));
    // A `key` scope session exists on the server from its key's first write (a Consul TTL check is
    // created with its service), which confirms it and starts its renewals: renewing it before
    // would find nothing and lose it, and a burst of registrations queued behind the connection
    // pool would lose every one still waiting, over and over.
    if (driver.scope === 'client') {
      this.scheduleRenew(session, startedAt + this.interval(session));
      this.scheduleExpiry(session);
    }
    return session;
  }

  /** One renewal of `session` now (shared with one in flight). */
  renew(session: LiveSession<S>): Promise<void> {
    const running = this.renewals.get(session);
    if (running) return running;
    const run = this.renewOnce(session).finally(() => this.renewals.delete(session));
    this.renewals.set(session, run);
    return run;
  }

  /** Renews every usable session now (the server is reachable again). */
  renewAll(): void {
    for (const session of this.sessions) if (session.usable) void this.renew(session);
  }

  /**
   * The server renewed `session` at or after `startedAt`, so it keeps it at least a ttl after (a
   * renewal, or for `key` scope a write of its key): it is alive, and renewed again an interval later.
   */
  confirm(session: LiveSession<S>, startedAt: number): void {
    session.failures = 0;
    this.setState(session, 'alive');
    const until = startedAt + session.ttlSeconds * 1000;
    if (until > session.confirmedUntil) session.confirmedUntil = until;
    this.scheduleExpiry(session);
    this.scheduleRenew(session, startedAt + this.interval(session));
  }

  /** Marks `session` lost, stops its timers, and tells `onLost` (once). */
  lose(session: LiveSession<S>, error: Error, remote: boolean): void {
    if (!session.usable) return;
    this.setState(session, 'lost', error);
    this.clearTimers(session);
    this.context.stats.sessionsLost += 1;
    if (this.current.get(session.ttlSeconds) === session) this.current.delete(session.ttlSeconds);
    if (remote) this.forget(session);
    else if (this.context.driver.scope === 'client') this.dropped.add(session);
    this.onLost(session, error, remote);
    session.controller.abort(error);
  }

  /** Revokes the sessions lost locally (their registrations live elsewhere now). */
  revokeDropped(): void {
    for (const session of [...this.dropped]) {
      this.dropped.delete(session);
      retryInBackground(this.context, 'revoke a lost session', async () => {
        await this.context.driver.revoke(session.value);
        this.forget(session);
      });
    }
  }

  /** The session holds nothing any more: a `client` session is revoked once idle for a while. */
  emptied(session: LiveSession<S>): void {
    this.context.timers.clearTimeout(session.idleTimer);
    if (!session.idle || !session.usable || this.context.driver.scope === 'key') return;
    session.idleTimer = this.context.timers.setTimeout(() => {
      if (!session.idle || !session.usable || !this.context.running()) return;
      this.end(session);
      retryInBackground(this.context, 'revoke an idle session', () =>
        this.context.driver.revoke(session.value),
      );
    }, this.options.idleSessionMs);
  }

  /** Stops tracking a session this client ended (revoked, replaced, released with its key). */
  end(session: LiveSession<S>): void {
    if (session.state === 'ended') return;
    const wasUsable = session.usable;
    this.setState(session, 'ended');
    this.clearTimers(session);
    if (this.current.get(session.ttlSeconds) === session) this.current.delete(session.ttlSeconds);
    this.forget(session);
    if (wasUsable) session.controller.abort(new ClosedError(`${this.context.driver.backend} session`));
  }

  /** Owner ids of every session of ours the server may still hold. */
  ours(): ReadonlySet<string> {
    this.oursCache ??= new Set([...this.sessions].map((s) => s.owner));
    return this.oursCache;
  }

  /** Every session the server may still hold. */
  all(): LiveSession<S>[] {
    return [...this.sessions];
  }

  /** `unconfirmed` when a usable session's renewals go unanswered, `up` when all are confirmed, `unknown` with none. */
  connection(): 'up' | 'unconfirmed' | 'unknown' {
    let any = false;
    for (const s of this.sessions) {
      if (s.state === 'unconfirmed') return 'unconfirmed';
      if (s.state === 'alive') any = true;
    }
    return any ? 'up' : 'unknown';
  }

  /** Usable sessions now. */
  get usableCount(): number {
    let n = 0;
    for (const s of this.sessions) if (s.usable) n += 1;
    return n;
  }

  /** Ends every session without a word to the server (a simulated crash). */
  abandonAll(error: Error): void {
    for (const s of this.sessions) {
      this.clearTimers(s);
      s.state = 'ended';
      s.controller.abort(error);
    }
    this.sessions.clear();
    this.current.clear();
    this.dropped.clear();
  }

  /** Stops every timer (close). */
  stopAll(): void {
    for (const s of this.sessions) this.clearTimers(s);
  }

  /** Sets a session's state, publishing the change on `rollcall:session`. */
  private setState(session: LiveSession<S>, state: SessionState, error?: Error): void {
    const previous = session.state;
    session.state = state;
    if (previous === state) return;
    publish.session(() => ({
      backend: this.context.driver.backend,
      ttlSeconds: session.ttlSeconds,
      state,
      previous,
      ...(error ? { error } : {}),
    }));
  }

  private forget(session: LiveSession<S>): void {
    if (this.sessions.delete(session)) this.oursCache = undefined;
    this.dropped.delete(session);
  }

  private interval(session: LiveSession<S>): number {
    return (session.ttlSeconds * 1000) / 3;
  }

  private clearTimers(session: LiveSession<S>): void {
    const { timers } = this.context;
    timers.clearTimeout(session.renewTimer);
    timers.clearTimeout(session.expiryTimer);
    timers.clearTimeout(session.idleTimer);
  }

  private scheduleRenew(session: LiveSession<S>, at: number): void {
    const { timers } = this.context;
    timers.clearTimeout(session.renewTimer);
    session.renewTimer = timers.setTimeout(() => void this.renew(session), Math.max(0, at - timers.now()));
  }

  private async renewOnce(session: LiveSession<S>): Promise<void> {
    const { driver, timers, logger, stats, lifetime } = this.context;
    if (!session.usable) return;
    timers.clearTimeout(session.renewTimer);
    const startedAt = timers.now();
    stats.renewals += 1;
    const controller = new AbortController();
    const timeout = timers.setTimeout(
      () => controller.abort(new BackendUnavailableError(driver.backend, 'renewal unanswered')),
      this.interval(session),
    );
    const stop = () => controller.abort(new ClosedError(`${driver.backend} backend`));
    lifetime.addEventListener('abort', stop, { once: true });
    let alive: boolean | undefined;
    let failure: unknown;
    try {
      alive = await driver.renew(session.value, controller.signal);
    } catch (error) {
      failure = error;
    } finally {
      timers.clearTimeout(timeout);
      lifetime.removeEventListener('abort', stop);
    }
    if (!session.usable) return;
    if (alive === true) {
      stats.renewalsAcked += 1;
      if (session.failures > 0)
        logger.info(
          {
            ttlSeconds: session.ttlSeconds,
            failures: session.failures,
          },
          `${driver.backend}: session renewals get through again`,
        );
      this.confirm(session, startedAt);
      return;
    }
    if (alive === false) {
      this.lose(
        session,
        new SessionGoneError(
          driver.backend,
          `session (TTL ${session.ttlSeconds} s) expired or was revoked on the server`,
        ),
        true,
      );
      return;
    }
    session.failures += 1;
    this.setState(session, 'unconfirmed', failure instanceof Error ? failure : undefined);
    const delay = Math.min(
      this.options.renewRetryMaxMs,
      (session.ttlSeconds * 1000) / 4,
      100 * 2 ** Math.min(session.failures - 1, 10),
    );
    (session.failures === 1 ? logger.warn : logger.debug).call(
      logger,
      {
        ttlSeconds: session.ttlSeconds,
        failures: session.failures,
        retryInMs: Math.round(delay),
        error: message(failure),
      },
      `${driver.backend}: session renewal failed; retrying`,
    );
    this.scheduleRenew(session, timers.now() + delay);
  }

  private scheduleExpiry(session: LiveSession<S>): void {
    const { timers, driver } = this.context;
    timers.clearTimeout(session.expiryTimer);
    session.expiryTimer = timers.setTimeout(
      () => {
        if (!session.usable) return;
        if (timers.now() < session.confirmedUntil) {
          this.scheduleExpiry(session);
          return;
        }
        const what =
          driver.scope === 'key'
            ? `no heartbeat of '${[...session.registrations][0]?.key ?? 'the registration'}'`
            : "no renewal of the client's session";
        this.lose(
          session,
          new BackendUnavailableError(
            driver.backend,
            `${what} was acknowledged within its TTL (${session.ttlSeconds} s): the server may have expired it`,
          ),
          false,
        );
      },
      Math.max(0, session.confirmedUntil - timers.now()),
    );
  }
}
