import { type EtcdServer, startEtcd } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend } from '../src/index.js';

// The listing itself is a lock contract test (`list: true`); this is etcd's own edge.
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

  it('skips keys under the lock roots that are not queue keys', async () => {
    await etcd.etcdctl(['put', '/list-test/locks/stray', 'x']);
    expect(await client().locks.list()).toEqual([]);
  });
});
