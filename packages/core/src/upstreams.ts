/**
 * A driver's running upstreams (watches, pollers) by key: counts for stats and for the
 * one-upstream-per-service tests, and an idempotent stop for each. Core starts at most one
 * upstream per key per client, so a count above 1 is a bug the tests catch.
 */
export class UpstreamCounter {
  private readonly counts = new Map<string, number>();

  /** Records a started upstream for `key`; returns its stop, which runs `stop` once and forgets it. */
  track(key: string, stop: () => void): () => void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      stop();
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left > 0) this.counts.set(key, left);
      else this.counts.delete(key);
    };
  }

  /** Upstreams running for `key` now. */
  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** Every key with its count, e.g. for a stats object. */
  toRecord(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  /** Forgets every count (after the driver stopped everything at once, e.g. a simulated crash). */
  clear(): void {
    this.counts.clear();
  }
}
