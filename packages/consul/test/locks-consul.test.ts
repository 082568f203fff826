import { inspect } from 'node:util';
import {
  BackendUnavailableError,
  type LockLease,
  LockTimeoutError,
  PermissionDeniedError,
  ValidationError,
} from '@rollcall/core';
import { type ConsulAgent, eventually, recordingLogger, startConsul, uniqueService } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TxnKv } from '../src/api.js';
import { type ConsulBackend, type ConsulOptions, createConsulBackend, simulateCrash } from '../src/index.js';
import { backendOn } from './helpers.js';

const TTL = 10;

/** A raw KV entry as Consul answers it (the same shape as a transaction result's). */
type RawEntry = TxnKv;
interface RawSession {
  ID: string;
  Name: string;
  TTL: string;
  Behavior: string;
  LockDelay: number;
}

/** Raw HTTP to the agent (no Rollcall code): `undefined` on 404. */
async function raw<T>(
  agent: Pick<ConsulAgent, 'url' | 'headers'>,
  method: string,
  path: string,
): Promise<T | undefined> {
  const response = await fetch(`${agent.url}${path}`, {
    method,
    headers: agent.headers(),
    signal: AbortSignal.timeout(5000),
  });
  if (response.status === 404) return undefined;
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}
const tree = async (agent: ConsulAgent, prefix: string) =>
  (await raw<RawEntry[]>(agent, 'GET', `/v1/kv/${prefix}?recurse`)) ?? [];
const decode = (value: string | null) => (value ? Buffer.from(value, 'base64').toString('utf8') : '');
const destroySession = (agent: ConsulAgent, id: string) => raw(agent, 'PUT', `/v1/session/destroy/${id}`);

/** Resolves once `acquire` has queued (its entry is written). */
function queuedAcquire(
  client: ConsulBackend,
  name: string,
  options: { ttlSeconds?: number; timeoutMs?: number; signal?: AbortSignal } = {},
): { lease: Promise<LockLease>; queued: Promise<void> } {
  let queued!: () => void;
  const isQueued = new Promise<void>((r) => {
    queued = r;
  });
  const lease = client.locks.acquire(name, { ttlSeconds: TTL, ...options, onQueued: queued });
  lease.catch(() => {});
  return { lease, queued: isQueued };
}

