import { readFile } from 'node:fs/promises';
import { ConfigError, type KvEvent, type Logger, RollcallError } from '@rollcall/core';
import { publish } from '@rollcall/core/driver';
import type { z } from 'zod';
import { writeFileAtomic } from './cache-file.js';
import {
  type LiveConfigOptions,
  type ResolvedLiveConfigOptions,
  resolveLiveConfigOptions,
} from './options.js';
import { buildTree } from './tree.js';

export type { LiveConfigOptions } from './options.js';
export { parseValue } from './tree.js';

/** Where the current object came from. */
export type LiveConfigOrigin = 'backend' | 'cache' | 'defaults';

/** Why an update was refused (or the cache ignored). */
export class LiveConfigError extends RollcallError {
  /** The backend keys at fault (full keys), when known. */
  readonly keys: string[];
  constructor(message: string, keys: string[] = [], options?: { cause?: unknown }) {
    super('ERR_LIVE_CONFIG', message, options);
    this.keys = keys;
  }
}

type ChangeListener<T> = (next: T, previous: T, changedKeys: string[]) => void;
type ErrorListener = (error: LiveConfigError) => void;
type StaleListener = (error: Error) => void;
type SyncListener = () => void;

/** A typed configuration object that follows its backend. Read `current` each time you need it. */
export interface LiveConfig<T> extends AsyncDisposable {
  /** The last good, schema-validated, deeply frozen object. */
  readonly current: Readonly<T>;
  /** Where `current` came from: the backend, the cache file or the defaults. */
  readonly origin: LiveConfigOrigin;
  /** True while the backend is unreachable (or has not answered since start). */
  readonly stale: boolean;
  /**
   * `change`: a good update applied (new, previous, changed field names). `error`: an update
   * refused whole, or a corrupt cache (errors raised while `createLiveConfig` was starting, such
   * as a refused key at start, are delivered to the first `error` listener when it is added).
   * `stale`: the backend became unreachable. `sync`: it answered again. Returns an unsubscribe function.
   */
  on(event: 'change', listener: ChangeListener<T>): () => void;
  on(event: 'error', listener: ErrorListener): () => void;
  on(event: 'stale', listener: StaleListener): () => void;
  on(event: 'sync', listener: SyncListener): () => void;
  /** Stops following the backend. Idempotent. */
  close(): Promise<void>;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    out[key] =
      isPlainObject(value) && isPlainObject(out[key])
        ? merge(out[key] as Record<string, unknown>, value)
        : value;
  }
  return out;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

class LiveConfigImpl<S extends z.ZodType> implements LiveConfig<z.output<S>> {
  private value!: z.output<S>;
  private hasValue = false;
  private from: LiveConfigOrigin = 'defaults';
  private isStale = true;
  private closed = false;
  private readonly entries = new Map<string, string>();
  private readonly listeners = {
    change: new Set<ChangeListener<z.output<S>>>(),
    error: new Set<ErrorListener>(),
    stale: new Set<StaleListener>(),
    sync: new Set<SyncListener>(),
  };
  private readonly watch: AsyncIterable<KvEvent> & Disposable;
  private readonly prefix: string;
  private readonly logger: Logger;
  private firstSync: (() => void) | undefined;
  private pump: Promise<void> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private starting = true;
  /** Errors raised while starting, before anyone could listen: kept for the first `error` listener. */
  private startupErrors: LiveConfigError[] = [];

  constructor(private readonly options: ResolvedLiveConfigOptions<S>) {
    this.prefix = options.prefix;
    this.logger = options.logger;
    this.watch = options.source.watchPrefix(this.prefix);
  }

  get current(): Readonly<z.output<S>> {
    return this.value;
  }
  get origin(): LiveConfigOrigin {
    return this.from;
  }
  get stale(): boolean {
    return this.isStale;
  }

  on(event: 'change' | 'error' | 'stale' | 'sync', listener: (...args: never[]) => void): () => void {
    const set = this.listeners[event] as Set<typeof listener> | undefined;
    if (!set) throw new TypeError(`unknown live config event '${String(event)}'`);
    set.add(listener);
    const pending = event === 'error' ? this.startupErrors : [];
    if (pending.length > 0) {
      this.startupErrors = [];
      queueMicrotask(() => {
        for (const error of pending) if (set.has(listener)) (listener as ErrorListener)(error);
      });
    }
    return () => set.delete(listener);
  }

