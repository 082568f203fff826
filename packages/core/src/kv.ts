import { guardedCall } from './backoff.js';
import { ClosedError, ValidationError } from './errors.js';
import { holdProcess } from './liveness/process-ref.js';
import { type EventQueue, Mirror, type MirrorFeed, type MirrorView, QueueWatch } from './mirror.js';
import { describeValue } from './options.js';
import type { CallOptions, KeyValueSource, KvEvent } from './types.js';
import {
  normalizeKey,
  normalizePrefix,
  validateCallOptions,
  validateValue,
  validateWatchOptions,
} from './validation.js';

/**
 * The part of a key/value backend that talks to its server. Keys reach it validated and
 * normalized (no leading `/`); it maps them to its own storage layout.
 */
export interface KvDriver {
  readonly backend: string;
  get(key: string): Promise<string | undefined>;
  getAll(prefix: string): Promise<Map<string, string>>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Starts the one upstream for `prefix`: `feed.replace(all)` first, then one `feed.apply` per
   * backend transaction, `feed.stale(error)` when unreachable, retrying by itself until stopped.
   */
  watch(prefix: string, feed: MirrorFeed<string>): () => void;
  /** Called by `close()` after every watch is stopped: end the driver's own loops. */
  close?(): void;
  /**
   * The keys the backend keeps for itself (registry, locks, elections, fencing counters) as they
   * appear in kv key space (normalized: no leading `/`). An entry ending with `/` is a whole
   * subtree, any other entry one exact key. The shared source refuses such keys, and prefixes
   * inside them, with a {@link ValidationError} before any network call, and leaves them out of
   * the listings and watches of wider prefixes. Default: none.
   */
  readonly reservedKeys?: readonly string[];
}

/** Options of {@link createKeyValueSource}. */
export interface KeyValueOptions {
  /** Events a watcher may fall behind before its backlog collapses into a catch-up `sync`. Default 1000. */
  maxQueuedEvents?: number;
}

const kvView: MirrorView<string, KvEvent> = {
  equals: (a, b) => a === b,
  sync: (state) => ({ type: 'sync', entries: new Map(state.entries) }),
  change: (_state, added, updated, removed) => ({
    type: 'change',
    put: new Map([...added, ...updated]),
    deleted: removed.map(([key]) => key),
  }),
  stale: (_state, error) => ({ type: 'stale', error }),
};

interface PrefixEntry {
  mirror: Mirror<string, KvEvent>;
  stop: () => void;
}

type KvWatch = AsyncIterable<KvEvent> & Disposable & { close(): void };

/** A feed that passes on only the entries `keep` accepts (the wider prefixes around reserved keys). */
function filterFeed(feed: MirrorFeed<string>, keep: (key: string) => boolean): MirrorFeed<string> {
  return {
    replace: (entries, options) =>
      feed.replace(
        [...entries].filter(([key]) => keep(key)),
        options,
      ),
    apply: (put, deleted) =>
      feed.apply(
        [...put].filter(([key]) => keep(key)),
        [...deleted].filter(keep),
      ),
    stale: (error) => feed.stale(error),
    confirm: () => feed.confirm(),
  };
}

/**
 * The {@link KeyValueSource} every backend shares: key validation before any network call, the
 * backend's own subtrees ({@link KvDriver.reservedKeys}) kept out of reach, and one backend watch
 * per prefix however many callers watch it.
 */
export class ManagedKeyValueSource implements KeyValueSource {
  private readonly prefixes = new Map<string, PrefixEntry>();
  private readonly reserved: readonly string[];
  private closed = false;

  constructor(
    private readonly driver: KvDriver,
    private readonly options: KeyValueOptions = {},
  ) {
    this.reserved = [...(driver.reservedKeys ?? [])];
  }

  async get(key: string, options?: CallOptions): Promise<string | undefined> {
    const k = this.key(key);
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, () => this.driver.get(k));
  }

  async getAll(prefix: string, options?: CallOptions): Promise<Map<string, string>> {
    const p = this.prefix(prefix);
    const signal = validateCallOptions(options);
    this.assertOpen();
    const all = await guardedCall(signal, () => this.driver.getAll(p));
    if (this.covers(p)) for (const key of [...all.keys()]) if (this.isReserved(key)) all.delete(key);
    return all;
  }

  async put(key: string, value: string, options?: CallOptions): Promise<void> {
    const k = this.key(key);
    const v = validateValue(value);
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, () => this.driver.put(k, v));
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    const k = this.key(key);
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, () => this.driver.delete(k));
  }

  watchPrefix(prefix: string, options?: { signal?: AbortSignal }): KvWatch {
    const p = this.prefix(prefix);
    const signal = validateWatchOptions(options);
    this.assertOpen();
    let entry = this.prefixes.get(p);
    if (!entry) {
      const mirror = new Mirror<string, KvEvent>(kvView, {
        backend: this.driver.backend,
        subject: `prefix '${p}'`,
        maxQueued: this.options.maxQueuedEvents ?? 1000,
      });
      const feed = this.covers(p) ? filterFeed(mirror, (key) => !this.isReserved(key)) : mirror;
      entry = { mirror, stop: this.driver.watch(p, feed) };
      this.prefixes.set(p, entry);
    }
    const current = entry;
    // An open watch keeps the process alive, as an open socket would.
    const release = holdProcess();
    const queue: EventQueue<KvEvent> = current.mirror.subscribe(() => {
      release();
      // The last watcher of a prefix gone: stop its backend watch.
      if (current.mirror.subscriberCount === 0 && this.prefixes.get(p) === current) {
        this.prefixes.delete(p);
        current.stop();
        current.mirror.close();
      }
    });
    queue.closeOn(signal);
    return new QueueWatch(queue);
  }

  /** Ends every watch. Idempotent. */
  close(): void {
    this.closed = true;
    for (const entry of [...this.prefixes.values()]) {
      entry.stop();
      entry.mirror.close();
    }
    this.prefixes.clear();
    this.driver.close?.();
  }

  /** True when `key` (a normalized kv key, as listings return them) lies in the backend's own key space. */
  isReserved(key: string): boolean {
    return this.reserved.some((r) => (r.endsWith('/') ? key.startsWith(r) : key === r));
  }

  private key(key: unknown): string {
    const k = normalizeKey(key);
    if (this.isReserved(k)) throw new ValidationError('key', this.refusal(k));
    return k;
  }

  private prefix(prefix: unknown): string {
    const p = normalizePrefix(prefix);
    if (this.reserved.some((r) => p.startsWith(r))) throw new ValidationError('prefix', this.refusal(p));
    return p;
  }

  /** True when listing `prefix` would reach reserved keys (which are then left out). */
  private covers(prefix: string): boolean {
    return this.reserved.some((r) => r.startsWith(prefix));
  }

  private refusal(path: string): string {
    return `${describeValue(path)} lies in the ${this.driver.backend} backend's own keys (registry, locks, elections), which only the discovery and lock APIs may touch`;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('key/value source');
  }
}

/** Builds the shared {@link KeyValueSource} over a backend's driver. */
export function createKeyValueSource(driver: KvDriver, options?: KeyValueOptions): ManagedKeyValueSource {
  return new ManagedKeyValueSource(driver, options);
}
