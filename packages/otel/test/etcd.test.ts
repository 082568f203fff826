import type { ServiceInstance } from '@rollcall/core';
import { createEtcdBackend, type EtcdBackend, type EtcdOptions } from '@rollcall/etcd';
import { type EtcdServer, eventually, Recorder, startEtcd } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { METRICS } from '../src/index.js';
import { instrumentedSdk, type Sdk } from './sdk.js';

// The same metrics on a real etcd: one server for the file; its fault is a freeze (SIGSTOP / SIGCONT).
const etcdAttrs = { 'rollcall.backend': 'etcd' };
const instance = (service: string, id: string): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 9000,
});

let etcd: EtcdServer;
let sdk: Sdk | undefined;
const clients: EtcdBackend[] = [];
// A 1 s gRPC keepalive: a frozen server is noticed in about 2 s instead of 10.
const client = (options: EtcdOptions = {}) => {
  const backend = createEtcdBackend({
    endpoints: etcd.endpoints,
    keepaliveMs: 1000,
    callTimeoutMs: 1000,
    ...options,
  });
  clients.push(backend);
  return backend;
};

beforeAll(async () => {
  etcd = await startEtcd({ name: 'otel' });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await sdk?.shutdown();
  sdk = undefined;
});
afterAll(async () => {
  etcd?.resume();
  await etcd?.stop();
});

describe('@rollcall/otel on a real etcd', () => {
  it('instance counts follow registers and deregisters; a lock wait lasts as long as the hold', async () => {
    sdk = instrumentedSdk();
    const [owner, watcher] = [client(), client()];
    const orders = { ...etcdAttrs, 'rollcall.service': 'orders' };
    const watch = new Recorder(watcher.discovery.watch('orders'));
    const a = await owner.discovery.register(instance('orders', 'a'), { ttlSeconds: 2 });
    await owner.discovery.register(instance('orders', 'b'), { ttlSeconds: 2 });
    await watch.next((e) => e.snapshot.instances.length === 2);
    let m = await sdk.collect();
    expect(m.value(METRICS.serviceInstances, orders)).toBe(2);
    expect(m.value(METRICS.registrationState, { ...orders, 'rollcall.registration.state': 'active' })).toBe(
      2,
    );
    expect(m.value(METRICS.backendConnected, etcdAttrs)).toBe(1);
    await a.deregister();
    await watch.next((e) => e.snapshot.instances.length === 1);
    // The owner's own cache of the service reports under the same attributes: once it saw the removal too.
    m = await eventually(async () => {
      const collected = await sdk!.collect();
      return collected.value(METRICS.serviceInstances, orders) === 1 ? collected : undefined;
    });
    expect(m.value(METRICS.membershipChanges, { ...orders, 'rollcall.membership.change': 'removed' })).toBe(
      1,
    );

    const held = await owner.locks.acquire('nightly', { ttlSeconds: 2 });
    // The wait is timed from inside acquire(): between these two instants (the call starts it synchronously).
    const waitStarted = performance.now();
    const waiting = watcher.locks.acquire('nightly', { ttlSeconds: 2 });
    const waitCalled = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 300)); // the hold being measured
    const releasedAt = performance.now();
    await held.release();
    const lease = await waiting;
    const acquiredAt = performance.now();
    m = await sdk.collect();
    const nightly = { ...etcdAttrs, 'rollcall.lock.kind': 'lock', 'rollcall.lock.name': 'nightly' };
    const waits = m.histogram(METRICS.lockAcquireDuration, {
      ...nightly,
      'rollcall.lock.outcome': 'acquired',
    });
    expect(waits?.count).toBe(2);
    expect(waits?.max).toBeGreaterThanOrEqual((releasedAt - waitCalled) / 1000);
    expect(waits?.max).toBeLessThanOrEqual((acquiredAt - waitStarted) / 1000);
    expect(m.value(METRICS.lockHeld, nightly)).toBe(1);
    const span = sdk.spans().at(-1);
    expect(span?.attributes['rollcall.lock.fencing_token']).toBe(lease.fencingToken.toString());
    await lease.release();
  });

  it('etcd frozen: not connected and the watch stale; resumed: one reconnect and the stale period recorded', async () => {
    sdk = instrumentedSdk();
    const [owner, watcher] = [client(), client()];
    const watch = new Recorder(watcher.discovery.watch('billing'));
    await owner.discovery.register(instance('billing', 'a'), { ttlSeconds: 2 });
    await watch.next((e) => e.snapshot.instances.length === 1);

    const frozenAt = performance.now();
    etcd.pause();
    let staleSeen = 0;
    let resumedAt = 0;
    try {
      await watch.next((e) => e.type === 'stale', { timeoutMs: 8000 });
      staleSeen = performance.now();
      await eventually(async () => (await sdk!.collect()).value(METRICS.backendConnected, etcdAttrs) === 0, {
        message: 'rollcall.backend.connected 0 while etcd is frozen',
      });
    } finally {
      resumedAt = performance.now();
      etcd.resume();
    }
    const back = watch.events.length;
    await watch.next((e) => !e.snapshot.stale, { from: back, timeoutMs: 10_000 });
    const freshAt = performance.now();

    const m = await eventually(
      async () => {
        const collected = await sdk!.collect();
        return collected.value(METRICS.backendConnected, etcdAttrs) === 1 ? collected : undefined;
      },
      { message: 'rollcall.backend.connected 1 again' },
    );
    const subject = { ...etcdAttrs, 'rollcall.watch.subject': "service 'billing'" };
    expect(m.value(METRICS.watchReconnects, subject)).toBe(1);
    const stale = m.histogram(METRICS.watchStaleDuration, subject);
    expect(stale?.count).toBe(1);
    // Stale from before staleSeen to after resumedAt, and within frozenAt .. freshAt.
    expect(stale?.sum).toBeGreaterThanOrEqual((resumedAt - staleSeen) / 1000);
    expect(stale?.sum).toBeLessThanOrEqual((freshAt - frozenAt) / 1000);
    expect(m.value(METRICS.serviceInstances, { ...etcdAttrs, 'rollcall.service': 'billing' })).toBe(1);
  });
});
