import {
  AbortedError,
  type Backend,
  ClosedError,
  type LockInfo,
  LockTimeoutError,
  RollcallError,
  ValidationError,
} from '@rollcall/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectAborted, trackUnhandledRejections } from './aborts.js';
import { uniqueService } from './discovery-contract.js';
import {
  badIds,
  badTtls,
  expectRefused,
  loneSurrogate,
  notOptions,
  notSignal,
  notString,
} from './hostile.js';
import { eventually } from './recorder.js';
import { type BaseHarness, suiteHooks } from './suite-hooks.js';

/** What a backend hands the lock compliance suite. */
export interface LockContractHarness extends BaseHarness {
  /** Makes `client` stop heartbeating without closing, like a killed process. */
  crash?(client: Backend): Promise<void>;
  /** Makes the backend unreachable for every client / brings it back. */
  outage?(): Promise<void>;
  restore?(): Promise<void>;
}

/** Timing and behaviour differences between backends. */
export interface LockCapabilities {
  /** TTL used by the tests, at least the backend's minimum. Default 2. */
  ttlSeconds?: number;
  /** Longest hand-off from a release to the next waiter, in ms. Default 2000. */
  handoffMs?: number;
  /** Longest time past the TTL for a dead holder's lock to pass on, in ms. Default 2000. */
  expiryGraceMs?: number;
  /** Increments in the mutual-exclusion test (spread over 5 clients). Default 100. */
  iterations?: number;
  /** The harness has `crash`. Default false. */
  crash?: boolean;
  /** The harness has `outage` and `restore`. Default false. */
  outage?: boolean;
  /** Runs of the good-input (election value) round-trip property against the backend. Default 5. */
  propertyRuns?: number;
  /** The backend's `locks.list()` enumerates holders: run the listing test. Default false. */
  list?: boolean;
  /** What `list()` names as a lock's holder on this backend (any string by default). */
  lockHolder?: RegExp | string;
}

/** The listing extension of Rollcall's lock service (`ManagedLockService`). */
type Listing = { listable: boolean; list(): Promise<LockInfo[]> };

/** Lock options with exactly one bad field, and that field. */
function badLockOptions(withTimeout: boolean) {
  const cases = [
    notOptions.map((input) => ({ input, field: 'options', label: 'options not an object' })),
    badTtls().map((ttlSeconds) => ({ input: { ttlSeconds }, field: 'options.ttlSeconds', label: 'bad ttl' })),
  ];
  if (withTimeout)
    cases.push(
      fc
        .oneof(fc.constantFrom(-1, Number.NaN, '5', null, Number.NEGATIVE_INFINITY), fc.integer({ max: -1 }))
        .map((timeoutMs) => ({ input: { timeoutMs }, field: 'options.timeoutMs', label: 'bad timeout' })),
      notSignal.map((signal) => ({ input: { signal }, field: 'options.signal', label: 'not a signal' })),
    );
  return fc.oneof(...cases);
}

