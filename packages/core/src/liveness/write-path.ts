import { AbortedError, SessionGoneError } from '../errors.js';
import type { Gate } from '../gate.js';
import type { RegisteredKey } from './claims.js';
import { type EngineContext, isFatal, retryInBackground } from './context.js';
import type { PutOutcome } from './driver.js';
import type { SessionKeeper } from './keeper.js';
import type { LiveSession } from './session.js';

/** True once released (read through a function: the state changes across awaits). */
export const isReleased = (claim: { state: string }): boolean => claim.state === 'closed';

/**
 * The one write path of an engine: every write and delete of a key goes through here, group-
 * committed per session (everything queued in the same tick is one driver call), and writes of one
 * key never overlap (a write waits for the one before it; none starts once the key is released).
 */
export class WritePath<S, V> {
  /** The delete call in flight per key. */
  private readonly removing = new Map<string, Promise<void>>();

  constructor(
    private readonly context: EngineContext<S, V>,
    private readonly keeper: SessionKeeper<S, V>,
    /** Bounds the driver `put` calls in flight (`LivenessOptions.maxConcurrentWrites`). */
    private readonly turns: Gate,
  ) {}

  /** Writes `claim` on `session`; rejects with {@link SessionGoneError} when the session is lost before or under it. */
  put(session: LiveSession<S>, claim: RegisteredKey<S, V>): Promise<PutOutcome> {
    return claim.serialize(
      () =>
        new Promise<PutOutcome>((resolve, reject) => {
          // Released meanwhile: its release no longer waits for writes, so none may start.
          if (isReleased(claim)) return reject(new AbortedError('released'));
          session.pendingPuts.push({ claim: claim as RegisteredKey<unknown, unknown>, resolve, reject });
          if (session.pendingPuts.length === 1) queueMicrotask(() => void this.flushPuts(session));
        }),
    );
  }

  /** Deletes `keys` held by `session`; on failure rejects and keeps trying in the background. */
  remove(session: LiveSession<S>, keys: readonly string[]): Promise<void> {
    return Promise.all(
      keys.map(
        (key) =>
          new Promise<void>((resolve, reject) => {
            session.pendingRemoves.push({ key, resolve, reject });
            if (session.pendingRemoves.length === 1) queueMicrotask(() => void this.flushRemoves(session));
          }),
      ),
    ).then(() => {});
  }

  /** The delete of `key` in flight, if any: settles (never rejects) once it is answered. */
  removal(key: string): Promise<void> | undefined {
    return this.removing.get(key);
  }

  /**
   * Deletes `keys` held by `session` in the background, until it works or the session is known
   * gone. A key registered again meanwhile is left alone: it is the new registration's now.
   */
  removeInBackground(session: LiveSession<S>, keys: readonly string[], what: string): void {
    retryInBackground(this.context, what, async () => {
      const left = keys.filter((key) => !this.context.isRegistered(key));
      if (left.length === 0) return;
      try {
        await this.sendRemove(session, left);
      } catch (error) {
        if (error instanceof SessionGoneError) return;
        throw error;
      }
    });
  }

  private async flushPuts(session: LiveSession<S>): Promise<void> {
    const { driver, timers } = this.context;
    // Writes queued while this one waits its turn join its batch (they do not schedule a flush).
    // Entered at once when there is room: the usual case, on the path of every registration.
    const leave = this.turns.tryEnter() ?? (await this.turns.enter());
    const queued = session.pendingPuts;
    session.pendingPuts = [];
    // Released while waiting (a close() during a burst): not sent, nothing to undo.
    const batch = queued.filter((p) => {
      if (!isReleased(p.claim)) return true;
      p.reject(new AbortedError('released'));
      return false;
    });
    if (batch.length === 0) return leave();
    if (!session.usable) {
      const gone = new SessionGoneError(driver.backend, 'the session was lost before the write');
      for (const p of batch) p.reject(gone);
      return leave();
    }
    for (const p of batch) (p.claim.sentOn as Set<LiveSession<S>>).add(session);
    const startedAt = timers.now();
    try {
      const outcomes = await driver.put(
        session.value,
        batch.map((p) => ({ key: p.claim.key, value: p.claim.value as V })),
        this.keeper.ours(),
      );
      // Writing a key-scope session's key renews it (a Consul registration starts its check passing).
      if (driver.scope === 'key' && session.usable) this.keeper.confirm(session, startedAt);
      batch.forEach((p, i) => {
        p.resolve(outcomes[i] ?? 'written');
      });
    } catch (error) {
      if (error instanceof SessionGoneError) this.keeper.lose(session, error, true);
      for (const p of batch) p.reject(error);
    } finally {
      leave();
    }
  }

  private async flushRemoves(session: LiveSession<S>): Promise<void> {
    const batch = session.pendingRemoves;
    session.pendingRemoves = [];
    if (batch.length === 0) return;
    const keys = [...new Set(batch.map((r) => r.key))];
    try {
      await this.sendRemove(session, keys);
      for (const r of batch) r.resolve();
    } catch (error) {
      if (error instanceof SessionGoneError) {
        // Gone with its session: nothing left to delete.
        for (const r of batch) r.resolve();
        return;
      }
      for (const r of batch) r.reject(error);
      if (!isFatal(error)) this.removeInBackground(session, keys, 'delete keys');
    }
  }

  /** One driver delete, recorded per key while in flight (see {@link removal}). */
  private sendRemove(session: LiveSession<S>, keys: readonly string[]): Promise<void> {
    const call = this.context.driver.remove(session.value, keys);
    const settled = call.then(
      () => {},
      () => {},
    );
    for (const key of keys) this.removing.set(key, settled);
    void settled.then(() => {
      for (const key of keys) if (this.removing.get(key) === settled) this.removing.delete(key);
    });
    return call;
  }
}
