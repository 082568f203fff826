import { publish } from './diagnostics.js';
import { BackendUnavailableError, ClosedError } from './errors.js';
import { realTimers, type TimerHandle, type Timers } from './liveness/clock.js';
import type { DiscoveryEvent, ServiceWatch } from './types.js';

/**
 * A watch reading one subscriber's {@link EventQueue}: a {@link ServiceWatch} over discovery
 * events, or a key/value prefix watch over `KvEvent`s.
 */
export class QueueWatch<E = DiscoveryEvent> implements AsyncIterable<E>, Disposable {
  constructor(private readonly queue: EventQueue<E>) {}
  [Symbol.asyncIterator](): AsyncIterator<E> {
    return this.queue;
  }
  close(): void {
    this.queue.close();
  }
  [Symbol.dispose](): void {
    this.queue.close();
  }
}

/**
 * One subscriber's queue of events: an async iterator that never blocks the producer.
 * When a subscriber falls more than `maxQueued` events behind, its backlog is replaced by
 * `catchUp()` (a fresh `sync` of the latest state), so a slow consumer costs bounded memory
 * and never delays anyone else; it skips intermediate states but never misses the latest one.
 */
export class EventQueue<E> implements AsyncIterableIterator<E>, Disposable {
  private readonly queued: E[] = [];
  private waiter: ((result: IteratorResult<E>) => void) | undefined;
  private closed = false;
  private detach: (() => void) | undefined;
  /** How many times this subscriber's backlog was collapsed into a catch-up sync. */
  collapses = 0;

  constructor(
    private readonly catchUp: () => E[],
    private readonly maxQueued: number,
    private readonly onClose: () => void,
  ) {}

