import type { TimerHandle, Timers } from '../src/driver.js';

/** A fake clock with timers, advanced by the test. */
export class FakeTimers implements Timers {
  time = 0;
  private seq = 0;
  private queue: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = [];
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.queue.push(timer);
    return timer as unknown as TimerHandle;
  }
  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) (handle as unknown as { cancelled: boolean }).cancelled = true;
  }
  /** Runs every timer due within `ms`, in order, letting promise chains settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await settle();
      this.queue = this.queue.filter((t) => !t.cancelled);
      let next: (typeof this.queue)[number] | undefined;
      for (const t of this.queue)
        if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      if (!next) break;
      this.queue.splice(this.queue.indexOf(next), 1);
      this.time = next.at;
      next.fn();
    }
    this.time = end;
    await settle();
  }
}

/** Lets every pending promise reaction run (microtasks, and those they queue). */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
