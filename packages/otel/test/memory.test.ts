import diagnostics from 'node:diagnostics_channel';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { createLiveConfig } from '@rollcall/config';
import { ConfigError, ROLLCALL_CHANNELS, type ServiceInstance } from '@rollcall/core';
import { publish } from '@rollcall/core/driver';
import { createMemoryBackend, ManualClock, MemoryStore } from '@rollcall/memory';
import { eventually, Recorder } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AlreadyInstrumentedError, instrumentRollcall, METRICS } from '../src/index.js';
import { instrumentedSdk, type Sdk } from './sdk.js';

const instance = (id: string, service = 'web'): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 9000,
});
const memory = { 'rollcall.backend': 'memory' };
const web = { ...memory, 'rollcall.service': 'web' };

let sdk: Sdk | undefined;
afterEach(async () => {
  await sdk?.shutdown();
  sdk = undefined;
});

describe('@rollcall/otel on the memory backend (real OpenTelemetry SDK)', () => {
  it('instances, registration states and membership changes follow registers and deregisters', async () => {
    sdk = instrumentedSdk();
    const store = new MemoryStore();
    await using owner = createMemoryBackend({ store });
    await using watcher = createMemoryBackend({ store });
    const watch = new Recorder(watcher.discovery.watch('web'));
    await watch.next((e) => e.type === 'sync');
    const a = await owner.discovery.register(instance('a'), { ttlSeconds: 2 });
    const b = await owner.discovery.register(instance('b'), { ttlSeconds: 2 });
    const c = await owner.discovery.register(instance('c'), { ttlSeconds: 2 });
    await watch.next((e) => e.snapshot.instances.length === 3);
    let m = await sdk.collect();
    expect(m.value(METRICS.serviceInstances, web)).toBe(3);
    expect(m.value(METRICS.registrationState, { ...web, 'rollcall.registration.state': 'active' })).toBe(3);
    expect(m.value(METRICS.membershipChanges, { ...web, 'rollcall.membership.change': 'added' })).toBe(3);
    expect(m.value(METRICS.watchSyncs, web)).toBe(1);
    expect(m.value(METRICS.backendConnected, memory)).toBe(1);

    await b.deregister();
    await c.deregister();
    await watch.next((e) => e.snapshot.instances.length === 1);
    m = await sdk.collect();
    expect(m.value(METRICS.serviceInstances, web)).toBe(1);
    expect(m.value(METRICS.registrationState, { ...web, 'rollcall.registration.state': 'active' })).toBe(1);
    expect(m.value(METRICS.membershipChanges, { ...web, 'rollcall.membership.change': 'removed' })).toBe(2);
    expect(m.value(METRICS.registrationLosses, web)).toBeUndefined();

    await a.deregister();
    await watch.next((e) => e.snapshot.instances.length === 0);
    m = await sdk.collect();
    expect(m.value(METRICS.serviceInstances, web)).toBe(0);
    expect(m.value(METRICS.registrationState, { ...web, 'rollcall.registration.state': 'active' })).toBe(0);
  });

  it('an outage: not connected, the watch stale for as long as it lasted, one reconnect, one registration loss', async () => {
    sdk = instrumentedSdk();
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, expiryIntervalMs: 0 });
    await using owner = createMemoryBackend({ store, resyncGraceMs: 0 });
    await using watcher = createMemoryBackend({ store, resyncGraceMs: 0 });
    const watch = new Recorder(watcher.discovery.watch('web'));
    const registration = await owner.discovery.register(instance('a'), { ttlSeconds: 2 });
    await watch.next((e) => e.snapshot.instances.length === 1);

    const outageStarted = performance.now();
    store.outage();
    await watch.next((e) => e.type === 'stale');
    const staleSeen = performance.now();
    // The owner's keepalives go unanswered: not connected, while the watch keeps its last list.
    await eventually(async () => (await sdk!.collect()).value(METRICS.backendConnected, memory) === 0, {
      message: 'rollcall.backend.connected 0 during the outage',
    });
    expect((await sdk.collect()).value(METRICS.serviceInstances, web)).toBe(1);
    clock.advance(3000); // past the ttl: the store drops the registration
    const restoreCalled = performance.now();
    store.restore();
    await eventually(() => registration.state === 'active' && watch.events.at(-1)?.snapshot.stale === false);
    const restored = performance.now();

    const m = await eventually(async () => {
      const collected = await sdk!.collect();
      return collected.value(METRICS.backendConnected, memory) === 1 ? collected : undefined;
    });
    const subject = { ...memory, 'rollcall.watch.subject': "service 'web'" };
    expect(m.value(METRICS.watchReconnects, subject)).toBe(1);
    const stale = m.histogram(METRICS.watchStaleDuration, subject);
    expect(stale?.count).toBe(1);
    // Stale from before staleSeen to after restoreCalled, and within outageStarted .. restored.
    expect(stale?.sum).toBeGreaterThanOrEqual((restoreCalled - staleSeen) / 1000);
    expect(stale?.sum).toBeLessThanOrEqual((restored - outageStarted) / 1000);
    expect(m.value(METRICS.registrationLosses, web)).toBe(1);
    expect(m.value(METRICS.registrationState, { ...web, 'rollcall.registration.state': 'recovering' })).toBe(
      0,
    );
    expect(m.value(METRICS.registrationState, { ...web, 'rollcall.registration.state': 'active' })).toBe(1);
    expect(m.value(METRICS.serviceInstances, web)).toBe(1);
  });

  describe('lock waits', () => {
    const contextManager = new AsyncLocalStorageContextManager();
    beforeAll(() => void context.setGlobalContextManager(contextManager.enable()));
    afterAll(() => {
      context.disable();
      contextManager.disable();
    });

    it('the acquire duration and span reflect a real wait; a timeout is an error span; held and lost counts', async () => {
      sdk = instrumentedSdk();
      const clock = new ManualClock();
      const store = new MemoryStore({ clock, expiryIntervalMs: 0 });
      await using holder = createMemoryBackend({ store });
      await using waiter = createMemoryBackend({ store });
      const job = { ...memory, 'rollcall.lock.kind': 'lock', 'rollcall.lock.name': 'job' };
      const first = await holder.locks.acquire('job', { ttlSeconds: 5 });
      expect((await sdk.collect()).value(METRICS.lockHeld, job)).toBe(1);

      // A wait that times out while the lock is held.
      await expect(waiter.locks.acquire('job', { ttlSeconds: 5, timeoutMs: 50 })).rejects.toThrow(
        /within 50 ms/,
      );

      // A wait inside the caller's span, which ends 250 ms later when the holder releases.
      const parent = sdk.tracerProvider.getTracer('test').startSpan('caller');
      // The wait is timed from inside acquire(): between these two instants (the call starts it synchronously).
      const waitStarted = performance.now();
      const waiting = context.with(trace.setSpan(context.active(), parent), () =>
        waiter.locks.acquire('job', { ttlSeconds: 2 }),
      );
      const waitCalled = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 250)); // the hold being measured
      const releasedAt = performance.now();
      await first.release();
      const second = await waiting;
      const acquiredAt = performance.now();
      parent.end();

      const m = await sdk.collect();
      const acquired = m.histogram(METRICS.lockAcquireDuration, {
        ...job,
        'rollcall.lock.outcome': 'acquired',
      });
      expect(acquired?.count).toBe(2); // the holder's uncontended acquire and the wait
      expect(acquired?.max).toBeGreaterThanOrEqual((releasedAt - waitCalled) / 1000);
      expect(acquired?.max).toBeLessThanOrEqual((acquiredAt - waitStarted) / 1000);
      const timedOut = m.histogram(METRICS.lockAcquireDuration, {
        ...job,
        'rollcall.lock.outcome': 'timeout',
        'error.type': 'LockTimeoutError',
      });
      expect(timedOut?.count).toBe(1);
      expect(timedOut?.min).toBeGreaterThanOrEqual(0.045);
      expect(m.value(METRICS.lockHeld, job)).toBe(1);

      const spans = sdk.spans().filter((s) => s.name === 'rollcall.lock.acquire');
      expect(spans.map((s) => s.attributes['rollcall.lock.outcome'])).toEqual([
        'acquired',
        'timeout',
        'acquired',
      ]);
      const [, failed, waited] = spans;
      expect(failed?.status.code).toBe(SpanStatusCode.ERROR);
      expect(failed?.status.message).toMatch(/not acquired within 50 ms/);
      expect(failed?.events.map((e) => e.name)).toEqual(['exception']);
      expect(waited?.status.code).toBe(SpanStatusCode.UNSET);
      expect(waited?.attributes).toMatchObject({ ...job, 'rollcall.lock.ttl': 2 });
      expect(waited?.attributes['rollcall.lock.fencing_token']).toBe(second.fencingToken.toString());
      expect(waited?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      const waitedMs = (waited!.duration[0] * 1e9 + waited!.duration[1]) / 1e6;
      expect(waitedMs).toBeGreaterThanOrEqual(releasedAt - waitCalled - 1);

      // An outage longer than the ttl (by the store's clock): the store ends the session, the lock is lost.
      store.outage();
      clock.advance(3000);
      store.restore();
      await eventually(() => second.signal.aborted, { message: 'the lock is lost' });
      const after = await sdk.collect();
      expect(after.value(METRICS.lockLost, job)).toBe(1);
      expect(after.value(METRICS.lockHeld, job)).toBe(0);
    });

    it('a lock held before the install and released after counts 0 held, never -1', async () => {
      await using backend = createMemoryBackend();
      const before = await backend.locks.acquire('early', { ttlSeconds: 5 });
      sdk = instrumentedSdk();
      const early = { ...memory, 'rollcall.lock.kind': 'lock', 'rollcall.lock.name': 'early' };
      await before.release();
      expect((await sdk.collect()).value(METRICS.lockHeld, early)).toBe(0);
      // Counted from 0 again: the next hold is 1, its release 0.
      const again = await backend.locks.acquire('early', { ttlSeconds: 5 });
      expect((await sdk.collect()).value(METRICS.lockHeld, early)).toBe(1);
      await again.release();
      expect((await sdk.collect()).value(METRICS.lockHeld, early)).toBe(0);
    });

    it('a leadership wait is a span of kind election', async () => {
      sdk = instrumentedSdk();
      await using backend = createMemoryBackend();
      const leadership = await backend.locks.campaign('primary', 'me', { ttlSeconds: 5 });
      const election = { ...memory, 'rollcall.lock.kind': 'election', 'rollcall.lock.name': 'primary' };
      expect((await sdk.collect()).value(METRICS.lockHeld, election)).toBe(1);
      await leadership.resign();
      const m = await sdk.collect();
      expect(m.value(METRICS.lockHeld, election)).toBe(0);
      expect(m.histogram(METRICS.lockAcquireDuration, election)?.count).toBe(1);
      expect(sdk.spans().map((s) => [s.name, s.attributes['rollcall.lock.kind']])).toEqual([
        ['rollcall.lock.acquire', 'election'],
      ]);
    });
  });

  it('live configuration: updates applied and refused, counted per prefix', async () => {
    sdk = instrumentedSdk();
    await using backend = createMemoryBackend();
    const prefix = 'configs/web/production/';
    await using config = await createLiveConfig({
      source: backend.kv,
      prefix,
      schema: z.object({ log_level: z.enum(['debug', 'info', 'warn']) }),
      defaults: { log_level: 'info' },
    });
    const errors: Error[] = [];
    config.on('error', (error) => errors.push(error));
    await backend.kv.put(`${prefix}log_level`, 'debug');
    await eventually(() => config.current.log_level === 'debug');
    await backend.kv.put(`${prefix}log_level`, 'loud');
    await eventually(() => errors.length === 1);
    await backend.kv.put(`${prefix}log_level`, 'warn');
    await eventually(() => config.current.log_level === 'warn');
    const m = await sdk.collect();
    const attributes = { 'rollcall.config.prefix': prefix };
    // The first value read at start, then debug and warn.
    expect(m.value(METRICS.configApplied, attributes)).toBe(3);
    expect(m.value(METRICS.configRefused, attributes)).toBe(1);
    expect(m.points(METRICS.configRefused, attributes)[0]?.attributes['error.type']).toBe(errors[0]?.name);
  });

  it('migration phases: 1 for the current phase, 0 for the ones left', async () => {
    sdk = instrumentedSdk();
    publish.migrationPhase(() => ({ phase: 'shadow', previous: 'dual-write' }));
    let m = await sdk.collect();
    expect(m.value(METRICS.migrationPhase, { 'rollcall.migration.phase': 'shadow' })).toBe(1);
    expect(m.value(METRICS.migrationPhase, { 'rollcall.migration.phase': 'dual-write' })).toBe(0);
    publish.migrationPhase(() => ({ phase: 'dual-read', previous: 'shadow' }));
    m = await sdk.collect();
    expect(
      m.points(METRICS.migrationPhase).map((p) => [p.attributes['rollcall.migration.phase'], p.value]),
    ).toEqual([
      ['dual-write', 0],
      ['shadow', 0],
      ['dual-read', 1],
    ]);
  });
});

