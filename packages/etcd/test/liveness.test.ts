import {
  ClosedError,
  ConflictError,
  type DiscoveryEvent,
  type Registration,
  type ServiceInstance,
} from '@rollcall/core';
import {
  type EtcdServer,
  eventually,
  Recorder,
  startEtcd,
  startTcpProxy,
  type TcpProxy,
  uniqueService,
  waitFor,
} from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend, type EtcdOptions } from '../src/index.js';

// The liveness faults of issue 9 on a real etcd, each as a user meets it.
const instance = (service: string, id: string, host = '127.0.0.1'): ServiceInstance => ({
  id,
  service,
  host,
  port: 8080,
});
const ids = (e: { snapshot: { instances: readonly ServiceInstance[] } }) =>
  e.snapshot.instances.map((i) => i.id).join(',');

/** Folds a watch's events into the list its subscriber holds, checking none adds a duplicate or removes an unknown. */
function fold(events: readonly DiscoveryEvent[]): string[] {
  let list = new Map<string, ServiceInstance>();
  for (const e of events) {
    if (e.type === 'sync') list = new Map(e.snapshot.instances.map((i) => [i.id, i]));
    else if (e.type === 'change') {
      for (const i of e.removed) {
        if (!list.delete(i.id)) throw new Error(`removal of unknown ${i.id}`);
      }
      for (const i of e.added) {
        if (list.has(i.id)) throw new Error(`duplicate add of ${i.id}`);
        list.set(i.id, i);
      }
      for (const i of e.updated) list.set(i.id, i);
    }
  }
  return [...list.keys()].sort();
}

function events(registration: Registration): string[] {
  const seen: string[] = [];
  registration.on('lost', (e) => seen.push(`lost:${e?.name}`));
  registration.on('restored', () => seen.push('restored'));
  return seen;
}

