import {
  type ConsulAgent,
  Recorder,
  startConsul,
  startCountingHttpProxy,
  uniqueService,
} from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendOn, POLL_MS, passingIds } from './helpers.js';

// Issue 10, item 8: the Consul client's connections are bounded (Consul allows 200 per client
// address): a burst of registrations queues instead of failing, and normal use prints no warning.
describe('consul connection pool', () => {
  let agent: ConsulAgent;
  beforeAll(async () => {
    agent = await startConsul();
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('1,000 concurrent registrations from one process all succeed while a neighbour keeps reading; no listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    // The burst goes through a counting proxy: what reached the agent when the first registration was done.
    const proxy = await startCountingHttpProxy({ host: agent.host, port: agent.port });
    const a = backendOn({ host: agent.host, port: proxy.port });
    const neighbour = backendOn(agent);
    const service = uniqueService('burst');
    const registerPuts = () => proxy.count((r) => r.path.startsWith('/v1/agent/service/register'));
    try {
      let neighbourFailures = 0;
      let reading = true;
      const reads = (async () => {
        while (reading) await neighbour.kv.get('burst/probe').catch(() => (neighbourFailures += 1));
      })();
      let putsWhenFirstDone: number | undefined;
      const outcomes = await Promise.allSettled(
        Array.from({ length: 1000 }, (_, i) =>
          a.discovery
            .register({ id: `b${i}`, service, host: '127.0.0.1', port: 10_000 + i }, { ttlSeconds: 30 })
            .finally(() => {
              putsWhenFirstDone ??= registerPuts();
            }),
        ),
      );
      reading = false;
      await reads;
      const failed = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[];
      expect(failed.map((f) => String(f.reason)).slice(0, 3)).toEqual([]);
      expect(neighbourFailures).toBe(0);
      // At most maxConnections (16) registrations are written at once, so they finish one after
      // another: when the first is done, at most 16 registrations have reached the agent (all 1,000
      // interleaved in the pool's queue before, none finishing until nearly all had begun).
      expect(putsWhenFirstDone).toBeLessThanOrEqual(16);
      expect((await passingIds(agent, service)).length).toBe(1000);
      await a.close();
      expect(await passingIds(agent, service)).toEqual([]);
      expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await Promise.allSettled([a.close(), neighbour.close()]);
      await proxy.close();
    }
  }, 120_000);

  it('blocking queries have a pool of their own: watches held for a whole wait never delay an ordinary call', async () => {
    // One ordinary connection, and more held watches than that: on a shared pool every call below
    // would queue behind a blocking query held for its whole wait (the poll interval).
    const a = backendOn(agent, { maxConnections: 1 });
    const prefix = `held/${uniqueService('pool')}`;
    const watches = Array.from({ length: 4 }, (_, i) => new Recorder(a.kv.watchPrefix(`${prefix}/${i}/`)));
    try {
      for (const w of watches) await w.next((e) => e.type === 'sync', { timeoutMs: 5000 });
      // The first blocking query follows the initial read at once: let every watch get to its wait.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        await a.kv.put(`${prefix}/plain`, String(i));
        expect(await a.kv.get(`${prefix}/plain`)).toBe(String(i));
        expect(performance.now() - started).toBeLessThan(POLL_MS / 5);
      }
    } finally {
      await a.close();
    }
  }, 30_000);
});
