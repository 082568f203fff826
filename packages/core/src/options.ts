import type { BackoffOptions } from './backoff.js';
import type { DiscoveryOptions } from './discovery.js';
import type { LivenessOptions } from './liveness/engine.js';
import { childLogger, isLogger, type Logger, silentLogger } from './logger.js';
import { MAX_TIMER_MS } from './validation.js';

/**
 * A short, safe description of a bad value for an error message: strings quoted and cut,
 * objects and arrays named, never dumped. (Never pass a secret: say only its type.)
 */
export function describeValue(value: unknown, maxLength = 60): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > maxLength ? `${value.slice(0, maxLength)}...` : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  return typeof value === 'object' ? 'an object' : String(value);
}

/** The options every backend takes on core's behalf (validated by {@link checkSharedOptions}). */
export interface SharedBackendOptions extends DiscoveryOptions {
  /**
   * How often the liveness engine checks every registration and held lock key against the server
   * (a missing registration is put back, one another live client took is reported as a conflict,
   * a missing lock key is a lost lock). Registrations a watch of this client sees touched are also
   * checked at once. Default 10000.
   */
  reconcileIntervalMs?: number;
}

/** The option names every backend shares with core (discovery caching, clock, logger, backoff, liveness). */
export const SHARED_OPTION_NAMES: readonly string[] = [
  'cacheIdleMs',
  'maxQueuedEvents',
  'now',
  'logger',
  'backoff',
  'resyncGraceMs',
  'reconcileIntervalMs',
];

/** The shared options after validation. */
export interface SharedOptions {
  /** For `createServiceDiscovery` / `createBackend` (`logger` included). */
  discovery: DiscoveryOptions;
  /** For the backend's retry loops. */
  backoff: BackoffOptions;
  /** For the backend's liveness engine(s) (`reconcileIntervalMs`, `backoff`, `logger`). */
  liveness: LivenessOptions;
  /** Default {@link silentLogger}. */
  logger: Logger;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min;
}

/**
 * Checks the options a backend shares with core (`cacheIdleMs`, `maxQueuedEvents`, `now`,
 * `logger`, `backoff`), reporting each problem through `bad(path, message)`, and returns them
 * resolved. Backends call it from their own option resolver, so these rules live in one place.
 * The logger is bound to `backend` (every line carries `backend: <name>`).
 */
export function checkSharedOptions(
  o: Record<string, unknown>,
  bad: (path: string, message: string) => void,
  backend: string,
): SharedOptions {
  const discovery: DiscoveryOptions = {};
  if (o.cacheIdleMs !== undefined) {
    if (!isCount(o.cacheIdleMs, 0))
      bad('cacheIdleMs', `must be a non-negative integer number of ms, got ${describeValue(o.cacheIdleMs)}`);
    else discovery.cacheIdleMs = o.cacheIdleMs;
  }
  if (o.maxQueuedEvents !== undefined) {
    if (!isCount(o.maxQueuedEvents, 1))
      bad('maxQueuedEvents', `must be a positive integer, got ${describeValue(o.maxQueuedEvents)}`);
    else discovery.maxQueuedEvents = o.maxQueuedEvents;
  }
  if (o.now !== undefined) {
    if (typeof o.now !== 'function')
      bad('now', `must be a function returning ms since the epoch, got ${describeValue(o.now)}`);
    else discovery.now = o.now as () => number;
  }
  if (o.resyncGraceMs !== undefined) {
    if (!isCount(o.resyncGraceMs, 0))
      bad(
        'resyncGraceMs',
        `must be a non-negative integer number of ms, got ${describeValue(o.resyncGraceMs)}`,
      );
    else discovery.resyncGraceMs = o.resyncGraceMs;
  }
  const liveness: LivenessOptions = {};
  if (o.reconcileIntervalMs !== undefined) {
    if (!isCount(o.reconcileIntervalMs, 100) || o.reconcileIntervalMs > 2 ** 31 - 1)
      bad(
        'reconcileIntervalMs',
        `must be an integer number of ms from 100 to 2147483647, got ${describeValue(o.reconcileIntervalMs)}`,
      );
    else liveness.reconcileIntervalMs = o.reconcileIntervalMs;
  }
  let logger: Logger = silentLogger;
  if (o.logger !== undefined) {
    if (!isLogger(o.logger))
      bad('logger', 'must have debug, info, warn and error methods taking (fields, message), as pino does');
    else logger = childLogger(o.logger, { backend });
  }
  discovery.logger = logger;
  const backoff: BackoffOptions = {};
  if (o.backoff !== undefined) {
    if (!isObject(o.backoff))
      bad(
        'backoff',
        `must be an object { initialMs?, maxMs?, multiplier? }, got ${describeValue(o.backoff)}`,
      );
    else {
      const { initialMs, maxMs, multiplier, random, ...rest } = o.backoff;
      for (const k of Object.keys(rest)) bad(`backoff.${k}`, 'unknown option');
      const within = (name: string, v: unknown, min: number, max: number): number | undefined => {
        if (v === undefined) return undefined;
        if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (min === 0 && v === 0) || v > max) {
          const range = `${min === 0 ? '> 0' : `>= ${min}`}${Number.isFinite(max) ? ` and <= ${max}` : ''}`;
          bad(`backoff.${name}`, `must be a number ${range}, got ${describeValue(v)}`);
          return undefined;
        }
        return v;
      };
      // Delays are timer delays: a timer cannot wait longer than MAX_TIMER_MS (it would fire at once).
      const i = within('initialMs', initialMs, 0, MAX_TIMER_MS);
      const m = within('maxMs', maxMs, 0, MAX_TIMER_MS);
      const f = within('multiplier', multiplier, 1, Number.POSITIVE_INFINITY);
      if (i !== undefined) backoff.initialMs = i;
      if (m !== undefined) backoff.maxMs = m;
      if (f !== undefined) backoff.multiplier = f;
      if (i !== undefined && m !== undefined && m < i) bad('backoff.maxMs', 'must be >= backoff.initialMs');
      if (random !== undefined) {
        if (typeof random !== 'function') bad('backoff.random', 'must be a function returning [0, 1)');
        else backoff.random = random as () => number;
      }
    }
  }
  liveness.backoff = backoff;
  liveness.logger = logger;
  return { discovery, backoff, logger, liveness };
}
