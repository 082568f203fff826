import type { DiscoveryEvent, ServiceInstance } from '@rollcall/core';
import { type EtcdCluster, Recorder, startEtcdCluster, uniqueService, waitFor } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend } from '../src/index.js';

const instance = (service: string, id: string): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 7000,
});
const ids = (e: DiscoveryEvent) => e.snapshot.instances.map((i) => i.id).join(',');

describe('etcd backend on a 3-member cluster', () => {
  let cluster: EtcdCluster;
  const clients: EtcdBackend[] = [];

  beforeAll(async () => {
    cluster = await startEtcdCluster({ size: 3 });
  });
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await cluster?.stop();
  });

  it('5: the leader killed: no registration lost, no watcher sees a spurious removal, writes resume', async () => {
    const client = () => {
      const c = createEtcdBackend({ endpoints: cluster.endpoints });
      clients.push(c);
      return c;
    };
    const [a, b] = [client(), client()];
    const service = uniqueService('leader');
    const ttl = 5;
    const lost: string[] = [];
    for (const id of ['i1', 'i2', 'i3', 'i4', 'i5']) {
      const registration = await a.discovery.register(instance(service, id), { ttlSeconds: ttl });
      registration.on('lost', () => lost.push(id));
    }
    const watch = new Recorder(b.discovery.watch(service));
    await watch.next((e) => ids(e) === 'i1,i2,i3,i4,i5');

    const leader = await cluster.leader();
    await leader.kill();
    const acksAtKill = a.stats().keepaliveAcks;

    // Writes resume on the new leader: a registration made after the kill succeeds (retrying while the election runs).
    await waitFor(
      async () => {
        await a.discovery.register(instance(service, 'i6'), { ttlSeconds: ttl });
        return true;
      },
      { timeoutMs: 15_000, message: 'no registration accepted after the leader was killed' },
    );
    await watch.next((e) => ids(e) === 'i1,i2,i3,i4,i5,i6', { timeoutMs: 10_000 });
    // The lease stays alive through the new leader: keepalives are acknowledged again for more than a TTL.
    await waitFor(() => a.stats().keepaliveAcks >= acksAtKill + 4, {
      timeoutMs: 20_000,
      message: 'keepalives not acknowledged after the election',
    });

    expect(lost).toEqual([]);
    expect(a.stats().leasesGranted).toBe(1);
    for (const e of watch.events) {
      if (e.type === 'change') expect(e.removed, 'spurious removal').toEqual([]);
      if (e.type !== 'stale' && watch.events.indexOf(e) > 0)
        expect(e.snapshot.instances.length).toBeGreaterThanOrEqual(5);
    }
    const fresh = client();
    expect((await fresh.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual([
      'i1',
      'i2',
      'i3',
      'i4',
      'i5',
      'i6',
    ]);

    // The killed member rejoins on its data dir; nothing changes for the clients.
    await leader.restart();
    await a.kv.put('rc-test/after-rejoin', 'ok');
    expect(await b.kv.get('rc-test/after-rejoin')).toBe('ok');
  });
});
