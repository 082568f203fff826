import { MAX_TIMER_MS } from '../validation.js';

/** A timer handle from {@link Timers.setTimeout}. */
export type TimerHandle = { readonly __timer: unique symbol } | ReturnType<typeof setTimeout>;

/**
 * Time for intervals and deadlines: a monotonic clock and timers on it. Never the wall clock,
 * which an NTP correction can step backwards or forwards (only `syncedAt`, shown to users, is wall
 * time). Injectable so that the liveness engine can be driven by a fake clock in model tests.
 */
export interface Timers {
  /** Monotonic milliseconds (default `performance.now()`). */
  now(): number;
  /** Calls `fn` after `ms` (clamped to what a Node timer can wait). Never keeps the process alive by itself. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** Real timers on `performance.now()`; unref'd (open work keeps the process alive through {@link holdProcess}). */
export const realTimers: Timers = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, Math.min(MAX_TIMER_MS, ms)));
    timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    if (handle !== undefined) clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