describe('consul locks on a real agent', () => {
  let agent: ConsulAgent;
  const clients: ConsulBackend[] = [];
  const client = (options: ConsulOptions = {}) => {
    const c = backendOn(agent, options);
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    agent = await startConsul();
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('key layout: queue entries and the lock key held by sessions (Behavior delete, LockDelay 0); nothing left after release', async () => {
    const [a, b] = [client(), client()];
    const name = uniqueService('layout');
    const base = `rollcall/locks/${name}/`;
    const lease = await a.locks.acquire(name, { ttlSeconds: TTL });
    const waiting = queuedAcquire(b, name);
    await waiting.queued;

    const entries = await tree(agent, base);
    const lock = entries.find((e) => e.Key === `${base}.lock`);
    expect(lock?.Session).toBeDefined();
    expect(JSON.parse(decode(lock!.Value))).toMatchObject({ pid: process.pid });
    const queue = entries.filter((e) => e.Key.startsWith(`${base}queue/`));
    expect(queue).toHaveLength(1);
    const [entry] = queue;
    expect(entry!.Session).toBeDefined();
    expect(entry!.Session).not.toBe(lock!.Session);
    expect(entry!.Key).toMatch(new RegExp(`^${base}queue/${entry!.Session}-\\d+$`));

    // The fencing token is the epoch plus the lock key's ModifyIndex.
    const epoch = await raw<RawEntry[]>(agent, 'GET', '/v1/kv/rollcall/fencing-epoch');
    expect(lease.fencingToken).toBe(BigInt(decode(epoch![0]!.Value)) + BigInt(lock!.ModifyIndex));
    const epochUs = Number(decode(epoch![0]!.Value));
    expect(epochUs).toBeGreaterThan((Date.now() - 10 * 60_000) * 1000);
    expect(epochUs).toBeLessThanOrEqual(Date.now() * 1000);

    const session = (await raw<RawSession[]>(agent, 'GET', `/v1/session/info/${lock!.Session}`))![0]!;
    expect(session).toMatchObject({ TTL: `${TTL}s`, Behavior: 'delete', LockDelay: 0 });
    expect(session.Name).toContain(`pid ${process.pid}`);

    await lease.release();
    const next = await waiting.lease;
    expect(next.fencingToken > lease.fencingToken).toBe(true);
    expect((await tree(agent, base)).map((e) => e.Key)).toEqual([`${base}.lock`]);
    await next.release();
    expect(await tree(agent, base)).toEqual([]);
  });

  it('elections: the leader key holds the value; lockPrefix moves every key', async () => {
    const a = client({ lockPrefix: 'apps/rc-locks/' });
    const election = uniqueService('prefix');
    const leadership = await a.locks.campaign(election, 'node-a', { ttlSeconds: TTL });
    const entries = await tree(agent, `apps/rc-locks/elections/${election}/`);
    expect(entries.map((e) => [e.Key, decode(e.Value), Boolean(e.Session)])).toEqual([
      [`apps/rc-locks/elections/${election}/.lock`, 'node-a', true],
    ]);
    expect(await raw(agent, 'GET', '/v1/kv/apps/rc-locks/fencing-epoch')).toBeDefined();
    expect(await a.locks.leader(election)).toBe('node-a');
    // A client with the default prefix sees another election.
    expect(await client().locks.leader(election)).toBeUndefined();
    await leadership.resign();
    expect(await a.locks.leader(election)).toBeUndefined();
    expect(await tree(agent, `apps/rc-locks/elections/${election}/`)).toEqual([]);
    expect(() => createConsulBackend({ lockPrefix: '/abs/' })).toThrow(/lockPrefix/);
    expect(() => createConsulBackend({ lockPrefix: 'a/../' })).toThrow(/lockPrefix/);
    expect(() => createConsulBackend({ lockPrefix: 'no-slash' })).toThrow(/lockPrefix/);
    expect(() => createConsulBackend({ lockDelay: '2m' })).toThrow(/lockDelay/);
    expect(() => createConsulBackend({ lockDelay: -1 })).toThrow(/lockDelay/);
  });

  it("one session per client per TTL; a TTL below Consul's 10 s minimum is raised to it, said once and in the lease", async () => {
    const logger = recordingLogger();
    const a = client({ logger });
    const [x, y, z, w] = [uniqueService('s'), uniqueService('s'), uniqueService('s'), uniqueService('s')];
    const one = await a.locks.acquire(x, { ttlSeconds: TTL });
    const two = await a.locks.acquire(y, { ttlSeconds: TTL });
    expect(a.lockSessionCount()).toBe(1);
    const three = await a.locks.acquire(z, { ttlSeconds: 20 });
    expect(a.lockSessionCount()).toBe(2);
    // The same code as on etcd or memory (ttl 5 s) runs here: on the 10 s session, with one warning.
    const short = await a.locks.tryAcquire(w, { ttlSeconds: 5 });
    const again = await a.locks.acquire(uniqueService('s'), { ttlSeconds: 2 });
    expect(short?.ttlSeconds).toBe(10);
    expect(again.ttlSeconds).toBe(10);
    expect(three.ttlSeconds).toBe(20);
    expect(a.lockSessionCount()).toBe(2);
    expect(logger.lines.filter((l) => l.includes('raised to it'))).toHaveLength(1);
    // Below the contract-wide minimum (2 s) it is still bad input, on every backend.
    await expect(a.locks.acquire(x, { ttlSeconds: 1 })).rejects.toBeInstanceOf(ValidationError);
    for (const l of [one, two, three, short, again]) await l?.release();
  });

  it('callers sharing one client (and session) exclude each other, served in arrival order', async () => {
    const a = client();
    const name = uniqueService('same');
    let active = 0;
    let overlaps = 0;
    const tokens: bigint[] = [];
    const critical = async (lease: LockLease) => {
      active += 1;
      if (active > 1) overlaps += 1;
      tokens.push(lease.fencingToken);
      await new Promise((r) => setTimeout(r, 10));
      active -= 1;
    };
    // Concurrent starts: no order between them, but never two holders.
    await Promise.all(Array.from({ length: 5 }, () => a.locks.withLock(name, critical, { ttlSeconds: TTL })));
    expect(overlaps).toBe(0);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]! > tokens[i - 1]!).toBe(true);
    // Sequenced arrivals (each queued before the next starts) are served in that order.
    const first = await a.locks.acquire(name, { ttlSeconds: TTL });
    const order: number[] = [];
    const waits: Promise<void>[] = [];
    for (const i of [1, 2, 3]) {
      const w = queuedAcquire(a, name);
      waits.push(
        w.lease.then(async (lease) => {
          order.push(i);
          await lease.release();
        }),
      );
      await w.queued;
    }
    await first.release();
    await Promise.all(waits);
    expect(order).toEqual([1, 2, 3]);
    expect(a.lockSessionCount()).toBe(1);
  });

  it("lock-delay is handled: a holder's session invalidated, the waiter gets the lock at once and the holder's signal aborts", async () => {
    const [a, b] = [client(), client()];
    const name = uniqueService('delay');
    const lease = await a.locks.acquire(name, { ttlSeconds: TTL });
    const waiting = queuedAcquire(b, name);
    await waiting.queued;
    const session = (await tree(agent, `rollcall/locks/${name}/.lock`))[0]!.Session!;
    await destroySession(agent, session);
    const destroyedAt = Date.now();
    const next = await waiting.lease;
    // Consul's default lock-delay would refuse the key for 15 s.
    expect(Date.now() - destroyedAt).toBeLessThan(1000);
    expect(next.fencingToken > lease.fencingToken).toBe(true);
    // The next renewal (every ttl/2) finds the session gone.
    await eventually(() => lease.signal.aborted, { timeoutMs: (TTL / 2) * 1000 + 2000 });
    expect(String(lease.signal.reason)).toMatch(/lost/);
    await next.release();
    // The old holder's client makes a new session for its next lock.
    const again = await a.locks.acquire(name, { ttlSeconds: TTL, timeoutMs: 2000 });
    expect(again.fencingToken > next.fencingToken).toBe(true);
    await again.release();
  });

  it('with lockDelay set, a waiter gets the lock once the delay ends (retrying, not stuck)', async () => {
    const [a, b] = [client({ lockDelay: '3s' }), client()];
    const name = uniqueService('delay3');
    await a.locks.acquire(name, { ttlSeconds: TTL });
    const waiting = queuedAcquire(b, name);
    await waiting.queued;
    const session = (await tree(agent, `rollcall/locks/${name}/.lock`))[0]!;
    expect(
      (await raw<RawSession[]>(agent, 'GET', `/v1/session/info/${session.Session}`))![0]!.LockDelay,
    ).toBe(3e9);
    await destroySession(agent, session.Session!);
    const destroyedAt = Date.now();
    const next = await waiting.lease;
    const waited = Date.now() - destroyedAt;
    // Retried at most 1 s apart: within a second after the delay ends.
    expect(waited).toBeGreaterThanOrEqual(2900);
    expect(waited).toBeLessThan(4500);
    await next.release();
  });

  it("a waiter's queue entry vanishes with its session, and the next waiter is not blocked by it", async () => {
    const [a, b, c] = [client(), client(), client()];
    const name = uniqueService('vanish');
    const base = `rollcall/locks/${name}/`;
    const lease = await a.locks.acquire(name, { ttlSeconds: TTL });
    const bWaits = queuedAcquire(b, name);
    await bWaits.queued;
    const cWaits = queuedAcquire(c, name);
    await cWaits.queued;
    const queue = (await tree(agent, base)).filter((e) => e.Key.startsWith(`${base}queue/`));
    expect(queue).toHaveLength(2);
    const bEntry = queue.sort((x, y) => x.CreateIndex - y.CreateIndex)[0]!;
    // b dies (no renewals, nothing sent) and Consul invalidates its session.
    simulateCrash(b);
    await destroySession(agent, bEntry.Session!);
    await eventually(async () => !(await tree(agent, base)).some((e) => e.Key === bEntry.Key));
    await lease.release();
    const releasedAt = Date.now();
    const next = await cWaits.lease;
    expect(Date.now() - releasedAt).toBeLessThan(1000);
    await next.release();
  });

  it('close() releases held locks and destroys the sessions: waiters elsewhere get them at once', async () => {
    const [a, b] = [client(), client()];
    const [x, y] = [uniqueService('close'), uniqueService('close')];
    await a.locks.acquire(x, { ttlSeconds: TTL });
    await a.locks.campaign(y, 'a', { ttlSeconds: 15 });
    const session = (await tree(agent, `rollcall/locks/${x}/.lock`))[0]!.Session!;
    const waitX = queuedAcquire(b, x);
    await waitX.queued;
    const waitY = b.locks.campaign(y, 'b', { ttlSeconds: TTL });
    await eventually(async () => (await tree(agent, `rollcall/elections/${y}/queue/`)).length === 1);
    const closedAt = Date.now();
    await a.close();
    await Promise.all([waitX.lease, waitY]);
    expect(Date.now() - closedAt).toBeLessThan(1000);
    expect(await raw<RawSession[]>(agent, 'GET', `/v1/session/info/${session}`)).toEqual([]);
    const mine = ((await raw<RawSession[]>(agent, 'GET', '/v1/session/list')) ?? []).filter((s) =>
      [session].includes(s.ID),
    );
    expect(mine).toEqual([]);
    expect(await b.locks.leader(y)).toBe('b');
    await expect(a.locks.acquire(x)).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });

  it('an unreachable agent: waits retry until their timeout (LockTimeoutError); one-shot calls fail with BackendUnavailableError', async () => {
    const dead = createConsulBackend({ host: '127.0.0.1', port: 1, callTimeoutMs: 500 });
    clients.push(dead);
    const started = Date.now();
    const error = await dead.locks
      .acquire('x', { ttlSeconds: TTL, timeoutMs: 1500 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1450);
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(dead.locks.tryAcquire('x', { ttlSeconds: TTL })).rejects.toBeInstanceOf(
      BackendUnavailableError,
    );
    await expect(dead.locks.leader('x')).rejects.toBeInstanceOf(BackendUnavailableError);
  });
});

