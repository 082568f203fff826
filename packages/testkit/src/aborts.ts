import { RollcallError } from '@rollcall/core';
import { expect } from 'vitest';

/** How long an aborted call may take to reject (it must not wait for the network). */
const ABORT_DEADLINE_MS = 2000;

/**
 * Collects the unhandled rejections of this process from now on; `stop()` returns them. A call that
 * rejects somewhere inside with nobody listening crashes a process that runs Node's default
 * unhandled-rejection mode: zero is the only right count.
 */
export function trackUnhandledRejections(): { stop(): unknown[] } {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  return {
    stop() {
      process.off('unhandledRejection', listener);
      return seen;
    },
  };
}

/**
 * Expects `call` to reject with an error named `AbortError` (Rollcall's `AbortedError`, code
 * `ERR_ABORTED`) within a short deadline. `orUnavailable`: a call that failed for good with a
 * `BackendUnavailableError` before its signal aborted is fine too (nothing to wait for).
 */
export async function expectAborted(
  call: () => Promise<unknown>,
  label: string,
  orUnavailable = false,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), ABORT_DEADLINE_MS);
  });
  let outcome: unknown;
  try {
    outcome = await Promise.race([call().then((value) => ({ resolved: value })), hung]);
  } catch (error) {
    outcome = error;
  } finally {
    clearTimeout(timer);
  }
  expect(outcome, `${label}: still waiting ${ABORT_DEADLINE_MS} ms after its signal aborted`).not.toBe(
    'hung',
  );
  expect(outcome, `${label}: resolved instead of rejecting`).toBeInstanceOf(Error);
  const error = outcome as RollcallError;
  if (orUnavailable && error.code === 'ERR_BACKEND_UNAVAILABLE') return;
  expect(error, label).toBeInstanceOf(RollcallError);
  expect(error.name, `${label}: ${error.message}`).toBe('AbortError');
  expect(error.code, label).toBe('ERR_ABORTED');
}
