import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createHealthHandler, type DiscoveryEvent, type ServiceInstance } from '@rollcall/core';
import {
  type ConsulAgent,
  type CountingHttpProxy,
  Recorder,
  startConsul,
  startCountingHttpProxy,
  uniqueService,
  waitFor,
} from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConsulBackend } from '../src/index.js';
import { backendOn, POLL_MS, passingIds } from './helpers.js';

const ids = (e: DiscoveryEvent) => e.snapshot.instances.map((i) => i.id);
const instance = (service: string, id: string, port = 8080): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port,
});

describe('consul faults (real processes)', () => {
  let agent: ConsulAgent;
  const clients: ConsulBackend[] = [];
  const client = (
    options: Parameters<typeof backendOn>[1] = {},
    target: Pick<ConsulAgent, 'host' | 'port'> = agent,
  ) => {
    const c = backendOn(target, options);
    clients.push(c);
    return c;
  };
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    agent = await startConsul();
  });
  afterEach(async () => {
    for (const child of children.splice(0))
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('1: a child process that registered and was SIGKILLed leaves every watcher within ttl + poll interval + 1 s', async () => {
    const service = uniqueService('killed');
    const ttl = 3;
    const [b, c] = [client(), client()];
    await b.discovery.register(instance(service, 'lives'), { ttlSeconds: ttl });
    const watchers = [b, b, c, c].map((x) => new Recorder(x.discovery.watch(service)));

    const script = fileURLToPath(new URL('./fixtures/child.mjs', import.meta.url));
    const child = spawn(process.execPath, [script, String(agent.port), service, 'dies', String(ttl)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(() => output.includes('registered'), {
      timeoutMs: 15_000,
      message: `child registration (output: ${output})`,
    });
    await Promise.all(
      watchers.map((w) => w.next((e) => ids(e).join() === 'dies,lives', { timeoutMs: POLL_MS + 1000 })),
    );

    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await exited;
    const limit = ttl * 1000 + POLL_MS + 1000;
    const gone = await Promise.all(
      watchers.map(async (w) => {
        await w.next((e) => e.type === 'change' && e.removed.some((i) => i.id === 'dies'), {
          timeoutMs: limit + 500,
        });
        return Date.now() - killedAt;
      }),
    );
    for (const ms of gone) expect(ms).toBeLessThanOrEqual(limit);
    for (const w of watchers) {
      const last = w.events.at(-1) as DiscoveryEvent;
      expect(ids(last)).toEqual(['lives']);
      // Never stale, never empty: a dead peer is a change, not an outage.
      expect(w.events.every((e) => e.type !== 'stale' && ids(e).includes('lives'))).toBe(true);
    }
  });

  it('2: agent restarted (state lost): every live registration is back within one heartbeat interval after it answers again', async () => {
    const service = uniqueService('restart');
    const [a, b] = [client(), client()];
    const ttls: Record<string, number> = { a1: 10, a2: 10, b1: 9 };
    const registrations = [
      await a.discovery.register(instance(service, 'a1'), { ttlSeconds: ttls.a1 }),
      await a.discovery.register(instance(service, 'a2'), { ttlSeconds: ttls.a2 }),
      await b.discovery.register(instance(service, 'b1'), { ttlSeconds: ttls.b1 }),
    ];
    const events: string[] = [];
    for (const r of registrations) {
      r.on('lost', () => events.push(`${r.instance.id}:lost`));
      r.on('restored', () => events.push(`${r.instance.id}:restored`));
    }
    expect(await passingIds(agent, service)).toEqual(['a1', 'a2', 'b1']);
    // A watcher in a third process: the restart must not make it drop the instances in between.
    const watcher = new Recorder(client().discovery.watch(service));
    await watcher.next((e) => ids(e).length === 3, { timeoutMs: POLL_MS });

    // Watch the agent from outside: when does it answer again, and when is each instance back?
    let answeredAt = 0;
    const backAt: Record<string, number> = {};
    let probing = true;
    let down = false;
    const probe = (async () => {
      while (probing) {
        try {
          const ids = await passingIds(agent, service);
          if (down && !answeredAt) answeredAt = Date.now();
          if (answeredAt) for (const id of ids) backAt[id] ??= Date.now();
        } catch {
          // "No cluster leader" (HTTP 500) still counts as answering: the agent is up.
          if (
            down &&
            !answeredAt &&
            (await fetch(`${agent.url}/v1/status/leader`).then(
              (r) => r.ok,
              () => false,
            ))
          )
            answeredAt = Date.now();
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await agent.kill();
    down = true;
    await agent.restart();
    await waitFor(() => Object.keys(backAt).length === 3, {
      timeoutMs: 15_000,
      message: `registrations back: ${JSON.stringify(backAt)}`,
    });
    probing = false;
    await probe;
    console.info(
      `registrations back after the agent answered: ${Object.entries(backAt)
        .map(([id, at]) => `${id} +${at - answeredAt} ms`)
        .join(', ')}`,
    );
    for (const [id, at] of Object.entries(backAt)) {
      const intervalMs = ((ttls[id] as number) * 1000) / 3;
      expect(
        at - answeredAt,
        `${id} back ${at - answeredAt} ms after the agent answered`,
      ).toBeLessThanOrEqual(intervalMs);
    }
    await waitFor(() => events.filter((e) => e.endsWith(':restored')).length === 3, {
      timeoutMs: 5000,
      message: events.join(),
    });
    for (const id of ['a1', 'a2', 'b1'])
      expect(events.filter((e) => e.startsWith(`${id}:`))).toEqual([`${id}:lost`, `${id}:restored`]);
    for (const r of registrations) expect(r.state).toBe('active');
    // Two more polls: Consul's index went backwards, so the first answer with missing instances
    // was held back and the next one (all back by then) confirmed the list.
    const polls = watcher.events.length;
    await new Promise((r) => setTimeout(r, 2 * POLL_MS));
    expect(watcher.events.length).toBeGreaterThanOrEqual(polls);
    for (const e of watcher.events) expect(ids(e), `event ${e.type}`).toEqual(['a1', 'a2', 'b1']);
  });

  it('2b: agent paused longer than the TTL (state kept, check expired): lost, then restored by itself', async () => {
    const service = uniqueService('paused');
    const a = client();
    const ttl = 2;
    const registration = await a.discovery.register(instance(service, 'p1'), { ttlSeconds: ttl });
    const events: string[] = [];
    registration.on('lost', (error) => events.push(`lost:${error?.message}`));
    registration.on('restored', () => events.push('restored'));
    agent.pause();
    try {
      await new Promise((r) => setTimeout(r, ttl * 1000 + 1500));
    } finally {
      agent.resume();
    }
    await waitFor(() => events.includes('restored'), {
      timeoutMs: 10_000,
      message: `events: ${events.join()}`,
    });
    expect(events).toHaveLength(2);
    expect(events[0]).toMatch(/^lost:.*TTL/);
    expect(registration.state).toBe('active');
    await waitFor(async () => (await passingIds(agent, service)).join() === 'p1', {
      timeoutMs: 3000,
      message: 'p1 passing again',
    });
  });

  it('3: agent stopped: watches go stale with the last list and recover with a sync when it returns', async () => {
    const service = uniqueService('stopped');
    const [a, b] = [client(), client({ watchMode: 'blocking' })];
    await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 10 });
    await a.discovery.register(instance(service, 'i2'), { ttlSeconds: 10 });
    const watchers = [a, a, b, b].map((x) => new Recorder(x.discovery.watch(service)));
    await Promise.all(
      watchers.map((w) => w.next((e) => ids(e).join() === 'i1,i2', { timeoutMs: POLL_MS + 1000 })),
    );

    await agent.kill();
    try {
      for (const w of watchers) {
        const stale = await w.next((e) => e.type === 'stale', { timeoutMs: 2 * POLL_MS + 1000 });
        expect(ids(stale)).toEqual(['i1', 'i2']);
        expect(stale.snapshot.stale).toBe(true);
      }
      for (const x of [a, b]) {
        const snapshot = await x.discovery.getInstances(service);
        expect(snapshot.stale).toBe(true);
        expect(snapshot.instances.map((i) => i.id)).toEqual(['i1', 'i2']);
      }
    } finally {
      await agent.restart();
    }
    for (const w of watchers) {
      const from = w.events.findIndex((e) => e.type === 'stale') + 1;
      const back = await w.next((e) => e.type === 'sync', { from, timeoutMs: 20_000 });
      expect(ids(back)).toEqual(['i1', 'i2']);
      expect(back.snapshot.stale).toBe(false);
      expect(
        w.events.every((e) => ids(e).length === 2),
        'no event may carry an empty or partial list',
      ).toBe(true);
    }
  });

  describe('4: 100 subscribers on one service in one process', () => {
    let proxy: CountingHttpProxy;
    beforeAll(async () => {
      proxy = await startCountingHttpProxy({ host: agent.host, port: agent.port });
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it('probes send nothing to the agent: 100 /readyz and /health answers from tracked state', async () => {
      const via = { host: agent.host, port: proxy.port };
      const probed = client({}, via);
      const service = uniqueService('probed');
      await probed.discovery.register(instance(service, 'r1'), { ttlSeconds: 30 });
      await probed.discovery.getInstances(service);
      const handler = createHealthHandler(probed.discovery);
      const server = createServer(handler);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      try {
        proxy.reset();
        const statuses = new Set<number>();
        for (let i = 0; i < 50; i++)
          for (const path of ['/readyz', '/health'])
            statuses.add((await fetch(`http://127.0.0.1:${port}${path}`)).status);
        expect([...statuses]).toEqual([200]);
        // Heartbeats and the watch's own polls may run meanwhile; nothing else reached the agent.
        const other = proxy.requests.filter(
          (r) =>
            !r.path.startsWith('/v1/agent/check/pass/') &&
            !r.path.startsWith(`/v1/health/service/${service}?`),
        );
        expect(other.map((r) => `${r.method} ${r.path}`)).toEqual([]);
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('the agent sees one health request per poll interval (poll mode, and blocking mode under churn)', async () => {
      const polled = uniqueService('fan-poll');
      const blocked = uniqueService('fan-block');
      const writer = client();
      await writer.discovery.register(instance(polled, 'p1'), { ttlSeconds: 10 });
      await writer.discovery.register(instance(blocked, 'q1'), { ttlSeconds: 10 });
      const via = { host: agent.host, port: proxy.port };
      const poll = client({}, via);
      const block = client({ watchMode: 'blocking' }, via);
      proxy.reset();
      const pollWatchers = Array.from({ length: 100 }, () => new Recorder(poll.discovery.watch(polled)));
      const blockWatchers = Array.from({ length: 100 }, () => new Recorder(block.discovery.watch(blocked)));
      await Promise.all(Array.from({ length: 100 }, () => poll.discovery.getInstances(polled)));
      await Promise.all(Array.from({ length: 100 }, () => block.discovery.getInstances(blocked)));
      expect(poll.pollerCount(polled)).toBe(1);
      expect(block.pollerCount(blocked)).toBe(1);

      // Churn on the blocking-mode service: every change would wake a blocking query at once.
      let churning = true;
      const churn = (async () => {
        for (let n = 0; churning; n++) {
          const r = await writer.discovery.register(instance(blocked, `churn${n}`), { ttlSeconds: 10 });
          await new Promise((resolve) => setTimeout(resolve, 300));
          await r.deregister();
        }
      })();
      const path = (service: string) => (r: { path: string }) =>
        r.path.startsWith(`/v1/health/service/${service}?`);
      const starts = (service: string) => proxy.requests.filter(path(service)).map((r) => r.at);
      await waitFor(() => starts(polled).length >= 4 && starts(blocked).length >= 4, {
        timeoutMs: 5 * POLL_MS,
        intervalMs: 100,
        message: 'four requests per service',
      });
      churning = false;
      await churn;

      for (const service of [polled, blocked]) {
        const at = starts(service);
        const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
        // Timers may fire a few ms early relative to the proxy's clock; never a whole interval early.
        for (const gap of gaps)
          expect(gap, `${service}: gaps ${gaps.join(', ')} ms`).toBeGreaterThanOrEqual(POLL_MS - 50);
        const span = (at.at(-1) as number) - (at[0] as number);
        expect(at.length).toBeLessThanOrEqual(Math.floor(span / (POLL_MS - 50)) + 1);
        console.info(`${service}: ${at.length} requests, gaps ${gaps.join(', ')} ms`);
      }
      // Only health requests for the two services reached the agent through the proxy: no per-subscriber traffic.
      expect(proxy.count((r) => !r.path.startsWith('/v1/health/service/'))).toBe(0);
      for (const w of pollWatchers) expect(w.events[0]?.type).toBe('sync');
      await Promise.all(
        blockWatchers.map((w) => w.next((e) => ids(e).join() === 'q1', { timeoutMs: 2 * POLL_MS })),
      );
    });
  });
});