describe('consul locks across an agent restart (state lost)', () => {
  let agent: ConsulAgent;
  const clients: ConsulBackend[] = [];
  beforeAll(async () => {
    agent = await startConsul();
  });
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await agent?.stop();
  });

  it("a queued waiter queues again under a new session and gets the lock; the holder's signal aborts; tokens keep increasing", async () => {
    const [a, b] = [backendOn(agent), backendOn(agent)];
    clients.push(a, b);
    const name = uniqueService('restart');
    const lease = await a.locks.acquire(name, { ttlSeconds: TTL });
    const waiting = queuedAcquire(b, name);
    await waiting.queued;
    const epochBefore = decode((await tree(agent, 'rollcall/fencing-epoch'))[0]!.Value);
    await agent.restart();
    const next = await waiting.lease;
    // The restarted agent knows neither session: the holder learns it at its next renewal.
    await eventually(() => lease.signal.aborted, { timeoutMs: TTL * 1000 + 2000 });
    expect(next.fencingToken > lease.fencingToken).toBe(true);
    const epochAfter = decode((await tree(agent, 'rollcall/fencing-epoch'))[0]!.Value);
    expect(BigInt(epochAfter) > BigInt(epochBefore)).toBe(true);
    await next.release();
    await lease.release();
  });
});

