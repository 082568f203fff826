import { type ChannelOptions, connectivityState, status } from '@grpc/grpc-js';
import { type ServiceDiscovery, ValidationError } from '@rollcall/core';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { eventually, freePort, uniqueService } from '@rollcall/testkit';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type ResolverRegistration, registerResolver } from '../src/index.js';
import { GreeterClient, type ServedGreeter, startGreeter } from './greeter.js';
import { describeResolverSuite } from './resolver-suite.js';

// The in-memory registry reaches every watcher synchronously: 1 s is the same bound as etcd's.
describeResolverSuite(
  'memory',
  async () => {
    const store = new MemoryStore();
    return {
      servers: createMemoryBackend({ store }),
      client: createMemoryBackend({ store }),
      outage: async () => store.outage(),
      restore: async () => store.restore(),
      teardown: async () => store.dispose(),
    };
  },
  { propagationMs: 1000, staleMs: 1000 },
);

/** The client's discovery, counting the watches it opens and how many are open now. */
function countingDiscovery(discovery: ServiceDiscovery) {
  const counts = { opened: 0, open: 0 };
  const wrapped: ServiceDiscovery = Object.create(discovery);
  wrapped.watch = (service, options) => {
    const watch = discovery.watch(service, options);
    counts.opened += 1;
    counts.open += 1;
    let closed = false;
    const close = watch.close.bind(watch);
    watch.close = () => {
      if (!closed) counts.open -= 1;
      closed = true;
      close();
    };
    return watch;
  };
  return { discovery: wrapped, counts };
}

