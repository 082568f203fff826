import { AbortedError } from './errors.js';

/**
 * At most `size` holders at once; the others wait in arrival order. `enter` resolves with the
 * function that leaves; a wait whose signal aborts leaves the queue and rejects with AbortedError.
 */
export class Gate {
  private inside = 0;
  private readonly waiting: { admit: () => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  constructor(private readonly size: number) {}

  enter(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    const leave = this.tryEnter();
    if (leave) return Promise.resolve(leave);
    return new Promise((resolve, reject) => {
      const entry: (typeof this.waiting)[number] = { admit: () => resolve(this.leave()), signal };
      if (signal) {
        entry.onAbort = () => {
          const at = this.waiting.indexOf(entry);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(new AbortedError(signal.reason));
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.waiting.push(entry);
    });
  }

  /**
   * Enters at once if there is room and nobody is waiting, returning the function that leaves;
   * otherwise returns `undefined` and changes nothing (then wait in {@link enter}). For hot paths
   * that should not wait a microtask when the gate is open.
   */
  tryEnter(): (() => void) | undefined {
    if (this.inside >= this.size || this.waiting.length > 0) return undefined;
    this.inside += 1;
    return this.leave();
  }

  /** Requests waiting for their turn (diagnostics, tests). */
  get queued(): number {
    return this.waiting.length;
  }

  private leave(): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.waiting.shift();
      if (!next) {
        this.inside -= 1;
        return;
      }
      if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort);
      next.admit();
    };
  }
}
