import { inspect } from 'node:util';
import { PermissionDeniedError, RollcallError } from '@rollcall/core';
import { type ConsulAgent, Recorder, recordingLogger, startConsul, uniqueService } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConsulBackend } from '../src/index.js';
import { backendOn, POLL_MS, passingIds } from './helpers.js';

describe('5: consul with ACLs (default deny)', () => {
  let agent: ConsulAgent;
  const logger = recordingLogger();
  const clients: ConsulBackend[] = [];
  const client = (token: string | undefined) => {
    const c = backendOn(agent, { ...(token === undefined ? {} : { token }), logger });
    clients.push(c);
    return c;
  };
  /** Everything a user could see of an error: message, stack, own properties, cause chain. */
  const visible = (error: unknown) =>
    `${String(error)}\n${(error as Error)?.stack}\n${inspect(error, { depth: 10, showHidden: true })}\n${JSON.stringify(error)}`;

  beforeAll(async () => {
    agent = await startConsul({ acl: true });
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('the right token works for registration, discovery and key/value', async () => {
    const token = agent.masterToken as string;
    const [a, b] = [client(token), client(token)];
    const service = uniqueService('acl');
    const registration = await a.discovery.register(
      { id: 'i1', service, host: '127.0.0.1', port: 8080 },
      { ttlSeconds: 3 },
    );
    expect(await passingIds(agent, service, agent.headers())).toEqual(['i1']);
    const watch = new Recorder(b.discovery.watch(service));
    await watch.next((e) => e.type === 'sync' && e.snapshot.instances.some((i) => i.id === 'i1'), {
      timeoutMs: POLL_MS,
    });
    expect(await b.discovery.listServices()).toContain(service);
    // A few heartbeats pass with the token.
    await new Promise((r) => setTimeout(r, 2500));
    expect(registration.state).toBe('active');
    await a.kv.put(`acl/${service}/k`, 'v');
    expect(await b.kv.get(`acl/${service}/k`)).toBe('v');
    expect(await b.kv.getAll(`acl/${service}/`)).toEqual(new Map([[`acl/${service}/k`, 'v']]));
    await registration.deregister();
    expect(await passingIds(agent, service, agent.headers())).toEqual([]);
    await b.discovery.health().then((h) => expect(h.reachable).toBe(true));
  });

  it('a wrong token fails clearly with PermissionDeniedError, and the token is never printed', async () => {
    const wrong = `wrong-${crypto.randomUUID()}`;
    const c = client(wrong);
    const service = uniqueService('acl-wrong');
    const errors: unknown[] = [];
    const register = await c.discovery
      .register({ id: 'i1', service, host: '127.0.0.1', port: 8080 })
      .catch((e: unknown) => e);
    errors.push(register);
    expect(register).toBeInstanceOf(PermissionDeniedError);
    expect(register).toBeInstanceOf(RollcallError);
    expect((register as PermissionDeniedError).code).toBe('ERR_PERMISSION_DENIED');
    expect((register as Error).message).toMatch(/ACL not found|token/i);

    const read = await c.discovery.getInstances(service).catch((e: unknown) => e);
    errors.push(read);
    expect(read).toBeInstanceOf(PermissionDeniedError);
    for (const call of [
      () => c.kv.get('acl/x'),
      () => c.kv.put('acl/x', 'v'),
      () => c.kv.getAll('acl/'),
      () => c.discovery.listServices(),
    ]) {
      const error = await call().catch((e: unknown) => e);
      errors.push(error);
      expect(error).toBeInstanceOf(PermissionDeniedError);
    }
    // ping() is GET /v1/status/leader, which needs no token: the agent is reachable, just not usable with this one.
    const health = await c.discovery.health();
    errors.push(JSON.stringify(health));

    // No token at all: the anonymous token may not write.
    const anonymous = client(undefined);
    const denied = await anonymous.discovery
      .register({ id: 'i2', service, host: '127.0.0.1', port: 8080 })
      .catch((e: unknown) => e);
    errors.push(denied);
    expect(denied).toBeInstanceOf(PermissionDeniedError);
    expect((denied as Error).message).toMatch(/permission denied/i);

    for (const error of errors) {
      expect(visible(error)).not.toContain(wrong);
      expect(visible(error)).not.toContain(agent.masterToken);
    }
    expect(inspect(c, { depth: 20, showHidden: true })).not.toContain(wrong);
    expect(logger.lines.join('\n')).not.toContain(wrong);
    expect(logger.lines.join('\n')).not.toContain(agent.masterToken);
    expect(await passingIds(agent, service, agent.headers())).toEqual([]);
  });
});
