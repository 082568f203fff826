import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Backend, createHealthHandler, type ServiceDiscovery, TYPES } from '@rollcall/core';
import { eventually, Recorder, startConsul, startEtcd, uniqueService } from '@rollcall/testkit';
import { createContainer, loadConfig } from 'rollcall';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { consulServer, etcdServer, type RealServer } from './servers.js';

// Issue 13: the probes and the graceful shutdown as an operator meets them, on real servers.
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'service-child.mjs');

type Server = RealServer & { propagationMs: number };
const servers: [string, () => Promise<Server>][] = [
  [
    'etcd',
    async () => {
      return { ...etcdServer(await startEtcd({ name: 'shutdown-e2e' })), propagationMs: 1500 };
    },
  ],
  [
    'consul',
    async () => {
      return { ...consulServer(await startConsul()), propagationMs: 6000 };
    },
  ],
];

/** A child running `service-child.mjs`, its output collected. */
function startChild(server: Server, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [fixture, ...args], {
    env: { ...process.env, ...server.env, ROLLCALL_ENV: 'test', ...env },
  });
  let out = '';
  const seen = new Map<string, number>();
  const collect = (d: Buffer) => {
    out += d;
    for (const line of out.split('\n')) if (line && !seen.has(line)) seen.set(line, Date.now());
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    child,
    exited,
    out: () => out,
    /** When `line` was first printed. */
    at: (line: string) => seen.get(line),
    async port(): Promise<number> {
      await eventually(() => /registered \d+/.test(out), { timeoutMs: 15_000, message: () => out });
      return Number(/registered (\d+)/.exec(out)?.[1]);
    },
  };
}

async function probe(port: number, path: string): Promise<{ status: number; body: { reasons?: string[] } }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, body: (await res.json()) as { reasons?: string[] } };
}

