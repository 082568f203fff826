import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  AbortedError,
  BackendUnavailableError,
  type BackoffOptions,
  ClosedError,
  type LockInfo,
  type Logger,
  PermissionDeniedError,
} from '@rollcall/core';
import {
  abortable,
  Backoff,
  type HeldLock,
  type LivenessEngine,
  type LockDriver,
  linkSignals,
  type SessionHandle,
  sleep,
  unboundedController,
} from '@rollcall/core/driver';
import { type ConsulApi, ConsulHttpError, type KvItem, type TxnKv, type TxnOp } from './api.js';

/**
 * Consul locks and leader election: sessions, a fair queue of session-held keys, and fencing
 * tokens from Consul's raft index.
 *
 * Key layout (`<p>` is the `lockPrefix` option, default `rollcall/`):
 *
 * | key | holds |
 * | --- | --- |
 * | `<p>locks/<name>/queue/<session>-<n>` | one waiter, acquired by its session (gone when the session dies); arrival order = `CreateIndex` |
 * | `<p>locks/<name>/.lock` | the holder, acquired by its session; value: `{"host","pid","client"}` of the holder; `Flags` = the holder's `<n>` |
 * | `<p>elections/<name>/queue/<session>-<n>`, `<p>elections/<name>/.lock` | the same for an election; the leader key's value is the leader's `value` |
 * | `<p>fencing-epoch` | microseconds since 1970 when the lock keys' Consul state began (see {@link ConsulLockDriver}) |
 *
 * A waiter writes its queue entry and reads the whole `<p>locks/<name>/` tree in one transaction.
 * The entry with the lowest `CreateIndex` is the head: it takes `.lock` (a transaction that checks
 * `.lock` is free, acquires it and deletes its queue entry, atomically). Every other waiter blocks
 * (a Consul blocking query) on the entry just ahead of it, and the head on `.lock`: a release or a
 * departure wakes one waiter, not all. Release deletes `.lock` (`?cas=` its index, so only while it
 * is still this holder's), and the next waiter is woken at once.
 */

/** `wait` of the blocking queries of a queued waiter (Consul adds up to wait/16). */
export const LOCK_WAIT_MS = 30_000;
/** Consul's smallest session TTL. */
export const CONSUL_MIN_SESSION_TTL_SECONDS = 10;
/** A head waiter refused by a lock-delay asks again at most this far apart. */
export const LOCK_DELAY_RETRY_MAX_MS = 1000;

/** What the lock driver needs of the backend options. */
export interface LockDriverOptions {
  /** Key prefix, ending with `/`. */
  prefix: string;
  /** The sessions' `LockDelay` (a Go duration). */
  lockDelay: string;
  backoff: BackoffOptions;
  logger: Logger;
}

type Kind = 'locks' | 'elections';

/** One lock or election, and the keys it lives in. */
interface Target {
  readonly kind: Kind;
  readonly name: string;
  readonly base: string;
  readonly lockKey: string;
  readonly queuePrefix: string;
  /** What the holder writes in the lock key. */
  readonly value: string;
}

/** The lock session a ticket is queued under: the liveness engine's session (its value is the Consul session ID). */
type Session = SessionHandle<string>;

/** One attempt of one caller to get a lock under one session. */
interface Ticket {
  readonly target: Target;
  readonly session: Session;
  /** Unique per client: in the queue key and as the lock key's `Flags`, so that a caller recognises its own grant. */
  readonly n: number;
  readonly key: string;
  /** The queue entry may exist: a transaction writing it was sent and not refused. */
  queued: boolean;
  /** An acquire transaction was sent and its answer lost: the lock key may be this ticket's. */
  uncertain: boolean;
}

interface View {
  readonly lock: KvItem | undefined;
  /** Queue entries by arrival (`CreateIndex`). */
  readonly queue: readonly KvItem[];
}

type TakeOutcome =
  | { kind: 'held'; held: HeldLock | undefined }
  | { kind: 'changed' }
  | { kind: 'lock-delay' }
  | { kind: 'invalid-session' };

