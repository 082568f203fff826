import { describe, expect, it } from 'vitest';
import { createMemoryBackend, MemoryStore } from '../src/index.js';

describe('memory locks: list', () => {
  it('lists holders, fencing tokens and waiters across clients, and forgets released locks', async () => {
    const store = new MemoryStore();
    const a = createMemoryBackend({ store });
    const b = createMemoryBackend({ store });
    expect(a.locks.listable).toBe(true);
    expect(await a.locks.list()).toEqual([]);
    const lease = await a.locks.acquire('jobs', { ttlSeconds: 2 });
    const queued = new Promise<void>((resolve) => {
      void b.locks.acquire('jobs', { ttlSeconds: 2, onQueued: resolve }).then((l) => l.release());
    });
    await queued;
    const leadership = await b.locks.campaign('primary', 'node-b', { ttlSeconds: 2 });
    const listed = await b.locks.list();
    expect(listed).toEqual([
      { kind: 'lock', name: 'jobs', holder: expect.any(String), token: lease.fencingToken, waiters: 1 },
      { kind: 'election', name: 'primary', holder: 'node-b', token: expect.any(BigInt), waiters: 0 },
    ]);
    await lease.release();
    await leadership.resign();
    // The waiter got the lock and released it at once: nothing is held or queued any more.
    await expect.poll(() => a.locks.list()).toEqual([]);
    await Promise.all([a.close(), b.close()]);
  });

  it('a closed lock service refuses to list', async () => {
    const backend = createMemoryBackend();
    await backend.close();
    await expect(backend.locks.list()).rejects.toThrow(/closed/);
  });
});