  async start(): Promise<this> {
    const synced = new Promise<void>((resolve) => {
      this.firstSync = resolve;
    });
    this.pump = this.follow();
    const timeoutMs = this.options.startupTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const first = await Promise.race([synced.then(() => 'synced' as const), timedOut]);
    clearTimeout(timer);
    if (first === 'timeout') {
      this.logger.warn(
        {
          prefix: this.prefix,
        },
        'configuration backend not reachable at start; starting from the cache or defaults',
      );
    }
    // Unreachable, or reachable but holding an invalid configuration (a refused key was reported):
    // fall back to the cache, then the defaults, and keep following the backend.
    if (!this.hasValue) await this.loadCache();
    if (!this.hasValue) {
      const defaults = this.validate(this.options.defaults);
      if (!defaults.success) {
        await this.close();
        const why =
          first === 'timeout'
            ? `the backend did not answer within ${timeoutMs} ms`
            : 'the backend holds an invalid configuration';
        throw new ConfigError(
          defaults.error.issues.map((i) => ({
            path: `defaults.${i.path.join('.')}`,
            message: `${i.message} (${why}, so the defaults must be complete)`,
          })),
        );
      }
      this.commit(defaults.data, 'defaults');
    }
    this.starting = false;
    return this;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch[Symbol.dispose]();
    await this.pump;
    await this.writing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async follow(): Promise<void> {
    try {
      for await (const event of this.watch) {
        if (this.closed) break;
        if (event.type === 'stale') {
          this.isStale = true;
          this.fire('stale', event.error);
          continue;
        }
        if (event.type === 'sync') {
          this.entries.clear();
          for (const [k, v] of event.entries) this.entries.set(k, v);
        } else {
          for (const k of event.deleted) this.entries.delete(k);
          for (const [k, v] of event.put) this.entries.set(k, v);
        }
        const wasStale = this.isStale;
        this.apply();
        if (wasStale) {
          this.isStale = false;
          this.fire('sync');
        }
        this.firstSync?.();
        this.firstSync = undefined;
      }
    } catch (error) {
      if (!this.closed)
        this.fire(
          'error',
          new LiveConfigError(`configuration watch failed: ${(error as Error).message}`, [], {
            cause: error,
          }),
        );
    }
  }

  /** Rebuilds the whole object from defaults + every key, validates it, applies it or refuses it whole. */
  private apply(): void {
    const tree = buildTree(this.entries, this.prefix);
    if (!tree.ok) {
      const reasons = tree.refused.map((r) => `${r.key}: ${r.reason}`).join('; ');
      this.refuse(
        new LiveConfigError(
          `configuration update refused, keeping the last good one: ${reasons}`,
          tree.refused.map((r) => r.key),
        ),
      );
      return;
    }
    const result = this.validate(merge(this.options.defaults, tree.value));
    if (!result.success) {
      const keys = [...new Set(result.error.issues.map((i) => `${this.prefix}${String(i.path[0] ?? '')}`))];
      const reasons = result.error.issues
        .map((i) => `${this.prefix}${i.path.join('/')}: ${i.message}`)
        .join('; ');
      this.refuse(
        new LiveConfigError(`configuration update refused, keeping the last good one: ${reasons}`, keys),
      );
      return;
    }
    this.commit(result.data, 'backend');
  }

  /** An update from the backend refused whole: reported to `error` listeners and the config channel. */
  private refuse(error: LiveConfigError): void {
    publish.config(() => ({ prefix: this.prefix, outcome: 'refused', keys: error.keys, error }));
    this.fire('error', error);
  }

  private commit(next: z.output<S>, origin: LiveConfigOrigin): void {
    if (!this.hasValue) {
      this.hasValue = true;
      this.from = origin;
      this.value = deepFreeze(next);
      if (origin === 'backend') {
        this.saveCache(this.value);
        publish.config(() => ({
          prefix: this.prefix,
          outcome: 'applied',
          changedKeys: Object.keys(this.value as object),
        }));
      }
      return;
    }
    const previous = this.value;
    const wasFrom = this.from;
    this.from = origin;
    if (sameJson(previous, next)) {
      if (origin === 'backend' && wasFrom !== 'backend') this.saveCache(previous);
      return;
    }
    const frozen = deepFreeze(next);
    this.value = frozen;
    if (origin === 'backend') this.saveCache(frozen);
    const fields = new Set<string>([...Object.keys(previous as object), ...Object.keys(frozen as object)]);
    const changed = [...fields].filter(
      (f) => !sameJson((previous as Record<string, unknown>)[f], (frozen as Record<string, unknown>)[f]),
    );
    if (origin === 'backend')
      publish.config(() => ({ prefix: this.prefix, outcome: 'applied', changedKeys: changed }));
    this.fire('change', frozen, previous, changed);
  }

  private validate(
    input: unknown,
  ): { success: true; data: z.output<S> } | { success: false; error: z.ZodError } {
    return this.options.schema.safeParse(input) as
      | { success: true; data: z.output<S> }
      | { success: false; error: z.ZodError };
  }

  private async loadCache(): Promise<void> {
    const file = this.options.cacheFile;
    if (!file) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(file, 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.fire(
        'error',
        new LiveConfigError(
          `cache file ${file} is corrupt and was ignored: ${(error as Error).message}`,
          [],
          { cause: error },
        ),
      );
      return;
    }
    const stored = isPlainObject(parsed) && parsed.prefix === this.prefix ? parsed.value : undefined;
    const result = this.validate(stored);
    if (stored === undefined || !result.success) {
      this.fire(
        'error',
        new LiveConfigError(
          `cache file ${file} does not hold a valid configuration for ${this.prefix} and was ignored`,
        ),
      );
      return;
    }
    // The backend may have answered with a valid configuration while the file was read: it wins.
    if (!this.hasValue) this.commit(result.data, 'cache');
  }

  /** Writes the cache (see {@link writeFileAtomic}), one write at a time, in order. */
  private saveCache(value: z.output<S>): void {
    const file = this.options.cacheFile;
    if (!file) return;
    const body = `${JSON.stringify({ prefix: this.prefix, savedAt: new Date().toISOString(), value }, null, 2)}\n`;
    this.writing = this.writing.then(async () => {
      try {
        await writeFileAtomic(file, body);
      } catch (error) {
        this.fire(
          'error',
          new LiveConfigError(`cannot write cache file ${file}: ${(error as Error).message}`, [], {
            cause: error,
          }),
        );
      }
    });
  }

  private fire(event: 'change', next: z.output<S>, previous: z.output<S>, changed: string[]): void;
  private fire(event: 'error', error: LiveConfigError): void;
  private fire(event: 'stale', error: Error): void;
  private fire(event: 'sync'): void;
  private fire(event: keyof LiveConfigImpl<S>['listeners'], ...args: unknown[]): void {
    if (event === 'error' && this.listeners.error.size === 0) {
      this.logger.error({ error: (args[0] as Error).message }, 'live config error');
      if (this.starting) this.startupErrors.push(args[0] as LiveConfigError);
    }
    for (const listener of [...this.listeners[event]] as ((...a: unknown[]) => void)[]) {
      try {
        listener(...args);
      } catch (error) {
        this.logger.error({ error: String(error) }, `live config '${event}' listener threw`);
      }
    }
  }
}

/**
 * Starts a typed, validated, hot-reloaded configuration over `source` under `prefix`. Resolves
 * once the backend has answered with a valid configuration; else (backend unreachable after
 * `startupTimeoutMs`, or holding an invalid configuration, reported through `error`) from
 * `cacheFile`, else `defaults`, catching up when the backend returns or is fixed. Throws
 * {@link ConfigError} listing every bad option, or when nothing valid exists (`defaults` failing the schema).
 */
export async function createLiveConfig<S extends z.ZodType>(
  options: LiveConfigOptions<S>,
): Promise<LiveConfig<z.output<S>>> {
  const impl = new LiveConfigImpl(resolveLiveConfigOptions<S>(options));
  return impl.start();
}