/** A transaction Consul rolled back because the session it names no longer exists. */
class InvalidSessionError extends BackendUnavailableError {}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));
const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (text: string | null | undefined) => (text ? Buffer.from(text, 'base64').toString('utf8') : '');

/** `host:pid` of a lock key's holder value (`{"host","pid","client"}`), or the raw value when it is not ours. */
function holderOf(value: string | null): string {
  try {
    const { host, pid } = JSON.parse(value ?? '') as { host?: unknown; pid?: unknown };
    if (typeof host === 'string' && typeof pid === 'number') return `${host}:${pid}`;
  } catch {
    // a foreign tool's value
  }
  return value ?? '';
}

/** Errors no retry can fix: they end a wait at once. */
function isFatal(error: unknown): boolean {
  return (
    error instanceof PermissionDeniedError ||
    error instanceof ClosedError ||
    (error instanceof ConsulHttpError && error.status >= 400 && error.status < 500 && error.status !== 429)
  );
}

/**
 * The Consul {@link LockDriver}.
 *
 * **Sessions.** One Consul session per client per distinct TTL, kept by core's liveness engine
 * ({@link ConsulLockSessions}): created on first use with `Behavior: delete` (the keys it holds are
 * deleted when it dies) and the `lockDelay` option (default `0s`), renewed every ttl/3, revoked when
 * idle and on `close()`. When a renewal says the session is gone (404), or no renewal has succeeded
 * for a whole TTL (Consul may then drop it at any moment), every lock held under it is lost at once:
 * its lock key is deleted, its `lost` signal aborts, the session is destroyed, and later calls use a
 * new session.
 *
 * **Fencing tokens.** A token is `epoch + ModifyIndex`, where `ModifyIndex` is the lock key's index
 * as set by the acquiring transaction itself (read back in the same round-trip) and `epoch` the
 * value of `<p>fencing-epoch`, read in that same transaction. Consul's raft index only grows, and
 * each acquisition creates the lock key afresh (release deletes it), so within one Consul state the
 * tokens of one name strictly increase across holders, clients and processes. The epoch covers a
 * Consul that lost its state (a dev agent restarted, a cluster rebuilt): its raft index starts again
 * near 0, which alone would hand out tokens lower than those a protected resource has already seen
 * (and it would then refuse every new holder). The first acquisition after the loss finds the epoch
 * key missing and creates it (`cas=0`) as the current time in microseconds, so new tokens exceed all
 * older ones as long as the lost state saw fewer than one write per microsecond of its life (Consul
 * does a few thousand per second) and the clients' clocks agree within that margin. Tokens fit in a
 * signed 64-bit integer, and in a JavaScript number until the year 2255.
 */
export class ConsulLockDriver implements LockDriver {
  readonly backend = 'consul';
  readonly minTtlSeconds = CONSUL_MIN_SESSION_TTL_SECONDS;
  /** Background work (waits, withdrawals, renewals): `close()` waits for it. */
  private readonly tasks = new Set<Promise<unknown>>();
  /** Aborted by `close()` and `crash()`: stops every wait, loop and retry. */
  private readonly lifetime = unboundedController();
  private state: 'open' | 'closing' | 'closed' | 'crashed' = 'open';
  private sequence = 0;
  private closing: Promise<void> | undefined;
  private readonly holderValue: string;
  private readonly epochKey: string;

  constructor(
    private readonly api: ConsulApi,
    private readonly engine: LivenessEngine<string, never>,
    private readonly options: LockDriverOptions,
  ) {
    this.holderValue = JSON.stringify({ host: hostname(), pid: process.pid, client: randomUUID() });
    this.epochKey = `${options.prefix}fencing-epoch`;
  }

  // ---- the LockDriver ----

  acquire(name: string, ttlSeconds: number, signal: AbortSignal, queued: () => void): Promise<HeldLock> {
    return this.begin(this.target('locks', name, this.holderValue), ttlSeconds, signal, queued);
  }

