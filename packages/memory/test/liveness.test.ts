import { BackendUnavailableError, type ServiceInstance } from '@rollcall/core';
import { Recorder } from '@rollcall/testkit';
import { describe, expect, it } from 'vitest';
import { createMemoryBackend, ManualClock, MemoryStore } from '../src/index.js';

const instance = (service: string, id: string): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 9000,
});
const ids = (e: { snapshot: { instances: readonly ServiceInstance[] } }) =>
  e.snapshot.instances.map((i) => i.id).join(',');

describe('memory backend: the faults of issue 9', () => {
  it('item 5: a watch started during an outage or after a crash breaks nothing when the store notifies again', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, expiryIntervalMs: 0 });
    const owner = createMemoryBackend({ store });
    const other = createMemoryBackend({ store });
    const crashed = createMemoryBackend({ store });
    try {
      await owner.discovery.register(instance('svc', 'a'), { ttlSeconds: 2 });
      store.crash(crashed);
      const afterCrash = crashed.discovery.watch('svc');
      store.outage();
      const during = new Recorder(other.discovery.watch('svc'));
      await expect(other.discovery.getInstances('fresh')).rejects.toBeInstanceOf(BackendUnavailableError);
      // The outage outlives the ttl: `a` expires when the store returns, and its owner puts it back.
      clock.advance(3000);
      expect(() => store.restore()).not.toThrow();
      await during.next((e) => ids(e) === 'a', { timeoutMs: 2000 });
      expect(during.events[0]?.type).toBe('sync');
      // More notifications: nothing throws out of another client's register(), nor out of expiry.
      await expect(owner.discovery.register(instance('svc', 'b'))).resolves.toBeDefined();
      clock.advance(10_000);
      expect(() => store.expire()).not.toThrow();
      await during.next((e) => ids(e) === 'a,b', { timeoutMs: 2000 });
      afterCrash.close();
    } finally {
      await Promise.all([owner.close(), other.close(), crashed.close()]);
      store.dispose();
    }
  });

  it('item 12: a backend made without a store disposes the store it made; no listener set outlives its watch', async () => {
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    for (let i = 0; i < 200; i++) {
      const backend = createMemoryBackend();
      const watch = backend.discovery.watch(`svc-${i}`);
      watch.close();
      await backend.close();
    }
    const timersAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    expect(timersAfter - timersBefore).toBeLessThanOrEqual(1);

    const store = new MemoryStore({ expiryIntervalMs: 0 });
    const client = createMemoryBackend({ store, cacheIdleMs: 0 });
    for (let i = 0; i < 100; i++) client.discovery.watch(`watched-${i}`).close();
    client.discovery.sweep();
    expect(store.watchedServiceCount).toBe(0);
    await client.close();
    store.dispose();
  });

  it('sessions nobody uses any more are revoked (issue 10 item 10): a lock ttl used once does not keep a session', async () => {
    const store = new MemoryStore({ expiryIntervalMs: 0 });
    const client = createMemoryBackend({ store });
    try {
      const lease = await client.locks.acquire('once', { ttlSeconds: 7 });
      expect(store.sessionCount).toBe(1);
      await lease.release();
      await client.close();
      expect(store.sessionCount).toBe(0);
    } finally {
      store.dispose();
    }
  });
});
