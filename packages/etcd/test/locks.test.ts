import { AbortedError, BackendUnavailableError, ClosedError, type LockLease } from '@rollcall/core';
import {
  type EtcdServer,
  eventually,
  startEtcd,
  startTcpProxy,
  type TcpProxy,
  uniqueService,
} from '@rollcall/testkit';
import { Etcd3, type IKeyValue } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend, type EtcdOptions } from '../src/index.js';

// Real etcd, real faults: one etcd for this file (tests run one after another), every wait bounded.
const HANDOFF_MS = 1000;

/** Tracks a pending promise: `settled` turns true once it resolves or rejects. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  return { promise, settled: () => done };
}

/** An acquire whose `onQueued` has fired (its key is in etcd) when this resolves. */
async function queuedAcquire(
  client: EtcdBackend,
  name: string,
  options: { ttlSeconds?: number; signal?: AbortSignal; onQueued?: () => void } = {},
) {
  let queued!: () => void;
  const isQueued = new Promise<void>((r) => {
    queued = r;
  });
  const waiting = track(
    client.locks.acquire(name, {
      ttlSeconds: 5,
      ...options,
      onQueued: () => {
        options.onQueued?.();
        queued();
      },
    }),
  );
  waiting.promise.catch(() => {});
  await isQueued;
  return waiting;
}