  campaign(election: string, value: string, ttlSeconds: number, signal: AbortSignal): Promise<HeldLock> {
    return this.begin(this.target('elections', election, value), ttlSeconds, signal, () => {});
  }

  async tryAcquire(name: string, ttlSeconds: number): Promise<HeldLock | undefined> {
    const target = this.target('locks', name, this.holderValue);
    for (let attempt = 0; ; attempt++) {
      this.assertOpen();
      const ticket = this.ticket(target, await this.engine.session(ttlSeconds));
      let view: View;
      try {
        view = await this.enqueue(ticket);
      } catch (error) {
        if (error instanceof InvalidSessionError && attempt === 0) {
          // The session died without our noticing yet: check it, and try once more with a new one.
          await this.engine.check(ticket.session);
          continue;
        }
        this.withdraw(ticket);
        throw error;
      }
      if (view.queue[0]?.Key === ticket.key && !view.lock?.Session) {
        let outcome: TakeOutcome;
        try {
          outcome = await this.take(ticket, view.lock);
        } catch (error) {
          this.withdraw(ticket);
          throw error;
        }
        if (outcome.kind === 'held' && outcome.held) return outcome.held;
      }
      // Somebody holds or waits: leave the queue before answering, so nothing is left behind.
      try {
        await this.api.kvRemove(ticket.key);
      } catch {
        this.withdraw(ticket);
      }
      return undefined;
    }
  }

  async leader(election: string): Promise<string | undefined> {
    const item = await this.api.kvRead(this.target('elections', election, '').lockKey);
    // A leader key without a session (released by a foreign tool) has no leader.
    return item?.Session ? (item.Value ?? '') : undefined;
  }

  /**
   * Every lock and election with a holder or a queue: one tree read per kind (`<p>locks/`,
   * `<p>elections/`) and one of the fencing epoch. A lock's holder is `host:pid` from its lock key,
   * an election's the leader's value; the token is `epoch + ModifyIndex` as granted.
   */
  async list(): Promise<LockInfo[]> {
    this.assertOpen();
    const [locks, elections, epochItem] = await Promise.all([
      this.api.kvTree(`${this.options.prefix}locks/`),
      this.api.kvTree(`${this.options.prefix}elections/`),
      this.api.kvRead(this.epochKey),
    ]);
    const epoch = /^\d{1,19}$/.test(epochItem?.Value ?? '') ? BigInt(epochItem?.Value as string) : undefined;
    const out: LockInfo[] = [];
    for (const [kind, items] of [
      ['locks', locks],
      ['elections', elections],
    ] as const) {
      const root = `${this.options.prefix}${kind}/`;
      const byName = new Map<string, LockInfo>();
      for (const item of items) {
        const rest = item.Key.slice(root.length);
        const slash = rest.indexOf('/');
        if (slash <= 0) continue;
        const name = rest.slice(0, slash);
        const inner = rest.slice(slash + 1);
        let entry = byName.get(name);
        if (!entry) {
          entry = { kind: kind === 'locks' ? 'lock' : 'election', name, waiters: 0 };
          byName.set(name, entry);
        }
        if (inner.startsWith('queue/')) entry.waiters += 1;
        else if (inner === '.lock' && item.Session) {
          entry.holder = kind === 'elections' ? (item.Value ?? '') : holderOf(item.Value);
          if (epoch !== undefined) entry.token = epoch + BigInt(item.ModifyIndex);
        }
      }
      // A lock key no session holds (released by a foreign tool) with nobody queued: nothing to report.
      out.push(...[...byName.values()].filter((e) => e.holder !== undefined || e.waiters > 0));
    }
    return out;
  }

  // ---- lifecycle ----

  /** Stops taking calls: releases send one request each, withdrawals are left to the session's destruction. */
  beginClose(): void {
    if (this.state === 'open') this.state = 'closing';
  }

