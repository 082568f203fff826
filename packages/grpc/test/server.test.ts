import { EventEmitter } from 'node:events';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { ClosedError, installGracefulShutdown, ValidationError } from '@rollcall/core';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { eventually, uniqueService } from '@rollcall/testkit';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { registerResolver, serveGrpc } from '../src/index.js';
import { GreeterClient, GreeterServer, startGreeter, startTraffic } from './greeter.js';

describe('serveGrpc: bind, register the bound port, leave gracefully', () => {
  const store = new MemoryStore();
  const servers = createMemoryBackend({ store });
  const clientBackend = createMemoryBackend({ store });
  const resolver = registerResolver(clientBackend.discovery);
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    resolver.close();
    await Promise.all([servers.close(), clientBackend.close()]);
    store.dispose();
  });
  function client(target: string): GreeterClient {
    const c = new GreeterClient(target);
    cleanups.push(() => c.close());
    return c;
  }

  it('registers the port actually bound for port 0, under a default id naming service, host and port', async () => {
    const service = uniqueService('bound');
    const greeter = new GreeterServer('g');
    const serving = await serveGrpc(greeter.server, {
      discovery: servers.discovery,
      instance: { service, version: '1.2.0' },
      listenHost: '127.0.0.1',
    });
    cleanups.push(() => serving.stop());
    expect(serving.port).toBeGreaterThan(0);
    expect(serving.instance).toEqual({
      id: `${service}-127.0.0.1-${serving.port}`,
      service,
      host: '127.0.0.1',
      port: serving.port,
      version: '1.2.0',
    });
    const { instances } = await clientBackend.discovery.getInstances(service);
    expect(instances).toEqual([serving.instance]);
    expect(await client(`ipv4:127.0.0.1:${serving.port}`).hello()).toEqual({ ok: true, server: 'g' });
    expect(await client(`rollcall:///${service}`).hello()).toEqual({ ok: true, server: 'g' });
  });

  it('refuses bad options with a ValidationError naming the field, before binding', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ instance: { service: 'Bad_Name' } }, 'options.instance.service'],
      [{ instance: { service: 'ok', weight: 0 } }, 'options.instance.weight'],
      [{ instance: undefined }, 'options.instance'],
      [{ instance: { service: 'ok' }, port: 70_000 }, 'options.port'],
      [{ instance: { service: 'ok' }, drainMs: -1 }, 'options.drainMs'],
      [{ instance: { service: 'ok' }, ttlSeconds: 1 }, 'options.ttlSeconds'],
      [{ instance: { service: 'ok' }, shutdownTimeoutMs: Number.NaN }, 'options.shutdownTimeoutMs'],
      [{ instance: { service: 'ok' }, discovery: {} }, 'options.discovery'],
    ];
    for (const [options, field] of cases) {
      const server = new Server();
      const error = await serveGrpc(server, { discovery: servers.discovery, ...options } as never).catch(
        (e: unknown) => e,
      );
      expect(error, field).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
      // Nothing was bound: a server that never bound has nothing to drain.
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    }
  });

  it('shuts the server down again when registering fails, and rethrows', async () => {
    const closed = createMemoryBackend({ store });
    await closed.close();
    const greeter = new GreeterServer('g');
    await expect(
      serveGrpc(greeter.server, {
        discovery: closed.discovery,
        instance: { service: 'closed', id: 'g' },
        listenHost: '127.0.0.1',
      }),
    ).rejects.toBeInstanceOf(ClosedError);
    // The server was shut down: grpc-js refuses to bind it again.
    expect(() =>
      greeter.server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), () => {}),
    ).toThrow(/after shutdown/);
  });

  it('shutdown(): deregisters, keeps serving through the drain (in-flight calls finish, none fails), then stops', async () => {
    const service = uniqueService('drain');
    const leaving = await startGreeter(servers.discovery, service, 'leaving', { drainMs: 300 });
    const staying = await startGreeter(servers.discovery, service, 'staying');
    cleanups.push(() => staying.serving.stop());
    const channel = client(`rollcall:///${service}`);
    await eventually(async () => (await channel.helloMany(6)).servers.size === 2);
    const traffic = startTraffic(channel);
    cleanups.push(() => traffic.stop());
    const direct = client(`ipv4:127.0.0.1:${leaving.serving.port}`);
    const slow = direct.hello('slow', { delayMs: 500 });
    await eventually(() => leaving.calls > 0 && traffic.results.length > 10);
    await leaving.serving.shutdown();
    expect(await slow).toEqual({ ok: true, server: 'leaving' });
    const { instances } = await clientBackend.discovery.getInstances(service);
    expect(instances.map((i) => i.id)).toEqual(['staying']);
    await eventually(() => traffic.countFor('staying') > 20);
    await traffic.stop();
    expect(traffic.failures()).toEqual([]);
    expect(await direct.hello('late', { deadlineMs: 2000 })).toMatchObject({ ok: false });
  });

  it('stop() forces the shutdown after shutdownTimeoutMs when a call does not finish', async () => {
    const service = uniqueService('force');
    const greeter = new GreeterServer('g');
    const serving = await serveGrpc(greeter.server, {
      discovery: servers.discovery,
      instance: { service },
      listenHost: '127.0.0.1',
      shutdownTimeoutMs: 200,
    });
    const stuck = client(`ipv4:127.0.0.1:${serving.port}`).hello('stuck', {
      delayMs: 20_000,
      deadlineMs: 30_000,
    });
    await eventually(() => greeter.calls === 1);
    await serving.stop();
    expect(await stuck).toMatchObject({ ok: false });
    await serving.registration.deregister();
  });

  it("plugs into core's installGracefulShutdown: on SIGTERM it deregisters, drains, stops the server, exits 0", async () => {
    const own = createMemoryBackend({ store });
    cleanups.push(() => own.close());
    const service = uniqueService('sigterm');
    const leaving = await startGreeter(own.discovery, service, 'leaving');
    const staying = await startGreeter(servers.discovery, service, 'staying');
    cleanups.push(() => staying.serving.stop());
    const channel = client(`rollcall:///${service}`);
    await eventually(async () => (await channel.helloMany(6)).servers.size === 2);
    const traffic = startTraffic(channel);
    cleanups.push(() => traffic.stop());
    const signals = new EventEmitter();
    const exits: number[] = [];
    const uninstall = installGracefulShutdown(own, {
      drainMs: 300,
      beforeExit: () => leaving.serving.stop(),
      emitter: signals,
      exit: (code) => exits.push(code),
    });
    cleanups.push(uninstall);
    await eventually(() => traffic.countFor('leaving') > 0);
    signals.emit('SIGTERM', 'SIGTERM');
    await eventually(() => exits.length === 1, { timeoutMs: 5000, message: 'the process exits' });
    expect(exits).toEqual([0]);
    const afterExit = leaving.calls;
    await eventually(() => traffic.countFor('staying') > 30);
    await traffic.stop();
    expect(traffic.failures()).toEqual([]);
    expect(leaving.calls).toBe(afterExit);
    expect(
      await client(`ipv4:127.0.0.1:${leaving.serving.port}`).hello('late', { deadlineMs: 2000 }),
    ).toMatchObject({
      ok: false,
    });
  });
});
