// The pattern the README shows: a service class gets its discovery by injection, and its unit
// test runs it against the in-memory backend chosen by configuration.
import 'reflect-metadata';
import { createPicker, type ServiceDiscovery, TYPES } from '@rollcall/core';
import type { MemoryBackend } from '@rollcall/memory';
import { eventually, recordingLogger } from '@rollcall/testkit';
import { Container, inject, injectable } from 'inversify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createContainer, type LiveConfigFactory, rollcallModule } from '../src/index.js';

@injectable()
class CheckoutService {
  constructor(@inject(TYPES.ServiceDiscovery) private readonly discovery: ServiceDiscovery) {}

  /** Picks an order-service instance to call, round robin. */
  async orderEndpoints(calls: number): Promise<string[]> {
    using picker = createPicker(this.discovery, 'orders');
    await picker.ready();
    return Array.from({ length: calls }, () => {
      const i = picker.pick();
      return i ? `${i.host}:${i.port}` : 'none';
    });
  }
}

describe('dependency injection', () => {
  it('a service with @inject(TYPES.ServiceDiscovery) runs against the memory backend by configuration', async () => {
    const container = createContainer({ backend: 'memory' });
    container.bind(CheckoutService).toSelf();
    const discovery = container.get<ServiceDiscovery>(TYPES.ServiceDiscovery);
    expect(discovery.backend).toBe('memory');
    await discovery.register({ id: 'o1', service: 'orders', host: '10.0.0.1', port: 8080 });
    await discovery.register({ id: 'o2', service: 'orders', host: '10.0.0.2', port: 8080 });
    const checkout = container.get(CheckoutService);
    expect(await checkout.orderEndpoints(4)).toEqual([
      '10.0.0.1:8080',
      '10.0.0.2:8080',
      '10.0.0.1:8080',
      '10.0.0.2:8080',
    ]);
    await container.unbindAllAsync();
    await expect(discovery.getInstances('orders')).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });

  it('all five tokens are singletons of one backend', () => {
    const container = new Container();
    container.load(rollcallModule({ backend: 'memory' }));
    const backend = container.get<{ discovery: unknown; kv: unknown; locks: unknown }>(TYPES.Backend);
    expect(container.get(TYPES.Backend)).toBe(backend);
    expect(container.get(TYPES.ServiceDiscovery)).toBe(backend.discovery);
    expect(container.get(TYPES.KeyValueSource)).toBe(backend.kv);
    expect(container.get(TYPES.LockService)).toBe(backend.locks);
    expect(container.get(TYPES.RollcallConfig)).toEqual({ backend: 'memory' });
    expect(TYPES.ServiceDiscovery).toBe(Symbol.for('rollcall.ServiceDiscovery'));
  });

  it('TYPES.LiveConfigFactory makes live configurations over the bound backend', async () => {
    const { z } = await import('zod');
    const container = createContainer({ backend: 'memory' });
    const kv = container.get<import('@rollcall/core').KeyValueSource>(TYPES.KeyValueSource);
    await kv.put('/configs/svc/test/log_level', 'debug');
    const factory = container.get<LiveConfigFactory>(TYPES.LiveConfigFactory);
    const config = await factory({
      prefix: '/configs/svc/test/',
      schema: z.object({ log_level: z.string(), retries: z.number() }),
      defaults: { retries: 3 },
    });
    expect(config.current).toEqual({ log_level: 'debug', retries: 3 });
    await config.close();
    await container.unbindAllAsync();
  });

  it('a test can rebind TYPES.ServiceDiscovery to its own memory backend', async () => {
    const { createMemoryBackend } = await import('@rollcall/memory');
    const own = createMemoryBackend();
    const container = createContainer({ backend: 'memory' });
    container.rebind<ServiceDiscovery>(TYPES.ServiceDiscovery).toConstantValue(own.discovery);
    container.bind(CheckoutService).toSelf();
    await own.discovery.register({ id: 'x', service: 'orders', host: 'orders.internal', port: 443 });
    expect(await container.get(CheckoutService).orderEndpoints(2)).toEqual([
      'orders.internal:443',
      'orders.internal:443',
    ]);
    await own.close();
  });
});

describe('the container logger (TYPES.Logger)', () => {
  it('the memory backend and live configs the container builds report to the bound logger, with their bindings', async () => {
    const logger = recordingLogger();
    const container = createContainer({ backend: 'memory' });
    container.bind(TYPES.Logger).toConstantValue(logger);
    const backend = container.get<MemoryBackend>(TYPES.Backend);
    const registration = await backend.discovery.register(
      { id: 'm1', service: 'orders', host: '10.0.0.1', port: 8080 },
      { ttlSeconds: 2 },
    );
    // An outage past the ttl: the registration is lost, then written back; both are logged.
    backend.store.outage();
    await eventually(() => registration.state === 'recovering', { timeoutMs: 10_000 });
    backend.store.restore();
    await eventually(() => registration.state === 'active', { timeoutMs: 10_000 });
    await eventually(() => logger.lines.some((l) => l.startsWith('info registration restored')));
    expect(logger.lines.find((l) => l.startsWith('warn registration lost'))).toMatch(
      /"backend":"memory","service":"orders","id":"m1"/,
    );
    const make = container.get<LiveConfigFactory>(TYPES.LiveConfigFactory);
    await backend.kv.put('cfg/level', '"loud"');
    const config = await make({
      prefix: 'cfg/',
      schema: z.object({ level: z.enum(['low', 'high']).default('low') }),
    });
    await eventually(() => logger.lines.some((l) => l.startsWith('error live config error')));
    expect(logger.lines.find((l) => l.startsWith('error live config error'))).toContain('"config":"cfg/"');
    await config.close();
    await container.unbindAllAsync();
  });
});
