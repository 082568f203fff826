import {
  ConfigError,
  type ConfigIssue,
  childLogger,
  isLogger,
  type KeyValueSource,
  type Logger,
  MAX_TIMER_MS,
  normalizePrefix,
  silentLogger,
  ValidationError,
} from '@rollcall/core';
import { describeValue } from '@rollcall/core/driver';
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
  /** File holding the last good object (mode 0600, replaced atomically and fsynced on every good update); used when the backend is unreachable, or holds an invalid configuration, at start. Default none. */
  cacheFile?: string;
  /** How long to wait for the backend at start before falling back to `cacheFile`, then `defaults`: an integer number of ms from 0 to 2^31-1. Default 5000. */
  startupTimeoutMs?: number;
  /** Default silent. */
  logger?: Logger;
}

/** {@link LiveConfigOptions} checked, with defaults applied. */
export interface ResolvedLiveConfigOptions<S extends z.ZodType> {
  source: KeyValueSource;
  /** Normalized, ending with `/` (or empty). */
  prefix: string;
  schema: S;
  defaults: Record<string, unknown>;
  cacheFile: string | undefined;
  startupTimeoutMs: number;
  logger: Logger;
}

const KNOWN = new Set(['source', 'prefix', 'schema', 'defaults', 'cacheFile', 'startupTimeoutMs', 'logger']);
const SOURCE_METHODS = ['get', 'getAll', 'put', 'delete', 'watchPrefix'] as const;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks every option of `createLiveConfig` and applies the defaults. Throws one {@link ConfigError}
 * listing every bad field, before anything is read or watched.
 */
export function resolveLiveConfigOptions<S extends z.ZodType>(input: unknown): ResolvedLiveConfigOptions<S> {
  if (!isObject(input))
    throw new ConfigError([
      { path: '', message: `live config options must be an object, got ${describeValue(input)}` },
    ]);
  const issues: ConfigIssue[] = [];
  const bad = (path: string, message: string) => issues.push({ path, message });
  for (const key of Object.keys(input))
    if (!KNOWN.has(key) && input[key] !== undefined) bad(key, 'unknown option');

  const source = input.source;
  if (!isObject(source) || SOURCE_METHODS.some((m) => typeof source[m] !== 'function'))
    bad('source', `must be a KeyValueSource (${SOURCE_METHODS.join(', ')}), got ${describeValue(source)}`);
  let prefix = '';
  try {
    const normalized = normalizePrefix(input.prefix);
    prefix = normalized === '' || normalized.endsWith('/') ? normalized : `${normalized}/`;
  } catch (error) {
    bad('prefix', error instanceof ValidationError ? error.reason : String(error));
  }
  const schema = input.schema;
  if (!isObject(schema) || typeof schema.safeParse !== 'function') bad('schema', 'must be a zod schema');
  const defaults = input.defaults === undefined ? {} : input.defaults;
  if (!isObject(defaults)) bad('defaults', `must be an object, got ${describeValue(defaults)}`);
  const cacheFile = input.cacheFile;
  if (
    cacheFile !== undefined &&
    (typeof cacheFile !== 'string' || cacheFile.length === 0 || cacheFile.includes('\0'))
  )
    bad('cacheFile', `must be a file path, got ${describeValue(cacheFile)}`);
  const startupTimeoutMs = input.startupTimeoutMs === undefined ? 5000 : input.startupTimeoutMs;
  if (
    typeof startupTimeoutMs !== 'number' ||
    !Number.isInteger(startupTimeoutMs) ||
    startupTimeoutMs < 0 ||
    startupTimeoutMs > MAX_TIMER_MS
  )
    bad(
      'startupTimeoutMs',
      `must be an integer number of ms from 0 to ${MAX_TIMER_MS}, got ${describeValue(startupTimeoutMs)}`,
    );
  const logger = input.logger === undefined ? silentLogger : input.logger;
  if (!isLogger(logger))
    bad('logger', 'must have debug, info, warn and error methods taking (fields, message), as pino does');
  if (issues.length > 0) throw new ConfigError(issues);
  return {
    source: source as unknown as KeyValueSource,
    prefix,
    schema: schema as unknown as S,
    defaults: defaults as Record<string, unknown>,
    cacheFile: cacheFile as string | undefined,
    startupTimeoutMs: startupTimeoutMs as number,
    logger: childLogger(logger as Logger, { config: prefix }),
  };
}
