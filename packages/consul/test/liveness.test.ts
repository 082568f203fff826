import { BackendUnavailableError, ConflictError, type ServiceInstance } from '@rollcall/core';
import {
  type ConsulAgent,
  eventually,
  Recorder,
  startConsul,
  startTcpProxy,
  uniqueService,
  waitFor,
} from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConsulBackend, ConsulOptions } from '../src/index.js';
import { backendOn, POLL_MS, passingIds } from './helpers.js';

// The liveness faults of issue 9 on a real Consul agent.
const instance = (service: string, id: string, host = '127.0.0.1'): ServiceInstance => ({
  id,
  service,
  host,
  port: 8080,
});
const ids = (e: { snapshot: { instances: readonly ServiceInstance[] } }) =>
  e.snapshot.instances.map((i) => i.id).join(',');

describe('consul liveness (issue 9)', () => {
  let agent: ConsulAgent;
  const clients: ConsulBackend[] = [];
  const client = (options: ConsulOptions = {}) => {
    const c = backendOn(agent, options);
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    agent = await startConsul();
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('item 4: a client closed 0-3 ms after register() leaves nothing behind, and register() never fails with a reset', async () => {
    const service = uniqueService('ghost');
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const c = client();
        const outcome = c.discovery.register(instance(service, `g${i}`), { ttlSeconds: 10 }).then(
          () => 'resolved',
          (e: Error) => e.name,
        );
        await new Promise((r) => setTimeout(r, i % 4));
        await c.close();
        return outcome;
      }),
    );
    // Resolved (it landed, then close deregistered it) or refused as closed/aborted: never a connection reset.
    for (const outcome of outcomes) expect(['resolved', 'ClosedError']).toContain(outcome);
    // Past one TTL check interval and a poll: nothing of it is passing.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await passingIds(agent, service)).toEqual([]);
  });

  it('item 9: registrations aborted mid-flight with the client open leave nothing behind', async () => {
    const c = client();
    const service = uniqueService('aborted');
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        c.discovery
          .register(instance(service, `a${i}`), { ttlSeconds: 10, signal: AbortSignal.timeout(i % 6) })
          .then(
            async (r) => {
              // It beat the abort: a normal registration, deregistered by the test.
              await r.deregister();
              return 'registered';
            },
            (e: Error) => e.name,
          ),
      ),
    );
    for (const outcome of outcomes) expect(['registered', 'AbortError']).toContain(outcome);
    await eventually(async () => (await passingIds(agent, service)).length === 0, { timeoutMs: 5000 });
    // And stays so (a write that landed after the abort was undone, not left to pass).
    await new Promise((r) => setTimeout(r, 1000));
    expect(await passingIds(agent, service)).toEqual([]);
  });

  it('item 9: an id another live client holds is a ConflictError; at the same address it is taken over, and the first owner does not fight', async () => {
    const [a, b] = [client(), client()];
    const service = uniqueService('dup');
    const first = await a.discovery.register(instance(service, 'x', '10.0.0.1'), { ttlSeconds: 10 });
    const error = await b.discovery.register(instance(service, 'x', '10.0.0.2')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(await passingIds(agent, service)).toEqual(['x']);
    const lost: string[] = [];
    first.on('lost', (e) => lost.push(e?.name ?? ''));
    const again = await b.discovery.register(instance(service, 'x', '10.0.0.1'), { ttlSeconds: 10 });
    expect(again.state).toBe('active');
    // b closing deregisters what it holds; a (the same id, its heartbeat failing) then takes it back.
    await b.close();
    await eventually(() => first.state === 'active' && lost.length > 0, { timeoutMs: 10_000 });
    expect(await passingIds(agent, service)).toEqual(['x']);
  });

  it('item 10: in blocking mode, an agent restarted between two queries is followed within a poll interval (not a whole 30 s wait)', async () => {
    const watcher = client({ watchMode: 'blocking' });
    const writer = client();
    const service = uniqueService('blind');
    await writer.discovery.register(instance(service, 'w1'), { ttlSeconds: 10 });
    const watch = new Recorder(watcher.discovery.watch(service));
    const kvWatch = new Recorder(watcher.kv.watchPrefix(`blind/${service}/`));
    await watch.next((e) => ids(e) === 'w1', { timeoutMs: POLL_MS + 2000 });
    await kvWatch.next((e) => e.type === 'sync', { timeoutMs: 5000 });
    // A change answers the blocking queries at once; the next ones start a poll interval (kv: a
    // second) later. Restarted in that gap, the agent gets queries carrying an index from before,
    // above its own, which Consul holds for the whole wait.
    await writer.discovery.register(instance(service, 'w0'), { ttlSeconds: 10 });
    await writer.kv.put(`blind/${service}/before`, 'x');
    await watch.next((e) => ids(e) === 'w0,w1', { timeoutMs: POLL_MS + 2000 });
    await agent.restart();
    // The restarted agent lost everything; the writer re-registers by itself. Then a change the watch must see.
    const restartedAt = Date.now();
    await writer.discovery.register(instance(service, 'w2'), { ttlSeconds: 10 });
    await writer.kv.put(`blind/${service}/key`, 'after-restart');
    await watch.next((e) => e.type !== 'stale' && ids(e) === 'w0,w1,w2', { timeoutMs: 2 * POLL_MS + 3000 });
    const key = `blind/${service}/key`;
    await kvWatch.next(
      (e) =>
        (e.type === 'change' && e.put.get(key) === 'after-restart') ||
        (e.type === 'sync' && e.entries.get(key) === 'after-restart'),
      { timeoutMs: 2 * POLL_MS + 3000 },
    );
    expect(Date.now() - restartedAt).toBeLessThan(2 * POLL_MS + 3000);
  });

  it('item 10: a silent partition is noticed by blocking watches within about a poll interval', async () => {
    const proxy = await startTcpProxy({ host: agent.host, port: agent.port });
    try {
      const watcher = client({ watchMode: 'blocking', port: proxy.port, callTimeoutMs: 2000 });
      const service = uniqueService('partition');
      await client().discovery.register(instance(service, 'p1'), { ttlSeconds: 10 });
      const watch = new Recorder(watcher.discovery.watch(service));
      const kvWatch = new Recorder(watcher.kv.watchPrefix(`partition/${service}/`));
      await watch.next((e) => ids(e) === 'p1', { timeoutMs: POLL_MS + 2000 });
      await kvWatch.next((e) => e.type === 'sync', { timeoutMs: 5000 });
      proxy.blackhole();
      const cutAt = Date.now();
      // A blocking query waits at most the poll interval (+1/16 jitter), then its deadline (the call timeout).
      const bound = POLL_MS + POLL_MS / 16 + 2000 + POLL_MS + 1000;
      await watch.next((e) => e.type === 'stale', { timeoutMs: bound });
      await kvWatch.next((e) => e.type === 'stale', { timeoutMs: bound });
      expect(Date.now() - cutAt).toBeLessThan(bound);
      const stale = watch.events.find((e) => e.type === 'stale');
      expect(stale && ids(stale)).toBe('p1');
      expect((stale as { error: Error }).error).toBeInstanceOf(BackendUnavailableError);
    } finally {
      proxy.heal();
      await proxy.close();
    }
  });

  it('registrations left alone stay put through the checks: no lost (several ids of one service in one read, one id alone)', async () => {
    const a = client({ reconcileIntervalMs: 300 });
    const shared = uniqueService('alone');
    const registrations = await Promise.all([
      ...['i1', 'i2', 'i3'].map((id) => a.discovery.register(instance(shared, id), { ttlSeconds: 10 })),
      a.discovery.register(instance(uniqueService('single'), 'j1'), { ttlSeconds: 10 }),
    ]);
    const seen: string[] = [];
    for (const r of registrations) {
      r.on('lost', (e) => seen.push(`${r.instance.id} lost: ${e?.message}`));
      r.on('restored', () => seen.push(`${r.instance.id} restored`));
    }
    const before = a.reconcileCount();
    await waitFor(() => a.reconcileCount() >= before + 3, {
      timeoutMs: 8000,
      message: 'the checks did not run',
    });
    expect(seen).toEqual([]);
    expect(registrations.map((r) => r.state)).toEqual(['active', 'active', 'active', 'active']);
  });

  it('a deregistered instance never comes back from a heartbeat in flight', async () => {
    const a = client();
    const service = uniqueService('late-pass');
    for (let i = 0; i < 10; i++) {
      const registration = await a.discovery.register(instance(service, `l${i}`), { ttlSeconds: 2 });
      // Around the first heartbeat (ttl/3): a pass in flight must not revive it.
      await new Promise((r) => setTimeout(r, 600 + (i % 3) * 50));
      await registration.deregister();
    }
    await new Promise((r) => setTimeout(r, 1500));
    expect(await passingIds(agent, service)).toEqual([]);
    await waitFor(async () => (await passingIds(agent, service)).length === 0, { timeoutMs: 1000 });
  });
});
