import {
  AbortedError,
  BackendUnavailableError,
  ClosedError,
  createPicker,
  type ServiceInstance,
} from '@rollcall/core';
import {
  badInstances,
  badKeys,
  badValues,
  type EtcdServer,
  eventually,
  expectRefused,
  freePort,
  recordingLogger,
  startEtcd,
  uniqueService,
} from '@rollcall/testkit';
import { Etcd3 } from 'etcd3';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend, type EtcdOptions } from '../src/index.js';

// Hostile input against a real etcd: the key layout (the kv API can neither forge an instance nor
// touch a lock), discovery ignoring keys it did not write, and nothing written outside
// Rollcall's subtrees by any refused call. One server for the file.
let etcd: EtcdServer;
let raw: Etcd3;
const clients: EtcdBackend[] = [];
const client = (options: EtcdOptions = {}) => {
  const c = createEtcdBackend({ endpoints: etcd.endpoints, ...options });
  clients.push(c);
  return c;
};
beforeAll(async () => {
  etcd = await startEtcd();
  raw = new Etcd3({ hosts: etcd.endpoints });
});
afterEach(async () => {
  etcd.resume();
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  raw?.close();
  await etcd?.stop();
});

const instance = (service: string, id: string, extra: Partial<ServiceInstance> = {}): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 8080,
  ...extra,
});

