import { sleep } from '@rollcall/core';

/**
 * Sleeps until the wall clock reaches `due` (ms epoch). Timers may fire a millisecond or two early
 * against `Date.now()`; the rate limits are promises ("never more than one request per interval"),
 * so this sleeps again for whatever is left. Rejects with `AbortedError` when `signal` aborts.
 */
export async function sleepUntil(due: number, signal: AbortSignal): Promise<void> {
  for (let left = due - Date.now(); left > 0; left = due - Date.now()) await sleep(Math.ceil(left), signal);
  if (signal.aborted) await sleep(0, signal);
}