describe('installing and uninstalling', () => {
  const channels = () => {
    const tracing = diagnostics.tracingChannel(ROLLCALL_CHANNELS.lockAcquire);
    return [
      ...Object.entries(ROLLCALL_CHANNELS)
        .filter(([key]) => key !== 'lockAcquire')
        .map(([, name]) => [name, diagnostics.channel(name).hasSubscribers] as const),
      ...(['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const).map(
        (event) => [`${ROLLCALL_CHANNELS.lockAcquire}:${event}`, tracing[event].hasSubscribers] as const,
      ),
    ];
  };

  it('uninstall removes every subscription: nothing is published or recorded afterwards', async () => {
    expect(channels().filter(([, subscribed]) => subscribed)).toEqual([]);
    sdk = instrumentedSdk();
    expect(channels().filter(([, subscribed]) => !subscribed)).toEqual([]);
    await using backend = createMemoryBackend();
    await backend.discovery.register(instance('a'));
    await backend.discovery.getInstances('web');
    const before = await sdk.collect();
    expect(before.value(METRICS.serviceInstances, web)).toBe(1);

    sdk.instrumentation.uninstall();
    sdk.instrumentation.uninstall(); // idempotent
    expect(channels().filter(([, subscribed]) => subscribed)).toEqual([]);
    await backend.discovery.register(instance('b'));
    await eventually(async () => (await backend.discovery.getInstances('web')).instances.length === 2);
    const lease = await backend.locks.acquire('after');
    await lease.release();
    const after = await sdk.collect();
    // The SDK keeps exporting what was recorded before; nothing after uninstall changed it.
    expect(after.value(METRICS.serviceInstances, web)).toBe(1);
    expect(after.value(METRICS.membershipChanges, { ...web, 'rollcall.membership.change': 'added' })).toBe(
      before.value(METRICS.membershipChanges, { ...web, 'rollcall.membership.change': 'added' }),
    );
    expect(after.histogram(METRICS.lockAcquireDuration, { 'rollcall.lock.name': 'after' })).toBeUndefined();
    expect(sdk.spans()).toEqual([]);
  });

  it('a second install while one is live is a clear error; after uninstall it installs again', async () => {
    sdk = instrumentedSdk();
    expect(() => instrumentRollcall()).toThrow(AlreadyInstrumentedError);
    expect(() => instrumentRollcall()).toThrow(/already installed.*uninstall\(\)/);
    sdk.instrumentation.uninstall();
    const again = instrumentRollcall();
    again.uninstall();
  });

  it('bad options are refused before anything is subscribed, every field named', () => {
    const bad = () =>
      instrumentRollcall({
        meterProvider: {} as never,
        tracerProvider: 'global' as never,
        meter: 1,
      } as never);
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(
      /meter: unknown option.*meterProvider: must be a MeterProvider.*tracerProvider: must be a TracerProvider/,
    );
    expect(channels().filter(([, subscribed]) => subscribed)).toEqual([]);
  });
});
