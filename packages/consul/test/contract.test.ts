import { type ServiceInstance, ValidationError } from '@rollcall/core';
import { describeDiscoveryContract, describeKeyValueContract, uniqueService } from '@rollcall/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { type ConsulBackend } from '../src/index.js';
import { agentForFile, backendOn, POLL_MS, passingIds } from './helpers.js';

const { shared, harness } = agentForFile();

describeDiscoveryContract('consul (poll)', harness, {
  ttlSeconds: 2,
  // A write is seen by the next poll: at most one poll interval plus the request.
  propagationMs: POLL_MS + 1000,
  // Consul marks a TTL check critical exactly at its TTL; ?passing drops it at once.
  expiryGraceMs: 0,
  // Poll interval + error backoff (<= 5 s) + one confirming poll after an agent restart.
  recoveryMs: 20_000,
  eventPerWrite: false,
  crash: true,
  outage: true,
  upstreamCount: true,
});

describeKeyValueContract('consul', harness, {
  propagationMs: 2500,
  recoveryMs: 15_000,
  outage: true,
  eventPerWrite: false,
  // The lock driver's keys under the default lockPrefix 'rollcall/'.
  reservedKeys: ['rollcall/locks/', 'rollcall/elections/', 'rollcall/fencing-epoch'],
});

describe('consul specifics on a real agent', () => {
  const clients: ConsulBackend[] = [];
  const client = async () => {
    const c = backendOn(await shared());
    clients.push(c);
    return c;
  };
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });

  it('round-trips every optional-field shape and IPv6 hosts exactly', async () => {
    const [a, b] = [await client(), await client()];
    const service = uniqueService('shapes');
    const shapes: ServiceInstance[] = [
      { id: 'plain', service, host: '127.0.0.1', port: 1 },
      { id: 'w1', service, host: '::1', port: 2, weight: 1 },
      { id: 'empty', service, host: 'db.internal', port: 3, tags: [], metadata: {} },
      {
        id: 'full',
        service,
        host: 'fe80::1',
        port: 4,
        version: 'v2 (beta)',
        tags: ['a', 'A b'],
        metadata: { k: '' },
        weight: 10_000,
      },
    ];
    for (const s of shapes) await a.discovery.register(s);
    expect((await b.discovery.getInstances(service)).instances).toEqual(
      shapes.sort((x, y) => (x.id < y.id ? -1 : 1)),
    );
  });

  it('maps instances registered by other tools and skips those that cannot be instances', async () => {
    const agent = await shared();
    const service = uniqueService('foreign');
    const put = (body: object) =>
      fetch(`${agent.url}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify(body) });
    await put({
      Name: service,
      ID: `${service}-1`,
      Port: 7000,
      Tags: ['t'],
      Meta: { zone: 'z' },
      Weights: { Passing: 4, Warning: 1 },
    });
    await put({ Name: service, ID: 'bad:id', Port: 7001 });
    const b = await client();
    expect((await b.discovery.getInstances(service)).instances).toEqual([
      {
        id: `${service}-1`,
        service,
        host: '127.0.0.1',
        port: 7000,
        tags: ['t'],
        metadata: { zone: 'z' },
        weight: 4,
      },
    ]);
    await fetch(`${agent.url}/v1/agent/service/deregister/${service}-1`, { method: 'PUT' });
    await fetch(`${agent.url}/v1/agent/service/deregister/bad%3Aid`, { method: 'PUT' });
  });

  it('a registration refused before any request never deregisters the same id held by another process', async () => {
    const [a, b] = [await client(), await client()];
    const service = uniqueService('same-id');
    await a.discovery.register({ id: 'i1', service, host: '127.0.0.1', port: 8000 });
    const refused = await b.discovery
      .register({ id: 'i1', service, host: '0.0.0.0', port: 8000 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ValidationError);
    expect(await passingIds(await shared(), service)).toEqual(['i1']);
  });
});
