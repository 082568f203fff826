import {
  type Backend,
  type CallOptions,
  ClosedError,
  type KeyValueSource,
  type KvEvent,
  type Logger,
  normalizeKey,
  normalizePrefix,
  validateCallOptions,
  validateValue,
  validateWatchOptions,
} from '@rollcall/core';
import { guardedCall, QueueWatch } from '@rollcall/core/driver';
import { followSide, MergedCollection, type MergePlan, type OpenSide } from './merged.js';
import { OwnKeys } from './own-keys.js';
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

/** The key/value plan of a phase. */
export function kvPlan(phase: MigrationPhase): MergePlan {
  const read = PHASE_RULES[phase].kvRead;
  return { read, watch: READ_SOURCES[read] };
}

/** Follows one prefix in one registry for a merged view, leaving out either registry's own keys. */
function openPrefix(
  backends: Readonly<Record<Side, Backend>>,
  prefix: string,
  ownKeys: OwnKeys,
): OpenSide<string> {
  const keep = ([key]: [string, string]) => !ownKeys.isReserved(key);
  return (side, sink) => {
    const kv = backends[side].kv;
    return followSide(
      sink,
      () => kv.watchPrefix(prefix),
      (event: KvEvent) => {
        if (event.type === 'sync') sink.replace([...event.entries].filter(keep));
        else if (event.type === 'change')
          sink.apply(
            [...event.put].filter(keep),
            event.deleted.filter((key) => !ownKeys.isReserved(key)),
          );
        else sink.stale(event.error);
      },
      () => kv.getAll(prefix),
    );
  };
}

/**
 * Configuration keys across two registries by the phase's rules: reads from `from`, from `to`
 * (falling back to `from` in `dual-read`), writes to both until `done`; prefix watches follow the
 * phase like service watches do, one merged view per prefix shared by its watchers.
 */
export class MigratingKv implements KeyValueSource {
  private readonly prefixes = new Map<string, MergedCollection<string, KvEvent>>();
  private readonly ownKeys: OwnKeys;
  private closed = false;

  constructor(
    private readonly backends: Readonly<Record<Side, Backend>>,
    private readonly options: MigratingKvOptions,
  ) {
    this.ownKeys = new OwnKeys(backends);
  }

  /** True when `key` (normalized) lies in either registry's own keys (refused by every call, left out of listings). */
  isReserved(key: string): boolean {
    return this.ownKeys.isReserved(key);
  }

  async get(key: string, options?: CallOptions): Promise<string | undefined> {
    const k = this.key(key);
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, async () => {
      const read = await this.readMode();
      const call = signal ? { signal } : undefined;
      if (read !== 'union') return this.backends[read].kv.get(k, call);
      try {
        const value = await this.backends.to.kv.get(k, call);
        if (value !== undefined) return value;
      } catch (error) {
        this.options.logger.debug({ key: k, error: String(error) }, 'to cannot answer; reading from');
        return this.backends.from.kv.get(k, call).catch(() => Promise.reject(error));
      }
      return this.backends.from.kv.get(k, call);
    });
  }

  async getAll(prefix: string, options?: CallOptions): Promise<Map<string, string>> {
    const p = this.prefix(prefix);
    const signal = validateCallOptions(options);
    this.assertOpen();
    const all = await guardedCall(signal, async () => {
      const read = await this.readMode();
      const call = signal ? { signal } : undefined;
      if (read !== 'union') return this.backends[read].kv.getAll(p, call);
      const [from, to] = await Promise.allSettled([
        this.backends.from.kv.getAll(p, call),
        this.backends.to.kv.getAll(p, call),
      ]);
      if (from.status === 'rejected' && to.status === 'rejected') throw to.reason;
      const merged = new Map(from.status === 'fulfilled' ? from.value : []);
      if (to.status === 'fulfilled') for (const [k, v] of to.value) merged.set(k, v);
      return merged;
    });
    // Each registry leaves its own keys out of its listings; the other's are left out here.
    for (const key of [...all.keys()]) if (this.ownKeys.isReserved(key)) all.delete(key);
    return all;
  }

  async put(key: string, value: string, options?: CallOptions): Promise<void> {
    const k = this.key(key);
    const v = validateValue(value);
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, () => this.write((kv) => kv.put(k, v, signal ? { signal } : undefined)));
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    const k = this.key(key);
    const signal = validateCallOptions(options);
    this.assertOpen();
    return guardedCall(signal, () => this.write((kv) => kv.delete(k, signal ? { signal } : undefined)));
  }

  watchPrefix(prefix: string, options?: { signal?: AbortSignal }): QueueWatch<KvEvent> {
    const p = this.prefix(prefix);
    const signal = validateWatchOptions(options);
    this.assertOpen();
    let merged = this.prefixes.get(p);
    if (!merged) {
      merged = new MergedCollection(kvView, openPrefix(this.backends, p, this.ownKeys), {
        subject: `prefix '${p}'`,
        maxQueued: this.options.maxQueuedEvents,
        now: this.options.now,
      });
      this.prefixes.set(p, merged);
      if (this.options.known()) merged.setPlan(kvPlan(this.options.phase()));
    }
    const current = merged;
    const queue = current.subscribe(() => {
      // The last watcher of a prefix gone: stop following it in both registries.
      if (current.subscriberCount === 0 && this.prefixes.get(p) === current) {
        this.prefixes.delete(p);
        current.close();
      }
    });
    queue.closeOn(signal);
    return new QueueWatch(queue);
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

  private key(key: unknown): string {
    return this.ownKeys.checkKey(normalizeKey(key));
  }

  private prefix(prefix: unknown): string {
    return this.ownKeys.checkPrefix(normalizePrefix(prefix));
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
