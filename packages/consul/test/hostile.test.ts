import type { ServiceInstance } from '@rollcall/core';
import { badInstances, badKeys, badValues, expectRefused, uniqueService } from '@rollcall/testkit';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConsulBackend } from '../src/index.js';
import { agentForFile, backendOn, rawGet } from './helpers.js';

// Hostile input against a real Consul agent: the kv API cannot touch the lock keys or the fencing
// epoch, foreign Meta keys cannot reach Object.prototype, and refused input writes nothing.
const { shared } = agentForFile();
const clients: ConsulBackend[] = [];
const client = async () => {
  const c = backendOn(await shared());
  clients.push(c);
  return c;
};
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
});

const allKeys = async () => {
  const agent = await shared();
  const response = await fetch(`${agent.url}/v1/kv/?keys`);
  return response.status === 404 ? [] : ((await response.json()) as string[]);
};
const rawValue = async (key: string) => {
  const agent = await shared();
  const response = await fetch(`${agent.url}/v1/kv/${key}?raw`);
  return response.status === 404 ? undefined : await response.text();
};

describe('Consul key layout: the kv API stays out of the lock keys', () => {
  it('the fencing epoch cannot be written or deleted through kv: tokens keep increasing', async () => {
    const [a, b] = [await client(), await client()];
    const name = uniqueService('fenced');
    const first = await a.locks.acquire(name, { ttlSeconds: 10 });
    await first.release();
    const epoch = await rawValue('rollcall/fencing-epoch');
    expect(epoch).toBeDefined();
    for (const key of ['rollcall/fencing-epoch', '/rollcall/fencing-epoch', 'x/../rollcall/fencing-epoch']) {
      await expectRefused(() => b.kv.put(key, '1'), 'key', `put ${key}`);
      await expectRefused(() => b.kv.delete(key), 'key', `delete ${key}`);
    }
    await expectRefused(() => b.kv.getAll('rollcall/fencing-epoch'), 'prefix', 'getAll');
    expect(await rawValue('rollcall/fencing-epoch')).toBe(epoch);
    const second = await b.locks.acquire(name, { ttlSeconds: 10 });
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    await second.release();
  });

  it('a held lock cannot be deleted through kv; getAll and watchPrefix of the root list no lock keys', async () => {
    const [holder, other] = [await client(), await client()];
    const name = uniqueService('job');
    const lease = await holder.locks.acquire(name, { ttlSeconds: 10 });
    const lockKeys = (await allKeys()).filter((k) => k.startsWith(`rollcall/locks/${name}/`));
    expect(lockKeys.length).toBeGreaterThan(0);
    for (const key of lockKeys) {
      await expectRefused(() => other.kv.delete(key), 'key', `delete ${key}`);
      await expectRefused(() => other.kv.put(key, ''), 'key', `put ${key}`);
    }
    expect((await allKeys()).filter((k) => k.startsWith(`rollcall/locks/${name}/`))).toEqual(lockKeys);
    expect(lease.signal.aborted).toBe(false);
    expect(await other.locks.tryAcquire(name, { ttlSeconds: 10 })).toBeUndefined();
    await other.kv.put(`rc-hostile/${name}`, 'v');
    const listed = [...(await other.kv.getAll('')).keys()];
    expect(listed).toContain(`rc-hostile/${name}`);
    expect(listed.filter((k) => k.startsWith('rollcall/locks/') || k === 'rollcall/fencing-epoch')).toEqual(
      [],
    );
    await other.kv.put('rollcall/migration/phase', 'dual-write');
    expect(await other.kv.get('rollcall/migration/phase')).toBe('dual-write');
    await other.kv.delete('rollcall/migration/phase');
    await lease.release();
  });
});

describe('Consul discovery decodes foreign services safely', () => {
  it('Meta keys __proto__, constructor and prototype registered by another tool are dropped, never applied', async () => {
    const agent = await shared();
    const service = uniqueService('foreign-proto');
    const body = `{"Name":"${service}","ID":"${service}-1","Port":7000,"Meta":{"__proto__":"x","constructor":"c","prototype":"p","zone":"z"}}`;
    const put = await fetch(`${agent.url}/v1/agent/service/register`, { method: 'PUT', body });
    expect(put.status).toBe(200);
    const reader = await client();
    const [found] = (await reader.discovery.getInstances(service)).instances;
    expect(found?.metadata).toEqual({ zone: 'z' });
    expect(Object.keys(found!.metadata!)).toEqual(['zone']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await fetch(`${agent.url}/v1/agent/service/deregister/${service}-1`, { method: 'PUT' });
  });
});

describe('bad input never writes to Consul (checked by listing every key and service)', () => {
  it('(property) refused registrations and kv writes on a live client leave the agent untouched', async () => {
    const backend = await client();
    const agent = await shared();
    const keysBefore = new Set(await allKeys());
    const servicesBefore = Object.keys(await rawGet<Record<string, unknown>>(agent, '/v1/agent/services'));
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
    expect((await allKeys()).filter((k) => !keysBefore.has(k))).toEqual([]);
    expect(Object.keys(await rawGet<Record<string, unknown>>(agent, '/v1/agent/services'))).toEqual(
      servicesBefore,
    );
  });
});
