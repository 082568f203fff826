import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BackendUnavailableError,
  type DiscoveryEvent,
  type ServiceInstance,
  ValidationError,
} from '@rollcall/core';
import {
  type EtcdServer,
  Recorder,
  recordingLogger,
  startEtcd,
  startTcpProxy,
  type TcpProxy,
  uniqueService,
  waitFor,
} from '@rollcall/testkit';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend, type EtcdOptions } from '../src/index.js';

// Real processes, real faults: one etcd for this file (tests run one after another), every wait bounded.
const here = dirname(fileURLToPath(import.meta.url));
const ids = (e: { snapshot: { instances: readonly ServiceInstance[] } }) =>
  e.snapshot.instances.map((i) => i.id).join(',');
const instance = (service: string, id: string): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 8080,
});

/** Applies a watch's events in order: the list a subscriber ends up with. */
function fold(events: DiscoveryEvent[]): string {
  let list = new Map<string, ServiceInstance>();
  for (const e of events) {
    if (e.type === 'sync') list = new Map(e.snapshot.instances.map((i) => [i.id, i]));
    else if (e.type === 'change') {
      for (const i of e.removed) list.delete(i.id);
      for (const i of [...e.added, ...e.updated]) list.set(i.id, i);
    }
  }
  return [...list.keys()].sort().join(',');
}

