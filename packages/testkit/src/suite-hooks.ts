import type { Backend } from '@rollcall/core';
import { afterAll, afterEach, beforeAll } from 'vitest';

/** The part every compliance-suite harness has. */
export interface BaseHarness {
  /** A new client, as a separate process would make it. The suite closes the clients it makes. */
  newClient(): Promise<Backend>;
  /**
   * A client of a backend that cannot be reached (a closed port, a store in outage): bad-input
   * tests run on it, so a call that tried the network would fail with `BackendUnavailableError`
   * or hang instead of being refused. Without it they run on `newClient()`.
   */
  unreachableClient?(): Promise<Backend>;
  /** Lets `ms` of backend time pass (advance an injected clock, apply expiry). Without it the suite waits in real time. */
  elapse?(ms: number): Promise<void>;
  /** Runs after all tests (stop servers). */
  teardown?(): Promise<void>;
}

/** What a suite gets from {@link suiteHooks}. */
export interface SuiteContext<H extends BaseHarness> {
  /** The resolved harness (available inside tests). */
  readonly harness: H;
  /** A new client, closed after the current test. */
  client(): Promise<Backend>;
  /** A client of an unreachable backend (see {@link BaseHarness.unreachableClient}), closed after the current test. */
  unreachable(): Promise<Backend>;
  /** Lets `ms` pass: through the harness clock when it has one, else in real time. */
  elapse(ms: number): Promise<void>;
}

/**
 * Registers the hooks every suite shares: resolve the harness before all tests, close the
 * clients each test made after it, tear down after all.
 */
export function suiteHooks<H extends BaseHarness>(make: () => H | Promise<H>): SuiteContext<H> {
  let resolved: H | undefined;
  const clients: Backend[] = [];
  beforeAll(async () => {
    resolved = await make();
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await resolved?.teardown?.();
  });
  const harness = (): H => {
    if (!resolved) throw new Error('the harness is not ready (used outside a test?)');
    return resolved;
  };
  return {
    get harness() {
      return harness();
    },
    async client() {
      const c = await harness().newClient();
      clients.push(c);
      return c;
    },
    async unreachable() {
      const h = harness();
      const c = h.unreachableClient ? await h.unreachableClient() : await h.newClient();
      clients.push(c);
      return c;
    },
    async elapse(ms) {
      const h = harness();
      if (h.elapse) await h.elapse(ms);
      else await new Promise((r) => setTimeout(r, ms));
    },
  };
}