  /**
   * Ends every wait and loop, then lets the engine release what is held and destroy every session
   * this client made: Consul deletes the keys they hold, so their locks pass on at once (with no
   * lock-delay by default). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closed';
      this.lifetime.abort(new ClosedError('lock service'));
      await Promise.allSettled([...this.tasks]);
      await this.engine.close();
    })();
    return this.closing;
  }

  /** Test hook: like a killed process. Renewals and waits stop; nothing is released or destroyed. */
  crash(): void {
    if (this.state === 'closed') return;
    this.state = 'crashed';
    this.lifetime.abort(new ClosedError('lock service'));
    this.engine.abandon();
  }

  /** Number of sessions this client keeps alive (diagnostics, tests). */
  sessionCount(): number {
    return this.engine.snapshot().sessions;
  }

  // ---- waiting ----

  /**
   * Starts a wait. The answer rejects as soon as `signal` aborts, while the wait itself runs on to a
   * safe point (a write in flight is never cancelled: its fate would be unknown) and withdraws.
   */
  private begin(
    target: Target,
    ttlSeconds: number,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<HeldLock> {
    if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
    try {
      this.assertOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    const linked = linkSignals(signal, this.lifetime.signal);
    const work = this.obtain(target, ttlSeconds, linked.signal, queued);
    work.then(linked.dispose, linked.dispose);
    this.track(work);
    // Granted just as the caller gave up: hand it on.
    work.then(
      (held) => {
        if (signal.aborted) held.release().catch(() => {});
      },
      () => {},
    );
    return abortable(work, signal);
  }

  private async obtain(
    target: Target,
    ttlSeconds: number,
    stop: AbortSignal,
    queued: () => void,
  ): Promise<HeldLock> {
    const backoff = new Backoff(this.options.backoff);
    let announced = false;
    const announce = () => {
      if (announced) return;
      announced = true;
      queued();
    };
    let losses = 0;
    for (let failures = 0; ; ) {
      if (stop.aborted) throw new AbortedError(stop.reason);
      let session: Session;
      try {
        session = await this.engine.session(ttlSeconds, stop);
      } catch (error) {
        if (stop.aborted) throw new AbortedError(stop.reason);
        if (isFatal(error)) throw error;
        if (failures++ === 0)
          this.options.logger.warn(
            {
              [target.kind === 'locks' ? 'lock' : 'election']: target.name,
              error: message(error),
            },
            'consul lock session cannot be created; retrying',
          );
        await sleep(backoff.next(), stop);
        continue;
      }
      const ticket = this.ticket(target, session);
      let held: HeldLock | undefined;
      try {
        held = await this.queue(ticket, stop, announce, backoff);
      } catch (error) {
        this.withdraw(ticket);
        throw error;
      }
      if (held) return held;
      // The session was lost while queued: its keys are gone (or go when it is destroyed). Queue
      // again under a new one; should that keep happening, not in a tight loop.
      if (losses++ > 0) await sleep(backoff.next(), stop);
    }
  }

  /**
   * Queues `ticket` and waits until it holds the lock. Resolves `undefined` when its session is
   * lost (the caller queues again under a new one); rejects when `stop` aborts or on a fatal error.
   */
  private async queue(
    ticket: Ticket,
    stop: AbortSignal,
    announce: () => void,
    backoff: Backoff,
  ): Promise<HeldLock | undefined> {
    const linked = linkSignals(stop, ticket.session.lost);
    try {
      return await this.queueWith(ticket, stop, linked.signal, announce, backoff);
    } finally {
      linked.dispose();
    }
  }

  private async queueWith(
    ticket: Ticket,
    stop: AbortSignal,
    reads: AbortSignal,
    announce: () => void,
    backoff: Backoff,
  ): Promise<HeldLock | undefined> {
    const { session, target } = ticket;
    const who = { [target.kind === 'locks' ? 'lock' : 'election']: target.name };
    // Consul does not say when a lock-delay ends: ask again at most every second.
    const delayed = new Backoff({ ...this.options.backoff, maxMs: LOCK_DELAY_RETRY_MAX_MS });
    let enqueued = false;
    let view: View | undefined;
    let failures = 0;
    for (;;) {
      if (stop.aborted) throw new AbortedError(stop.reason);
      if (session.lost.aborted) return undefined;
      try {
        if (!enqueued) {
          // Idempotent for one key and session: a retry after an unknown outcome keeps the place.
          view = await this.enqueue(ticket);
          enqueued = true;
          announce();
          continue;
        }
        view ??= await this.view(target, reads);
        if (failures > 0)
          this.options.logger.info({ ...who, failures }, 'consul lock wait reaches the agent again');
        failures = 0;
        const { lock, queue } = view;
        if (lock?.Session === session.value && lock.Flags === ticket.n) {
          // An acquisition whose answer was lost did apply.
          const held = this.hold(ticket, lock.ModifyIndex, await this.readEpoch());
          if (held) return held;
          return undefined;
        }
        const mine = queue.find((e) => e.Key === ticket.key);
        if (!mine) {
          // Our entry is gone: the session died (Behavior delete) or somebody deleted the key.
          const state = await this.engine.check(session);
          if (state === 'gone') return undefined;
          if (state === 'unknown')
            throw new BackendUnavailableError('consul', 'the lock session cannot be checked');
          enqueued = false;
          view = undefined;
          continue;
        }
        const ahead = queue.filter((e) => (e.CreateIndex ?? 0) < (mine.CreateIndex ?? 0));
        if (ahead.length === 0 && !lock?.Session) {
          const outcome = await this.take(ticket, lock);
          if (outcome.kind === 'held') return outcome.held;
          if (outcome.kind === 'invalid-session') {
            if ((await this.engine.check(session)) === 'gone') return undefined;
          } else if (outcome.kind === 'lock-delay') {
            // Another session holding this key was invalidated with a lock-delay (not ours: `lockDelay`
            // is 0 by default). Consul refuses the key until it ends; nothing to block on, so retry.
            await sleep(delayed.next(), reads);
          }
          view = undefined;
          continue;
        }
        if (ahead.length === 0 && lock) {
          // Head of the queue: wait for the holder to go (release deletes the key; so does its session's death).
          const now = await this.api.kvRead(lock.Key, {
            index: lock.ModifyIndex,
            waitMs: LOCK_WAIT_MS,
            signal: reads,
          });
          view = { lock: now, queue: [mine] };
        } else {
          // Wait for the waiter just ahead to go (it took the lock, gave up, or its session died).
          const before = ahead[ahead.length - 1] as KvItem;
          await this.api.kvRead(before.Key, {
            index: before.ModifyIndex,
            waitMs: LOCK_WAIT_MS,
            signal: reads,
          });
          view = undefined;
        }
        backoff.reset();
      } catch (error) {
        if (stop.aborted) throw new AbortedError(stop.reason);
        if (session.lost.aborted) return undefined;
        if (isFatal(error)) throw error;
        view = undefined;
        if (error instanceof InvalidSessionError) {
          if ((await this.engine.check(session)) === 'gone') return undefined;
        }
        if (failures++ === 0)
          this.options.logger.warn({ ...who, error: message(error) }, 'consul lock wait failed; retrying');
        try {
          await sleep(backoff.next(), reads);
        } catch {
          // stop or session loss: handled at the top of the loop
        }
      }
    }
  }

  /** Writes the ticket's queue entry (held by its session) and reads the whole lock tree, in one transaction. */
  private async enqueue(ticket: Ticket): Promise<View> {
    const { target, session } = ticket;
    const before = ticket.queued;
    ticket.queued = true;
    const outcome = await this.api.txn(`queue for ${this.label(target)}`, [
      {
        KV: {
          Verb: 'lock',
          Key: ticket.key,
          Value: b64(target.value),
          Flags: ticket.n,
          Session: session.value,
        },
      },
      { KV: { Verb: 'get-tree', Key: target.base } },
    ]);
    if (!outcome.ok) {
      // Rolled back: this transaction wrote nothing (an earlier attempt's entry may remain).
      ticket.queued = before;
      throw this.refused(outcome.errors, `queue for ${this.label(target)}`);
    }
    // The first result is the written entry, the others the tree.
    return this.toView(target, outcome.results.slice(1));
  }

  private async view(target: Target, signal: AbortSignal): Promise<View> {
    return this.toView(target, await this.api.kvTree(target.base, signal));
  }

  private toView(target: Target, items: readonly (KvItem | TxnKv)[]): View {
    let lock: KvItem | undefined;
    const queue: KvItem[] = [];
    for (const item of items) {
      if (item.Key === target.lockKey) lock = item as KvItem;
      else if (item.Key.startsWith(target.queuePrefix)) queue.push(item as KvItem);
    }
    queue.sort((a, b) => (a.CreateIndex ?? 0) - (b.CreateIndex ?? 0));
    return { lock, queue };
  }

  /**
   * The head of the queue takes the lock: one transaction reads the fencing epoch, checks that the
   * lock key is still as seen (absent, or unchanged and held by nobody), acquires it with the
   * ticket's session and deletes the ticket's queue entry. Its answer holds the lock key's new
   * `ModifyIndex`: the fencing token comes from the very write that granted the lock.
   */
  private async take(ticket: Ticket, seen: KvItem | undefined): Promise<TakeOutcome> {
    const { target, session } = ticket;
    const ops: TxnOp[] = [
      { KV: { Verb: 'get', Key: this.epochKey } },
      seen
        ? { KV: { Verb: 'check-index', Key: target.lockKey, Index: seen.ModifyIndex } }
        : { KV: { Verb: 'check-not-exists', Key: target.lockKey } },
      {
        KV: {
          Verb: 'lock',
          Key: target.lockKey,
          Value: b64(target.value),
          Flags: ticket.n,
          Session: session.value,
        },
      },
      { KV: { Verb: 'delete', Key: ticket.key } },
    ];
    for (let attempt = 0; ; attempt++) {
      let outcome: Awaited<ReturnType<ConsulApi['txn']>>;
      try {
        outcome = await this.api.txn(`acquire ${this.label(target)}`, ops);
      } catch (error) {
        ticket.uncertain = true;
        throw error;
      }
      if (outcome.ok) {
        const lock = outcome.results.find((r) => r.Key === target.lockKey);
        const epoch = outcome.results.find((r) => r.Key === this.epochKey);
        if (!lock)
          throw new BackendUnavailableError(
            'consul',
            `acquire ${this.label(target)}: no lock key in the answer`,
          );
        return {
          kind: 'held',
          held: this.hold(ticket, lock.ModifyIndex, this.parseEpoch(unb64(epoch?.Value))),
        };
      }
      const errors = outcome.errors;
      if (errors.some((e) => /permission denied|ACL not found/i.test(e.What)))
        throw this.refused(errors, `acquire ${this.label(target)}`);
      if (
        errors.some((e) => e.OpIndex === 0 && /doesn't exist|does not exist/i.test(e.What)) &&
        attempt === 0
      ) {
        // No epoch yet: a fresh Consul state (or the key was deleted). Create it, then try again.
        await this.api.kvCreate(this.epochKey, String(BigInt(Date.now()) * 1000n));
        continue;
      }
      if (errors.some((e) => /lock delay/i.test(e.What))) return { kind: 'lock-delay' };
      if (errors.some((e) => /invalid session/i.test(e.What))) return { kind: 'invalid-session' };
      return { kind: 'changed' };
    }
  }

  /** The epoch alone, for an acquisition whose transaction answer was lost. */
  private async readEpoch(): Promise<bigint> {
    const item = await this.api.kvRead(this.epochKey);
    return this.parseEpoch(item?.Value ?? '');
  }

  private parseEpoch(text: string): bigint {
    if (/^\d{1,19}$/.test(text)) return BigInt(text);
    this.options.logger.error(
      {
        key: this.epochKey,
      },
      'consul fencing epoch key holds no number; fencing tokens fall back to the bare raft index',
    );
    return 0n;
  }

  /**
   * Tracks a granted lock as a key of its session (the engine deletes it, and aborts `lost`, if the
   * session is lost); `undefined` when the session was lost meanwhile (queue again).
   */
  private hold(ticket: Ticket, modifyIndex: number, epoch: bigint): HeldLock | undefined {
    const { session, target } = ticket;
    if (session.lost.aborted) return undefined;
    const held = this.engine.attach(session, target.lockKey);
    if (held.lost.aborted) return undefined;
    return {
      fencingToken: epoch + BigInt(modifyIndex),
      lost: held.lost,
      // Deletes the lock key while this session still holds it: the head waiter, blocked on it, takes it at once.
      release: () => held.release(),
    };
  }

  /**
   * Leaves the queue in the background: deletes the ticket's entry and, when an acquisition's
   * answer was lost, the lock key if that acquisition did apply. Gives up when the session is lost
   * (its keys go with it); on close the sessions are destroyed instead.
   */
  private withdraw(ticket: Ticket): void {
    if (this.state !== 'open' || !(ticket.queued || ticket.uncertain)) return;
    const { session, target } = ticket;
    const linked = linkSignals(session.lost, this.lifetime.signal);
    const stop = linked.signal;
    const task = (async () => {
      const backoff = new Backoff(this.options.backoff);
      while (!stop.aborted) {
        try {
          await this.api.kvRemove(ticket.key);
          if (ticket.uncertain) {
            const lock = await this.api.kvRead(target.lockKey);
            if (lock?.Session === session.value && lock.Flags === ticket.n)
              await this.api.kvRemove(target.lockKey, lock.ModifyIndex);
          }
          return;
        } catch (error) {
          if (isFatal(error)) {
            this.options.logger.error(
              {
                key: ticket.key,
                error: message(error),
              },
              'consul lock queue entry cannot be removed; it goes with its session',
            );
            return;
          }
          try {
            await sleep(backoff.next(), stop);
          } catch {
            return;
          }
        }
      }
    })().finally(linked.dispose);
    this.track(task);
  }

  // ---- helpers ----

  private target(kind: Kind, name: string, value: string): Target {
    const base = `${this.options.prefix}${kind}/${name}/`;
    return { kind, name, base, lockKey: `${base}.lock`, queuePrefix: `${base}queue/`, value };
  }

  private ticket(target: Target, session: Session): Ticket {
    const n = ++this.sequence;
    return {
      target,
      session,
      n,
      key: `${target.queuePrefix}${session.value}-${n}`,
      queued: false,
      uncertain: false,
    };
  }

  private label(target: Target): string {
    return `${target.kind === 'locks' ? 'lock' : 'election'} '${target.name}'`;
  }

  private refused(errors: { OpIndex: number; What: string }[], what: string): Error {
    const text = errors.map((e) => e.What).join('; ');
    // Consul reports ACL denials inside a transaction per operation (HTTP 409), not as a 403.
    if (/permission denied|ACL not found/i.test(text))
      return new PermissionDeniedError(
        'consul',
        `${what}: permission denied by Consul's ACLs (${text}): the token needs key write on '${this.options.prefix}' and session write on the agent's node`,
      );
    if (/invalid session/i.test(text)) return new InvalidSessionError('consul', `${what}: ${text}`);
    return new BackendUnavailableError('consul', `${what}: Consul refused the transaction: ${text}`);
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new ClosedError('lock service');
  }

  private track(task: Promise<unknown>): void {
    const settled = task.then(
      () => {},
      () => {},
    );
    this.tasks.add(settled);
    void settled.then(() => this.tasks.delete(settled));
  }
}
