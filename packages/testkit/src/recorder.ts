/**
 * Test helpers shared by the compliance suites: record a watch's events in the background and
 * wait for a condition with a deadline (never a fixed sleep).
 */

/** Polls `condition` until it is truthy or `timeoutMs` passes; then throws with `message`. */
export async function eventually<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(
        `timed out after ${options.timeoutMs ?? 10_000} ms: ${options.message ?? 'condition not met'}${why}`,
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 25));
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