describe('etcd key layout: the kv API stays out of the registry, lock and election subtrees', () => {
  it('an instance cannot be forged through kv, in any spelling; nothing reaches etcd', async () => {
    const backend = client();
    const service = uniqueService('payments');
    const forged = JSON.stringify(instance(service, 'evil'));
    for (const key of [
      `rollcall/services/${service}/evil`,
      `/rollcall/services/${service}/evil`,
      `x/../rollcall/services/${service}/evil`,
      `rollcall//services/${service}/evil`,
      `./rollcall/services/${service}/evil`,
    ])
      await expectRefused(() => backend.kv.put(key, forged), 'key', key);
    expect((await raw.getAll().prefix(`/rollcall/services/${service}/`).keys()).length).toBe(0);
    expect((await backend.discovery.getInstances(service)).instances).toEqual([]);
  });

  it('a held lock cannot be deleted through kv: the holder keeps it and nobody else gets it', async () => {
    const [holder, other] = [client(), client()];
    const name = uniqueService('job');
    const lease = await holder.locks.acquire(name, { ttlSeconds: 5 });
    const lockKeys = await raw.getAll().prefix(`/rollcall/locks/${name}/`).keys();
    expect(lockKeys.length).toBe(1);
    const key = lockKeys[0]!;
    await expectRefused(() => holder.kv.delete(key), 'key', 'delete with the leading /');
    await expectRefused(() => holder.kv.delete(key.slice(1)), 'key', 'delete');
    await expectRefused(() => holder.kv.put(key.slice(1), ''), 'key', 'put');
    expect(await raw.getAll().prefix(`/rollcall/locks/${name}/`).keys()).toEqual(lockKeys);
    expect(lease.signal.aborted).toBe(false);
    expect(await other.locks.tryAcquire(name, { ttlSeconds: 5 })).toBeUndefined();
    const election = uniqueService('leader');
    const leadership = await holder.locks.campaign(election, 'me', { ttlSeconds: 5 });
    const [candidate] = await raw.getAll().prefix(`/rollcall/elections/${election}/`).keys();
    await expectRefused(() => other.kv.put(candidate!.slice(1), 'usurper'), 'key', 'election put');
    expect(await other.locks.leader(election)).toBe('me');
    await leadership.resign();
    await lease.release();
  });

  it("kv.getAll('') and watchPrefix('') list configuration keys only, while etcd holds registry and lock keys", async () => {
    const backend = client();
    const service = uniqueService('listed');
    await backend.discovery.register(instance(service, 'i1'));
    const lease = await backend.locks.acquire(uniqueService('listed-lock'), { ttlSeconds: 5 });
    await backend.kv.put(`rc-hostile/${service}/cfg`, 'v');
    const own = await raw.getAll().prefix('/rollcall/').keys();
    expect(own.some((k) => k.startsWith('/rollcall/services/'))).toBe(true);
    expect(own.some((k) => k.startsWith('/rollcall/locks/'))).toBe(true);
    const listed = [...(await backend.kv.getAll('')).keys()];
    expect(listed).toContain(`rc-hostile/${service}/cfg`);
    expect(listed.filter((k) => /^rollcall\/(services|locks|elections)\//.test(k))).toEqual([]);
    // The migration phase key lies under the namespace but outside the reserved subtrees: allowed.
    await backend.kv.put('rollcall/migration/phase', 'dual-write');
    expect(await backend.kv.get('/rollcall/migration/phase')).toBe('dual-write');
    await backend.kv.delete('rollcall/migration/phase');
    await lease.release();
  });

  it('the reserved subtrees follow namespace and kvPrefix; a kvPrefix inside them is a ConfigError', async () => {
    const backend = client({ namespace: '/team/rc/', kvPrefix: '/team/' });
    await expectRefused(() => backend.kv.put('rc/services/web/x', '{}'), 'key', 'custom namespace');
    await expectRefused(() => backend.kv.getAll('rc/locks/'), 'prefix', 'custom namespace');
    await backend.kv.put('rollcall/services/web/x', 'not reserved here');
    expect(await raw.get('/team/rollcall/services/web/x').string()).toBe('not reserved here');
    await backend.kv.delete('rollcall/services/web/x');
    // A kvPrefix disjoint from the namespace reserves nothing.
    const apart = client({ kvPrefix: '/config/' });
    await apart.kv.put('rollcall/services/web/x', 'v');
    expect(await apart.kv.get('rollcall/services/web/x')).toBe('v');
    await apart.kv.delete('rollcall/services/web/x');
    for (const kvPrefix of ['/rollcall/services/', '/rollcall/locks/x/', '/rollcall/elections/'])
      expect(() => createEtcdBackend({ kvPrefix })).toThrow(/kvPrefix: must not lie inside/);
  });
});

describe('etcd discovery ignores registry keys it did not write', () => {
  it('an instance key written by etcdctl without a lease is skipped, with one warning per key', async () => {
    const logger = recordingLogger();
    const [writer, reader] = [client(), client({ logger })];
    const service = uniqueService('foreign');
    await writer.discovery.register(instance(service, 'good'));
    const evilKey = `/rollcall/services/${service}/evil`;
    await etcd.etcdctl(['put', evilKey, JSON.stringify(instance(service, 'evil'))]);
    expect((await reader.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['good']);
    // Written again while watched, and another one: still ignored, each key reported once.
    const seen: string[][] = [];
    const watch = reader.discovery.watch(service);
    void (async () => {
      for await (const event of watch) seen.push(event.snapshot.instances.map((i) => i.id));
    })();
    await etcd.etcdctl(['put', evilKey, JSON.stringify(instance(service, 'evil', { port: 9 }))]);
    await etcd.etcdctl([
      'put',
      `/rollcall/services/${service}/evil2`,
      JSON.stringify(instance(service, 'evil2')),
    ]);
    await writer.discovery.register(instance(service, 'good2'));
    await eventually(() => seen.at(-1)?.join() === 'good,good2');
    expect(seen.flat().filter((id) => id.startsWith('evil'))).toEqual([]);
    const warnings = (key: string) =>
      logger.lines.filter((l) => l.startsWith('warn') && l.includes(`"${key}"`)).length;
    expect(warnings(evilKey)).toBe(1);
    expect(warnings(`/rollcall/services/${service}/evil2`)).toBe(1);
    expect(logger.lines.join('\n')).toMatch(/did not write \(it has no lease\)/);
    watch.close();
  });

  it('an instance on a lease whose metadata holds __proto__ is skipped; nothing reaches Object.prototype', async () => {
    const logger = recordingLogger();
    const reader = client({ logger });
    const service = uniqueService('proto');
    const lease = raw.lease(30);
    const body = `{"id":"p1","service":"${service}","host":"127.0.0.1","port":1,"metadata":{"__proto__":{"polluted":"yes"},"constructor":"x"}}`;
    await lease.put(`/rollcall/services/${service}/p1`).value(body);
    expect((await reader.discovery.getInstances(service)).instances).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(logger.lines.join('\n')).toMatch(/instance\.metadata\.__proto__/);
    await lease.revoke();
  });
});

describe('createPicker(...).ready() settles on etcd', () => {
  it('etcd unreachable at start: BackendUnavailableError, not a hang', async () => {
    const backend = createEtcdBackend({
      endpoints: [`http://127.0.0.1:${await freePort()}`],
      callTimeoutMs: 500,
    });
    clients.push(backend);
    const picker = createPicker(backend.discovery, 'orders');
    await expect(picker.ready({ timeoutMs: 20_000 })).rejects.toBeInstanceOf(BackendUnavailableError);
    picker.close();
  });

  it('etcd frozen: timeoutMs gives BackendUnavailableError; an abort gives AbortedError; a close gives ClosedError', async () => {
    const backend = client({ callTimeoutMs: 5000 });
    await backend.kv.get('warm-up');
    etcd.pause();
    const picker = createPicker(backend.discovery, uniqueService('frozen'));
    const timedOut = await picker.ready({ timeoutMs: 200 }).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(BackendUnavailableError);
    expect((timedOut as Error).message).toMatch(/within 200 ms/);
    const controller = new AbortController();
    const aborted = picker.ready({ signal: controller.signal, timeoutMs: 2 ** 31 }).catch((e: unknown) => e);
    controller.abort();
    expect(await aborted).toBeInstanceOf(AbortedError);
    const closing = picker.ready({ timeoutMs: Number.POSITIVE_INFINITY }).catch((e: unknown) => e);
    picker.close();
    expect(await closing).toBeInstanceOf(ClosedError);
    etcd.resume();
  });
});

describe('bad input never writes outside the subtrees (checked by listing every key of etcd)', () => {
  it('(property) refused registrations and kv writes on a live client leave etcd untouched', async () => {
    const backend = client();
    const before = new Set(await raw.getAll().prefix('').keys());
    await fc.assert(
      fc.asyncProperty(badInstances(), async ({ input, field, label }) => {
        await expectRefused(() => backend.discovery.register(input as ServiceInstance), field, label);
      }),
      { numRuns: 150 },
    );
    await fc.assert(
      fc.asyncProperty(badKeys(), badValues(), async (key, value) => {
        await expectRefused(() => backend.kv.put(key as string, 'v'), 'key', 'put key');
        await expectRefused(() => backend.kv.delete(key as string), 'key', 'delete key');
        await expectRefused(() => backend.kv.put('rc-hostile/ok', value as string), 'value', 'put value');
      }),
      { numRuns: 60 },
    );
    const after = await raw.getAll().prefix('').keys();
    expect(after.filter((k) => !before.has(k))).toEqual([]);
  });
});
