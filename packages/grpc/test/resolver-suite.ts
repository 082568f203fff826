// The resolver's behaviour against one backend, with real grpc-js servers and channels. Each
// backend's test file calls `describeResolverSuite` with a harness on its own real server.
import { status } from '@grpc/grpc-js';
import type { Backend } from '@rollcall/core';
import { eventually, uniqueService } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ResolverRegistration, registerResolver } from '../src/index.js';
import { GreeterClient, recentlyAvoided, type ServedGreeter, startGreeter, startTraffic } from './greeter.js';

export interface ResolverHarness {
  /** The backend the greeter servers register through (one process). */
  servers: Backend;
  /** The backend the client channels resolve through (another process). */
  client: Backend;
  /** Makes the registry unreachable for both. */
  outage(): Promise<void>;
  /** Brings it back. */
  restore(): Promise<void>;
  teardown(): Promise<void>;
}

export interface ResolverSuiteBounds {
  /** Longest time from a registry write (resolved) to the channel acting on it. */
  propagationMs: number;
  /** Longest time from the start of an outage to the client's watch reporting it. */
  staleMs: number;
}

export function describeResolverSuite(
  name: string,
  makeHarness: () => Promise<ResolverHarness>,
  bounds: ResolverSuiteBounds,
): void {
  describe(`${name}: channels follow the registry`, () => {
    let harness: ResolverHarness;
    let resolver: ResolverRegistration;
    const cleanups: (() => unknown)[] = [];
    beforeAll(async () => {
      harness = await makeHarness();
      resolver = registerResolver(harness.client.discovery);
    });
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });
    afterAll(async () => {
      resolver?.close();
      await harness?.teardown();
    });

    async function greeters(service: string, ids: string[]): Promise<ServedGreeter[]> {
      const started = await Promise.all(
        ids.map((id) => startGreeter(harness.servers.discovery, service, id)),
      );
      for (const g of started) cleanups.push(() => g.serving.shutdown());
      return started;
    }
    function client(service: string): GreeterClient {
      const c = new GreeterClient(`rollcall:///${service}`);
      cleanups.push(() => c.close());
      return c;
    }
    async function seesAll(c: GreeterClient, ids: string[]): Promise<void> {
      await eventually(
        async () => {
          const { servers, failures } = await c.helloMany(ids.length * 6);
          return failures.length === 0 && ids.every((id) => servers.has(id)) && servers.size === ids.length;
        },
        { timeoutMs: bounds.propagationMs + 5000, message: `calls spread over ${ids.join(', ')}` },
      );
    }

    it(`spreads calls over every instance; a deregistered one gets no further call and none fails; a new one gets calls; each change lands within ${bounds.propagationMs} ms`, async () => {
      const service = uniqueService('greeter');
      const [a, b, c] = await greeters(service, ['a', 'b', 'c']);
      const channel = client(service);
      await seesAll(channel, ['a', 'b', 'c']);

      const traffic = startTraffic(channel);
      cleanups.push(() => traffic.stop());
      await eventually(() => traffic.countFor('a') > 0, { message: 'traffic reaches a' });
      await a!.serving.registration.deregister();
      const removedAt = performance.now();
      await eventually(() => recentlyAvoided(traffic, 'a', removedAt), {
        timeoutMs: bounds.propagationMs,
        message: 'the channel stops calling the deregistered instance',
      });
      const callsOfA = a!.calls;

      const [d] = await greeters(service, ['d']);
      await eventually(() => d!.calls > 0, {
        timeoutMs: bounds.propagationMs,
        message: 'the channel calls the new instance',
      });
      await eventually(() => b!.calls > 0 && c!.calls > 0 && traffic.results.length > 100);
      await traffic.stop();
      expect(traffic.failures()).toEqual([]);
      expect(a!.calls, 'a got calls after its deregistration reached the channel').toBe(callsOfA);
      expect(new Set(traffic.results.slice(-30).map((r) => r.result.ok && r.result.server))).toEqual(
        new Set(['b', 'c', 'd']),
      );
    });

    it('fails calls fast with UNAVAILABLE once every instance is deregistered, and recovers when one returns', async () => {
      const service = uniqueService('greeter');
      const [a, b] = await greeters(service, ['a', 'b']);
      const channel = client(service);
      await seesAll(channel, ['a', 'b']);
      await Promise.all([a!.serving.registration.deregister(), b!.serving.registration.deregister()]);
      const failed = await eventually(
        async () => {
          const result = await channel.hello('x', { deadlineMs: 30_000 });
          return result.ok ? undefined : result;
        },
        { timeoutMs: bounds.propagationMs, message: 'calls fail once the list is empty' },
      );
      // A 30 s deadline: UNAVAILABLE (not DEADLINE_EXCEEDED) means the call failed at once.
      expect(failed).toMatchObject({ code: status.UNAVAILABLE });
      expect(failed.ok ? '' : failed.details).toContain(`no instance of '${service}' is registered`);

      const [c] = await greeters(service, ['c']);
      await eventually(async () => (await channel.hello()).ok, {
        timeoutMs: bounds.propagationMs + 2000,
        message: 'calls succeed once an instance is back',
      });
      expect(c!.calls).toBeGreaterThan(0);
    });

    it('keeps calling the last known instances while the registry is down', async () => {
      const service = uniqueService('greeter');
      await greeters(service, ['a', 'b', 'c']);
      const channel = client(service);
      await seesAll(channel, ['a', 'b', 'c']);
      await harness.outage();
      try {
        await eventually(() => resolver.stats().services.find((s) => s.service === service)?.stale, {
          timeoutMs: bounds.staleMs,
          message: "the client's watch reports the outage",
        });
        const { servers, failures } = await channel.helloMany(30);
        expect(failures).toEqual([]);
        expect([...servers.keys()].sort()).toEqual(['a', 'b', 'c']);
      } finally {
        await harness.restore();
      }
    });
  });
}
