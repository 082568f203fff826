import { BackendUnavailableError, type KvEvent, ValidationError } from '@rollcall/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectAborted, trackUnhandledRejections } from './aborts.js';
import { uniqueService } from './discovery-contract.js';
import {
  badKeys,
  badPrefixes,
  badValues,
  badWatchOptions,
  expectRefused,
  goodKeys,
  goodValues,
} from './hostile.js';
import { eventually, Recorder } from './recorder.js';
import { type BaseHarness, suiteHooks } from './suite-hooks.js';

/** What a backend hands the key/value compliance suite. */
export interface KeyValueContractHarness extends BaseHarness {
  /** Makes the backend unreachable for every client (with `restore`: the outage test). */
  outage?(): Promise<void>;
  restore?(): Promise<void>;
}

/** Timing and behaviour differences between backends. */
export interface KeyValueCapabilities {
  /** Longest time from a write to a watcher seeing it, in ms. Default 2000. */
  propagationMs?: number;
  /** Longest time from the end of an outage to a fresh `sync`, in ms. Default 15000. */
  recoveryMs?: number;
  /** The harness has `outage` and `restore`. Default false. */
  outage?: boolean;
  /** Every write is its own `change` event (etcd, memory); false for rate-limited watchers that may merge writes. Default true. */
  eventPerWrite?: boolean;
  /**
   * The backend's own keys as kv keys (as its `KvDriver.reservedKeys`: an entry ending with `/`
   * is a subtree, any other one exact key). The suite checks that kv calls refuse them in any
   * spelling, and that listings and watches of wider prefixes never show them while the backend
   * holds registrations, locks and leaderships. Default none.
   */
  reservedKeys?: readonly string[];
  /** Runs of the good-input round-trip property against the backend. Default 10. */
  propertyRuns?: number;
}

const changes = (events: KvEvent[]) =>
  events.filter((e): e is Extract<KvEvent, { type: 'change' }> => e.type === 'change');