describe('etcd backend under real faults', () => {
  let etcd: EtcdServer;
  const clients: EtcdBackend[] = [];
  const children: ChildProcess[] = [];
  const client = (options: EtcdOptions = {}) => {
    const c = createEtcdBackend({ endpoints: etcd.endpoints, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it('1: a child process that registers and is killed with SIGKILL disappears from another process within ttl + 2 s', async () => {
    const dist = join(here, '..', 'dist', 'index.js');
    if (!existsSync(dist))
      throw new Error(`build @rollcall/etcd first (npx tsc -b packages/etcd): ${dist} is missing`);
    const service = uniqueService('child');
    const ttl = 2;
    const watcher = client();
    const watch = new Recorder(watcher.discovery.watch(service));
    await watch.next((e) => e.type === 'sync');
    const child = spawn(
      process.execPath,
      [join(here, 'fixtures', 'register-child.mjs'), etcd.clientUrl, service, 'doomed', String(ttl)],
      {
        cwd: join(here, '..'),
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await waitFor(() => out.includes('registered'), { timeoutMs: 15_000, message: 'child did not register' });
    await watch.next((e) => ids(e) === 'doomed', { timeoutMs: 2000 });
    const from = watch.events.length;
    child.kill('SIGKILL');
    const killedAt = Date.now();
    const removal = await watch.next((e) => e.type === 'change' && e.removed.some((i) => i.id === 'doomed'), {
      from,
      timeoutMs: ttl * 1000 + 2000,
    });
    expect(Date.now() - killedAt).toBeLessThanOrEqual(ttl * 1000 + 2000);
    expect(ids(removal)).toBe('');
    expect((await client().discovery.getInstances(service)).instances).toEqual([]);
  });

  it('2: etcd killed with SIGKILL and restarted within the ttl: registrations survive, watchers converge, no event lost', async () => {
    const service = uniqueService('restart');
    const a = client();
    const b = client();
    const lostEvents: string[] = [];
    const keep = await a.discovery.register(instance(service, 'keep'), { ttlSeconds: 10 });
    const gone = await a.discovery.register(instance(service, 'gone'), { ttlSeconds: 10 });
    keep.on('lost', () => lostEvents.push('keep'));
    gone.on('lost', () => lostEvents.push('gone'));
    const watch = new Recorder(b.discovery.watch(service));
    await watch.next((e) => ids(e) === 'gone,keep');

    await etcd.kill();
    await watch.next((e) => e.type === 'stale', { timeoutMs: 10_000 });
    // While etcd is down, calls fail within their deadline with a typed error instead of hanging.
    const impatient = client({ callTimeoutMs: 1000 });
    const started = Date.now();
    await expect(impatient.discovery.register(instance(service, 'during'))).rejects.toBeInstanceOf(
      BackendUnavailableError,
    );
    // One deadline, not two: the undo of the failed write does not wait another call timeout.
    expect(Date.now() - started).toBeLessThan(2500);
    const stale = await b.discovery.getInstances(service);
    expect(stale.stale).toBe(true);
    expect(stale.instances.map((i) => i.id)).toEqual(['gone', 'keep']);

    await etcd.restart();
    const back = watch.events.findIndex((e) => e.type === 'stale') + 1;
    await watch.next((e) => e.type !== 'stale' && !e.snapshot.stale && ids(e) === 'gone,keep', {
      from: back,
      timeoutMs: 15_000,
    });
    // The existing client is usable at once (no circuit breaker holding it shut after etcd returns).
    await waitFor(
      async () => {
        await a.kv.put('rc-test/restart-probe', 'x');
        return true;
      },
      {
        timeoutMs: 3000,
        message: 'put after restart',
      },
    );

    await gone.deregister();
    await a.discovery.register(instance(service, 'new'), { ttlSeconds: 10 });
    await watch.next((e) => ids(e) === 'keep,new', { timeoutMs: 5000 });
    expect(fold(watch.events)).toBe('keep,new');
    const afterRestart = watch.events.slice(back).filter((e) => e.type === 'change') as Extract<
      DiscoveryEvent,
      { type: 'change' }
    >[];
    expect(
      afterRestart.map((c) =>
        [...c.added.map((i) => `+${i.id}`), ...c.removed.map((i) => `-${i.id}`)].join(),
      ),
    ).toEqual(['-gone', '+new']);
    expect(lostEvents).toEqual([]);
    expect(keep.state).toBe('active');
    expect(a.stats().leasesGranted).toBe(1);
    const fresh = client();
    expect((await fresh.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['keep', 'new']);
  });

  it('3: etcd frozen longer than the ttl: lost, then restored within a few seconds of its return, no app code involved', async () => {
    const service = uniqueService('frozen');
    const a = client();
    const b = client();
    const ttl = 2;
    const registration = await a.discovery.register(instance(service, 'phoenix'), { ttlSeconds: ttl });
    const events: string[] = [];
    let restoredAt = 0;
    registration.on('lost', (error) => events.push(`lost:${error?.name}`));
    registration.on('restored', () => {
      events.push('restored');
      restoredAt = Date.now();
    });
    const watch = new Recorder(b.discovery.watch(service));
    await watch.next((e) => ids(e) === 'phoenix');

    etcd.pause();
    let resumedAt = 0;
    try {
      await waitFor(() => events.length > 0, {
        timeoutMs: ttl * 3000 + 2000,
        message: 'no lost event while etcd was frozen',
      });
    } finally {
      etcd.resume();
      resumedAt = Date.now();
    }
    await waitFor(() => events.includes('restored'), { timeoutMs: 10_000, message: `events: ${events}` });
    expect(events).toEqual(['lost:BackendUnavailableError', 'restored']);
    expect(restoredAt - resumedAt).toBeLessThan(8000);
    expect(registration.state).toBe('active');
    await waitFor(
      async () => {
        const snapshot = await b.discovery.getInstances(service);
        return !snapshot.stale && snapshot.instances.map((i) => i.id).join() === 'phoenix';
      },
      { timeoutMs: 15_000, message: 'the watcher never saw phoenix again' },
    );
    expect(fold(watch.events)).toBe('phoenix');
    expect((await client().discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['phoenix']);
    expect(a.stats().leases).toBe(1);
  });

  it('a registration or deregistration that times out while etcd is frozen leaves nothing behind once etcd is back', async () => {
    const service = uniqueService('ghost');
    const a = client({ callTimeoutMs: 1000 });
    const b = client();
    await a.discovery.register(instance(service, 'alive'), { ttlSeconds: 10 });
    const watch = new Recorder(b.discovery.watch(service));
    await watch.next((e) => ids(e) === 'alive');
    etcd.pause();
    let error: unknown;
    try {
      error = await a.discovery
        .register(instance(service, 'ghost'), { ttlSeconds: 10 })
        .catch((e: unknown) => e);
    } finally {
      etcd.resume();
    }
    expect(error).toBeInstanceOf(BackendUnavailableError);
    // etcd now reads the put that was waiting in its socket and applies it; the client removes it again.
    const acks = a.stats().keepaliveAcks;
    await waitFor(() => a.stats().keepaliveAcks >= acks + 2, {
      timeoutMs: 15_000,
      message: 'no keepalive after resume',
    });
    await waitFor(
      async () =>
        (await client().discovery.getInstances(service)).instances.map((i) => i.id).join() === 'alive',
      {
        timeoutMs: 10_000,
        message: 'the failed registration stayed in etcd',
      },
    );
    expect(fold(watch.events)).toBe('alive');

    // Likewise a deregistration that etcd cannot take now is retried until it can.
    const registration = a.discovery.activeRegistrations.find((r) => r.instance.id === 'alive')!;
    etcd.pause();
    try {
      await expect(registration.deregister()).rejects.toBeInstanceOf(BackendUnavailableError);
    } finally {
      etcd.resume();
    }
    await waitFor(async () => (await client().discovery.getInstances(service)).instances.length === 0, {
      timeoutMs: 10_000,
      message: 'a deregistration that failed during the freeze was never completed',
    });
    await watch.next((e) => e.type !== 'stale' && ids(e) === '', { timeoutMs: 10_000 });
  });

  it('4: compaction past a disconnected watcher: it re-syncs to the correct list', async () => {
    const service = uniqueService('compact');
    const proxy: TcpProxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
    try {
      const writer = client();
      const behind = createEtcdBackend({ endpoints: [proxy.url] });
      clients.push(behind);
      const registrations = [];
      for (const id of ['a', 'b'])
        registrations.push(await writer.discovery.register(instance(service, id), { ttlSeconds: 30 }));
      const watch = new Recorder(behind.discovery.watch(service));
      await watch.next((e) => ids(e) === 'a,b');
      const before = watch.events.length;

      proxy.blackhole();
      // Enough traffic that etcd cannot deliver it to the blocked stream, then compact that history away.
      // (Written with a raw client: Rollcall's kv API refuses keys in the registry.)
      const big = 'x'.repeat(1000);
      const raw = new Etcd3({ hosts: etcd.endpoints });
      try {
        for (let i = 0; i < 300; i++)
          await raw.put(`/rollcall/services/${service}/filler-${i % 3}`).value(big);
        for (const n of [0, 1, 2]) await raw.delete().key(`/rollcall/services/${service}/filler-${n}`);
      } finally {
        raw.close();
      }
      await registrations[0]!.deregister();
      await writer.discovery.register(instance(service, 'c'), { ttlSeconds: 30 });
      await etcd.compact();
      proxy.heal();

      const resync = await watch.next((e) => e.type === 'sync', { from: before, timeoutMs: 20_000 });
      expect(ids(resync as Extract<DiscoveryEvent, { type: 'sync' }>)).toBe('b,c');
      await watch.next((e) => e.type !== 'stale' && ids(e) === 'b,c' && !e.snapshot.stale, {
        from: before,
        timeoutMs: 5000,
      });
      expect(fold(watch.events)).toBe('b,c');
      for (const e of watch.events)
        expect(ids(e).includes('filler'), 'invalid values must never reach a watcher').toBe(false);
      expect((await behind.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['b', 'c']);
      // etcd could not deliver the backlog (the stream was blocked), then found its history compacted and
      // cancelled the watch: the forced re-sync path, not a reconnect.
      expect(behind.stats().forcedSyncs).toBeGreaterThanOrEqual(1);
      // And it keeps following.
      await registrations[1]!.deregister();
      await watch.next((e) => e.type === 'change' && ids(e) === 'c', { timeoutMs: 5000 });
    } finally {
      await proxy.close();
    }
  });

  it("6: names that could escape the prefix are refused; 'web' never sees 'web-admin', nested keys or invalid values", async () => {
    const logger = recordingLogger();
    const a = client();
    const b = client({ logger });
    const web = uniqueService('web');
    for (const service of ['../etc', 'a/b', '', '.', 'web/..']) {
      await expect(a.discovery.register(instance(service, 'x'))).rejects.toBeInstanceOf(ValidationError);
    }
    for (const id of ['../x', 'a/b', '..', '.']) {
      await expect(a.discovery.register(instance(web, id))).rejects.toBeInstanceOf(ValidationError);
    }
    await expect(a.kv.put('../outside', 'x')).rejects.toBeInstanceOf(ValidationError);
    await expect(a.kv.get('configs/../../rollcall/services/x')).rejects.toBeInstanceOf(ValidationError);

    const watch = new Recorder(b.discovery.watch(web));
    await watch.next((e) => e.type === 'sync');
    // Raw writes a buggy or hostile writer could make under the prefix, on a lease as Rollcall's own
    // (lease-less keys are ignored before their value is even read: see hostile.test.ts).
    const raw = new Etcd3({ hosts: etcd.endpoints });
    const lease = raw.lease(30);
    try {
      await lease.put(`/rollcall/services/${web}/garbage`).value('{not json');
      await lease.put(`/rollcall/services/${web}/wrong-id`).value(JSON.stringify(instance(web, 'other-id')));
      await lease
        .put(`/rollcall/services/${web}/nested/deeper`)
        .value(JSON.stringify(instance(web, 'deeper')));
      await lease
        .put(`/rollcall/services/${web}/bad-port`)
        .value(JSON.stringify({ ...instance(web, 'bad-port'), port: 0 }));
      await a.discovery.register(instance(`${web}-admin`, 'admin'));
      await a.discovery.register(instance(`${web}x`, 'x'));
      await a.discovery.register(instance(web, 'w1'));
      await watch.next((e) => ids(e) === 'w1', { timeoutMs: 5000 });
      // A valid instance overwritten with garbage leaves the list (it is no longer a valid instance).
      await lease.put(`/rollcall/services/${web}/w1`).value('garbage');
      await watch.next((e) => e.type === 'change' && ids(e) === '', { timeoutMs: 5000 });
    } finally {
      await lease.revoke().catch(() => {});
      raw.close();
    }
    for (const e of watch.events) for (const i of e.snapshot.instances) expect(i.service).toBe(web);
    const fresh = client();
    expect((await fresh.discovery.getInstances(web)).instances).toEqual([]);
    expect(logger.lines.filter((l) => l.startsWith('warn etcd: skipping')).length).toBeGreaterThanOrEqual(3);
    expect(await fresh.discovery.listServices()).toEqual(expect.arrayContaining([`${web}-admin`, `${web}x`]));
  });

  it('big services: registrations are split into transactions etcd accepts, and a multi-MB service reads whole', async () => {
    const a = client();
    const service = uniqueService('big');
    // 48 entries of 500 chars: ~24 KB per instance, ~5 MB for the service (etcd refuses requests over 1.5 MiB,
    // gRPC receives at most 4 MB by default).
    const metadata = Object.fromEntries(
      Array.from({ length: 48 }, (_, i) => [`k${i}`, `${i}`.padEnd(500, 'x')]),
    );
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        a.discovery.register({ ...instance(service, `big-${i}`), metadata }, { ttlSeconds: 10 }),
      ),
    );
    const fresh = client();
    const snapshot = await fresh.discovery.getInstances(service);
    expect(snapshot.instances).toHaveLength(200);
    expect(snapshot.instances[0]!.metadata).toEqual(metadata);
    await a.close();
    await waitFor(async () => (await fresh.discovery.getInstances(service)).instances.length === 0, {
      timeoutMs: 5000,
      message: 'big service not emptied by close()',
    });
  });

  it('one lease per client for all its instances, one keepalive stream, revoked on close', async () => {
    const a = client();
    const services = [uniqueService('lease'), uniqueService('lease')];
    const before = await leaseCount(etcd);
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        a.discovery.register(instance(services[i % 2]!, `i${i}`), { ttlSeconds: 5 }),
      ),
    );
    expect(a.stats().leases).toBe(1);
    expect(a.stats().leasesGranted).toBe(1);
    expect(await leaseCount(etcd)).toBe(before + 1);
    const fresh = client();
    expect((await fresh.discovery.getInstances(services[0]!)).instances).toHaveLength(20);
    await a.close();
    expect(await leaseCount(etcd)).toBe(before);
    expect((await client().discovery.getInstances(services[1]!)).instances).toEqual([]);
  });
});

async function leaseCount(etcd: EtcdServer): Promise<number> {
  const out = await etcd.etcdctl(['lease', 'list', '-w', 'json']);
  const parsed = JSON.parse(out) as { leases?: unknown[] };
  return parsed.leases?.length ?? 0;
}