/** The lock and leader-election compliance suite every backend runs. */
export function describeLockContract(
  name: string,
  harness: () => LockContractHarness | Promise<LockContractHarness>,
  capabilities: LockCapabilities = {},
): void {
  const ttl = capabilities.ttlSeconds ?? 2;
  const handoffMs = capabilities.handoffMs ?? 2000;
  const graceMs = capabilities.expiryGraceMs ?? 2000;
  const iterations = capabilities.iterations ?? 100;
  const propertyRuns = capabilities.propertyRuns ?? 5;

  describe(`${name}: lock contract`, () => {
    const suite = suiteHooks(harness);
    const { client, elapse } = suite;
    const lockName = () => uniqueService('lock');

    it('refuses bad names, TTLs and timeouts with a ValidationError naming the field', async () => {
      const { locks } = await client();
      for (const bad of ['a/b', '..', '', 'x'.repeat(129), 'sp ace']) {
        const error = await locks.acquire(bad).catch((e: unknown) => e);
        expect(error, JSON.stringify(bad)).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).field).toBe('name');
        await expect(locks.campaign(bad, 'v')).rejects.toMatchObject({ field: 'election' });
      }
      await expect(locks.acquire(lockName(), { ttlSeconds: 1 })).rejects.toMatchObject({
        field: 'options.ttlSeconds',
      });
      await expect(locks.acquire(lockName(), { timeoutMs: -5 })).rejects.toMatchObject({
        field: 'options.timeoutMs',
      });
    });

    it('bad input (property): any bad name, ttl, timeout, signal, options, function or election value is a ValidationError naming the field, before any network call', async () => {
      const { locks } = await suite.unreachable();
      const ok = lockName();
      const work = async () => 'done';
      await fc.assert(
        fc.asyncProperty(badIds(), async (bad) => {
          const name = bad as string;
          await expectRefused(() => locks.acquire(name), 'name', 'acquire');
          await expectRefused(() => locks.tryAcquire(name), 'name', 'tryAcquire');
          await expectRefused(() => locks.withLock(name, work), 'name', 'withLock');
          await expectRefused(() => locks.campaign(name, 'v'), 'election', 'campaign');
          await expectRefused(() => locks.leader(name), 'election', 'leader');
        }),
        { numRuns: 80 },
      );
      await fc.assert(
        fc.asyncProperty(badLockOptions(true), async ({ input, field, label }) => {
          await expectRefused(() => locks.acquire(ok, input as never), field, `acquire: ${label}`);
          await expectRefused(() => locks.withLock(ok, work, input as never), field, `withLock: ${label}`);
        }),
        { numRuns: 80 },
      );
      await fc.assert(
        fc.asyncProperty(badLockOptions(false), async ({ input, field, label }) => {
          await expectRefused(() => locks.tryAcquire(ok, input as never), field, `tryAcquire: ${label}`);
          await expectRefused(() => locks.campaign(ok, 'v', input as never), field, `campaign: ${label}`);
        }),
        { numRuns: 60 },
      );
      await fc.assert(
        fc.asyncProperty(notSignal, async (signal) => {
          await expectRefused(
            () => locks.campaign(ok, 'v', { signal } as never),
            'options.signal',
            'campaign signal',
          );
        }),
        { numRuns: 20 },
      );
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(notString, loneSurrogate, fc.string({ minLength: 4097, maxLength: 4200 })),
          async (value) => {
            await expectRefused(() => locks.campaign(ok, value as string), 'value', 'campaign value');
          },
        ),
        { numRuns: 40 },
      );
      for (const fn of [undefined, null, 42, 'f', {}])
        await expectRefused(() => locks.withLock(ok, fn as never), 'fn', `withLock fn ${String(fn)}`);
    });

    it('timeoutMs beyond what a timer can wait (>= 2^31 ms, Infinity) waits instead of giving up at once', async () => {
      const [holder, waiter] = [await client(), await client()];
      const lock = lockName();
      for (const timeoutMs of [2 ** 31, Number.MAX_VALUE, Number.POSITIVE_INFINITY]) {
        const free = await waiter.locks.acquire(lockName(), { ttlSeconds: ttl, timeoutMs });
        await free.release();
      }
      const held = await holder.locks.acquire(lock, { ttlSeconds: ttl });
      const controller = new AbortController();
      const outcome = waiter.locks
        .acquire(lock, { ttlSeconds: ttl, timeoutMs: 2 ** 31, signal: controller.signal })
        .then(
          () => 'acquired',
          (e: unknown) => e,
        );
      const early = await Promise.race([
        outcome,
        new Promise((r) => setTimeout(() => r('still waiting'), 300)),
      ]);
      expect(early).toBe('still waiting');
      controller.abort();
      expect(await outcome).toBeInstanceOf(AbortedError);
      await held.release();
    });

    it('election values round-trip exactly, up to 4096 characters of any well-formed unicode', async () => {
      const [a, b] = [await client(), await client()];
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.string({ unit: 'grapheme', maxLength: 30 }),
            fc.string({ unit: 'binary', maxLength: 30 }).filter((v) => !/\p{Cs}/u.test(v)),
            fc.constantFrom('', '\u0000', 'x'.repeat(4096), '😀'.repeat(2048), '東'.repeat(4096)),
          ),
          async (value) => {
            const election = lockName();
            const leadership = await a.locks.campaign(election, value, { ttlSeconds: ttl });
            try {
              expect(await b.locks.leader(election)).toBe(value);
            } finally {
              await leadership.resign();
            }
          },
        ),
        { numRuns: propertyRuns, examples: [['😀'.repeat(2048)], ['\u0000東'.repeat(2048)]] },
      );
    });

    it('many waits on one client (15 on one lock, 15 other locks held at once) print no listener-leak warning', async () => {
      const warnings: string[] = [];
      const onWarning = (warning: Error) => void warnings.push(`${warning.name}: ${warning.message}`);
      process.on('warning', onWarning);
      try {
        const a = await client();
        const lock = lockName();
        const first = await a.locks.acquire(lock, { ttlSeconds: ttl });
        const queued: string[] = [];
        const waits = Array.from({ length: 15 }, (_, i) =>
          a.locks.withLock(lock, async () => void queued.push(String(i)), { ttlSeconds: ttl }),
        );
        const others = await Promise.all(
          Array.from({ length: 15 }, () => a.locks.acquire(lockName(), { ttlSeconds: ttl })),
        );
        await first.release();
        await Promise.all(waits);
        await Promise.all(others.map((l) => l.release()));
        expect(queued).toHaveLength(15);
        // Warnings are emitted on the next tick.
        await new Promise((resolve) => setImmediate(resolve));
        expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('at most one holder: concurrent withLock increments are exact, fencing tokens strictly increase', async () => {
      const workers = await Promise.all(Array.from({ length: 5 }, () => client()));
      const lock = lockName();
      const counterKey = `rc-test/${lock}/counter`;
      await workers[0]!.kv.put(counterKey, '0');
      let active = 0;
      let overlaps = 0;
      const tokens: bigint[] = [];
      await Promise.all(
        workers.map(async (w, i) => {
          for (let n = i; n < iterations; n += workers.length) {
            await w.locks.withLock(
              lock,
              async (lease) => {
                active += 1;
                if (active > 1) overlaps += 1;
                tokens.push(lease.fencingToken);
                const value = Number(await w.kv.get(counterKey));
                await w.kv.put(counterKey, String(value + 1));
                active -= 1;
              },
              { ttlSeconds: ttl },
            );
          }
        }),
      );
      expect(overlaps).toBe(0);
      expect(await workers[0]!.kv.get(counterKey)).toBe(String(iterations));
      expect(tokens).toHaveLength(iterations);
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]! > tokens[i - 1]!, `token ${i}`).toBe(true);
    });

    if (capabilities.list)
      it('list: holders with their fencing tokens, waiters and election leaders, seen from any client; released ones are gone', async () => {
        const [a, b, c] = [await client(), await client(), await client()];
        const listing = (x: Backend) => x.locks as unknown as Listing;
        // Other tests share the server: only this test's names count.
        const [lock, election] = [lockName(), lockName()];
        const mine = async () =>
          (await listing(c).list()).filter((l) => l.name === lock || l.name === election);
        expect(listing(c).listable).toBe(true);
        expect(await mine()).toEqual([]);
        const lease = await a.locks.acquire(lock, { ttlSeconds: ttl });
        let queued!: () => void;
        const isQueued = new Promise<void>((r) => {
          queued = r;
        });
        const waiting = b.locks.acquire(lock, { ttlSeconds: ttl, onQueued: queued } as never);
        await isQueued;
        const leadership = await b.locks.campaign(election, 'node-b', { ttlSeconds: ttl });
        const holder = capabilities.lockHolder ?? expect.any(String);
        expect(await mine()).toEqual([
          {
            kind: 'lock',
            name: lock,
            holder: holder instanceof RegExp ? expect.stringMatching(holder) : holder,
            token: lease.fencingToken,
            waiters: 1,
          },
          { kind: 'election', name: election, holder: 'node-b', token: expect.any(BigInt), waiters: 0 },
        ]);
        await lease.release();
        const next = await waiting;
        const after = await mine();
        expect(after[0]).toMatchObject({ name: lock, token: next.fencingToken, waiters: 0 });
        expect((after[0]?.token ?? 0n) > lease.fencingToken).toBe(true);
        await next.release();
        await leadership.resign();
        expect(await mine()).toEqual([]);
        await c.close();
        await expect(listing(c).list()).rejects.toBeInstanceOf(ClosedError);
      });

    it('waiters are served in arrival order', async () => {
      const [a, b, c, d] = await Promise.all([client(), client(), client(), client()]);
      const lock = lockName();
      const first = await a!.locks.acquire(lock, { ttlSeconds: ttl });
      const order: string[] = [];
      const waits: Promise<void>[] = [];
      for (const [label, who] of [
        ['b', b!],
        ['c', c!],
        ['d', d!],
      ] as const) {
        let queued!: () => void;
        const isQueued = new Promise<void>((r) => {
          queued = r;
        });
        waits.push(
          who.locks.acquire(lock, { ttlSeconds: ttl, onQueued: queued } as never).then(async (lease) => {
            order.push(label);
            await lease.release();
          }),
        );
        await isQueued;
      }
      await first.release();
      await Promise.all(waits);
      expect(order).toEqual(['b', 'c', 'd']);
    });

    it('tryAcquire takes a free lock and answers undefined for a held one; release is idempotent and ends the signal', async () => {
      const [a, b] = [await client(), await client()];
      const lock = lockName();
      const lease = await a.locks.tryAcquire(lock, { ttlSeconds: ttl });
      expect(lease).toBeDefined();
      expect(lease!.name).toBe(lock);
      expect(lease!.signal.aborted).toBe(false);
      expect(await b.locks.tryAcquire(lock, { ttlSeconds: ttl })).toBeUndefined();
      await lease!.release();
      await lease!.release();
      expect(lease!.signal.aborted).toBe(true);
      {
        await using again = await eventually(() => b.locks.tryAcquire(lock, { ttlSeconds: ttl }), {
          timeoutMs: handoffMs,
        });
        expect(again.fencingToken > lease!.fencingToken).toBe(true);
      }
      expect(
        await eventually(() => a.locks.tryAcquire(lock, { ttlSeconds: ttl }), { timeoutMs: handoffMs }),
      ).toBeDefined();
    });

    it('aborting: tryAcquire, leader, withLock and campaign given an aborted signal reject with an AbortError and take nothing', async () => {
      const unhandled = trackUnhandledRejections();
      const aborted = AbortSignal.abort();
      const [a, b] = [await client(), await client()];
      const lock = lockName();
      await expectAborted(() => a.locks.tryAcquire(lock, { signal: aborted }), 'tryAcquire');
      await expectAborted(() => a.locks.leader(lock, { signal: aborted }), 'leader');
      let ran = false;
      await expectAborted(
        () =>
          a.locks.withLock(
            lock,
            async () => {
              ran = true;
            },
            { signal: aborted },
          ),
        'withLock',
      );
      expect(ran).toBe(false);
      await expectAborted(() => a.locks.campaign(lock, 'v', { signal: aborted }), 'campaign');
      // Nothing was taken or left queued: another client gets the lock at once.
      const lease = await b.locks.tryAcquire(lock, { ttlSeconds: ttl });
      expect(lease).toBeDefined();
      await lease!.release();
      expect(unhandled.stop()).toEqual([]);
    });

    it('any ttl the contract allows (2 s and up) works on every backend; the lease says the ttl in force', async () => {
      const a = await client();
      for (const asked of [2, 5]) {
        const lease = await a.locks.tryAcquire(lockName(), { ttlSeconds: asked });
        expect(lease, `ttl ${asked}`).toBeDefined();
        // The one asked for, or the backend's minimum where it cannot do less.
        expect(lease!.ttlSeconds).toBeGreaterThanOrEqual(asked);
        await lease!.release();
        const leadership = await a.locks.campaign(lockName(), 'v', { ttlSeconds: asked });
        expect(leadership.ttlSeconds).toBe(lease!.ttlSeconds);
        await leadership.resign();
      }
      const long = await a.locks.acquire(lockName(), { ttlSeconds: 60 });
      expect(long.ttlSeconds).toBe(60);
      await long.release();
    });

    it('timeoutMs gives a LockTimeoutError and leaves nothing behind; so does an aborted signal', async () => {
      const [a, b, c] = [await client(), await client(), await client()];
      const lock = lockName();
      const held = await a.locks.acquire(lock, { ttlSeconds: ttl });
      const started = Date.now();
      const timeout = await b.locks
        .acquire(lock, { ttlSeconds: ttl, timeoutMs: 300 })
        .catch((e: unknown) => e);
      expect(timeout).toBeInstanceOf(LockTimeoutError);
      expect((timeout as LockTimeoutError).code).toBe('ERR_LOCK_TIMEOUT');
      expect(timeout).toBeInstanceOf(RollcallError);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      const controller = new AbortController();
      const aborted = c.locks
        .acquire(lock, { ttlSeconds: ttl, signal: controller.signal })
        .catch((e: unknown) => e);
      controller.abort();
      expect(await aborted).toBeInstanceOf(AbortedError);
      await held.release();
      // Had a withdrawn waiter stayed queued, the lock would go to it and this would fail.
      const next = await eventually(() => c.locks.tryAcquire(lock, { ttlSeconds: ttl }), {
        timeoutMs: handoffMs,
      });
      expect(next.fencingToken > held.fencingToken).toBe(true);
      await next.release();
    });

    it('leader election: the first candidate leads, leader() agrees everywhere, resign hands over at once', async () => {
      const candidates = await Promise.all([client(), client(), client()]);
      const election = lockName();
      expect(await candidates[0]!.locks.leader(election)).toBeUndefined();
      const first = await candidates[0]!.locks.campaign(election, 'node-0', { ttlSeconds: ttl });
      const second = candidates[1]!.locks.campaign(election, 'node-1', { ttlSeconds: ttl });
      for (const c of candidates) expect(await c.locks.leader(election)).toBe('node-0');
      let secondLeads = false;
      void second.then(() => {
        secondLeads = true;
      });
      await eventually(async () => (await candidates[2]!.locks.leader(election)) === 'node-0');
      expect(secondLeads).toBe(false);
      await first.resign();
      expect(first.signal.aborted).toBe(true);
      const leadership = await second;
      for (const c of candidates)
        await eventually(async () => (await c.locks.leader(election)) === 'node-1', { timeoutMs: handoffMs });
      await leadership.resign();
    });

    if (capabilities.crash) {
      it('a holder that dies frees the lock within its ttl; the next holder has a greater token', async () => {
        const h = suite.harness;
        if (!h.crash) throw new Error("capability 'crash' declared but the harness has no crash hook");
        const [a, b] = [await client(), await client()];
        const lock = lockName();
        const held = await a.locks.acquire(lock, { ttlSeconds: ttl });
        const waiting = b.locks.acquire(lock, { ttlSeconds: ttl });
        await h.crash(a);
        const crashedAt = Date.now();
        await elapse(ttl * 1000);
        const next = await eventually(
          () => Promise.race([waiting, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))]),
          {
            timeoutMs: graceMs + (h.elapse ? 1000 : 0),
          },
        );
        expect(Date.now() - crashedAt).toBeLessThanOrEqual(ttl * 1000 + graceMs + 500);
        expect(next.fencingToken > held.fencingToken).toBe(true);
        await next.release();
      });

      it('a leader that dies is replaced within its ttl, and leader() agrees everywhere', async () => {
        const h = suite.harness;
        if (!h.crash) throw new Error("capability 'crash' declared but the harness has no crash hook");
        const [a, b, c] = [await client(), await client(), await client()];
        const election = lockName();
        await a.locks.campaign(election, 'a', { ttlSeconds: ttl });
        const bLeads = b.locks.campaign(election, 'b', { ttlSeconds: ttl });
        await h.crash(a);
        await elapse(ttl * 1000);
        await eventually(
          () => Promise.race([bLeads, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))]),
          { timeoutMs: graceMs + 1000 },
        );
        expect(await b.locks.leader(election)).toBe('b');
        expect(await c.locks.leader(election)).toBe('b');
      });
    }

    if (capabilities.outage) {
      it('a holder that loses its lease sees its signal abort; the next holder has a greater token', async () => {
        const h = suite.harness;
        if (!h.outage || !h.restore)
          throw new Error("capability 'outage' declared but the harness has no outage/restore hooks");
        const [a, b] = [await client(), await client()];
        const lock = lockName();
        const held = await a.locks.acquire(lock, { ttlSeconds: ttl });
        await h.outage();
        try {
          await elapse(ttl * 1000 + 1500);
        } finally {
          await h.restore();
        }
        await eventually(() => held.signal.aborted, {
          timeoutMs: graceMs + ttl * 2000,
          message: 'the lost lock did not abort its signal',
        });
        const next = await eventually(() => b.locks.tryAcquire(lock, { ttlSeconds: ttl }), {
          timeoutMs: handoffMs + ttl * 1000,
        });
        expect(next.fencingToken > held.fencingToken).toBe(true);
        await next.release();
        await held.release();
      });
    }
  });
}
