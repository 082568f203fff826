import {
  type Backend,
  ClosedError,
  type EventQueue,
  type KeyValueSource,
  type KvEvent,
  type Logger,
  normalizeKey,
  normalizePrefix,
  validateValue,
} from '@rollcall/core';
import { MergedCollection, type MergePlan, type OpenSide } from './merged.js';
import { type MigrationPhase, PHASE_RULES, READ_SOURCES, type Side } from './phases.js';
import { kvView } from './views.js';

/** What the migrating key/value source needs from its backend. */
export interface MigratingKvOptions {
  phase(): MigrationPhase;
  ready(): Promise<void>;
  known(): boolean;
  logger: Logger;
  maxQueuedEvents: number;
  now: () => number;
}

type KvWatch = AsyncIterable<KvEvent> & Disposable & { close(): void };

/** The key/value plan of a phase. */
export function kvPlan(phase: MigrationPhase): MergePlan {
  const read = PHASE_RULES[phase].kvRead;
  return { read, watch: READ_SOURCES[read] };
}

function openPrefix(backends: Readonly<Record<Side, Backend>>, prefix: string): OpenSide<string> {
  return (side, sink) => {
    const kv = backends[side].kv;
    let stopped = false;
    let watch: ReturnType<KeyValueSource['watchPrefix']>;
    try {
      watch = kv.watchPrefix(prefix);
    } catch (error) {
      sink.failed(error as Error);
      return () => {};
    }
    void (async () => {
      try {
        for await (const event of watch) {
          if (event.type === 'sync') sink.replace(event.entries);
          else if (event.type === 'change') sink.apply(event.put, event.deleted);
          else sink.stale(event.error);
        }
      } catch (error) {
        if (!stopped) sink.stale(error as Error);
      }
    })();
    // A watch says nothing while its registry has never answered: a read tells whether it can.
    kv.getAll(prefix).catch((error: unknown) => {
      if (!stopped) sink.failed(error instanceof Error ? error : new Error(String(error)));
    });
    return () => {
      stopped = true;
      watch[Symbol.dispose]();
    };
  };
}

/**
 * Configuration keys across two registries by the phase's rules: reads from `from`, from `to`
 * (falling back to `from` in `dual-read`), writes to both until `done`; prefix watches follow the
 * phase like service watches do, one merged view per prefix shared by its watchers.
 */
export class MigratingKv implements KeyValueSource {
  private readonly prefixes = new Map<string, MergedCollection<string, KvEvent>>();
  private closed = false;

  constructor(
    private readonly backends: Readonly<Record<Side, Backend>>,
    private readonly options: MigratingKvOptions,
  ) {}

  async get(key: string): Promise<string | undefined> {
    const k = normalizeKey(key);
    const read = await this.readMode();
    if (read !== 'union') return this.backends[read].kv.get(k);
    try {
      const value = await this.backends.to.kv.get(k);
      if (value !== undefined) return value;
    } catch (error) {
      this.options.logger.debug({ key: k, error: String(error) }, 'to cannot answer; reading from');
      return this.backends.from.kv.get(k).catch(() => Promise.reject(error));
    }
    return this.backends.from.kv.get(k);
  }

  async getAll(prefix: string): Promise<Map<string, string>> {
    const p = normalizePrefix(prefix);
    const read = await this.readMode();
    if (read !== 'union') return this.backends[read].kv.getAll(p);
    const [from, to] = await Promise.allSettled([
      this.backends.from.kv.getAll(p),
      this.backends.to.kv.getAll(p),
    ]);
    if (from.status === 'rejected' && to.status === 'rejected') throw to.reason;
    const merged = new Map(from.status === 'fulfilled' ? from.value : []);
    if (to.status === 'fulfilled') for (const [k, v] of to.value) merged.set(k, v);
    return merged;
  }

  async put(key: string, value: string): Promise<void> {
    const k = normalizeKey(key);
    const v = validateValue(value);
    await this.write((kv) => kv.put(k, v));
  }

  async delete(key: string): Promise<void> {
    const k = normalizeKey(key);
    await this.write((kv) => kv.delete(k));
  }

  watchPrefix(prefix: string, options?: { signal?: AbortSignal }): KvWatch {
    const p = normalizePrefix(prefix);
    this.assertOpen();
    let merged = this.prefixes.get(p);
    if (!merged) {
      merged = new MergedCollection(kvView, openPrefix(this.backends, p), {
        subject: `prefix '${p}'`,
        maxQueued: this.options.maxQueuedEvents,
        now: this.options.now,
      });
      this.prefixes.set(p, merged);
      if (this.options.known()) merged.setPlan(kvPlan(this.options.phase()));
    }
    const current = merged;
    const queue: EventQueue<KvEvent> = current.subscribe(() => {
      // The last watcher of a prefix gone: stop following it in both registries.
      if (current.subscriberCount === 0 && this.prefixes.get(p) === current) {
        this.prefixes.delete(p);
        current.close();
      }
    });
    queue.closeOn(options?.signal);
    return {
      [Symbol.asyncIterator]: () => queue,
      [Symbol.dispose]: () => queue.close(),
      close: () => queue.close(),
    };
  }

  /** Moves every prefix watch to `phase`'s rules. */
  applyPhase(phase: MigrationPhase): void {
    const plan = kvPlan(phase);
    for (const merged of this.prefixes.values()) merged.setPlan(plan);
  }

  /** Ends every watch. Idempotent. */
  close(): void {
    this.closed = true;
    for (const merged of [...this.prefixes.values()]) merged.close();
    this.prefixes.clear();
  }

  private async readMode() {
    this.assertOpen();
    if (!this.options.known()) await this.options.ready();
    return PHASE_RULES[this.options.phase()].kvRead;
  }

  /** Writes to every registry of the phase at once; any failure is thrown (a retry is idempotent). */
  private async write(op: (kv: KeyValueSource) => Promise<void>): Promise<void> {
    this.assertOpen();
    if (!this.options.known()) await this.options.ready();
    const sides = PHASE_RULES[this.options.phase()].kvWrite;
    const results = await Promise.allSettled(sides.map((side) => op(this.backends[side].kv)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('key/value source');
  }
}
