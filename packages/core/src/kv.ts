import { ClosedError } from './errors.js';
import { holdProcess, whileHeld } from './liveness/process-ref.js';
import { type EventQueue, Mirror, type MirrorFeed, type MirrorView } from './mirror.js';
import type { KeyValueSource, KvEvent } from './types.js';
import { normalizeKey, normalizePrefix, validateValue } from './validation.js';

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

/**
 * The {@link KeyValueSource} every backend shares: key validation before any network call,
 * and one backend watch per prefix however many callers watch it.
 */
export class ManagedKeyValueSource implements KeyValueSource {
  private readonly prefixes = new Map<string, PrefixEntry>();
  private closed = false;

  constructor(
    private readonly driver: KvDriver,
    private readonly options: KeyValueOptions = {},
  ) {}

  async get(key: string): Promise<string | undefined> {
    const k = normalizeKey(key);
    this.assertOpen();
    return whileHeld(this.driver.get(k));
  }

  async getAll(prefix: string): Promise<Map<string, string>> {
    const p = normalizePrefix(prefix);
    this.assertOpen();
    return whileHeld(this.driver.getAll(p));
  }

  async put(key: string, value: string): Promise<void> {
    const k = normalizeKey(key);
    const v = validateValue(value);
    this.assertOpen();
    return whileHeld(this.driver.put(k, v));
  }

  async delete(key: string): Promise<void> {
    const k = normalizeKey(key);
    this.assertOpen();
    return whileHeld(this.driver.delete(k));
  }

  watchPrefix(prefix: string, options?: { signal?: AbortSignal }): KvWatch {
    const p = normalizePrefix(prefix);
    this.assertOpen();
    let entry = this.prefixes.get(p);
    if (!entry) {
      const mirror = new Mirror<string, KvEvent>(kvView, {
        backend: this.driver.backend,
        subject: `prefix '${p}'`,
        maxQueued: this.options.maxQueuedEvents ?? 1000,
      });
      entry = { mirror, stop: this.driver.watch(p, mirror) };
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
    queue.closeOn(options?.signal);
    return {
      [Symbol.asyncIterator]: () => queue,
      [Symbol.dispose]: () => queue.close(),
      close: () => queue.close(),
    };
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

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('key/value source');
  }
}

/** Builds the shared {@link KeyValueSource} over a backend's driver. */
export function createKeyValueSource(driver: KvDriver, options?: KeyValueOptions): ManagedKeyValueSource {
  return new ManagedKeyValueSource(driver, options);
}