/** The key/value compliance suite every backend runs. */
export function describeKeyValueContract(
  name: string,
  harness: () => KeyValueContractHarness | Promise<KeyValueContractHarness>,
  capabilities: KeyValueCapabilities = {},
): void {
  const propagationMs = capabilities.propagationMs ?? 2000;
  const recoveryMs = capabilities.recoveryMs ?? 15_000;
  const eventPerWrite = capabilities.eventPerWrite ?? true;
  const reserved = capabilities.reservedKeys ?? [];
  const propertyRuns = capabilities.propertyRuns ?? 10;

  describe(`${name}: key/value contract`, () => {
    const suite = suiteHooks(harness);
    const { client } = suite;
    const root = () => `rc-test/${uniqueService('kv')}/`;

    it('aborting: every call given an aborted signal rejects at once with an AbortError and writes nothing; no rejection goes unhandled', async () => {
      const unhandled = trackUnhandledRejections();
      const aborted = AbortSignal.abort();
      const base = root();
      for (const kv of [(await suite.unreachable()).kv, (await client()).kv]) {
        await expectAborted(() => kv.get(`${base}k`, { signal: aborted }), 'get');
        await expectAborted(() => kv.getAll(base, { signal: aborted }), 'getAll');
        await expectAborted(() => kv.put(`${base}k`, 'v', { signal: aborted }), 'put');
        await expectAborted(() => kv.delete(`${base}k`, { signal: aborted }), 'delete');
      }
      const offline = (await suite.unreachable()).kv;
      await expectAborted(
        () => offline.get(`${base}k`, { signal: AbortSignal.timeout(100) }),
        'get mid-call',
        true,
      );
      expect(await (await client()).kv.get(`${base}k`)).toBeUndefined();
      expect(unhandled.stop()).toEqual([]);
    });

    it('bad input (property): any bad key, prefix, value or watch option is a ValidationError naming the field, before any network call', async () => {
      const { kv } = await suite.unreachable();
      await fc.assert(
        fc.asyncProperty(badKeys(), async (key) => {
          await expectRefused(() => kv.get(key as string), 'key', 'get');
          await expectRefused(() => kv.put(key as string, 'v'), 'key', 'put');
          await expectRefused(() => kv.delete(key as string), 'key', 'delete');
        }),
        { numRuns: 150 },
      );
      await fc.assert(
        fc.asyncProperty(badPrefixes(), async (prefix) => {
          await expectRefused(() => kv.getAll(prefix as string), 'prefix', 'getAll');
          await expectRefused(() => kv.watchPrefix(prefix as string), 'prefix', 'watchPrefix');
        }),
        { numRuns: 100 },
      );
      await fc.assert(
        fc.asyncProperty(badValues(), async (value) => {
          await expectRefused(() => kv.put('rc-test/k', value as string), 'value', 'put value');
        }),
        { numRuns: 40 },
      );
      await fc.assert(
        fc.asyncProperty(badWatchOptions(), async ({ input, field, label }) => {
          await expectRefused(() => kv.watchPrefix('rc-test/', input as never), field, label);
        }),
        { numRuns: 30 },
      );
    });

    it('good input (property): keys and values at the limits (unicode, control characters, 512-character keys, 512 KiB values) round-trip exactly', async () => {
      const [a, b] = [await client(), await client()];
      const p = root();
      await fc.assert(
        fc.asyncProperty(goodKeys(p), goodValues(), async (key, value) => {
          await a.kv.put(key, value);
          expect(await b.kv.get(key)).toBe(value);
          expect((await b.kv.getAll(key)).get(key.replace(/^\//, ''))).toBe(value);
          await a.kv.delete(key);
          expect(await b.kv.get(key)).toBeUndefined();
        }),
        {
          numRuns: propertyRuns,
          // The limits themselves: a 512-character key (multi-byte), a value of exactly 512 KiB.
          examples: [
            [`${p}${'東'.repeat(512 - p.length)}`, 'a'.repeat(512 * 1024)],
            [`${p}${'é'.repeat(512 - p.length)}`, `${'€'.repeat(174_762)}xy`],
          ],
        },
      );
    });

    if (reserved.length > 0) {
      it("the backend's own keys (registry, locks, elections) are refused in any spelling and never listed or watched", async () => {
        const a = await client();
        const { kv } = a;
        for (const r of reserved) {
          const inside = r.endsWith('/') ? [`${r}x`, `${r}x/y`, `/${r}x`] : [r, `/${r}`];
          for (const key of inside) {
            await expectRefused(() => kv.put(key, 'forged'), 'key', `put ${key}`);
            await expectRefused(() => kv.get(key), 'key', `get ${key}`);
            await expectRefused(() => kv.delete(key), 'key', `delete ${key}`);
          }
          for (const prefix of [r, `/${r}`, `${r}x`]) {
            await expectRefused(() => kv.getAll(prefix), 'prefix', `getAll ${prefix}`);
            await expectRefused(() => kv.watchPrefix(prefix), 'prefix', `watchPrefix ${prefix}`);
          }
          // Tricks that would normalize into the subtree are refused as malformed keys.
          for (const trick of [`x/../${r}x`, `./${r}x`, `${r.replace('/', '//')}x`])
            await expectRefused(() => kv.put(trick, 'forged'), 'key', `put ${trick}`);
        }
        // With a registration, a held lock and a leadership in the backend, the widest listing and
        // watch show none of their keys.
        const service = uniqueService('layout');
        await a.discovery.register({ id: 'i1', service, host: '127.0.0.1', port: 80 }, { ttlSeconds: 30 });
        const lease = await a.locks.acquire(uniqueService('layout-lock'));
        const leadership = await a.locks.campaign(uniqueService('layout-election'), 'me');
        const ownKey = (key: string) =>
          reserved.some((r) => (r.endsWith('/') ? key.startsWith(r) : key === r));
        const listed = [...(await kv.getAll('')).keys()];
        expect(listed.filter(ownKey)).toEqual([]);
        const everything = kv.watchPrefix('');
        const watch = new Recorder(everything);
        const first = await watch.next(() => true, { timeoutMs: propagationMs });
        expect(first.type === 'sync' && [...first.entries.keys()].filter(ownKey)).toEqual([]);
        // Lock traffic after the watch started is not delivered either; a config write is.
        const second = await a.locks.acquire(uniqueService('layout-lock'));
        await second.release();
        const marker = `${root()}marker`;
        await kv.put(marker, 'm');
        await watch.next((e) => e.type === 'change' && e.put.has(marker), { timeoutMs: propagationMs * 2 });
        for (const e of watch.events) {
          if (e.type === 'change') expect([...e.put.keys(), ...e.deleted].filter(ownKey)).toEqual([]);
        }
        everything[Symbol.dispose]();
        await lease.release();
        await leadership.resign();
      });
    }

    it('get, put, getAll and delete round-trip values exactly', async () => {
      const { kv } = await client();
      const p = root();
      expect(await kv.get(`${p}missing`)).toBeUndefined();
      const values = {
        plain: 'debug',
        json: '{"a":[1,2,{"b":null}]}',
        unicode: 'zürich ✓ 東京',
        empty: '',
        spaces: '  x  ',
      };
      for (const [k, v] of Object.entries(values)) await kv.put(`${p}app/${k}`, v);
      for (const [k, v] of Object.entries(values)) expect(await kv.get(`${p}app/${k}`)).toBe(v);
      await kv.put(`${p}application/other`, 'not in app/');
      const all = await kv.getAll(`${p}app/`);
      expect(Object.fromEntries([...all].map(([k, v]) => [k.slice(`${p}app/`.length), v]))).toEqual(values);
      expect([...all.keys()].every((k) => k.startsWith(`${p}app/`))).toBe(true);
      expect(await kv.get(`/${p}app/plain`)).toBe('debug');
      await kv.delete(`${p}app/plain`);
      await kv.delete(`${p}app/plain`);
      expect(await kv.get(`${p}app/plain`)).toBeUndefined();
      const other = await client();
      expect(await other.kv.get(`${p}application/other`)).toBe('not in app/');
    });

    it('refuses bad keys and values with a ValidationError naming the field', async () => {
      const { kv } = await client();
      for (const key of ['', '/', 'a//b', '../x', 'a/../b', 'a/./b', 'a\u0000b', 'trailing/']) {
        const error = await kv.put(key, 'v').catch((e: unknown) => e);
        expect(error, JSON.stringify(key)).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).field).toBe('key');
      }
      const error = await kv.put(`${root()}k`, 42 as unknown as string).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe('value');
      await expect(kv.getAll('a//b')).rejects.toBeInstanceOf(ValidationError);
      expect(() => kv.watchPrefix('../')).toThrow(ValidationError);
    });

    it('watchPrefix: sync with everything first, then changes in order, never keys outside the prefix', async () => {
      const [a, b] = [await client(), await client()];
      const p = root();
      await a.kv.put(`${p}cfg/one`, '1');
      const watch = new Recorder(b.kv.watchPrefix(`${p}cfg/`));
      const first = await watch.next(() => true, { timeoutMs: propagationMs });
      expect(first).toEqual({ type: 'sync', entries: new Map([[`${p}cfg/one`, '1']]) });
      await a.kv.put(`${p}cfgx/outside`, 'no');
      await a.kv.put(`${p}cfg/two`, '2');
      await a.kv.put(`${p}cfg/one`, '1b');
      await a.kv.delete(`${p}cfg/two`);
      // Fold the events into the watcher's view: it must converge to the backend's state.
      const folded = () => {
        const view = new Map<string, string>();
        for (const e of watch.events) {
          if (e.type === 'sync') {
            view.clear();
            for (const [k, v] of e.entries) view.set(k, v);
          } else if (e.type === 'change') {
            for (const k of e.deleted) view.delete(k);
            for (const [k, v] of e.put) view.set(k, v);
          }
        }
        return view;
      };
      await eventually(() => folded().get(`${p}cfg/one`) === '1b' && !folded().has(`${p}cfg/two`), {
        timeoutMs: propagationMs * 2,
        message: `watcher did not converge: ${JSON.stringify([...folded()])}`,
      });
      expect(folded()).toEqual(new Map([[`${p}cfg/one`, '1b']]));
      const seen = changes(watch.events).map((c) =>
        [
          ...[...c.put].map(([k, v]) => `${k.slice(p.length)}=${v}`),
          ...c.deleted.map((k) => `-${k.slice(p.length)}`),
        ].join(),
      );
      expect(seen.join(' ')).not.toContain('outside');
      if (eventPerWrite) expect(seen).toEqual(['cfg/two=2', 'cfg/one=1b', '-cfg/two']);
    });

    it('watchPrefix: the deletion of the last key is delivered', async () => {
      const [a, b] = [await client(), await client()];
      const p = root();
      await a.kv.put(`${p}only`, 'x');
      const watch = new Recorder(b.kv.watchPrefix(p));
      await watch.next((e) => e.type === 'sync', { timeoutMs: propagationMs });
      await a.kv.delete(`${p}only`);
      const change = await watch.next((e) => e.type === 'change', { timeoutMs: propagationMs * 2 });
      expect(change).toEqual({ type: 'change', put: new Map(), deleted: [`${p}only`] });
    });

    if (capabilities.outage) {
      it('watchPrefix: an outage gives stale, keeps nothing back, and resyncs on return', async () => {
        const [a, b] = [await client(), await client()];
        const p = root();
        await a.kv.put(`${p}k`, 'v1');
        const watch = new Recorder(b.kv.watchPrefix(p));
        await watch.next((e) => e.type === 'sync', { timeoutMs: propagationMs });
        const h = suite.harness;
        if (!h.outage || !h.restore)
          throw new Error("capability 'outage' declared but the harness has no outage/restore hooks");
        await h.outage();
        try {
          await watch.next((e) => e.type === 'stale', { timeoutMs: recoveryMs });
          const error = await b.kv.get(`${p}k`).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(BackendUnavailableError);
        } finally {
          await h.restore();
        }
        await eventually(
          async () => {
            await a.kv.put(`${p}k`, 'v2');
            return true;
          },
          { timeoutMs: recoveryMs },
        );
        const from = watch.events.findIndex((e) => e.type === 'stale') + 1;
        await watch.next(
          (e) =>
            (e.type === 'sync' && e.entries.get(`${p}k`) === 'v2') ||
            (e.type === 'change' && e.put.get(`${p}k`) === 'v2'),
          { from, timeoutMs: recoveryMs },
        );
      });
    }
  });
}
