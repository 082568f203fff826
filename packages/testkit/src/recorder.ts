/**
 * Test helpers shared by the compliance suites: record a watch's events in the background and
 * wait for a condition with a deadline (never a fixed sleep).
 */

/**
 * Polls `condition` until it returns (or resolves to) a truthy value, which it returns, or
 * throws once `timeoutMs` (default 10 s) has passed. A condition that throws counts as falsy;
 * the last error is appended to the timeout message and kept as its cause. Tests use it (or
 * `waitFor`) instead of fixed sleeps. `message` names the condition in that error; a function is
 * called only then (to show output collected meanwhile).
 */
export async function eventually<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; message?: string | (() => string) } = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 25, message = 'condition' } = options;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      const why =
        lastError === undefined
          ? ''
          : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(
        `${typeof message === 'function' ? message() : message}: not met within ${timeoutMs} ms${why}`,
        { cause: lastError },
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, left)));
  }
}

/** Consumes an async iterable in the background and keeps every event, in order. */
export class Recorder<E> {
  readonly events: E[] = [];
  done = false;
  error: unknown;
  private readonly finished: Promise<void>;

  constructor(source: AsyncIterable<E>) {
    this.finished = (async () => {
      try {
        for await (const event of source) this.events.push(event);
      } catch (error) {
        this.error = error;
      } finally {
        this.done = true;
      }
    })();
  }

  /** Waits for an event (after index `from`) matching `predicate`; returns it. */
  async next(
    predicate: (event: E) => boolean,
    options: { timeoutMs?: number; from?: number; message?: string } = {},
  ): Promise<E> {
    const from = options.from ?? 0;
    return eventually(() => this.events.slice(from).find(predicate), {
      timeoutMs: options.timeoutMs ?? 10_000,
      message:
        options.message ?? `no matching event among ${JSON.stringify(this.events.slice(from)).slice(0, 500)}`,
    });
  }

  /** Resolves when the source ends. */
  ended(): Promise<void> {
    return this.finished;
  }
}