  /** Delivers an event (called by the producer; never blocks). */
  push(event: E): void {
    if (this.closed) return;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter({ value: event, done: false });
      return;
    }
    this.queued.push(event);
    if (this.queued.length > this.maxQueued) {
      this.queued.length = 0;
      this.queued.push(...this.catchUp());
      this.collapses += 1;
    }
  }

  /** Number of events waiting to be read. */
  get backlog(): number {
    return this.queued.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  next(): Promise<IteratorResult<E>> {
    const event = this.queued.shift();
    if (event !== undefined) return Promise.resolve({ value: event, done: false });
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new Error('a watch supports one reader at a time'));
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  return(): Promise<IteratorResult<E>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * Closes this queue when `signal` aborts. The listener is removed if the queue closes first, so
   * a long-lived signal shared by many short watches does not collect them.
   */
  closeOn(signal: AbortSignal | undefined): this {
    if (!signal || this.closed) return this;
    if (signal.aborted) {
      this.close();
      return this;
    }
    const onAbort = () => this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    this.detach = () => signal.removeEventListener('abort', onAbort);
    return this;
  }

  /** Ends the iteration; queued events are dropped. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.detach?.();
    this.queued.length = 0;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.({ value: undefined, done: true });
    this.onClose();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The mirrored state of one watched collection (a service's instances, or the keys under a prefix). */
export interface MirrorState<V> {
  /** Current entries by key (instance id, or config key). */
  readonly entries: ReadonlyMap<string, V>;
  /** True once the backend has answered at least once. */
  readonly hasData: boolean;
  /** True while the backend is unreachable: `entries` is the last known good state. */
  readonly stale: boolean;
  /** When the backend last confirmed `entries` (ms epoch). 0 before the first answer. */
  readonly syncedAt: number;
  /** The last upstream error, while stale (or before the first answer). */
  readonly error: Error | undefined;
  /** Bumped on every change to `entries`, `stale` or `syncedAt`; views cache derived objects by it. */
  readonly version: number;
  /** Bumped only when `entries` change, so views can reuse what they derived from the entries alone. */
  readonly entriesVersion: number;
}

/** Turns mirror transitions into the events of one API (discovery or key/value). */
export interface MirrorView<V, E> {
  equals(a: V, b: V): boolean;
  sync(state: MirrorState<V>): E;
  change(state: MirrorState<V>, added: [string, V][], updated: [string, V][], removed: [string, V][]): E;
  stale(state: MirrorState<V>, error: Error): E;
  /**
   * Told of every `sync` and `change` the mirror emits, with the counts (for diagnostics). A method
   * of the view rather than an option so that a cache of many services holds no closure per service.
   */
  emitted?(
    kind: 'sync' | 'change',
    state: MirrorState<V>,
    added: number,
    removed: number,
    updated: number,
  ): void;
}

/**
 * What a backend feeds into a {@link Mirror}. One upstream (a watch or a poller) per mirror.
 * Calls must arrive in backend order.
 */
export interface MirrorFeed<V> {
  /**
   * The full authoritative list. Emits `sync` when it is the first answer, when the mirror was
   * stale, or when `forceSync` is set (history lost, e.g. etcd compaction); otherwise a `change`
   * with the difference, or nothing when nothing changed (it still refreshes `syncedAt`).
   * `resynced`: the backend lost its state or history (a Consul agent restart seen through its index
   * going backwards) without the mirror having gone stale: treat it like a re-sync after an outage.
   */
  replace(entries: Iterable<[string, V]>, options?: { forceSync?: boolean; resynced?: boolean }): void;
  /** An incremental update (one backend transaction): entries put and keys deleted. */
  apply(put: Iterable<[string, V]>, deleted: Iterable<string>): void;
  /** The backend became unreachable: keep the entries, flag them stale, emit `stale` once. */
  stale(error: Error): void;
  /** The backend confirmed the current entries without changing them (a poll, a progress notify). */
  confirm(): void;
}

/** Options of {@link Mirror}. */
export interface MirrorOptions {
  /** Events a subscriber may fall behind before its backlog collapses into a catch-up sync. Default 1000. */
  maxQueued?: number;
  /** Clock for `syncedAt`. Default `Date.now`. */
  now?: () => number;
  /** Backend name, for errors. */
  backend: string;
  /** What is mirrored, for errors (`service 'web'`). */
  subject: string;
  /**
   * After a re-sync that follows an outage (or a `resynced` replace), entries missing from the fresh
   * list are kept this long before they are removed, in case their owners are re-registering them.
   * Default 0 (removed at once).
   */
  resyncGraceMs?: number;
  /** Timers for the grace window. Default real timers. */
  timers?: Timers;
}

/**
 * What every mirrored collection publishes (a backend's {@link Mirror}, the migration's merged
 * lists): its state, the waiters for its first list, and its subscribers' bounded queues, each of
 * which starts (and, after falling behind, starts again) with the catch-up: `sync`, then `stale`
 * when stale.
 */
export abstract class PublishedCollection<V, E> {
  protected entries = new Map<string, V>();
  protected hasData = false;
  protected isStale = false;
  protected syncedAt = 0;
  protected error: Error | undefined;
  protected version = 0;
  protected entriesVersion = 0;
  protected closed = false;
  private readonly subscribers = new Set<EventQueue<E>>();
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  protected constructor(
    protected readonly view: MirrorView<V, E>,
    /** What is mirrored, for errors (`service 'web'`). */
    protected readonly subject: string,
    /** Events a subscriber may fall behind before its backlog collapses into a catch-up. */
    private readonly maxQueued: number,
  ) {}

  /** The current state (a live view: read it, do not keep it). */
  get state(): MirrorState<V> {
    return {
      entries: this.entries,
      hasData: this.hasData,
      stale: this.isStale,
      syncedAt: this.syncedAt,
      error: this.error,
      version: this.version,
      entriesVersion: this.entriesVersion,
    };
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Adds a subscriber. Its first event is `sync` (at once if a list is known, else with the first list). */
  subscribe(onClose?: () => void): EventQueue<E> {
    if (this.closed) throw new ClosedError(this.subject);
    const queue: EventQueue<E> = new EventQueue<E>(
      () => this.catchUp(),
      this.maxQueued,
      () => {
        this.subscribers.delete(queue);
        onClose?.();
      },
    );
    this.subscribers.add(queue);
    if (this.hasData) for (const event of this.catchUp()) queue.push(event);
    return queue;
  }

  /**
   * Resolves once a list is published; rejects with {@link ClosedError} once closed, and with
   * `failure` (as a {@link BackendUnavailableError}) when the first answer already failed.
   */
  protected firstList(failure: Error | undefined): Promise<void> {
    if (this.hasData) return Promise.resolve();
    if (this.closed) return Promise.reject(new ClosedError(this.subject));
    if (failure) return Promise.reject(this.unavailable(failure));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** The first list is published: the waiters for it resolve. */
  protected markPublished(): void {
    if (this.hasData) return;
    this.hasData = true;
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** The first answer failed: the waiters for a list reject with it. */
  protected failWaiters(error: Error): void {
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    const reason = this.unavailable(error);
    for (const w of waiters) w.reject(reason);
  }

  /** Closed: the waiters reject with {@link ClosedError} and every subscriber ends. */
  protected closeSubscribers(): void {
    this.closed = true;
    for (const w of this.readyWaiters) w.reject(new ClosedError(this.subject));
    this.readyWaiters = [];
    for (const queue of [...this.subscribers]) queue.close();
  }

  protected emit(event: E): void {
    for (const queue of this.subscribers) queue.push(event);
  }

  /** `error` as a caller gets it: a {@link BackendUnavailableError} (typed errors pass through). */
  protected abstract unavailable(error: Error): Error;

  /** What a new (or fallen-behind) subscriber gets first: `sync`, then `stale` when stale. */
  protected catchUp(): E[] {
    const state = this.state;
    const events = [this.view.sync(state)];
    if (state.stale && state.error) events.push(this.view.stale(state, state.error));
    return events;
  }
}

/**
 * A local copy of one watched collection with a fan-out to any number of subscribers: the
 * shared machinery behind every backend's watches and caches. A backend feeds it (one
 * upstream per mirror); the mirror diffs, keeps the last known good state through outages,
 * and delivers events to each subscriber's own bounded queue.
 */
export class Mirror<V, E> extends PublishedCollection<V, E> implements MirrorFeed<V> {
  private readonly now: () => number;
  private readonly graceMs: number;
  private readonly timers: Timers;
  /**
   * Entries missing from the list since a re-sync, kept until the monotonic time given. Made only
   * while some are held: a client caching thousands of services pays nothing for it otherwise.
   * Deadlines are set once per key, at `now + graceMs`, so the map is in deadline order: the first
   * entry is always the next due.
   */
  private held: Map<string, number> | undefined;
  private graceTimer: TimerHandle | undefined;
  /** When (monotonic ms) the current stale period began. */
  private staleSince = 0;

  constructor(
    view: MirrorView<V, E>,
    private readonly options: MirrorOptions,
  ) {
    super(view, options.subject, options.maxQueued ?? 1000);
    this.now = options.now ?? Date.now;
    this.graceMs = options.resyncGraceMs ?? 0;
    this.timers = options.timers ?? realTimers;
  }

  /** Keys kept in the list after a re-sync although the backend no longer lists them (grace window). */
  get heldBack(): number {
    return this.held?.size ?? 0;
  }

  /** Resolves once the backend has answered; rejects with {@link BackendUnavailableError} if it failed first. */
  ready(): Promise<void> {
    return this.firstList(this.error);
  }

  replace(entries: Iterable<[string, V]>, options?: { forceSync?: boolean; resynced?: boolean }): void {
    if (this.closed) return;
    const next = new Map(entries);
    this.syncedAt = this.now();
    this.holdBack(next, this.hasData && (this.isStale || options?.resynced === true) && !options?.forceSync);
    if (!this.hasData || this.isStale || options?.forceSync) {
      this.entries = next;
      this.markFresh();
      this.bump(true);
      this.emitSync();
      return;
    }
    const added: [string, V][] = [];
    const updated: [string, V][] = [];
    const removed: [string, V][] = [];
    for (const [key, value] of next) {
      const old = this.entries.get(key);
      if (old === undefined) added.push([key, value]);
      else if (!this.view.equals(old, value)) updated.push([key, value]);
    }
    for (const [key, value] of this.entries) if (!next.has(key)) removed.push([key, value]);
    if (added.length + updated.length + removed.length === 0) {
      this.bump(false); // confirmed unchanged: only syncedAt moved
      return;
    }
    this.entries = next;
    this.bump(true);
    this.emitChange(added, updated, removed);
  }

  apply(put: Iterable<[string, V]>, deleted: Iterable<string>): void {
    if (this.closed) return;
    if (!this.hasData) throw new Error('Mirror.apply before the first replace: a backend must sync first');
    const wasStale = this.isStale;
    const held = this.held;
    if (held !== undefined) {
      // Whatever the backend says about a held-back key from now on is authoritative.
      put = [...put];
      deleted = [...deleted];
      for (const [key] of put as [string, V][]) held.delete(key);
      for (const key of deleted as string[]) held.delete(key);
    }
    const added: [string, V][] = [];
    const updated: [string, V][] = [];
    const removed: [string, V][] = [];
    for (const key of deleted) {
      const old = this.entries.get(key);
      if (old !== undefined) {
        this.entries.delete(key);
        removed.push([key, old]);
      }
    }
    for (const [key, value] of put) {
      const old = this.entries.get(key);
      this.entries.set(key, value);
      // A key deleted and re-put in one transaction is an update, not a removal plus an addition.
      const removedAt = old === undefined ? removed.findIndex(([k]) => k === key) : -1;
      if (removedAt >= 0) {
        const [[, previous]] = removed.splice(removedAt, 1) as [[string, V]];
        if (!this.view.equals(previous, value)) updated.push([key, value]);
      } else if (old === undefined) added.push([key, value]);
      else if (!this.view.equals(old, value)) updated.push([key, value]);
    }
    this.syncedAt = this.now();
    this.markFresh();
    if (added.length + updated.length + removed.length === 0) {
      this.bump(false);
      if (wasStale) this.emitSync();
      return;
    }
    this.bump(true);
    this.emitChange(added, updated, removed);
  }

  private emitSync(): void {
    const state = this.state;
    this.emit(this.view.sync(state));
    this.view.emitted?.('sync', state, 0, 0, 0);
  }

  private emitChange(added: [string, V][], updated: [string, V][], removed: [string, V][]): void {
    const state = this.state;
    this.emit(this.view.change(state, added, updated, removed));
    this.view.emitted?.('change', state, added.length, removed.length, updated.length);
  }

  stale(error: Error): void {
    if (this.closed) return;
    this.error = error;
    if (!this.hasData) {
      this.failWaiters(error);
      return;
    }
    if (this.isStale) return;
    this.isStale = true;
    this.staleSince = this.timers.now();
    this.bump(false);
    this.emit(this.view.stale(this.state, error));
    publish.watch(() => ({
      backend: this.options.backend,
      subject: this.options.subject,
      stale: true,
      error,
    }));
  }

  confirm(): void {
    if (this.closed || !this.hasData || this.isStale) return;
    this.syncedAt = this.now();
    this.bump(false);
  }

  /**
   * Keeps in `next` the entries the grace window still holds back: with `resync`, every entry the
   * fresh list misses starts a window (unless already in one); entries the backend lists again leave it.
   */
  private holdBack(next: Map<string, V>, resync: boolean): void {
    if (this.graceMs <= 0) return;
    const now = this.timers.now();
    let held = this.held;
    if (resync)
      for (const key of this.entries.keys()) {
        if (next.has(key) || held?.has(key)) continue;
        held ??= new Map();
        held.set(key, now + this.graceMs);
      }
    if (held === undefined) return;
    this.held = held;
    for (const [key, until] of held) {
      const value = this.entries.get(key);
      // A key the fresh list has again leaves the window; one whose window is over goes.
      if (next.has(key) || until <= now || value === undefined) held.delete(key);
      else next.set(key, value);
    }
    this.armGrace();
  }

  private armGrace(): void {
    this.timers.clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (this.held?.size === 0) this.held = undefined;
    if (this.held === undefined || this.closed) return;
    const first = this.held.values().next().value as number;
    this.graceTimer = this.timers.setTimeout(() => this.endGrace(), Math.max(0, first - this.timers.now()));
  }

  /** The window ended for some held-back entries: those the backend still does not list go. */
  private endGrace(): void {
    this.graceTimer = undefined;
    if (this.closed) return;
    // While unreachable nothing is removed (an outage never empties a list); the next re-sync decides.
    if (this.isStale) return;
    const held = this.held;
    if (held === undefined) return;
    const now = this.timers.now();
    const removed: [string, V][] = [];
    for (const [key, until] of held) {
      if (until > now) break; // in deadline order: the rest are not due either
      held.delete(key);
      const value = this.entries.get(key);
      if (value === undefined) continue;
      this.entries.delete(key);
      removed.push([key, value]);
    }
    if (removed.length > 0) {
      this.bump(true);
      this.emitChange([], [], removed);
    }
    this.armGrace();
  }

  private bump(entriesChanged: boolean): void {
    this.version += 1;
    if (entriesChanged) this.entriesVersion += 1;
  }

  /** Ends every subscriber and rejects pending `ready()` calls. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.timers.clearTimeout(this.graceTimer);
    this.closeSubscribers();
  }

  private markFresh(): void {
    if (this.isStale) {
      const staleMs = this.timers.now() - this.staleSince;
      publish.watch(() => ({
        backend: this.options.backend,
        subject: this.options.subject,
        stale: false,
        staleMs,
      }));
    }
    this.isStale = false;
    this.error = undefined;
    this.markPublished();
  }

  protected unavailable(error: Error): Error {
    if (error instanceof BackendUnavailableError || error.name === 'PermissionDeniedError') return error;
    return new BackendUnavailableError(this.options.backend, `${this.options.subject}: ${error.message}`, {
      cause: error,
    });
  }
}
