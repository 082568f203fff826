import type { Backend, ServiceInstance } from '@rollcall/core';
import { eventually, uniqueService } from '@rollcall/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { BRIDGE_META, type BridgeEvent, SOURCE_META, startBridge } from '../src/index.js';
import { consulOn, etcdOn, migratingOn, serversForFile } from './real-servers.js';

const servers = serversForFile();
const clients: Backend[] = [];
afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
});
function track<T extends Backend>(c: T): T {
  clients.push(c);
  return c;
}

/** Registers a service instance in Consul directly, as a service in another language would. */
async function registerInConsul(url: string, body: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${url}/v1/agent/service/register`, {
    method: 'PUT',
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(200);
}

describe('migrate bridge on real Consul and etcd', () => {
  it('mirrors foreign services into etcd: tagged copies, never copies back, one leader, hand-over, stale-safe', async () => {
    const s = await servers();
    const legacy = uniqueService('legacy');
    const native = uniqueService('native');
    for (const [id, port] of [
      ['legacy-1', 7001],
      ['legacy-2', 7002],
    ] as const)
      await registerInConsul(s.agent.url, {
        Name: legacy,
        ID: id,
        Address: '10.1.0.1',
        Port: port,
        Meta: { lang: 'go' },
      });
    // A copy made by some other bridge (e.g. one running the other way): never copied back.
    await registerInConsul(s.agent.url, {
      Name: legacy,
      ID: 'echo',
      Address: '10.1.0.9',
      Port: 7009,
      Meta: { [BRIDGE_META]: 'elsewhere' },
    });
    // A Rollcall client registers in both registries by itself: the bridge leaves it alone.
    await track(migratingOn(s, 'dual-write', { phaseKey: 'test/bridge/phase' })).discovery.register({
      id: 'n1',
      service: native,
      host: '127.0.0.1',
      port: 7100,
    });
    const events: Record<string, BridgeEvent[]> = { a: [], b: [] };
    const bridge = (name: 'a' | 'b') =>
      startBridge({
        // Blocking queries see a deregistration at once. After the agent's restart below, instances
        // missing from its empty list stay 10 s by default (core's re-sync grace): 1 s is enough here.
        from: track(consulOn(s, 'blocking', { resyncGraceMs: 1000 })),
        to: track(etcdOn(s)),
        all: true,
        id: `bridge-${name}`,
        settleMs: 200,
        rescanMs: 500,
        onEvent: (e) => events[name]!.push(e),
      });
    const a = bridge('a');
    await eventually(() => a.leading);
    const b = bridge('b');
    await eventually(() => events.b!.some((e) => e.type === 'waiting' && e.leader === 'bridge-a'));
    const etcd = track(etcdOn(s));
    const inEtcd = async (service: string) => (await etcd.discovery.getInstances(service)).instances;
    await eventually(async () => (await inEtcd(legacy)).length === 2, { timeoutMs: 10_000 });
    expect(await inEtcd(legacy)).toEqual(
      (['legacy-1', 'legacy-2'] as const).map(
        (id, i): ServiceInstance => ({
          id,
          service: legacy,
          host: '10.1.0.1',
          port: 7001 + i,
          metadata: { lang: 'go', [SOURCE_META]: 'consul', [BRIDGE_META]: 'bridge-a' },
        }),
      ),
    );
    expect((await inEtcd(native)).map((i) => [i.id, i.metadata])).toEqual([['n1', undefined]]);
    expect(b.leading).toBe(false);
    expect(events.b!.some((e) => e.type === 'copied')).toBe(false);

    // The source goes away: its copy goes too (Consul is polled at most every 5 s).
    await fetch(`${s.agent.url}/v1/agent/service/deregister/legacy-2`, { method: 'PUT' });
    await eventually(async () => (await inEtcd(legacy)).map((i) => i.id).join() === 'legacy-1', {
      timeoutMs: 10_000,
    });

    // The leader stops: its copies go, the other bridge leads and copies again.
    await a.stop();
    await eventually(() => b.leading, { timeoutMs: 5000 });
    await eventually(
      async () => (await inEtcd(legacy)).some((i) => i.metadata?.[BRIDGE_META] === 'bridge-b'),
      { timeoutMs: 10_000 },
    );
    expect(a.copies()).toEqual([]);

    // Consul unreachable: the last list stands, nothing is removed.
    await s.agent.kill();
    await eventually(() => events.b!.some((e) => e.type === 'source-stale' && e.service === legacy), {
      timeoutMs: 15_000,
    });
    expect(b.copies().map((i) => i.id)).toEqual(['legacy-1']);
    expect((await inEtcd(legacy)).map((i) => i.id)).toEqual(['legacy-1']);
    // Back, but empty (a dev agent forgets everything): the authoritative list removes the copy.
    await s.agent.restart();
    await eventually(async () => (await inEtcd(legacy)).length === 0, { timeoutMs: 25_000 });
    await b.stop();
    expect(events.b!.map((e) => e.type)).toEqual(
      expect.arrayContaining(['waiting', 'leading', 'copied', 'removed']),
    );
  });
});
