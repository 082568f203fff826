import {
  type Backend,
  BackendUnavailableError,
  ClosedError,
  type DiscoveryEvent,
  RollcallError,
  type ServiceInstance,
  ValidationError,
} from '@rollcall/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectAborted, trackUnhandledRejections } from './aborts.js';
import {
  badInstances,
  badRegisterOptions,
  badServiceNames,
  badWatchOptions,
  expectRefused,
  goodInstances,
  maximalInstance,
} from './hostile.js';
import { eventually, Recorder } from './recorder.js';
import { type BaseHarness, suiteHooks } from './suite-hooks.js';

/** What a backend hands the discovery compliance suite: clients, plus the fault hooks it can offer. */
export interface DiscoveryContractHarness extends BaseHarness {
  /** Makes `client` stop heartbeating without closing, like a killed process. Enables the process-death test. */
  crash?(client: Backend): Promise<void>;
  /** Makes the backend unreachable for every client. With `restore`, enables the outage tests. */
  outage?(): Promise<void>;
  /** Ends the outage. */
  restore?(): Promise<void>;
  /** How many backend watches or pollers `client` holds for `service`. Enables the one-upstream test. */
  upstreams?(client: Backend, service: string): number;
}

/** Timing and behaviour differences between backends. */
export interface DiscoveryCapabilities {
  /** TTL in seconds used by the expiry tests. Default 2. */
  ttlSeconds?: number;
  /** Longest time from a write to a watcher on another client seeing it, in ms. Default 2000. */
  propagationMs?: number;
  /** Longest time past the TTL before a dead client's instances disappear, in ms. Default 2000. */
  expiryGraceMs?: number;
  /** Longest time from the end of an outage to `restored`, in ms. Default 15000. */
  recoveryMs?: number;
  /** True when every write is its own `change` event (etcd, memory); false for pollers that may merge writes. Default true. */
  eventPerWrite?: boolean;
  /** The harness has `crash`: run the process-death test. Default false. */
  crash?: boolean;
  /** The harness has `outage` and `restore`: run the outage and recovery tests. Default false. */
  outage?: boolean;
  /** The harness has `upstreams`: run the one-upstream-per-service test. Default false. */
  upstreamCount?: boolean;
  /** Runs of the good-input round-trip property against the backend (each registers and reads one instance). Default 10. */
  propertyRuns?: number;
}

/** Defines the test only for backends that declare the capability: no skipped tests in a backend's report. */
function itWhen(enabled: boolean | undefined): (title: string, fn: () => Promise<void>) => void {
  return enabled ? (title, fn) => it(title, fn) : () => {};
}

function need<T>(hook: T | undefined, name: string): T {
  if (!hook) throw new Error(`capability declared but the harness has no '${name}' hook`);
  return hook;
}