describe('etcd liveness (issue 9)', () => {
  let etcd: EtcdServer;
  const clients: EtcdBackend[] = [];
  const proxies: TcpProxy[] = [];
  const client = (options: EtcdOptions = {}) => {
    const c = createEtcdBackend({ endpoints: etcd.endpoints, reconcileIntervalMs: 1000, ...options });
    clients.push(c);
    return c;
  };
  const proxied = async (options: EtcdOptions = {}) => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
    proxies.push(proxy);
    return { proxy, backend: client({ endpoints: [proxy.url], ...options }) };
  };
  const key = (service: string, id: string) => `/rollcall/services/${service}/${id}`;
  const stored = async (service: string, id: string) =>
    (await etcd.etcdctl(['get', key(service, id), '--print-value-only'])).trim();

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'liveness' });
  });
  afterEach(async () => {
    for (const p of proxies.splice(0)) p.heal();
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
    await Promise.allSettled(proxies.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('item 2: a registration whose key an operator deletes is put back within one reconcile period', async () => {
    const a = client();
    const service = uniqueService('deleted');
    const registration = await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 10 });
    const seen = events(registration);
    await etcd.etcdctl(['del', key(service, 'i1')]);
    await waitFor(async () => (await stored(service, 'i1')) !== '', {
      timeoutMs: 3000,
      message: 'the deleted registration was not put back',
    });
    await eventually(() => seen.includes('restored'), { timeoutMs: 3000 });
    expect(seen).toEqual(['lost:BackendUnavailableError', 'restored']);
    expect(registration.state).toBe('active');
    expect(a.stats().registrationsRestored).toBe(1);
  });

  it('item 2: among 70 registrations (checked through the key list of their lease), the one deleted is put back, the others untouched', async () => {
    const a = client();
    const service = uniqueService('many');
    const registrations = await Promise.all(
      Array.from({ length: 70 }, (_, i) =>
        a.discovery.register(instance(service, `i${i}`), { ttlSeconds: 10 }),
      ),
    );
    const seen = registrations.map(events);
    await etcd.etcdctl(['del', key(service, 'i5')]);
    await waitFor(async () => (await stored(service, 'i5')) !== '', {
      timeoutMs: 3000,
      message: 'the deleted registration was not put back',
    });
    await eventually(() => seen[5]!.includes('restored'), { timeoutMs: 3000 });
    expect(seen[5]).toEqual(['lost:BackendUnavailableError', 'restored']);
    expect(seen.filter((s, i) => i !== 5 && s.length > 0)).toEqual([]);
    expect(a.stats().registrationsRestored).toBe(1);
  });

  it('registrations left alone stay put through the checks: no lost, no rewrite (a few keys read directly, 70 through the lease)', async () => {
    const few = client();
    const many = client();
    const service = uniqueService('alone');
    const registrations = [
      await few.discovery.register(instance(service, 'one'), { ttlSeconds: 10 }),
      ...(await Promise.all(
        Array.from({ length: 70 }, (_, i) =>
          many.discovery.register(instance(service, `i${i}`), { ttlSeconds: 10 }),
        ),
      )),
    ];
    const seen = registrations.map(events);
    const checked = (c: EtcdBackend, from: number) => c.stats().reconciles >= from + 3;
    const [fewBefore, manyBefore] = [few.stats().reconciles, many.stats().reconciles];
    await waitFor(() => checked(few, fewBefore) && checked(many, manyBefore), {
      timeoutMs: 8000,
      message: 'the periodic checks did not run',
    });
    expect(seen.flat()).toEqual([]);
    expect(few.stats().registrationsRestored + many.stats().registrationsRestored).toBe(0);
  });

  it('item 2: with a watch of its own service, a deleted registration is put back at once', async () => {
    const a = client({ reconcileIntervalMs: 60_000 });
    const service = uniqueService('watched');
    await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 10 });
    const watch = new Recorder(a.discovery.watch(service));
    await watch.next((e) => ids(e) === 'i1');
    await etcd.etcdctl(['del', key(service, 'i1')]);
    const started = Date.now();
    await watch.next((e) => e.type === 'change' && e.added.some((i) => i.id === 'i1'), { timeoutMs: 3000 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(fold(watch.events)).toEqual(['i1']);
  });

  it('item 9: an id another live client holds is a ConflictError at registration; at the same address it is taken over', async () => {
    const [a, b] = [client(), client()];
    const service = uniqueService('dup');
    const first = await a.discovery.register(instance(service, 'x', '10.0.0.1'), { ttlSeconds: 10 });
    const seen = events(first);
    const error = await b.discovery.register(instance(service, 'x', '10.0.0.2')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).code).toBe('ERR_CONFLICT');
    expect(JSON.parse(await stored(service, 'x')).host).toBe('10.0.0.1');
    // The same address can only be served by one process: a restarted process takes its id back at once.
    const again = await b.discovery.register(instance(service, 'x', '10.0.0.1'), { ttlSeconds: 10 });
    await eventually(() => seen.includes('lost:ConflictError'), { timeoutMs: 3000 });
    expect(first.state).toBe('recovering');
    // The first owner closing never deletes what the second holds.
    await a.close();
    expect(JSON.parse(await stored(service, 'x')).host).toBe('10.0.0.1');
    expect(again.state).toBe('active');
    expect((await client().discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['x']);
  });

  it('item 9: a partitioned owner that heals after another took its id neither overwrites nor deletes it; it takes it back when that one leaves', async () => {
    const { proxy, backend: a } = await proxied();
    const b = client();
    const service = uniqueService('healed');
    const ttl = 2;
    const mine = await a.discovery.register(instance(service, 'x', '10.0.0.1'), { ttlSeconds: ttl });
    const seen = events(mine);
    proxy.blackhole();
    // etcd expires a's lease; a notices it may have.
    await eventually(() => seen.length > 0, { timeoutMs: ttl * 1000 + 2000 });
    await waitFor(async () => (await stored(service, 'x')) === '', { timeoutMs: ttl * 1000 + 3000 });
    const theirs = await b.discovery.register(instance(service, 'x', '10.0.0.2'), { ttlSeconds: 10 });
    proxy.heal();
    await eventually(() => seen.includes('lost:ConflictError') || mine.state === 'recovering', {
      timeoutMs: 5000,
    });
    // a keeps trying but never overwrites a live holder.
    await new Promise((r) => setTimeout(r, 2500));
    expect(JSON.parse(await stored(service, 'x')).host).toBe('10.0.0.2');
    expect(mine.state).toBe('recovering');
    expect(theirs.state).toBe('active');
    // Once b leaves, a takes its id back.
    await theirs.deregister();
    await eventually(() => mine.state === 'active', { timeoutMs: 5000 });
    expect(JSON.parse(await stored(service, 'x')).host).toBe('10.0.0.1');
    // And a closing deletes only its own.
    await a.close();
    expect(await stored(service, 'x')).toBe('');
  });

  it('item 3: a holder that stops hearing etcd (answers held back) loses its lock and deletes its key: no zombie', async () => {
    const ttl = 2;
    const { proxy, backend: a } = await proxied();
    const b = client();
    const lock = uniqueService('zombie');
    const election = uniqueService('zombie-election');
    const held = await a.locks.acquire(lock, { ttlSeconds: ttl });
    const leadership = await a.locks.campaign(election, 'a', { ttlSeconds: ttl });
    // etcd keeps receiving a's keepalives (its lease lives on), but a hears no acknowledgement.
    proxy.blackhole('replies');
    await eventually(() => held.signal.aborted && leadership.signal.aborted, {
      timeoutMs: ttl * 1000 + 1000,
    });
    // The lease survives at etcd, yet the lock is free and no one is named leader: a deleted its keys.
    const next = await b.locks.acquire(lock, { ttlSeconds: ttl, timeoutMs: 3000 });
    expect(next.fencingToken > held.fencingToken).toBe(true);
    await eventually(async () => (await b.locks.leader(election)) === undefined, { timeoutMs: 3000 });
    await next.release();
  });

  it('item 1: a registration written while etcd is frozen past the ttl, on a lease that held only a lock, is there afterwards', async () => {
    const a = client({ callTimeoutMs: 10_000 });
    const service = uniqueService('inflight');
    const ttl = 2;
    // The lease exists (granted for a lock) but carries no registration yet.
    const lock = await a.locks.acquire(uniqueService('first-lock'), { ttlSeconds: ttl });
    etcd.pause();
    let pending: Promise<Registration>;
    try {
      await new Promise((r) => setTimeout(r, ttl * 1000));
      // In flight while the lease is being lost: it lands on the lease etcd is about to expire.
      pending = a.discovery.register(instance(service, 'late'), { ttlSeconds: ttl });
      await new Promise((r) => setTimeout(r, ttl * 400));
    } finally {
      etcd.resume();
    }
    const registration = await pending;
    expect(lock.signal.aborted).toBe(true);
    // Every registration that says it is active is in etcd: checked over more than two ttls.
    for (let round = 0; round < 3; round++) {
      await eventually(
        async () =>
          (await client().discovery.getInstances(service)).instances.map((i) => i.id).join() === 'late',
        { timeoutMs: 5000, message: `round ${round}: 'late' is not in etcd (state ${registration.state})` },
      );
      await new Promise((r) => setTimeout(r, ttl * 1000));
    }
    expect(registration.state).toBe('active');
  });

  it('item 7: after an outage longer than the ttl, a watcher never sees the list flash empty while owners re-register', async () => {
    const owner = client();
    // A fast keepalive so that the watcher's stream notices the freeze and re-syncs after it.
    const watcher = client({ keepaliveMs: 1000, callTimeoutMs: 1000 });
    const service = uniqueService('flash');
    await owner.discovery.register(instance(service, 'a'), { ttlSeconds: 2 });
    await owner.discovery.register(instance(service, 'b'), { ttlSeconds: 2 });
    const watch = new Recorder(watcher.discovery.watch(service));
    await watch.next((e) => ids(e) === 'a,b');
    etcd.pause();
    try {
      await watch.next((e) => e.type === 'stale', { timeoutMs: 8000 });
      await new Promise((r) => setTimeout(r, 2500));
    } finally {
      etcd.resume();
    }
    const back = watch.events.length;
    await watch.next((e) => e.type !== 'stale' && !e.snapshot.stale, { from: back, timeoutMs: 10_000 });
    // Through the re-sync and the owner's re-registration (its lease expired during the freeze).
    await new Promise((r) => setTimeout(r, 3000));
    for (const e of watch.events) expect(ids(e), `event ${e.type}`).not.toBe('');
    expect(fold(watch.events)).toEqual(['a', 'b']);
  });

  it('item 8: with cacheIdleMs 0, first reads racing the idle sweep never fail with ClosedError', async () => {
    const a = client({ cacheIdleMs: 0 });
    const services = Array.from({ length: 300 }, (_, i) => `${uniqueService('race')}-${i}`);
    const reads = services.map((s) => a.discovery.getInstances(s));
    for (let i = 0; i < 20; i++) {
      a.discovery.sweep();
      await new Promise((r) => setImmediate(r));
    }
    const results = await Promise.allSettled(reads);
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(failed.map((f) => String(f.reason))).toEqual([]);
  });

  it('item 8: a slow first read (etcd frozen) answers once etcd does, whatever the idle sweep does meanwhile', async () => {
    const a = client({ cacheIdleMs: 1000, callTimeoutMs: 10_000 });
    const service = uniqueService('slow');
    await client().discovery.register(instance(service, 's1'), { ttlSeconds: 10 });
    etcd.pause();
    let read: Promise<unknown>;
    try {
      read = a.discovery.getInstances(service);
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        a.discovery.sweep();
      }
    } finally {
      etcd.resume();
    }
    const snapshot = (await read) as { instances: ServiceInstance[] };
    expect(snapshot.instances.map((i) => i.id)).toEqual(['s1']);
    await expect(read).resolves.not.toBeInstanceOf(ClosedError);
  });
});
