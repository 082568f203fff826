import {
  type Backend,
  type BackoffOptions,
  ConfigError,
  type ConfigIssue,
  type Logger,
  normalizeKey,
  ValidationError,
} from '@rollcall/core';
import { checkSharedOptions, describeValue } from '@rollcall/core/driver';
import { isPhase, MIGRATION_PHASES, type MigrationPhase } from './phases.js';

/** Default key on `to`'s key/value store that the whole fleet follows. */
export const DEFAULT_PHASE_KEY = 'rollcall/migration/phase';

/** Options of `createMigratingBackend`. */
export interface MigratingOptions {
  /** The registry being left (usually Consul). Closed by the migrating backend's `close()`. */
  from: Backend;
  /** The registry being adopted (usually etcd). Holds the phase key. Closed by `close()`. */
  to: Backend;
  /** The phase to start in when no phase key is set (or `to` cannot be read at start). */
  phase: MigrationPhase;
  /** Key on `to`'s key/value store that every client follows live. Default `'rollcall/migration/phase'`. */
  phaseKey?: string;
  /** Per service, `to` must hold at least `threshold` x `from`'s instances (and more than 0) before reads move. Default 1. */
  threshold?: number;
  /** Background reports (phase moves, shadow differences, losses). Default silent. */
  logger?: Logger;
  /** Announce this client's phase in the fleet list (`rollcall-migration` in `to`), so `rollcall migrate phase` can see the fleet follow. Default `true`; tools that only look (the CLI) pass `false`. */
  acknowledge?: boolean;
  /** How long reads and writes wait at start for the phase key before using `phase`. Default 3000 ms. */
  phaseReadTimeoutMs?: number;
  /** How long a difference between the registries may last before the shadow report warns about it. Default 15000 ms (a Consul poll is up to 5 s late). */
  shadowGraceMs?: number;
  /** How long a service's merged view (and its watches) lives after its last read with no watcher. Default 300000 (5 min). */
  cacheIdleMs?: number;
  /** Events a watcher may fall behind before its backlog collapses into a catch-up `sync`. Default 1000. */
  maxQueuedEvents?: number;
  /** Clock for `syncedAt` and the shadow report. Default `Date.now`. */
  now?: () => number;
  /** Delays between attempts to register in a registry a phase move joins. Default core's backoff (100 ms doubling to 5 s). */
  backoff?: BackoffOptions;
}

/** {@link MigratingOptions} after validation, with defaults applied. */
export interface ResolvedMigratingOptions {
  from: Backend;
  to: Backend;
  phase: MigrationPhase;
  /** Normalized (no leading `/`). */
  phaseKey: string;
  threshold: number;
  logger: Logger;
  acknowledge: boolean;
  phaseReadTimeoutMs: number;
  shadowGraceMs: number;
  cacheIdleMs: number;
  maxQueuedEvents: number;
  now: () => number;
  backoff: BackoffOptions;
}

const KNOWN = new Set([
  'from',
  'to',
  'phase',
  'phaseKey',
  'threshold',
  'logger',
  'acknowledge',
  'phaseReadTimeoutMs',
  'shadowGraceMs',
  'cacheIdleMs',
  'maxQueuedEvents',
  'now',
  'backoff',
]);

function isBackend(value: unknown): value is Backend {
  const b = value as Partial<Backend> | null;
  return (
    typeof b === 'object' &&
    b !== null &&
    typeof b.name === 'string' &&
    typeof b.close === 'function' &&
    typeof b.discovery?.register === 'function' &&
    typeof b.kv?.watchPrefix === 'function' &&
    typeof b.locks?.acquire === 'function'
  );
}

/** Validates {@link MigratingOptions}; throws one {@link ConfigError} listing every bad field. */
export function resolveMigratingOptions(options: MigratingOptions): ResolvedMigratingOptions {
  const issues: ConfigIssue[] = [];
  const bad = (path: string, message: string) => issues.push({ path, message });
  if (typeof options !== 'object' || options === null) throw new ConfigError('options must be an object');
  const o = options as unknown as Record<string, unknown>;
  for (const key of Object.keys(o)) if (!KNOWN.has(key) && o[key] !== undefined) bad(key, 'unknown option');
  if (!isBackend(o.from))
    bad('from', 'must be a Backend (createConsulBackend(...), createEtcdBackend(...), ...)');
  if (!isBackend(o.to))
    bad('to', 'must be a Backend (createConsulBackend(...), createEtcdBackend(...), ...)');
  if (o.from !== undefined && o.from === o.to) bad('to', 'must be another backend than from');
  if (!isPhase(o.phase))
    bad('phase', `must be one of ${MIGRATION_PHASES.join(', ')} (got ${describeValue(o.phase)})`);
  let phaseKey = DEFAULT_PHASE_KEY;
  if (o.phaseKey !== undefined) {
    try {
      phaseKey = normalizeKey(o.phaseKey, 'phaseKey');
    } catch (error) {
      bad('phaseKey', error instanceof ValidationError ? error.reason : String(error));
    }
  }
  const threshold = o.threshold ?? 1;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold) || threshold <= 0)
    bad('threshold', `must be a number > 0, e.g. 1 or 0.9 (got ${describeValue(threshold)})`);
  const acknowledge = o.acknowledge ?? true;
  if (typeof acknowledge !== 'boolean')
    bad('acknowledge', `must be a boolean (got ${describeValue(acknowledge)})`);
  const ms = (name: string, fallback: number): number => {
    const v = o[name] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      bad(name, `must be a non-negative integer number of ms (got ${describeValue(v)})`);
      return fallback;
    }
    return v;
  };
  const phaseReadTimeoutMs = ms('phaseReadTimeoutMs', 3000);
  const shadowGraceMs = ms('shadowGraceMs', 15_000);
  const shared = checkSharedOptions(o, bad, 'migrating');
  if (issues.length > 0) throw new ConfigError(issues);
  return {
    from: o.from as Backend,
    to: o.to as Backend,
    phase: o.phase as MigrationPhase,
    phaseKey,
    threshold: threshold as number,
    logger: shared.logger,
    acknowledge: acknowledge as boolean,
    phaseReadTimeoutMs,
    shadowGraceMs,
    cacheIdleMs: shared.discovery.cacheIdleMs ?? 300_000,
    maxQueuedEvents: shared.discovery.maxQueuedEvents ?? 1000,
    now: shared.discovery.now ?? Date.now,
    backoff: shared.backoff,
  };
}