let serial = 0;
/** A service name unique to this run, so tests sharing one server never see each other. */
export function uniqueService(base: string): string {
  serial += 1;
  return `${base}-${process.pid.toString(36)}${serial.toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
}

function instance(service: string, id: string, extra: Partial<ServiceInstance> = {}): ServiceInstance {
  return {
    id,
    service,
    host: '127.0.0.1',
    port: 8000 + (Number.parseInt(id.replace(/\D/g, ''), 10) % 1000 || 1),
    ...extra,
  };
}

const ids = (event: { snapshot: { instances: readonly ServiceInstance[] } }) =>
  event.snapshot.instances.map((i) => i.id);

/**
 * The discovery compliance suite: one test per rule of the contract that the harness can
 * exercise. Every backend calls it once; capability hooks switch the fault tests on.
 */
export function describeDiscoveryContract(
  name: string,
  harness: () => DiscoveryContractHarness | Promise<DiscoveryContractHarness>,
  capabilities: DiscoveryCapabilities = {},
): void {
  const ttl = capabilities.ttlSeconds ?? 2;
  const propagationMs = capabilities.propagationMs ?? 2000;
  const expiryGraceMs = capabilities.expiryGraceMs ?? 2000;
  const recoveryMs = capabilities.recoveryMs ?? 15_000;
  const eventPerWrite = capabilities.eventPerWrite ?? true;
  const propertyRuns = capabilities.propertyRuns ?? 10;

  describe(`${name}: discovery contract`, () => {
    const suite = suiteHooks(harness);
    const { client, elapse } = suite;

    it('rule 1 (property): any bad instance, option, service name or watch option is a ValidationError naming the field, before any network call', async () => {
      const { discovery } = await suite.unreachable();
      const good = instance(uniqueService('fuzz'), 'i1');
      await fc.assert(
        fc.asyncProperty(badInstances(), async ({ input, field, label }) => {
          await expectRefused(() => discovery.register(input as ServiceInstance), field, label);
        }),
        { numRuns: 300 },
      );
      await fc.assert(
        fc.asyncProperty(badRegisterOptions(), async ({ input, field, label }) => {
          await expectRefused(() => discovery.register(good, input as never), field, label);
        }),
        { numRuns: 60 },
      );
      await fc.assert(
        fc.asyncProperty(badServiceNames(), async (service) => {
          await expectRefused(() => discovery.getInstances(service as string), 'service', 'getInstances');
          await expectRefused(() => discovery.watch(service as string), 'service', 'watch');
        }),
        { numRuns: 100 },
      );
      await fc.assert(
        fc.asyncProperty(badWatchOptions(), async ({ input, field, label }) => {
          await expectRefused(() => discovery.watch(good.service, input as never), field, label);
        }),
        { numRuns: 40 },
      );
    });

    it('rule 1 (property): instances at the maximum lengths (unicode, 64 tags, 60 metadata entries) round-trip exactly', async () => {
      const [a, b] = [await client(), await client()];
      await fc.assert(
        fc.asyncProperty(
          fc.constant(null).chain(() => goodInstances(uniqueService('max'))),
          async (input) => {
            const registration = await a.discovery.register(input, { ttlSeconds: 30 });
            try {
              expect(registration.instance).toEqual(input);
              const seen = await b.discovery.getInstances(input.service);
              expect(seen.instances).toEqual([input]);
            } finally {
              await registration.deregister();
            }
          },
        ),
        { numRuns: propertyRuns, examples: [[maximalInstance(uniqueService('max'))]] },
      );
    });

    it("rule 1: metadata keys '__proto__', 'constructor' and 'prototype' are refused, store nothing, and never reach Object.prototype", async () => {
      const a = await client();
      const service = uniqueService('proto');
      for (const key of ['__proto__', 'constructor', 'prototype']) {
        const metadata = JSON.parse(`{"${key}": {"polluted": "yes"}, "ok": "v"}`);
        await expectRefused(
          () => a.discovery.register(instance(service, 'i1', { metadata })),
          `instance.metadata.${key}`,
          key,
        );
        const asString = JSON.parse(`{"${key}": "v"}`);
        await expectRefused(
          () => a.discovery.register(instance(service, 'i1', { metadata: asString })),
          `instance.metadata.${key}`,
          key,
        );
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      const fresh = await client();
      expect((await fresh.discovery.getInstances(service)).instances).toEqual([]);
      // The neighbours of those names round-trip exactly.
      const near = instance(service, 'i2', { metadata: { proto: 'a', constructor_: 'b', prototypes: 'c' } });
      await a.discovery.register(near);
      await eventually(async () => (await fresh.discovery.getInstances(service)).instances.length === 1, {
        timeoutMs: propagationMs,
      });
      expect((await fresh.discovery.getInstances(service)).instances).toEqual([near]);
    });

    it('rule 1: refuses bad input with a ValidationError naming the field, storing nothing', async () => {
      const a = await client();
      const service = uniqueService('valid');
      const good = instance(service, 'i1');
      const cases: [string, unknown, string][] = [
        ['service a/b', { ...good, service: 'a/b' }, 'instance.service'],
        ['service ..', { ...good, service: '..' }, 'instance.service'],
        ['empty service', { ...good, service: '' }, 'instance.service'],
        ['uppercase service', { ...good, service: 'Web' }, 'instance.service'],
        ['64-char service', { ...good, service: 'a'.repeat(64) }, 'instance.service'],
        ['service ending with -', { ...good, service: 'web-' }, 'instance.service'],
        ['service with control char', { ...good, service: 'we\nb' }, 'instance.service'],
        ['id a/b', { ...good, id: 'a/b' }, 'instance.id'],
        ['id ..', { ...good, id: '..' }, 'instance.id'],
        ['empty id', { ...good, id: '' }, 'instance.id'],
        ['129-char id', { ...good, id: 'x'.repeat(129) }, 'instance.id'],
        ['id with space', { ...good, id: 'a b' }, 'instance.id'],
        ['port 0', { ...good, port: 0 }, 'instance.port'],
        ['port 70000', { ...good, port: 70_000 }, 'instance.port'],
        ['port 80.5', { ...good, port: 80.5 }, 'instance.port'],
        ['port as string', { ...good, port: '80' }, 'instance.port'],
        ['bad host', { ...good, host: 'not a host!' }, 'instance.host'],
        ['numeric metadata', { ...good, metadata: { zone: 1 } }, 'instance.metadata.zone'],
        ['object metadata', { ...good, metadata: { zone: { a: 'b' } } }, 'instance.metadata.zone'],
        ['weight 0', { ...good, weight: 0 }, 'instance.weight'],
        ['unknown field', { ...good, adress: 'x' }, 'instance.adress'],
      ];
      for (const [label, bad, field] of cases) {
        const error = await a.discovery.register(bad as ServiceInstance).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, label).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).field, label).toBe(field);
        expect((error as ValidationError).code, label).toBe('ERR_VALIDATION');
        expect(error, label).toBeInstanceOf(RollcallError);
      }
      for (const ttlSeconds of [1, 1.5, 0, -3]) {
        const error = await a.discovery.register(good, { ttlSeconds }).catch((e: unknown) => e);
        expect(error, `ttl ${ttlSeconds}`).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).field).toBe('options.ttlSeconds');
      }
      for (const bad of ['a/b', '..', '', 'Web']) {
        await expect(a.discovery.getInstances(bad)).rejects.toBeInstanceOf(ValidationError);
        expect(() => a.discovery.watch(bad)).toThrow(ValidationError);
      }
      const fresh = await client();
      expect((await fresh.discovery.getInstances(service)).instances).toEqual([]);
      expect(await fresh.discovery.listServices()).not.toContain(service);
    });

    it('aborting: calls given an aborted signal reject at once with an AbortError and send nothing; an abort ends a wait at once; no rejection goes unhandled', async () => {
      const unhandled = trackUnhandledRejections();
      const offline = await suite.unreachable();
      const aborted = AbortSignal.abort();
      const service = uniqueService('abort');
      await expectAborted(() => offline.discovery.getInstances(service, { signal: aborted }), 'getInstances');
      await expectAborted(() => offline.discovery.listServices({ signal: aborted }), 'listServices');
      await expectAborted(
        () => offline.discovery.register(instance(service, 'x'), { signal: aborted }),
        'register (unreachable)',
      );
      const watch = offline.discovery.watch(service, { signal: aborted });
      expect(await watch[Symbol.asyncIterator]().next()).toEqual({ done: true, value: undefined });
      // Waiting for a backend that does not answer: the signal ends the wait (or it fails on its own first).
      await expectAborted(
        () => offline.discovery.getInstances(uniqueService('never'), { signal: AbortSignal.timeout(100) }),
        'getInstances mid-call',
        true,
      );
      await expectAborted(
        () => offline.discovery.register(instance(service, 'y'), { signal: AbortSignal.timeout(100) }),
        'register mid-call',
        true,
      );
      // On a reachable backend: an already-aborted registration leaves nothing anywhere.
      const a = await client();
      await expectAborted(
        () => a.discovery.register(instance(service, 'z'), { signal: aborted }),
        'register',
      );
      const fresh = await client();
      expect((await fresh.discovery.getInstances(service)).instances).toEqual([]);
      expect(unhandled.stop()).toEqual([]);
    });

    it('rule 2: register resolves once a fresh client sees the instance, exactly as registered', async () => {
      const a = await client();
      const service = uniqueService('visible');
      const full = instance(service, 'i1', {
        version: '1.4.2',
        tags: ['blue', 'canary'],
        metadata: { zone: 'eu-west-1a', owner: 'team-x' },
        weight: 3,
      });
      const registration = await a.discovery.register(full, { ttlSeconds: ttl });
      expect(registration.state).toBe('active');
      expect(registration.instance).toEqual(full);
      const b = await client();
      const snapshot = await b.discovery.getInstances(service);
      expect(snapshot.service).toBe(service);
      expect(snapshot.instances).toEqual([full]);
      expect(snapshot.stale).toBe(false);
      expect(snapshot.syncedAt).toBeGreaterThan(0);
      expect(await b.discovery.listServices()).toContain(service);
      await expect(a.discovery.register(full)).rejects.toBeInstanceOf(ValidationError);
    });

    it('rule 4: deregister removes the instance at once, and is idempotent', async () => {
      const [a, b] = [await client(), await client()];
      const service = uniqueService('dereg');
      const registration = await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 30 });
      const watch = new Recorder(b.discovery.watch(service));
      await watch.next((e) => e.type === 'sync' && ids(e).includes('i1'), { timeoutMs: propagationMs });
      const from = watch.events.length;
      await registration.deregister();
      await registration.deregister();
      expect(registration.state).toBe('closed');
      const fresh = await client();
      expect((await fresh.discovery.getInstances(service)).instances).toEqual([]);
      const removal = await watch.next((e) => e.type === 'change', { from, timeoutMs: propagationMs });
      expect(removal.type === 'change' && removal.removed.map((i) => i.id)).toEqual(['i1']);
    });

    it('rule 4: close() removes everything the client registered at once; later calls throw ClosedError', async () => {
      const [a, b] = [await client(), await client()];
      const service = uniqueService('close');
      await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 30 });
      await a.discovery.register(instance(service, 'i2'), { ttlSeconds: 30 });
      await using registration = await b.discovery.register(instance(service, 'i3'), { ttlSeconds: 30 });
      expect(registration.state).toBe('active');
      await a.close();
      await a.close();
      const fresh = await client();
      expect((await fresh.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['i3']);
      await expect(a.discovery.register(instance(service, 'i9'))).rejects.toBeInstanceOf(ClosedError);
      await expect(a.discovery.getInstances(service)).rejects.toBeInstanceOf(ClosedError);
      expect(() => a.discovery.watch(service)).toThrow(ClosedError);
    });

    it('rule 5: the first event of a watch is sync with the full list, even when empty', async () => {
      const [a, b] = [await client(), await client()];
      const empty = uniqueService('empty');
      const emptyWatch = new Recorder(b.discovery.watch(empty));
      const first = await emptyWatch.next(() => true, { timeoutMs: propagationMs });
      expect(first.type).toBe('sync');
      expect(ids(first)).toEqual([]);
      const service = uniqueService('first');
      await a.discovery.register(instance(service, 'b2'));
      await a.discovery.register(instance(service, 'a1'));
      const watch = new Recorder(b.discovery.watch(service));
      const sync = await watch.next(() => true, { timeoutMs: propagationMs });
      expect(sync.type).toBe('sync');
      expect(ids(sync)).toEqual(['a1', 'b2']);
    });

    it('rule 5: changes arrive in backend order, none lost, none duplicated', async () => {
      const [a, b] = [await client(), await client()];
      const service = uniqueService('order');
      const watch = new Recorder(b.discovery.watch(service));
      await watch.next((e) => e.type === 'sync', { timeoutMs: propagationMs });
      const r1 = await a.discovery.register(instance(service, 'i1'));
      await a.discovery.register(instance(service, 'i2'));
      await a.discovery.register(instance(service, 'i3'));
      await r1.deregister();
      await watch.next((e) => e.type !== 'stale' && ids(e).join() === 'i2,i3', {
        timeoutMs: propagationMs * 2,
      });
      const changes = watch.events.filter(
        (e): e is Extract<DiscoveryEvent, { type: 'change' }> => e.type === 'change',
      );
      const folded = new Set<string>();
      for (const change of changes) {
        for (const added of change.added) {
          expect(folded.has(added.id), `duplicate add of ${added.id}`).toBe(false);
          folded.add(added.id);
        }
        for (const removed of change.removed) {
          expect(folded.has(removed.id), `removal of unknown ${removed.id}`).toBe(true);
          folded.delete(removed.id);
        }
        expect([...folded].sort()).toEqual(ids(change));
      }
      expect([...folded].sort()).toEqual(['i2', 'i3']);
      if (eventPerWrite) {
        expect(
          changes.map((c) => [...c.added.map((i) => `+${i.id}`), ...c.removed.map((i) => `-${i.id}`)].join()),
        ).toEqual(['+i1', '+i2', '+i3', '-i1']);
      }
    });

    it('rule 5: the removal of the last instance is delivered', async () => {
      const [a, b] = [await client(), await client()];
      const service = uniqueService('last');
      const registration = await a.discovery.register(instance(service, 'only'));
      const watch = new Recorder(b.discovery.watch(service));
      await watch.next((e) => e.type === 'sync' && ids(e).join() === 'only', { timeoutMs: propagationMs });
      await registration.deregister();
      const last = await watch.next((e) => e.type === 'change', { timeoutMs: propagationMs * 2 });
      expect(last.type === 'change' && last.removed.map((i) => i.id)).toEqual(['only']);
      expect(ids(last)).toEqual([]);
      expect((await b.discovery.getInstances(service)).instances).toEqual([]);
    });

    it("rule 5: a watch on 'web' never sees 'web-admin' or 'webx'", async () => {
      const [a, b] = [await client(), await client()];
      const web = uniqueService('web');
      const watch = new Recorder(b.discovery.watch(web));
      await watch.next((e) => e.type === 'sync', { timeoutMs: propagationMs });
      await a.discovery.register(instance(`${web}-admin`, 'admin1'));
      await a.discovery.register(instance(`${web}x`, 'x1'));
      await a.discovery.register(instance(`${web}.internal`, 'dot1'));
      await a.discovery.register(instance(web, 'w1'));
      await watch.next((e) => ids(e).includes('w1'), { timeoutMs: propagationMs * 2 });
      for (const event of watch.events) {
        if (event.type === 'stale') continue;
        for (const i of event.snapshot.instances) expect(i.service).toBe(web);
      }
      expect((await b.discovery.getInstances(web)).instances.map((i) => i.id)).toEqual(['w1']);
      const fresh = await client();
      expect((await fresh.discovery.getInstances(web)).instances.map((i) => i.id)).toEqual(['w1']);
    });

    itWhen(capabilities.upstreamCount)(
      'rule 7: one backend watch per service, however many watchers and reads',
      async () => {
        const upstreams = need(suite.harness.upstreams, 'upstreams');
        const [a, b] = [await client(), await client()];
        const service = uniqueService('fanout');
        await a.discovery.register(instance(service, 'i1'));
        const watches = Array.from({ length: 50 }, () => new Recorder(b.discovery.watch(service)));
        await Promise.all(Array.from({ length: 50 }, () => b.discovery.getInstances(service)));
        expect(upstreams(b, service)).toBe(1);
        await a.discovery.register(instance(service, 'i2'));
        await Promise.all(
          watches.map((w) => w.next((e) => ids(e).join() === 'i1,i2', { timeoutMs: propagationMs * 2 })),
        );
        const first = await b.discovery.getInstances(service);
        const second = await b.discovery.getInstances(service);
        expect(second.instances).toBe(first.instances);
        expect(upstreams(b, service)).toBe(1);
      },
    );

    describe('faults', () => {
      itWhen(capabilities.crash)(
        'rule 4: a client that dies without closing disappears from watchers within the TTL',
        async () => {
          const crash = need(suite.harness.crash, 'crash');
          const [a, b] = [await client(), await client()];
          const service = uniqueService('crash');
          await a.discovery.register(instance(service, 'dies'), { ttlSeconds: ttl });
          await b.discovery.register(instance(service, 'lives'), { ttlSeconds: ttl });
          const watch = new Recorder(b.discovery.watch(service));
          await watch.next((e) => ids(e).join() === 'dies,lives', { timeoutMs: propagationMs });
          await crash(a);
          const crashedAt = Date.now();
          await elapse(ttl * 1000);
          const removal = await watch.next(
            (e) => e.type === 'change' && e.removed.some((i) => i.id === 'dies'),
            {
              timeoutMs: expiryGraceMs + (suite.harness.elapse ? 1000 : 0) + propagationMs,
            },
          );
          expect(Date.now() - crashedAt).toBeLessThanOrEqual(ttl * 1000 + expiryGraceMs + propagationMs);
          expect(ids(removal)).toEqual(['lives']);
        },
      );

      itWhen(capabilities.outage)(
        'rules 6 and 8: an outage gives stale with the last known good list, never an empty one',
        async () => {
          const outage = need(suite.harness.outage, 'outage');
          const restore = need(suite.harness.restore, 'restore');
          const [a, b] = [await client(), await client()];
          const service = uniqueService('outage');
          await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 30 });
          await a.discovery.register(instance(service, 'i2'), { ttlSeconds: 30 });
          const watch = new Recorder(b.discovery.watch(service));
          await watch.next((e) => ids(e).join() === 'i1,i2', { timeoutMs: propagationMs });
          const before = await b.discovery.getInstances(service);
          await outage();
          try {
            const stale = await watch.next((e) => e.type === 'stale', { timeoutMs: recoveryMs });
            expect(stale.type === 'stale' && stale.error).toBeInstanceOf(Error);
            expect(ids(stale)).toEqual(['i1', 'i2']);
            expect(stale.snapshot.stale).toBe(true);
            const during = await b.discovery.getInstances(service);
            expect(during.stale).toBe(true);
            expect(during.instances).toEqual(before.instances);
            for (const e of watch.events)
              expect(ids(e).length, 'an outage must never empty the list').toBe(2);
            const never = uniqueService('never-seen');
            const error = await b.discovery.getInstances(never).catch((e: unknown) => e);
            expect(error).toBeInstanceOf(BackendUnavailableError);
            expect((error as BackendUnavailableError).code).toBe('ERR_BACKEND_UNAVAILABLE');
          } finally {
            await restore();
          }
          const from = watch.events.findIndex((e) => e.type === 'stale') + 1;
          const back = await watch.next((e) => e.type !== 'stale' && !e.snapshot.stale, {
            from,
            timeoutMs: recoveryMs,
          });
          expect(ids(back)).toEqual(['i1', 'i2']);
          await eventually(async () => !(await b.discovery.getInstances(service)).stale, {
            timeoutMs: recoveryMs,
          });
        },
      );

      itWhen(capabilities.outage)(
        'rule 3: a registration the backend dropped during an outage is lost, then restored by itself',
        async () => {
          const outage = need(suite.harness.outage, 'outage');
          const restore = need(suite.harness.restore, 'restore');
          const [a, b] = [await client(), await client()];
          const service = uniqueService('recover');
          const registration = await a.discovery.register(instance(service, 'phoenix'), { ttlSeconds: ttl });
          const events: string[] = [];
          registration.on('lost', (error) => events.push(`lost:${error instanceof Error}`));
          const unsubscribe = registration.on('restored', () => events.push('restored'));
          await outage();
          try {
            await elapse(ttl * 1000 + 1500);
          } finally {
            await restore();
          }
          await eventually(() => events.includes('restored'), {
            timeoutMs: recoveryMs,
            message: `events: ${events}`,
          });
          expect(events).toEqual(['lost:true', 'restored']);
          expect(registration.state).toBe('active');
          unsubscribe();
          await eventually(
            async () => (await b.discovery.getInstances(service)).instances.some((i) => i.id === 'phoenix'),
            {
              timeoutMs: propagationMs + recoveryMs,
            },
          );
          const fresh = await client();
          expect((await fresh.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual([
            'phoenix',
          ]);
        },
      );

      // Found on a 3-member etcd cluster with its leader killed: a register() that gave up while its
      // write was in flight, retried at once (as callers do), was deleted by the undo of the first
      // attempt once the writes landed: watchers saw the instance come, go, and come back.
      itWhen(capabilities.outage)(
        'rule 2: a register() that failed in an outage, retried until it works, stays: the undo of the failed try never deletes it',
        async () => {
          const outage = need(suite.harness.outage, 'outage');
          const restore = need(suite.harness.restore, 'restore');
          const [a, b] = [await client(), await client()];
          const service = uniqueService('retried');
          // Registered before: the client's session (an etcd lease) exists, so the write is sent at once.
          await a.discovery.register(instance(service, 'before'), { ttlSeconds: ttl });
          const watch = new Recorder(b.discovery.watch(service));
          await watch.next((e) => ids(e).join() === 'before', { timeoutMs: propagationMs });
          const register = (signal?: AbortSignal) =>
            a.discovery.register(instance(service, 'again'), { ttlSeconds: ttl, signal });
          let attempts = 0;
          let registration: Awaited<ReturnType<typeof register>> | undefined;
          let restored: Promise<void> | undefined;
          const restoreOnce = () => {
            restored ??= restore();
            return restored;
          };
          await outage();
          try {
            // Gives up while its write waits for the backend (or fails at once where it cannot connect).
            await expect(register(AbortSignal.timeout(300))).rejects.toBeInstanceOf(Error);
            // The retry loop a caller writes (a pause between tries); the backend comes back while it runs.
            const deadline = performance.now() + recoveryMs;
            const retrying = (async () => {
              for (;;) {
                attempts += 1;
                try {
                  return await register();
                } catch (error) {
                  if (performance.now() > deadline) throw error;
                  await new Promise((resolve) => setTimeout(resolve, 100));
                }
              }
            })();
            await eventually(() => attempts >= 1, { timeoutMs: 1000 });
            await restoreOnce();
            registration = await retrying;
          } finally {
            await restoreOnce();
          }
          expect(registration?.state).toBe('active');
          // A later write seen by the watcher: a delete sent by an undo would have been seen before it.
          await a.discovery.register(instance(service, 'marker'), { ttlSeconds: ttl });
          await watch.next((e) => ids(e).includes('marker'), { timeoutMs: propagationMs + recoveryMs });
          const removals = watch.events.filter((e) => e.type === 'change' && e.removed.length > 0);
          expect(removals, `events: ${watch.events.map((e) => `${e.type}:${ids(e)}`).join(' ')}`).toEqual([]);
          expect(ids(watch.events[watch.events.length - 1] as DiscoveryEvent)).toEqual([
            'again',
            'before',
            'marker',
          ]);
        },
      );
    });
  });
}
