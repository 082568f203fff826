import diagnostics from 'node:diagnostics_channel';
import {
  type LockMessage,
  type MembershipMessage,
  publish,
  type RegistrationMessage,
  ROLLCALL_CHANNELS,
  type ServiceInstance,
  type WatchMessage,
} from '@rollcall/core';
import { eventually, Recorder } from '@rollcall/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryBackend, ManualClock, MemoryStore } from '../src/index.js';

// Issue 13: what operators watch is published on node:diagnostics_channel, where it happens.
const instance = (id: string): ServiceInstance => ({ id, service: 'web', host: '127.0.0.1', port: 9000 });

const subscriptions: (() => void)[] = [];
function listen<M>(name: string): M[] {
  const seen: M[] = [];
  const onMessage = (message: unknown) => void seen.push(message as M);
  diagnostics.subscribe(name, onMessage);
  subscriptions.push(() => diagnostics.unsubscribe(name, onMessage));
  return seen;
}
afterEach(() => {
  for (const stop of subscriptions.splice(0)) stop();
});

describe('diagnostics channels (memory backend)', () => {
  it('registration states, membership and stale periods, as they happen', async () => {
    const registrations = listen<RegistrationMessage>(ROLLCALL_CHANNELS.registration);
    const memberships = listen<MembershipMessage>(ROLLCALL_CHANNELS.membership);
    const watches = listen<WatchMessage>(ROLLCALL_CHANNELS.watch);
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, expiryIntervalMs: 0 });
    await using owner = createMemoryBackend({ store, resyncGraceMs: 0 });
    await using watcher = createMemoryBackend({ store, resyncGraceMs: 0 });
    const watch = new Recorder(watcher.discovery.watch('web'));
    await watch.next((e) => e.type === 'sync');
    const registration = await owner.discovery.register(instance('a'), { ttlSeconds: 2 });
    await watch.next((e) => e.snapshot.instances.length === 1);
    expect(registrations).toEqual([
      { backend: 'memory', service: 'web', id: 'a', state: 'active', previous: undefined },
    ]);
    expect(memberships[0]).toMatchObject({ backend: 'memory', service: 'web', kind: 'sync', instances: 0 });
    expect(memberships.at(-1)).toEqual({
      backend: 'memory',
      service: 'web',
      kind: 'change',
      instances: 1,
      added: 1,
      removed: 0,
      updated: 0,
    });

    // An outage past the ttl: the watch goes stale, the registration is lost and comes back.
    store.outage();
    await eventually(() => watches.some((w) => w.stale));
    expect(watches[0]).toMatchObject({ backend: 'memory', subject: "service 'web'", stale: true });
    expect(watches[0]?.error).toBeInstanceOf(Error);
    clock.advance(3000);
    store.restore();
    await eventually(() => watches.some((w) => !w.stale));
    expect(watches.find((w) => !w.stale)?.staleMs).toBeGreaterThanOrEqual(0);
    await eventually(() => registration.state === 'active' && registrations.length >= 3);
    expect(registrations.map((r) => `${r.previous}->${r.state}`)).toEqual([
      'undefined->active',
      'active->recovering',
      'recovering->active',
    ]);
    expect(registrations[1]?.error).toBeInstanceOf(Error);

    await registration.deregister();
    expect(registrations.at(-1)).toMatchObject({ state: 'closed', previous: 'active' });
  });

  it('lock waits are traced (start, end), holds and releases published with durations and tokens', async () => {
    const starts: LockMessage[] = [];
    const ends: LockMessage[] = [];
    const tracing = diagnostics.tracingChannel(ROLLCALL_CHANNELS.lockAcquire);
    const handlers = {
      start: (m: unknown) => void starts.push(m as LockMessage),
      asyncEnd: (m: unknown) => void ends.push(m as LockMessage),
      // @types/node wants every tracing event handled.
      end: () => {},
      asyncStart: () => {},
      error: () => {},
    };
    tracing.subscribe(handlers);
    subscriptions.push(() => tracing.unsubscribe(handlers));
    const locks = listen<LockMessage>(ROLLCALL_CHANNELS.lock);
    await using a = createMemoryBackend();
    const lease = await a.locks.acquire('job', { ttlSeconds: 5 });
    await lease.release();
    const leadership = await a.locks.campaign('leader', 'me', { ttlSeconds: 5 });
    await leadership.resign();
    expect(starts.map((s) => `${s.kind}:${s.name}`)).toEqual(['lock:job', 'election:leader']);
    expect(ends).toHaveLength(2);
    expect(locks.map((l) => `${l.kind}:${l.name}:${l.event}`)).toEqual([
      'lock:job:held',
      'lock:job:released',
      'election:leader:held',
      'election:leader:released',
    ]);
    expect(locks[0]).toMatchObject({ backend: 'memory', ttlSeconds: 5 });
    expect(typeof locks[0]?.fencingToken).toBe('bigint');
    for (const l of locks) expect(l.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('builds no message while nobody listens', () => {
    let built = 0;
    const build = () => {
      built++;
      return { backend: 'memory', service: 'web', id: 'a', state: 'active' as const, previous: undefined };
    };
    publish.registration(build);
    expect(built).toBe(0);
    const seen = listen<RegistrationMessage>(ROLLCALL_CHANNELS.registration);
    publish.registration(build);
    expect(built).toBe(1);
    expect(seen).toHaveLength(1);
  });
});
