import { hostname } from 'node:os';
import { describe, expect, it, vi } from 'vitest';
import { agentForFile, backendOn } from './helpers.js';

vi.setConfig({ testTimeout: 60_000 });

describe('consul locks: list', () => {
  const { shared: agent } = agentForFile();

  it('lists holders (host:pid, fencing token), election leaders and waiters across clients', async () => {
    const a = backendOn(await agent());
    const b = backendOn(await agent());
    const c = backendOn(await agent());
    try {
      expect(await c.locks.list()).toEqual([]);
      const lease = await a.locks.acquire('jobs', { ttlSeconds: 10 });
      let queued!: () => void;
      const isQueued = new Promise<void>((r) => {
        queued = r;
      });
      const waiting = b.locks.acquire('jobs', { ttlSeconds: 10, onQueued: queued });
      await isQueued;
      const leadership = await b.locks.campaign('primary', 'node-b', { ttlSeconds: 10 });
      expect(await c.locks.list()).toEqual([
        {
          kind: 'lock',
          name: 'jobs',
          holder: `${hostname()}:${process.pid}`,
          token: lease.fencingToken,
          waiters: 1,
        },
        { kind: 'election', name: 'primary', holder: 'node-b', token: expect.any(BigInt), waiters: 0 },
      ]);
      await lease.release();
      const next = await waiting;
      const after = await c.locks.list();
      expect(after[0]).toMatchObject({ name: 'jobs', token: next.fencingToken, waiters: 0 });
      await next.release();
      await leadership.resign();
      expect(await c.locks.list()).toEqual([]);
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });
});
