import { BackendUnavailableError, ClosedError } from '@rollcall/core';
import { type MirrorView, PublishedCollection } from '@rollcall/core/driver';
import { READ_SOURCES, type ReadMode, type Side } from './phases.js';

/** What a followed registry (one side) feeds into a {@link MergedCollection}, in that registry's order. */
export interface SideSink<V> {
  /** The full list (the side's `sync`). */
  replace(entries: Iterable<[string, V]>, syncedAt?: number): void;
  /** An incremental update (the side's `change`). */
  apply(put: Iterable<[string, V]>, deleted: Iterable<string>, syncedAt?: number): void;
  /** The side became unreachable; its last list is kept. */
  stale(error: Error): void;
  /** The side's first read failed: it has no list at all (yet). */
  failed(error: Error): void;
}

/** Starts following one side; returns a function that stops it. */
export type OpenSide<V> = (side: Side, sink: SideSink<V>) => () => void;

/**
 * Follows one side through a watch: `feed` hands each event to `sink`, a watch that ends in error
 * makes the side stale, and `firstRead` tells whether the side can answer at all (a watch says
 * nothing while its registry has never answered). Returns the function that stops it.
 */
export function followSide<T, V>(
  sink: SideSink<V>,
  open: () => AsyncIterable<T> & Disposable,
  feed: (event: T) => void,
  firstRead: () => Promise<unknown>,
): () => void {
  let stopped = false;
  let watch: AsyncIterable<T> & Disposable;
  try {
    watch = open();
  } catch (error) {
    sink.failed(error as Error);
    return () => {};
  }
  void (async () => {
    try {
      for await (const event of watch) feed(event);
    } catch (error) {
      if (!stopped) sink.stale(error as Error);
    }
  })();
  firstRead().catch((error: unknown) => {
    if (!stopped) sink.failed(error instanceof Error ? error : new Error(String(error)));
  });
  return () => {
    stopped = true;
    watch[Symbol.dispose]();
  };
}

/** Which registry answers reads, and which are followed beside it. */
export interface MergePlan {
  readonly read: ReadMode;
  /** Sides followed (the read sources are always followed too). `shadow` follows `to` beside `from`. */
  readonly watch: readonly Side[];
}

/** Options of {@link MergedCollection}. */
export interface MergedOptions<V> {
  /** What is merged, for errors (`service 'web'`). */
  subject: string;
  /** Events a subscriber may fall behind before its backlog collapses into a catch-up `sync`. */
  maxQueued: number;
  /** Clock for `syncedAt`. */
  now: () => number;
  /** Called after every side event with both sides' current lists (for the shadow report). */
  observe?(from: ReadonlyMap<string, V> | undefined, to: ReadonlyMap<string, V> | undefined): void;
}

interface SideState<V> {
  entries: Map<string, V> | undefined;
  stale: boolean;
  failed: boolean;
  error: Error | undefined;
  syncedAt: number;
  stop: () => void;
}

/**
 * One collection (a service's instances, or the keys under a prefix) read through a migration:
 * from `from`, from `to`, or from both merged by key with `to` winning, as the phase says. It
 * follows the sides the plan needs, fans events out to any number of subscribers, and moves
 * between plans without a gap: the new read mode is taken only once each of its sides has
 * answered (or failed), and the move is published as a `change` of the difference (nothing when
 * the lists agree), never as a fresh `sync`. A side that is down keeps its last list, flagged
 * stale; the merged list never turns empty because a registry is unreachable.
 */
export class MergedCollection<V, E> extends PublishedCollection<V, E> {
  private readonly sides = new Map<Side, SideState<V>>();
  private plan: MergePlan | undefined;
  private mode: ReadMode | undefined;

  constructor(
    view: MirrorView<V, E>,
    private readonly open: OpenSide<V>,
    private readonly options: MergedOptions<V>,
  ) {
    super(view, options.subject, options.maxQueued);
  }

  /** Sides followed now (for tests and stats). */
  get followedSides(): Side[] {
    return [...this.sides.keys()];
  }

  /**
   * Sets what to read and follow. Until the first plan nothing is read (the phase is not known
   * yet). Moving to another read mode happens once its sides have answered.
   */
  setPlan(plan: MergePlan): void {
    if (this.closed) return;
    if (this.plan && this.plan.read === plan.read && sameSides(this.plan.watch, plan.watch)) return;
    this.plan = plan;
    for (const side of new Set([...plan.watch, ...READ_SOURCES[plan.read]])) this.follow(side);
    if (!this.advance()) this.release();
  }

  /** Resolves once a list is published; rejects with {@link BackendUnavailableError} if every source failed first. */
  ready(): Promise<void> {
    return this.firstList(this.mode !== undefined ? this.error : undefined);
  }

