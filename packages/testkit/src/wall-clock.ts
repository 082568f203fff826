import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A wall clock a child process can be given and then stepped, as an NTP correction steps a
 * machine's clock, without touching the machine's. Start the child with {@link WallClock.execArgv}
 * and {@link WallClock.env}; `step(child, ms)` moves its `Date.now()` / `new Date()` by `ms`
 * (negative: backwards). `performance.now()` is not affected.
 */
export interface WallClock {
  /** Node arguments that preload the steppable clock: put them before the script. */
  readonly execArgv: string[];
  /** Environment variables the preload reads. Merge them into the child's environment. */
  readonly env: Record<string, string>;
  /** Moves the child's wall clock by `ms` (cumulative). */
  step(child: ChildProcess, ms: number): void;
  /** The total offset given so far. */
  readonly offsetMs: number;
}

/** The preload module (a plain ES module shipped with the testkit). */
export const WALL_CLOCK_PRELOAD = fileURLToPath(new URL('../preload/wall-clock.mjs', import.meta.url));

/** Makes a {@link WallClock} for one child process. */
export function steppableWallClock(): WallClock {
  const file = join(mkdtempSync(join(tmpdir(), 'rollcall-clock-')), 'offset');
  writeFileSync(file, '0');
  let offset = 0;
  return {
    execArgv: ['--import', WALL_CLOCK_PRELOAD],
    env: { ROLLCALL_WALL_CLOCK_FILE: file },
    get offsetMs() {
      return offset;
    },
    step(child, ms) {
      offset += ms;
      writeFileSync(file, String(offset));
      child.kill('SIGUSR2');
    },
  };
}
