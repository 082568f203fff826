import { createEtcdBackend } from '@rollcall/etcd';
import { type EtcdServer, startEtcd } from '@rollcall/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { soak } from './soak.js';

let etcd: EtcdServer;
beforeAll(async () => {
  etcd = await startEtcd({ name: 'soak' });
});
afterAll(async () => {
  await etcd?.stop();
});

it('etcd soak: 6 processes registering, deregistering and crashing; 2 watchers fold every event and end up right', async () => {
  const observer = createEtcdBackend({ endpoints: etcd.endpoints });
  try {
    const { events, kills } = await soak({
      backend: 'etcd',
      address: etcd.clientUrl,
      churnMs: 30_000,
      // A killed process's instances leave by their ttl (2 s).
      settleMs: 10_000,
      observer,
    });
    expect(kills).toBeGreaterThan(3);
    expect(events).toBeGreaterThan(100);
  } finally {
    await observer.close();
  }
}, 90_000);