describe('etcd locks', () => {
  let etcd: EtcdServer;
  let raw: Etcd3;
  const clients: EtcdBackend[] = [];
  const proxies: TcpProxy[] = [];
  const client = (options: EtcdOptions = {}) => {
    const c = createEtcdBackend({ endpoints: etcd.endpoints, ...options });
    clients.push(c);
    return c;
  };
  const proxied = async (options: EtcdOptions = {}) => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
    proxies.push(proxy);
    return { proxy, backend: client({ ...options, endpoints: [proxy.url] }) };
  };
  const queueKeys = async (prefix: string): Promise<IKeyValue[]> =>
    (await raw.getAll().prefix(prefix).sort('Create', 'Ascend').exec()).kvs;

  beforeAll(async () => {
    etcd = await startEtcd();
    raw = new Etcd3({ hosts: etcd.endpoints });
  });
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
    await Promise.allSettled(proxies.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    raw?.close();
    await etcd?.stop();
  });

  it('one lease per client for its locks, leaderships and instances; keys are <namespace>locks/<name>/<lease hex>-<n>; close releases before revoking', async () => {
    const a = client();
    const before = await leaseCount(etcd);
    const names = Array.from({ length: 20 }, () => uniqueService('many'));
    await a.discovery.register(
      { id: 'i1', service: uniqueService('svc'), host: '127.0.0.1', port: 80 },
      { ttlSeconds: 5 },
    );
    const leases = await Promise.all(names.map((n) => a.locks.acquire(n, { ttlSeconds: 5 })));
    const election = uniqueService('election');
    const leadership = await a.locks.campaign(election, 'node-a', { ttlSeconds: 5 });
    expect(a.stats().leases).toBe(1);
    expect(a.stats().leasesGranted).toBe(1);
    expect(a.stats().locksHeld).toBe(21);
    expect(await leaseCount(etcd)).toBe(before + 1);

    const leaseIds = new Set<string>();
    for (const [i, name] of names.entries()) {
      const [kv, ...rest] = await queueKeys(`/rollcall/locks/${name}/`);
      expect(rest).toEqual([]);
      const key = kv!.key.toString();
      const [, hex] = /^\/rollcall\/locks\/[^/]+\/([0-9a-f]+)-\d+$/.exec(key) ?? [];
      expect(hex, key).toBeDefined();
      expect(BigInt(`0x${hex}`).toString()).toBe(kv!.lease);
      // The fencing token is the key's create revision.
      expect(leases[i]!.fencingToken).toBe(BigInt(kv!.create_revision));
      leaseIds.add(kv!.lease);
    }
    const [leaderKey] = await queueKeys(`/rollcall/elections/${election}/`);
    expect(leaderKey!.value.toString()).toBe('node-a');
    leaseIds.add(leaderKey!.lease);
    expect(leaseIds.size).toBe(1);

    // close() deletes the lock keys itself (the next waiter proceeds at once), then revokes the lease.
    const b = client();
    const waiting = await queuedAcquire(b, names[0]!);
    const closedAt = Date.now();
    await a.close();
    const next = await waiting.promise;
    expect(Date.now() - closedAt).toBeLessThan(HANDOFF_MS);
    expect(next.fencingToken > leases[0]!.fencingToken).toBe(true);
    expect(leases[0]!.signal.aborted).toBe(true);
    expect(leadership.signal.aborted).toBe(true);
    for (const name of names.slice(1)) expect(await queueKeys(`/rollcall/locks/${name}/`)).toEqual([]);
    expect(await queueKeys(`/rollcall/elections/${election}/`)).toEqual([]);
    await next.release();
    expect(await queueKeys(`/rollcall/locks/${names[0]}/`)).toEqual([]);
    expect(await leaseCount(etcd)).toBe(before + 1); // b's
  });

  it('no skip-ahead: a waiter whose predecessor withdraws checks again and still waits for the holder', async () => {
    const [a, b, c] = [client(), client(), client()];
    const lock = uniqueService('skip');
    const held = await a.locks.acquire(lock, { ttlSeconds: 5 });
    const bAbort = new AbortController();
    const bWaits = await queuedAcquire(b, lock, { signal: bAbort.signal });
    const cWaits = await queuedAcquire(c, lock);
    const checksBefore = c.stats().lockRechecks;
    bAbort.abort();
    await expect(bWaits.promise).rejects.toBeInstanceOf(AbortedError);
    // c saw its predecessor (b) go, read its place again, and found a (the holder) before it.
    await eventually(() => c.stats().lockRechecks > checksBefore, { timeoutMs: HANDOFF_MS });
    expect(cWaits.settled()).toBe(false);
    expect(c.stats().lockWaiters).toBe(1);
    const keys = await queueKeys(`/rollcall/locks/${lock}/`);
    expect(keys.map((k) => BigInt(k.create_revision))[0]).toBe(held.fencingToken);
    expect(keys).toHaveLength(2); // a's and c's: b left nothing behind
    const releasedAt = Date.now();
    await held.release();
    const next = await cWaits.promise;
    expect(Date.now() - releasedAt).toBeLessThan(HANDOFF_MS);
    expect(next.fencingToken > held.fencingToken).toBe(true);
    await next.release();
  });

  it('compaction: a waiting watch that etcd cancels (start revision compacted) is re-established from a fresh read', async () => {
    const a = client();
    const { proxy, backend: b } = await proxied();
    const lock = uniqueService('compact');
    const held = await a.locks.acquire(lock, { ttlSeconds: 5 });
    await b.kv.get('warm-up'); // b's connection is up before the partition
    // b's key is written; its predecessor watch (from the next revision) is held back in the proxy...
    const bWaits = await queuedAcquire(b, lock, { onQueued: () => proxy.blackhole() });
    // ...while that history is written over and compacted away.
    for (let i = 0; i < 20; i++) await a.kv.put(`rc-test/${lock}/filler`, String(i));
    await etcd.compact();
    proxy.heal();
    await eventually(() => b.stats().lockWatchCancels >= 1, {
      timeoutMs: 10_000,
      message: 'etcd never cancelled the compacted watch',
    });
    await eventually(() => b.stats().lockRechecks >= 1, { timeoutMs: HANDOFF_MS });
    expect(bWaits.settled()).toBe(false);
    // A compaction under an established watch does not disturb it either.
    await a.kv.put(`rc-test/${lock}/filler`, 'last');
    await etcd.compact();
    const releasedAt = Date.now();
    await held.release();
    const next = await bWaits.promise;
    expect(Date.now() - releasedAt).toBeLessThan(HANDOFF_MS);
    expect(next.fencingToken > held.fencingToken).toBe(true);
    await next.release();
  });

  it('a held lock whose key is deleted is lost at once, also after its watch reconnected; the next waiter proceeds', async () => {
    const { proxy, backend: a } = await proxied();
    const b = client();
    const lock = uniqueService('deleted');
    const held = await a.locks.acquire(lock, { ttlSeconds: 5 });
    const bWaits = await queuedAcquire(b, lock);
    // Break a's connections: its watch on its own key reconnects and reads the key again.
    proxy.reset();
    await eventually(() => a.stats().lockRechecks >= 1, {
      timeoutMs: 10_000,
      message: "the holder's watch never re-read its key",
    });
    expect(held.signal.aborted).toBe(false);
    const [key] = await queueKeys(`/rollcall/locks/${lock}/`);
    expect(BigInt(key!.create_revision)).toBe(held.fencingToken);
    await raw.delete().key(key!.key.toString());
    const deletedAt = Date.now();
    await eventually(() => held.signal.aborted, { timeoutMs: HANDOFF_MS, message: 'not lost' });
    expect(held.signal.reason).toBeInstanceOf(BackendUnavailableError);
    expect(String((held.signal.reason as Error).message)).toMatch(/deleted/);
    const next = await bWaits.promise;
    expect(Date.now() - deletedAt).toBeLessThan(HANDOFF_MS);
    expect(next.fencingToken > held.fencingToken).toBe(true);
    await held.release(); // idempotent, harmless: the key is gone
    await next.release();
  });

  it('a leader whose key is deleted loses leadership; the next candidate leads and leader() follows', async () => {
    const [a, b] = [client(), client()];
    const election = uniqueService('leader');
    const first = await a.locks.campaign(election, 'a', { ttlSeconds: 5 });
    const second = track(b.locks.campaign(election, 'b', { ttlSeconds: 5 }));
    await eventually(async () => (await queueKeys(`/rollcall/elections/${election}/`)).length === 2);
    const values = (await queueKeys(`/rollcall/elections/${election}/`)).map((k) => k.value.toString());
    expect(values).toEqual(['a', 'b']);
    expect(await b.locks.leader(election)).toBe('a');
    const [key] = await queueKeys(`/rollcall/elections/${election}/`);
    await raw.delete().key(key!.key.toString());
    await eventually(() => first.signal.aborted, { timeoutMs: HANDOFF_MS });
    const leadership = await second.promise;
    expect(leadership.signal.aborted).toBe(false);
    expect(await a.locks.leader(election)).toBe('b');
    await leadership.resign();
    expect(await a.locks.leader(election)).toBeUndefined();
  });

  it('a holder cut off from etcd sees its signal abort before etcd can hand the lock to anyone else', async () => {
    const ttl = 2;
    const { proxy, backend: a } = await proxied();
    const b = client();
    const lock = uniqueService('partition');
    const held = await a.locks.acquire(lock, { ttlSeconds: ttl });
    let lostAt = 0;
    held.signal.addEventListener('abort', () => {
      lostAt = performance.now();
    });
    const bWaits = await queuedAcquire(b, lock, { ttlSeconds: ttl });
    // Let a keepalive round trip complete, then partition a: etcd stops hearing from it.
    const acks = a.stats().keepaliveAcks;
    await eventually(() => a.stats().keepaliveAcks > acks, { timeoutMs: 3000 });
    proxy.blackhole();
    const cutAt = performance.now();
    let next: LockLease;
    try {
      next = await bWaits.promise;
    } finally {
      proxy.heal();
    }
    const acquiredAt = performance.now();
    // etcd3 alone would report the loss only after 2 x ttl without an acknowledgement; the lock is
    // reported lost once no keepalive sent within the last ttl was acknowledged, which is no later
    // than the earliest moment etcd may expire the lease.
    expect(lostAt, 'the cut-off holder never saw its signal abort').toBeGreaterThan(0);
    expect(lostAt).toBeLessThanOrEqual(acquiredAt);
    expect(lostAt - cutAt).toBeLessThanOrEqual(ttl * 1000 + 50);
    expect(acquiredAt - cutAt).toBeLessThanOrEqual(ttl * 1000 + 1500);
    expect(String((held.signal.reason as Error).message)).toMatch(
      /no renewal .* acknowledged within its TTL/,
    );
    expect(next.fencingToken > held.fencingToken).toBe(true);
    await next.release();
    await held.release();
  });

  it('a waiter whose lease expires while etcd is frozen queues again, behind the holder', async () => {
    const a = client();
    const b = client();
    const lock = uniqueService('requeue');
    const held = await a.locks.acquire(lock, { ttlSeconds: 15 });
    const bWaits = await queuedAcquire(b, lock, { ttlSeconds: 2 });
    etcd.pause();
    try {
      await new Promise((r) => setTimeout(r, 3500)); // the freeze itself: longer than b's ttl
    } finally {
      etcd.resume();
    }
    await eventually(() => b.stats().leasesGranted === 2, {
      timeoutMs: 10_000,
      message: "b's lease was not replaced",
    });
    await eventually(
      async () => {
        const keys = await queueKeys(`/rollcall/locks/${lock}/`);
        return keys.length === 2 && keys[1]!.lease !== keys[0]!.lease;
      },
      { timeoutMs: 10_000, message: 'b did not queue again' },
    );
    expect(bWaits.settled()).toBe(false);
    expect(held.signal.aborted).toBe(false);
    await held.release();
    const next = await bWaits.promise;
    expect(next.fencingToken > held.fencingToken).toBe(true);
    await next.release();
  });

  it('close() while waiting rejects with ClosedError and leaves no key; a closed client refuses new calls', async () => {
    const [a, b] = [client(), client()];
    const lock = uniqueService('close');
    const held = await a.locks.acquire(lock, { ttlSeconds: 5 });
    const bWaits = await queuedAcquire(b, lock);
    await b.close();
    await expect(bWaits.promise).rejects.toBeInstanceOf(ClosedError);
    expect((await queueKeys(`/rollcall/locks/${lock}/`)).map((k) => BigInt(k.create_revision))).toEqual([
      held.fencingToken,
    ]);
    await expect(b.locks.acquire(lock)).rejects.toBeInstanceOf(ClosedError);
    await expect(b.locks.leader(lock)).rejects.toBeInstanceOf(ClosedError);
    await held.release();
  });

  it('while etcd cannot answer, acquire, tryAcquire and leader fail with BackendUnavailableError within the call timeout', async () => {
    const a = client({ callTimeoutMs: 1000 });
    await a.kv.get('warm-up');
    const lock = uniqueService('down');
    etcd.pause();
    try {
      const started = Date.now();
      const errors = await Promise.all([
        a.locks.acquire(lock).catch((e: unknown) => e),
        a.locks.tryAcquire(lock).catch((e: unknown) => e),
        a.locks.leader(lock).catch((e: unknown) => e),
      ]);
      for (const error of errors) expect(error).toBeInstanceOf(BackendUnavailableError);
      expect(Date.now() - started).toBeLessThan(2500);
    } finally {
      etcd.resume();
    }
    // Nothing was left behind, and the same client works once etcd is back.
    const lease = await eventually(() => a.locks.tryAcquire(lock, { ttlSeconds: 5 }), { timeoutMs: 10_000 });
    expect((await queueKeys(`/rollcall/locks/${lock}/`)).length).toBe(1);
    await lease.release();
  });
});

async function leaseCount(etcd: EtcdServer): Promise<number> {
  const out = await etcd.etcdctl(['lease', 'list', '-w', 'json']);
  const parsed = JSON.parse(out) as { leases?: unknown[] };
  return parsed.leases?.length ?? 0;
}
