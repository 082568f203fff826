import { Backoff, type BackoffOptions } from '../backoff.js';
import { ClosedError, PermissionDeniedError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Timers } from './clock.js';
import type { SessionDriver } from './driver.js';

/** What a {@link LivenessEngine} has done, for stats, health pages and tests. */
export interface LivenessStats {
  /** Sessions granted since the start. */
  sessionsGranted: number;
  /** Sessions held now (not lost, not ended). */
  sessions: number;
  /** Renewals sent, and acknowledged. */
  renewals: number;
  renewalsAcked: number;
  /** Sessions lost (the server said so, or no renewal was acknowledged within the ttl). */
  sessionsLost: number;
  /** Registrations put back after a loss. */
  keysRestored: number;
  /** Reconciliations run (each checks every held key). */
  reconciles: number;
  /** Times a key was found held by another live client. */
  conflicts: number;
}

/** What the parts of one engine share. */
export interface EngineContext<S, V> {
  readonly driver: SessionDriver<S, V>;
  readonly timers: Timers;
  readonly logger: Logger;
  readonly backoff: BackoffOptions;
  readonly stats: LivenessStats;
  /** Aborted when the engine is closed or abandoned: ends every wait and retry. */
  readonly lifetime: AbortSignal;
  /** Open, or closing (still finishing its work): background work goes on. */
  running(): boolean;
  /** A live registration holds `key`: no delete of an earlier write of it may be sent. */
  isRegistered(key: string): boolean;
}

export const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** Failures no retry can fix. */
export function isFatal(error: unknown): boolean {
  return error instanceof PermissionDeniedError || error instanceof ClosedError;
}

/** Sleeps `ms` on the context's timers, or less when `wake` is called or the engine stops. */
export function pause<S, V>(
  context: EngineContext<S, V>,
  ms: number,
  onWake?: (wake: () => void) => void,
): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      context.timers.clearTimeout(timer);
      context.lifetime.removeEventListener('abort', done);
      onWake?.(() => {});
      resolve();
    };
    const timer = context.timers.setTimeout(done, ms);
    context.lifetime.addEventListener('abort', done, { once: true });
    onWake?.(done);
  });
}

/** Runs `attempt` until it succeeds, fails for good, or the engine stops; logs failures. */
export function retryInBackground<S, V>(
  context: EngineContext<S, V>,
  what: string,
  attempt: () => Promise<unknown>,
): void {
  const { logger, driver } = context;
  const backoff = new Backoff(context.backoff);
  void (async () => {
    for (let n = 1; context.running(); n++) {
      try {
        await attempt();
        return;
      } catch (error) {
        if (isFatal(error)) {
          logger.error({ error: message(error) }, `${driver.backend}: cannot ${what}`);
          return;
        }
        (n === 1 ? logger.warn : logger.debug).call(
          logger,
          {
            attempt: n,
            error: message(error),
          },
          `${driver.backend}: ${what} failed; retrying`,
        );
        await pause(context, backoff.next());
      }
    }
  })();
}