describe('consul locks with ACLs (default deny)', () => {
  let agent: ConsulAgent;
  const clients: ConsulBackend[] = [];
  const client = (token: string | undefined) => {
    const c = backendOn(agent, token === undefined ? {} : { token });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    agent = await startConsul({ acl: true });
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await agent?.stop();
  });

  /** A token whose policy has `rules` (HCL), made with the master token. */
  async function tokenWith(rules: string): Promise<string> {
    const put = async (path: string, body: object) => {
      const response = await fetch(`${agent.url}${path}`, {
        method: 'PUT',
        headers: agent.headers(),
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
      return (await response.json()) as Record<string, string>;
    };
    const policy = await put('/v1/acl/policy', { Name: `p-${crypto.randomUUID()}`, Rules: rules });
    const token = await put('/v1/acl/token', { Policies: [{ ID: policy.ID }] });
    return token.SecretID as string;
  }

  it('the master token works for locks and elections', async () => {
    const [a, b] = [client(agent.masterToken), client(agent.masterToken)];
    const name = uniqueService('acl-lock');
    const lease = await a.locks.acquire(name, { ttlSeconds: TTL });
    expect(await b.locks.tryAcquire(name, { ttlSeconds: TTL })).toBeUndefined();
    await lease.release();
    const leadership = await b.locks.campaign(name, 'b', { ttlSeconds: TTL });
    expect(await a.locks.leader(name)).toBe('b');
    await leadership.resign();
  });

  it('denied tokens fail at once with PermissionDeniedError, never printing the token, leaving nothing behind', async () => {
    const wrong = `wrong-${crypto.randomUUID()}`;
    const readOnly = await tokenWith(
      'key_prefix "rollcall/" { policy = "read" }\nsession_prefix "" { policy = "write" }',
    );
    const noSession = await tokenWith('key_prefix "rollcall/" { policy = "write" }');
    const name = uniqueService('acl-denied');
    for (const token of [wrong, readOnly, noSession]) {
      const c = client(token);
      const errors: unknown[] = [];
      const started = Date.now();
      errors.push(await c.locks.acquire(name, { ttlSeconds: TTL }).catch((e: unknown) => e));
      errors.push(await c.locks.tryAcquire(name, { ttlSeconds: TTL }).catch((e: unknown) => e));
      errors.push(await c.locks.campaign(name, 'v', { ttlSeconds: TTL }).catch((e: unknown) => e));
      expect(Date.now() - started).toBeLessThan(3000);
      // Reading the leader needs key read only, which the two valid tokens have.
      if (token === wrong) errors.push(await c.locks.leader(name).catch((e: unknown) => e));
      for (const error of errors) {
        expect(error).toBeInstanceOf(PermissionDeniedError);
        const visible = `${String(error)}\n${(error as Error).stack}\n${inspect(error, { depth: 10, showHidden: true })}`;
        expect(visible).not.toContain(token);
        expect(visible).not.toContain(agent.masterToken);
      }
    }
    await eventually(async () => {
      const left = await raw<RawEntry[]>(agent, 'GET', `/v1/kv/rollcall/locks/${name}/?recurse`);
      return left === undefined;
    });
  });
});