  /** Stops following both sides and ends every subscriber. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const state of this.sides.values()) state.stop();
    this.sides.clear();
    this.closeSubscribers();
  }

  private follow(side: Side): void {
    if (this.sides.has(side)) return;
    const state: SideState<V> = {
      entries: undefined,
      stale: false,
      failed: false,
      error: undefined,
      syncedAt: 0,
      stop: () => {},
    };
    this.sides.set(side, state);
    const live = () => !this.closed && this.sides.get(side) === state;
    state.stop = this.open(side, {
      replace: (entries, syncedAt) => {
        if (!live()) return;
        const previous = state.entries;
        state.entries = new Map(entries);
        this.fresh(state, syncedAt);
        const touched = previous ? new Set([...previous.keys(), ...state.entries.keys()]) : undefined;
        this.changed(side, touched);
      },
      apply: (put, deleted, syncedAt) => {
        if (!live() || !state.entries) return;
        const touched = new Set<string>();
        for (const key of deleted) {
          state.entries.delete(key);
          touched.add(key);
        }
        for (const [key, value] of put) {
          state.entries.set(key, value);
          touched.add(key);
        }
        this.fresh(state, syncedAt);
        this.changed(side, touched);
      },
      stale: (error) => {
        if (!live()) return;
        state.stale = true;
        state.error = error;
        this.changed(side, new Set());
      },
      failed: (error) => {
        if (!live() || state.entries) return;
        state.failed = true;
        state.error = error;
        this.changed(side, new Set());
      },
    });
  }

  private fresh(state: SideState<V>, syncedAt: number | undefined): void {
    state.stale = false;
    state.failed = false;
    state.error = undefined;
    state.syncedAt = syncedAt ?? this.options.now();
  }

  private changed(side: Side, touched: Set<string> | undefined): void {
    this.options.observe?.(this.sides.get('from')?.entries, this.sides.get('to')?.entries);
    if (this.plan && this.mode !== this.plan.read && this.advance()) return;
    if (this.mode !== undefined && READ_SOURCES[this.mode].includes(side)) this.publish(touched);
  }

  /**
   * Takes the plan's read mode once every side it reads has answered or failed. A mode whose
   * sides all failed is not taken while an older list is shown: better the last list than none.
   */
  private advance(): boolean {
    const target = this.plan?.read;
    if (target === undefined || this.mode === target) return false;
    const sources = READ_SOURCES[target].map((side) => this.sides.get(side));
    if (!sources.every((s) => s && (s.entries || s.failed))) return false;
    if (this.hasData && !sources.some((s) => s?.entries)) return false;
    this.mode = target;
    this.release();
    this.publish(undefined);
    return true;
  }

  /** Stops following the sides neither the plan nor the published mode needs. */
  private release(): void {
    const keep = new Set<Side>([
      ...(this.plan?.watch ?? []),
      ...(this.plan ? READ_SOURCES[this.plan.read] : []),
      ...(this.mode ? READ_SOURCES[this.mode] : []),
    ]);
    for (const [side, state] of this.sides) {
      if (keep.has(side)) continue;
      state.stop();
      this.sides.delete(side);
    }
  }

  /** Recomputes the merged list (all keys, or only `touched`) and emits what changed. */
  private publish(touched: Set<string> | undefined): void {
    const mode = this.mode!;
    // `to` last, so that its value wins where both hold a key.
    const sources = READ_SOURCES[mode].map((side) => this.sides.get(side)!);
    const withData = sources.filter((s) => s.entries);
    const stale = sources.some((s) => s.stale || s.failed);
    const error = sources.find((s) => s.error)?.error;
    if (withData.length === 0) {
      if (!this.hasData) {
        this.error = error;
        this.failWaiters(error ?? new Error('no registry answered'));
      }
      return;
    }
    const lookup = (key: string): V | undefined => {
      let found: V | undefined;
      for (const s of withData) found = s.entries!.get(key) ?? found;
      return found;
    };
    const keys =
      touched ?? new Set([...this.entries.keys(), ...withData.flatMap((s) => [...s.entries!.keys()])]);
    const added: [string, V][] = [];
    const updated: [string, V][] = [];
    const removed: [string, V][] = [];
    for (const key of keys) {
      const next = lookup(key);
      const previous = this.entries.get(key);
      if (next === undefined) {
        if (previous !== undefined) removed.push([key, previous]);
      } else if (previous === undefined) added.push([key, next]);
      else if (!this.view.equals(previous, next)) updated.push([key, next]);
    }
    for (const [key] of removed) this.entries.delete(key);
    for (const [key, value] of added) this.entries.set(key, value);
    for (const [key, value] of updated) this.entries.set(key, value);

    const first = !this.hasData;
    const wasStale = this.isStale;
    const entriesChanged = added.length + updated.length + removed.length > 0;
    this.isStale = stale;
    this.error = stale
      ? (error ?? new Error(`${this.options.subject}: a registry is unreachable`))
      : undefined;
    this.syncedAt = Math.min(...withData.map((s) => s.syncedAt));
    this.version += 1;
    if (entriesChanged || first) this.entriesVersion += 1;
    if (first) {
      this.markPublished();
      for (const event of this.catchUp()) this.emit(event);
      return;
    }
    if (entriesChanged) {
      this.emit(this.view.change(this.state, added, updated, removed));
      if (stale && !wasStale) this.emit(this.view.stale(this.state, this.error!));
    } else if (wasStale && !stale) this.emit(this.view.sync(this.state));
    else if (stale && !wasStale) this.emit(this.view.stale(this.state, this.error!));
  }

  protected unavailable(error: Error): Error {
    if (error instanceof BackendUnavailableError || error instanceof ClosedError) return error;
    return new BackendUnavailableError('migrating', `${this.subject}: ${error.message}`, {
      cause: error,
    });
  }
}

function sameSides(a: readonly Side[], b: readonly Side[]): boolean {
  return a.length === b.length && a.every((s) => b.includes(s));
}
