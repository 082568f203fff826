import { sleep } from '@rollcall/core/driver';

/**
 * Sleeps until the monotonic clock (`performance.now()`) reaches `due`: a wall-clock step (an NTP
 * correction) neither freezes nor hurries it. Timers may fire a millisecond or two early; the rate
 * limits are promises ("never more than one request per interval"), so this sleeps again for
 * whatever is left. Rejects with `AbortedError` when `signal` aborts.
 */
export async function sleepUntil(due: number, signal: AbortSignal): Promise<void> {
  for (let left = due - performance.now(); left > 0; left = due - performance.now())
    await sleep(Math.ceil(left), signal);
  if (signal.aborted) await sleep(0, signal);
}
