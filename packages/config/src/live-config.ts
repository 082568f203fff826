import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import {
  ConfigError,
  type KeyValueSource,
  type KvEvent,
  type Logger,
  normalizePrefix,
  RollcallError,
  silentLogger,
} from '@rollcall/core';
import type { z } from 'zod';

/** Options of {@link createLiveConfig}. */
export interface LiveConfigOptions<S extends z.ZodType> {
  /** Where the configuration lives: any backend's `kv`. */
  source: KeyValueSource;
  /** Key prefix, e.g. `/configs/user-service/production/`. A trailing `/` is added if missing. */
  prefix: string;
  /** zod schema of the whole object. Each key under the prefix is a field. */
  schema: S;
  /** Values used for fields that have no key (and when the backend cannot be reached at start). Default `{}`. */
  defaults?: Partial<z.input<S>>;
  /** File holding the last good object, rewritten atomically on every good update; used when the backend is unreachable at start. Default none. */
  cacheFile?: string;
  /** How long to wait for the backend at start before falling back to `cacheFile`, then `defaults`. Default 5000 ms. */
  startupTimeoutMs?: number;
  /** Default silent. */
  logger?: Logger;
}

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
  /** `change`: a good update applied (new, previous, changed field names). `error`: an update refused whole, or a corrupt cache. `stale`: the backend became unreachable. `sync`: it answered again. Returns an unsubscribe function. */
  on(event: 'change', listener: ChangeListener<T>): () => void;
  on(event: 'error', listener: ErrorListener): () => void;
  on(event: 'stale', listener: StaleListener): () => void;
  on(event: 'sync', listener: SyncListener): () => void;
  /** Stops following the backend. Idempotent. */
  close(): Promise<void>;
}

/** Parses a stored value: JSON where it parses, else the string itself. */
export function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
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

  constructor(private readonly options: LiveConfigOptions<S>) {
    const normalized = normalizePrefix(options.prefix);
    this.prefix = normalized === '' || normalized.endsWith('/') ? normalized : `${normalized}/`;
    this.logger = options.logger ?? silentLogger;
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
    return () => set.delete(listener);
  }

  async start(): Promise<this> {
    const synced = new Promise<void>((resolve) => {
      this.firstSync = resolve;
    });
    this.pump = this.follow();
    const timeoutMs = this.options.startupTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const first = await Promise.race([synced.then(() => 'synced' as const), timedOut]);
    clearTimeout(timer);
    if (first === 'timeout') {
      this.logger.warn('configuration backend not reachable at start; starting from the cache or defaults', {
        prefix: this.prefix,
      });
    }
    // Unreachable, or reachable but holding an invalid configuration: fall back to the cache, then the defaults.
    if (!this.hasValue) await this.loadCache();
    if (!this.hasValue) {
      const defaults = this.validate(this.options.defaults ?? {});
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
    const raw: Record<string, unknown> = {};
    for (const [key, value] of this.entries) {
      const path = key.slice(this.prefix.length).split('/');
      let node = raw;
      for (const part of path.slice(0, -1)) {
        if (!isPlainObject(node[part])) node[part] = {};
        node = node[part] as Record<string, unknown>;
      }
      node[path.at(-1)!] = parseValue(value);
    }
    const result = this.validate(merge((this.options.defaults ?? {}) as Record<string, unknown>, raw));
    if (!result.success) {
      const keys = [...new Set(result.error.issues.map((i) => `${this.prefix}${String(i.path[0] ?? '')}`))];
      const reasons = result.error.issues
        .map((i) => `${this.prefix}${i.path.join('/')}: ${i.message}`)
        .join('; ');
      this.fire(
        'error',
        new LiveConfigError(`configuration update refused, keeping the last good one: ${reasons}`, keys),
      );
      return;
    }
    this.commit(result.data, 'backend');
  }

  private commit(next: z.output<S>, origin: LiveConfigOrigin): void {
    if (!this.hasValue) {
      this.hasValue = true;
      this.from = origin;
      this.value = deepFreeze(next);
      if (origin === 'backend') this.saveCache(this.value);
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
    if (!file || !this.isStale) return;
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
    // The backend may have answered while the file was read: it wins.
    if (this.isStale) this.commit(result.data, 'cache');
  }

  /** Writes the cache atomically (temp file + rename), one write at a time, in order. */
  private saveCache(value: z.output<S>): void {
    const file = this.options.cacheFile;
    if (!file) return;
    const body = `${JSON.stringify({ prefix: this.prefix, savedAt: new Date().toISOString(), value }, null, 2)}\n`;
    this.writing = this.writing.then(async () => {
      const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await writeFile(tmp, body);
        await rename(tmp, file);
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
      this.logger.error('live config error', { error: (args[0] as Error).message });
    }
    for (const listener of [...this.listeners[event]] as ((...a: unknown[]) => void)[]) {
      try {
        listener(...args);
      } catch (error) {
        this.logger.error(`live config '${event}' listener threw`, { error: String(error) });
      }
    }
  }
}

/**
 * Starts a typed, validated, hot-reloaded configuration over `source` under `prefix`. Resolves
 * once the backend has answered, or, after `startupTimeoutMs`, from `cacheFile` or `defaults`
 * (catching up when the backend returns). Throws {@link ConfigError} if `defaults` fail the schema.
 */
export async function createLiveConfig<S extends z.ZodType>(
  options: LiveConfigOptions<S>,
): Promise<LiveConfig<z.output<S>>> {
  if (!options?.source) throw new ConfigError([{ path: 'source', message: 'a KeyValueSource is required' }]);
  if (!options.schema || typeof (options.schema as { safeParse?: unknown }).safeParse !== 'function') {
    throw new ConfigError([{ path: 'schema', message: 'a zod schema is required' }]);
  }
  const impl = new LiveConfigImpl(options);
  return impl.start();
}
