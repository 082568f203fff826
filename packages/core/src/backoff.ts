import { AbortedError } from './errors.js';
import { whileHeld } from './liveness/process-ref.js';

/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** First delay in ms. Default 100. */
  initialMs?: number;
  /** Cap on any delay in ms. Default 5000, so recovery after an outage starts within ~5 s of the server's return. */
  maxMs?: number;
  /** Growth factor per attempt. Default 2. */
  multiplier?: number;
  /** Random source in [0, 1), injectable for tests. Default `Math.random`. */
  random?: () => number;
}

/**
 * Capped exponential backoff with "equal jitter": each delay is uniformly drawn from
 * [d/2, d] where d = min(maxMs, initialMs * multiplier^attempt). The lower bound keeps a
 * retrying fleet from hammering a server that just came back; the jitter spreads it out.
 */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 100;
    this.maxMs = options.maxMs ?? 5000;
    this.multiplier = options.multiplier ?? 2;
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt; grows until the cap. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * this.multiplier ** Math.min(this.attempt, 32));
    this.attempt += 1;
    return ceiling / 2 + this.random() * (ceiling / 2);
  }

  /** Start again from `initialMs` (after a success). */
  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or rejects with {@link AbortedError} when `signal` aborts. The timer never holds the process open. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError(signal.reason));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    timer.unref?.();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Throws {@link AbortedError} if `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(signal.reason);
}

/** Options of {@link retryForever}. */
export interface RetryOptions {
  /** Delays between attempts. Default `new Backoff()`. */
  backoff?: Backoff;
  /** Stops retrying: the returned promise rejects with {@link AbortedError}. */
  signal?: AbortSignal;
  /** Called with each failure and the delay before the next attempt. */
  onError?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `attempt` until it succeeds, sleeping a backoff delay between failures. There is no
 * retry limit: a registration must never give up while its process lives. Only `signal` stops it.
 */
export async function retryForever<T>(
  attempt: (n: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const backoff = options.backoff ?? new Backoff();
  for (let n = 0; ; n++) {
    throwIfAborted(options.signal);
    try {
      const result = await attempt(n);
      backoff.reset();
      return result;
    } catch (error) {
      throwIfAborted(options.signal);
      const delay = backoff.next();
      options.onError?.(error, n, delay);
      await sleep(delay, options.signal);
    }
  }
}

/**
 * A call made with an optional `signal`, as every Rollcall call that may wait on the network runs:
 * rejects at once with {@link AbortedError} when the signal is already aborted (`call` is not even
 * made: nothing is sent), or as soon as it aborts; keeps the process alive while it is pending.
 * The call's own rejection is always handled, even after an abort.
 */
export function guardedCall<T>(signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
  if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
  return abortable(whileHeld(call()), signal);
}

/**
 * Races `promise` against `signal`: rejects as soon as the signal aborts, with
 * `rejectWith(signal.reason)` (default: an {@link AbortedError} of it; the engine's own waits pass
 * the reason through). The underlying work is not cancelled; use it for waits, not for writes.
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  rejectWith: (reason: unknown) => unknown = (reason) => new AbortedError(reason),
): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(rejectWith(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(rejectWith(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
