import { type KeyValueSource, type Logger } from '@rollcall/core';
import { describeValue } from '@rollcall/core/driver';
import { isPhase, MIGRATION_PHASES, type MigrationPhase } from './phases.js';

/**
 * Follows the phase key on `to`'s key/value store: every client of a fleet watches it, so one
 * write moves them all, without restarts. A missing key, or a value that is not a phase, keeps
 * the phase the client is in (the configured one until a valid value was read) and says why.
 */
export class PhaseFollower {
  private current: MigrationPhase;
  private isSettled = false;
  private settleNow!: () => void;
  private readonly settled: Promise<void>;
  private watch: Disposable | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The last value seen, to report each bad value once. */
  private lastValue: string | undefined;
  private readonly waiters = new Set<{ phase: MigrationPhase; resolve: () => void }>();

  constructor(
    private readonly kv: KeyValueSource,
    /** The normalized phase key (no leading `/`). */
    readonly key: string,
    private readonly configured: MigrationPhase,
    private readonly logger: Logger,
    private readonly onPhase: (next: MigrationPhase, previous: MigrationPhase) => void,
  ) {
    this.current = configured;
    this.settled = new Promise((resolve) => {
      this.settleNow = resolve;
    });
  }

  get phase(): MigrationPhase {
    return this.current;
  }

  /** True once the key was read (or could not be, and the configured phase applies). */
  get known(): boolean {
    return this.isSettled;
  }

  /**
   * Starts watching. The phase is known at the first answer; if `to` cannot answer within
   * `timeoutMs`, or its first read fails, the configured phase applies until it can.
   */
  start(timeoutMs: number): void {
    const watch = this.kv.watchPrefix(this.key);
    this.watch = watch;
    void (async () => {
      try {
        for await (const event of watch) {
          if (event.type === 'sync') this.read(event.entries.get(this.key), event.entries.has(this.key));
          else if (event.type === 'change') {
            if (event.put.has(this.key)) this.read(event.put.get(this.key), true);
            else if (event.deleted.includes(this.key)) this.read(undefined, false);
          } else this.logger.debug({ phase: this.current }, 'phase key unreachable; keeping the phase');
        }
      } catch (error) {
        this.giveUp(error);
      }
    })();
    this.kv.get(this.key).catch((error: unknown) => this.giveUp(error));
    this.timer = setTimeout(() => this.giveUp(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    this.timer.unref();
  }

  /** Resolves once the phase is known (see {@link start}). */
  ready(): Promise<void> {
    return this.settled;
  }

  /** Resolves once this client is in `phase` (or after `timeoutMs`, resolving `false`). */
  async reach(phase: MigrationPhase, timeoutMs: number): Promise<boolean> {
    if (this.current === phase) return true;
    let waiter: { phase: MigrationPhase; resolve: () => void } | undefined;
    let timer: NodeJS.Timeout | undefined;
    const reached = await Promise.race([
      new Promise<boolean>((resolve) => {
        waiter = { phase, resolve: () => resolve(true) };
        this.waiters.add(waiter);
      }),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (waiter) this.waiters.delete(waiter);
    return reached;
  }

  /** Moves to `phase` now (after this client wrote the key itself). */
  adopt(phase: MigrationPhase): void {
    this.set(phase);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watch?.[Symbol.dispose]();
    this.settle();
  }

  private read(value: string | undefined, present: boolean): void {
    if (this.closed) return;
    const changed = value !== this.lastValue;
    this.lastValue = value;
    if (!present || value === undefined) {
      if (changed || !this.isSettled)
        this.logger.info(
          {},
          this.isSettled
            ? `phase key '${this.key}' was deleted; staying in '${this.current}'`
            : `phase key '${this.key}' is not set; following the configured phase '${this.current}'`,
        );
    } else {
      const phase = value.trim();
      if (isPhase(phase)) this.set(phase);
      else if (changed)
        this.logger.warn(
          {},
          `phase key '${this.key}' holds ${describeValue(value)}, not a phase (${MIGRATION_PHASES.join(', ')}); staying in '${this.current}'`,
        );
    }
    this.settle();
  }

  private set(phase: MigrationPhase): void {
    if (phase !== this.current) {
      const previous = this.current;
      this.current = phase;
      this.onPhase(phase, previous);
    }
    for (const waiter of [...this.waiters]) if (waiter.phase === phase) waiter.resolve();
  }

  private giveUp(error: unknown): void {
    if (this.isSettled || this.closed) return;
    this.logger.warn(
      {},
      `cannot read phase key '${this.key}' yet (${error instanceof Error ? error.message : String(error)}); following the configured phase '${this.configured}' until it can`,
    );
    this.settle();
  }

  private settle(): void {
    if (this.isSettled) return;
    this.isSettled = true;
    clearTimeout(this.timer);
    this.settleNow();
  }
}
