import { type EtcdServer, startEtcd } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend } from '../src/index.js';

describe('etcd locks: list', () => {
  let etcd: EtcdServer;
  const clients: EtcdBackend[] = [];
  const client = () => {
    const backend = createEtcdBackend({ endpoints: etcd.endpoints, namespace: '/list-test/' });
    clients.push(backend);
    return backend;
  };

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await etcd?.stop();
  });

  it('lists holders (lease, fencing token), election leaders and waiters across clients, in create order', async () => {
    const a = client();
    const b = client();
    expect(await a.locks.list()).toEqual([]);
    const lease = await a.locks.acquire('jobs', { ttlSeconds: 2 });
    let queued!: () => void;
    const isQueued = new Promise<void>((r) => {
      queued = r;
    });
    const waiting = b.locks.acquire('jobs', { ttlSeconds: 2, onQueued: queued });
    await isQueued;
    const leadership = await b.locks.campaign('primary', 'node-b', { ttlSeconds: 2 });
    const third = client();
    const listed = await third.locks.list();
    expect(listed).toEqual([
      {
        kind: 'lock',
        name: 'jobs',
        holder: expect.stringMatching(/^lease [0-9a-f]+$/),
        token: lease.fencingToken,
        waiters: 1,
      },
      { kind: 'election', name: 'primary', holder: 'node-b', token: expect.any(BigInt), waiters: 0 },
    ]);
    await lease.release();
    const next = await waiting;
    const after = await third.locks.list();
    expect(after[0]).toMatchObject({ name: 'jobs', token: next.fencingToken, waiters: 0 });
    expect(after[0]!.token! > lease.fencingToken).toBe(true);
    await next.release();
    await leadership.resign();
    expect(await third.locks.list()).toEqual([]);
  });

  it('skips keys under the lock roots that are not queue keys', async () => {
    await etcd.etcdctl(['put', '/list-test/locks/stray', 'x']);
    expect(await client().locks.list()).toEqual([]);
  });
});