describe.each(servers)('%s: probes and graceful shutdown', (name, start) => {
  let server: Server;
  let observer: Backend;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    server = await start();
    observer = createContainer(loadConfig({ environment: 'test', env: server.env })).get<Backend>(
      TYPES.Backend,
    );
  });
  afterEach(() => {
    server.resume();
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });
  afterAll(async () => {
    await observer?.close();
    await server?.stop();
  });

  // spring-cloud-consul#178: SIGTERM did not deregister, so callers kept calling a dead instance until its TTL.
  it('the instance leaves every watcher long before its 30 s ttl, and the process exits 0 after draining', async () => {
    const service = uniqueService('graceful');
    const run = startChild(server, [service, 'g1']);
    children.push(run.child);
    await run.port();
    const watch = new Recorder(observer.discovery.watch(service));
    await watch.next((e) => e.snapshot.instances.some((i) => i.id === 'g1'), {
      timeoutMs: server.propagationMs,
    });
    run.child.kill('SIGTERM');
    const signalledAt = Date.now();
    await watch.next((e) => e.type === 'change' && e.removed.some((i) => i.id === 'g1'), {
      timeoutMs: server.propagationMs,
    });
    expect(Date.now() - signalledAt).toBeLessThan(server.propagationMs + 1000);
    expect(await run.exited, run.out()).toBe(0);
    expect(run.out()).toContain('draining done');
  });

  // Issue 13: installGracefulShutdown closed only discovery, so a Consul lock went to the next
  // waiter 17.6 s after SIGTERM (the session's ttl), and kv watches ran until the exit.
  it('SIGTERM with a registration, a kv watch and a lock: not ready at once, gone from watchers, lock free at the close, exit 0', async () => {
    const service = uniqueService('operated');
    const lock = `${service}-lock`;
    // The drain covers the callers' propagation bound: watchers must see the instance leave
    // while it still serves (Consul's watchers poll at most every 5 s).
    const drainMs = server.propagationMs;
    const run = startChild(server, [service, 'o1', lock, `${service}/config/`], {
      DRAIN_MS: String(drainMs),
    });
    children.push(run.child);
    const port = await run.port();
    await eventually(() => run.out().includes('lock held') && run.out().includes('kv watch synced'), {
      message: () => run.out(),
    });
    expect(await probe(port, '/readyz')).toEqual({ status: 200, body: { status: 'pass', reasons: [] } });
    const watch = new Recorder(observer.discovery.watch(service));
    await watch.next((e) => e.snapshot.instances.some((i) => i.id === 'o1'), {
      timeoutMs: server.propagationMs,
    });
    const waiter = observer.locks
      .acquire(lock, { timeoutMs: 60_000 })
      .then((lease) => ({ lease, at: Date.now() }));

    run.child.kill('SIGTERM');
    const signalledAt = Date.now();
    // Not ready first: while the process still serves (the drain), readiness fails and says why.
    await eventually(async () => (await probe(port, '/readyz')).status === 503, { timeoutMs: 1000 });
    expect((await probe(port, '/readyz')).body.reasons).toEqual(['shutting down']);
    expect((await probe(port, '/livez')).status).toBe(200);
    await watch.next((e) => e.type === 'change' && e.removed.some((i) => i.id === 'o1'), {
      timeoutMs: server.propagationMs,
    });
    expect(run.out(), 'still draining when the instance left').not.toContain('draining done');

    const { lease, at } = await waiter;
    await lease.release();
    expect(await run.exited, run.out()).toBe(0);
    const drainedAt = run.at('draining done');
    expect(drainedAt, run.out()).toBeDefined();
    // The lock is released by close(), right after the drain: a waiter gets it within 2 s of
    // that, not after the holder's 30 s ttl.
    expect(
      at - (drainedAt as number),
      `${name}: lock handed on ${at - signalledAt} ms after SIGTERM`,
    ).toBeLessThan(2000);
    expect(run.out()).toContain('kv watch ended');
  });

  it('a registry pause: /livez stays 200 without asking it; /readyz fails only once a registration is lost, and recovers', async () => {
    const container = createContainer(loadConfig({ environment: 'test', env: server.env }));
    const discovery = container.get<ServiceDiscovery>(TYPES.ServiceDiscovery);
    // The container's discovery, as it comes: no cast.
    const probes = createServer(createHealthHandler(discovery));
    await new Promise<void>((resolve) => probes.listen(0, '127.0.0.1', resolve));
    const port = (probes.address() as AddressInfo).port;
    try {
      const service = uniqueService('probed');
      await discovery.register({ id: 'p1', service, host: '127.0.0.1', port: 1 }, { ttlSeconds: 2 });
      const health = async () =>
        (await probe(port, '/health')).body as { connection: string; status: string };
      await eventually(async () => (await health()).connection === 'up');
      expect(await probe(port, '/readyz')).toEqual({ status: 200, body: { status: 'pass', reasons: [] } });

      server.pause();
      expect(await probe(port, '/livez')).toEqual({ status: 200, body: { status: 'pass', reasons: [] } });
      await eventually(async () => (await health()).connection !== 'up', {
        timeoutMs: 15_000,
        message: 'the keepalives notice the pause',
      });
      expect((await probe(port, '/livez')).status).toBe(200);
      await eventually(async () => (await probe(port, '/readyz')).status === 503, {
        timeoutMs: 30_000,
        message: 'the registration is lost once its ttl passes unconfirmed',
      });
      expect((await probe(port, '/readyz')).body.reasons?.[0]).toMatch(
        new RegExp(`^${service}/p1 is recovering`),
      );
      expect((await probe(port, '/livez')).status).toBe(200);

      server.resume();
      await eventually(async () => (await probe(port, '/readyz')).status === 200, {
        timeoutMs: 30_000,
        message: 'ready again once the registration is written back',
      });
      await eventually(async () => (await health()).connection === 'up', { timeoutMs: 15_000 });
    } finally {
      server.resume();
      probes.close();
      await container.unbindAllAsync();
    }
  });
});