describe('memory: resolver mechanics', () => {
  const store = new MemoryStore();
  const servers = createMemoryBackend({ store });
  const clientBackend = createMemoryBackend({ store });
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await servers.close();
    await clientBackend.close();
    store.dispose();
  });

  function resolver(...args: Parameters<typeof registerResolver>): ResolverRegistration {
    const registration = registerResolver(...args);
    cleanups.push(() => registration.close());
    return registration;
  }
  async function greeters(service: string, spec: Record<string, number>): Promise<ServedGreeter[]> {
    const started = await Promise.all(
      Object.entries(spec).map(([id, weight]) => startGreeter(servers.discovery, service, id, { weight })),
    );
    for (const g of started) cleanups.push(() => g.serving.stop());
    return started;
  }
  function client(target: string, options: ChannelOptions = {}): GreeterClient {
    const c = new GreeterClient(target, options);
    cleanups.push(() => c.close());
    return c;
  }
  async function warm(c: GreeterClient, ids: string[]): Promise<void> {
    await eventually(async () => {
      const { servers: seen } = await c.helloMany(ids.length * 4);
      return ids.every((id) => seen.has(id));
    });
  }

  it('refuses bad arguments with a ValidationError naming the field, before registering anything', () => {
    const cases: [unknown, unknown, string][] = [
      [undefined, {}, 'discovery'],
      [{}, {}, 'discovery'],
      [clientBackend.discovery, { scheme: 'dns' }, 'options.scheme'],
      [clientBackend.discovery, { scheme: 'roll:call' }, 'options.scheme'],
      [clientBackend.discovery, { scheme: '' }, 'options.scheme'],
      [clientBackend.discovery, { policy: 'weighted_round_robin' }, 'options.policy'],
      [clientBackend.discovery, { minReresolutionIntervalMs: -1 }, 'options.minReresolutionIntervalMs'],
      [clientBackend.discovery, 'rollcall', 'options'],
    ];
    for (const [discovery, options, field] of cases) {
      const call = () => registerResolver(discovery as ServiceDiscovery, options as never);
      expect(call, JSON.stringify(options)).toThrow(ValidationError);
      try {
        call();
      } catch (error) {
        expect((error as ValidationError).field).toBe(field);
      }
    }
    const first = resolver(clientBackend.discovery, { scheme: 'dup' });
    expect(() => registerResolver(clientBackend.discovery, { scheme: 'dup' })).toThrow(/already registered/);
    first.close();
    resolver(clientBackend.discovery, { scheme: 'dup' });
  });

  it('malformed targets fail calls with UNAVAILABLE naming rollcall:///<service>; nothing throws', async () => {
    resolver(clientBackend.discovery);
    for (const target of [
      'rollcall://orders',
      'rollcall:///Orders_1',
      'rollcall://registry/orders',
      'rollcall:///a..b',
      'rollcall:///',
    ]) {
      let channel: GreeterClient | undefined;
      expect(() => {
        channel = client(target);
      }, target).not.toThrow();
      const result = await channel!.hello('x', { deadlineMs: 30_000 });
      expect(result, target).toMatchObject({ ok: false, code: status.UNAVAILABLE });
      expect(result.ok ? '' : result.details, target).toContain('rollcall:///<service>');
      expect(result.ok ? '' : result.details, target).toContain(`invalid target '${target}'`);
    }
    const hint = await client('rollcall://orders').hello();
    expect(hint.ok ? '' : hint.details).toContain('write rollcall:///orders');
    // The authority-less spelling names the same service as the triple slash.
    const service = uniqueService('spelling');
    await greeters(service, { a: 1 });
    expect(await client(`rollcall:${service}`).hello()).toEqual({ ok: true, server: 'a' });
  });

  it('weights 1:3 under rollcall_weighted give about 1:3 of the calls; a weight change applies at once', async () => {
    resolver(clientBackend.discovery, { policy: 'rollcall_weighted' });
    const service = uniqueService('weighted');
    const [light, heavy] = await greeters(service, { light: 1, heavy: 3 });
    const channel = client(`rollcall:///${service}`);
    await warm(channel, ['light', 'heavy']);
    const before = [light!.calls, heavy!.calls];
    const { failures } = await channel.helloMany(400);
    expect(failures).toEqual([]);
    const ratio = (heavy!.calls - before[1]!) / (light!.calls - before[0]!);
    expect(ratio).toBeGreaterThan(2);
    expect(ratio).toBeLessThan(4.5);

    // A restarted process registers the same instance with weight 1: an `updated` event.
    const restarted = createMemoryBackend({ store });
    cleanups.push(() => restarted.close());
    await restarted.discovery.register({ ...heavy!.serving.instance, weight: 1 });
    await eventually(async () => {
      const { servers: split } = await channel.helloMany(40);
      return split.get('heavy') === 20 && split.get('light') === 20;
    });
  });

  it("the channel's own grpc.service_config wins over the resolver's default", async () => {
    resolver(clientBackend.discovery);
    const service = uniqueService('config');
    const [light, heavy] = await greeters(service, { light: 1, heavy: 3 });
    // Round robin by default: weights are ignored.
    const plain = client(`rollcall:///${service}`);
    await warm(plain, ['light', 'heavy']);
    const spread = await plain.helloMany(40);
    expect(
      Math.abs((spread.servers.get('light') ?? 0) - (spread.servers.get('heavy') ?? 0)),
    ).toBeLessThanOrEqual(2);
    // The channel picks the weighted policy itself.
    const weighted = client(`rollcall:///${service}`, {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ rollcall_weighted: {} }] }),
    });
    await warm(weighted, ['light', 'heavy']);
    const before = [light!.calls, heavy!.calls];
    await weighted.helloMany(200);
    const ratio = (heavy!.calls - before[1]!) / (light!.calls - before[0]!);
    expect(ratio).toBeGreaterThan(2);
    expect(ratio).toBeLessThan(4.5);
    // pick_first sends everything to one instance.
    const first = client(`rollcall:///${service}`, {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ pick_first: {} }] }),
    });
    expect((await first.helloMany(20)).servers.size).toBe(1);
  });

  it('channels of one service share one discovery watch', async () => {
    const { discovery, counts } = countingDiscovery(clientBackend.discovery);
    const registration = resolver(discovery);
    const service = uniqueService('shared');
    await greeters(service, { a: 1, b: 1 });
    const channels = [1, 2, 3].map(() => client(`rollcall:///${service}`));
    for (const channel of channels) await warm(channel, ['a', 'b']);
    expect(counts.opened).toBe(1);
    expect(registration.stats().services).toEqual([{ service, channels: 3, instances: 2, stale: false }]);
  });

  it('a channel that goes IDLE releases its watch, and its next call resolves again (seeing changes made meanwhile)', async () => {
    const { discovery, counts } = countingDiscovery(clientBackend.discovery);
    const registration = resolver(discovery);
    const service = uniqueService('idle');
    const [a] = await greeters(service, { a: 1 });
    const channel = client(`rollcall:///${service}`, { 'grpc.client_idle_timeout_ms': 1000 });
    expect((await channel.hello()).ok).toBe(true);
    expect(counts.open).toBe(1);
    await eventually(() => channel.getChannel().getConnectivityState(false) === connectivityState.IDLE, {
      timeoutMs: 5000,
      message: 'the channel goes IDLE',
    });
    expect(counts.open).toBe(0);
    expect(registration.stats().services).toEqual([]);

    await a!.serving.registration.deregister();
    await greeters(service, { b: 1 });
    const result = await channel.hello();
    expect(result).toEqual({ ok: true, server: 'b' });
    expect(counts).toEqual({ opened: 2, open: 1 });
  });

  it('dispose ends the watches; resolved channels keep their last addresses, new ones fail until registered again', async () => {
    const { discovery, counts } = countingDiscovery(clientBackend.discovery);
    const registration = registerResolver(discovery);
    const service = uniqueService('dispose');
    await greeters(service, { a: 1 });
    const resolved = client(`rollcall:///${service}`);
    expect((await resolved.hello()).ok).toBe(true);
    registration[Symbol.dispose]();
    expect(counts.open).toBe(0);
    expect(registration.stats().services).toEqual([]);
    expect(await resolved.hello()).toEqual({ ok: true, server: 'a' });

    const fresh = client(`rollcall:///${service}`);
    const result = await fresh.hello('x', { deadlineMs: 30_000 });
    expect(result).toMatchObject({ ok: false, code: status.UNAVAILABLE });
    expect(result.ok ? '' : result.details).toContain('disposed');

    resolver(clientBackend.discovery);
    expect(await client(`rollcall:///${service}`).hello()).toEqual({ ok: true, server: 'a' });
  });

  it('answers re-resolution requests at most once per interval when every address fails (no busy loop)', async () => {
    const registration = resolver(clientBackend.discovery, { minReresolutionIntervalMs: 500 });
    const service = uniqueService('dead');
    // Registered, but nothing listens there: every connection attempt is refused at once.
    const registrationOfDead = await servers.discovery.register({
      id: 'dead',
      service,
      host: '127.0.0.1',
      port: await freePort(),
    });
    cleanups.push(() => registrationOfDead.deregister());
    const channel = client(`rollcall:///${service}`, {
      'grpc.initial_reconnect_backoff_ms': 20,
      'grpc.max_reconnect_backoff_ms': 40,
    });
    const start = performance.now();
    const before = registration.stats();
    await eventually(
      async () => {
        await channel.hello('x', { deadlineMs: 200 });
        return registration.stats().reresolutionRequests - before.reresolutionRequests >= 8;
      },
      { timeoutMs: 20_000, message: 'the load balancer asks for re-resolution' },
    );
    const elapsed = performance.now() - start;
    const answered = registration.stats().resolutions - before.resolutions;
    // The first answer, then at most one per 500 ms.
    expect(answered).toBeLessThanOrEqual(2 + Math.floor(elapsed / 500));
    expect(answered).toBeLessThan(registration.stats().reresolutionRequests - before.reresolutionRequests);
  });

  it('a channel opened while the registry is down and nothing is known fails with UNAVAILABLE, then recovers', async () => {
    resolver(clientBackend.discovery);
    const service = uniqueService('cold');
    await greeters(service, { a: 1 });
    const cold = createMemoryBackend({ store });
    cleanups.push(() => cold.close());
    resolver(cold.discovery, { scheme: 'cold' });
    store.outage();
    try {
      const channel = client(`cold:///${service}`);
      const result = await channel.hello('x', { deadlineMs: 30_000 });
      expect(result).toMatchObject({ ok: false, code: status.UNAVAILABLE });
      expect(result.ok ? '' : result.details).toContain(
        `cannot resolve '${service}', no instance is known yet`,
      );
      expect(result.ok ? '' : result.details).toContain('outage');
    } finally {
      store.restore();
    }
    const channel = client(`cold:///${service}`);
    await eventually(async () => (await channel.hello()).ok, { timeoutMs: 10_000 });
  });
});
