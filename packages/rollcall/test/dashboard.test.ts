import { request } from 'node:http';
import type { Backend } from '@rollcall/core';
import { ConfigError } from '@rollcall/core';
import { createMemoryBackend, type MemoryBackend, MemoryStore } from '@rollcall/memory';
import type { MigrationPhase, ServiceComparison } from '@rollcall/migration';
import { afterEach, describe, expect, it } from 'vitest';
import { type Dashboard, startDashboard } from '../src/dashboard/server.js';
import { openSse, type SseStream } from './sse.js';

// The dashboard server over the memory backend: routes, headers, the token and host rules, the
// event stream (one watch per service however many browsers), masking, and the migration panel
// over a fake `migrating` backend. The page itself runs in Chromium in dashboard-browser.test.ts.

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const item of open.splice(0).reverse()) await item.close();
});

async function dashboard(backend: Backend, options: Partial<Parameters<typeof startDashboard>[0]> = {}) {
  const d = await startDashboard({ backend, port: 0, listIntervalMs: 50, pollIntervalMs: 50, ...options });
  open.push(d);
  return d;
}

async function sse(d: Dashboard, path = 'events', headers: Record<string, string> = {}): Promise<SseStream> {
  const stream = await openSse(`${d.url}${path}`, headers);
  open.push(stream);
  return stream;
}

/** A raw GET with any Host header (fetch would not let us set it). */
function rawGet(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

async function registry(): Promise<MemoryBackend> {
  const backend = createMemoryBackend({ store: new MemoryStore() });
  open.push(backend);
  await backend.discovery.register({
    id: 'a1',
    service: 'orders',
    host: '10.0.0.1',
    port: 8080,
    version: '1.0.0',
    tags: ['blue'],
    metadata: { zone: 'eu-1' },
  });
  return backend;
}

describe('dashboard server', () => {
  it('serves the page and its assets with a strict policy, GET only, 404 elsewhere', async () => {
    const d = await dashboard(await registry());
    const page = await fetch(d.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await page.text()).toContain('<script src="app.js" defer></script>');
    expect((await fetch(`${d.url}app.js`)).headers.get('content-type')).toBe(
      'text/javascript; charset=utf-8',
    );
    expect((await fetch(`${d.url}style.css`)).status).toBe(200);
    expect((await fetch(`${d.url}nope`)).status).toBe(404);
    expect((await fetch(`${d.url}api/state`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${d.url}api/state`, { method: 'DELETE' })).status).toBe(405);
    // DNS rebinding: a loopback dashboard answers only to loopback host names.
    expect(await rawGet(`${d.url}api/state`, { host: 'evil.example:80' })).toBe(403);
    expect(await rawGet(`${d.url}api/state`, { host: `localhost:${new URL(d.url).port}` })).toBe(200);
  });

  it('streams the backend, services with first-seen times, instances, kv (secrets masked), locks and connection', async () => {
    const backend = await registry();
    await backend.kv.put('configs/orders/prod/log_level', 'debug');
    await backend.kv.put('configs/orders/prod/db_password', 'Zq7-not-for-pages');
    const lease = await backend.locks.acquire('nightly', { ttlSeconds: 2 });
    const d = await dashboard(backend, { kvPrefix: 'configs/' });
    const events = await sse(d);
    expect(await events.next('backend')).toEqual({
      name: 'memory',
      server: null,
      kvPrefix: 'configs/',
      locksListable: true,
      migration: false,
    });
    expect(events.events[0]?.event).toBe('backend');
    expect(await events.next('services')).toEqual({ names: ['orders'] });
    const first = await events.next<{ instances: { id: string; before: boolean; since: number }[] }>(
      'service',
    );
    expect(first).toMatchObject({ service: 'orders', healthy: 1, total: 1, stale: false });
    expect(first.instances).toEqual([
      expect.objectContaining({
        id: 'a1',
        host: '10.0.0.1',
        tags: ['blue'],
        metadata: { zone: 'eu-1' },
        before: true,
      }),
    ]);
    expect(await events.next('kv')).toEqual({
      prefix: 'configs/',
      stale: false,
      entries: [
        { key: 'configs/orders/prod/db_password', masked: true },
        { key: 'configs/orders/prod/log_level', value: 'debug' },
      ],
    });
    expect(await events.next('locks')).toEqual({
      items: [{ kind: 'lock', name: 'nightly', holder: expect.any(String), token: '1', waiters: 0 }],
    });
    expect(await events.next('connection')).toEqual({ reachable: true });

    const other = createMemoryBackend({ store: backend.store });
    open.push(other);
    const before = Date.now();
    await other.discovery.register({ id: 'p1', service: 'payments', host: '10.0.0.9', port: 1 });
    await other.discovery.register({ id: 'a2', service: 'orders', host: '10.0.0.2', port: 8080 });
    const grown = await events.next<{ instances: { id: string; before: boolean; since: number }[] }>(
      'service',
      (v) => (v as { instances: unknown[] }).instances.length === 2,
    );
    expect(grown.instances[1]).toMatchObject({ id: 'a2', before: false });
    expect(grown.instances[1]!.since).toBeGreaterThanOrEqual(before);
    expect(grown.instances[0]!.since).toBe(first.instances[0]!.since);
    await events.next('services', (s: { names: string[] }) => s.names.includes('payments'));
    await events.next('service', (v: { service: string }) => v.service === 'payments');
    await other.close();
    await events.next('service-removed', (v: { service: string }) => v.service === 'payments');
    await backend.kv.delete('configs/orders/prod/log_level');
    await events.next('kv', (kv: { entries: unknown[] }) => kv.entries.length === 1);
    await lease.release();
    await events.next('locks', (l: { items: unknown[] }) => l.items.length === 0);
    backend.store.outage();
    await events.next('connection', (c: { reachable: boolean }) => !c.reachable);
    await events.next(
      'service',
      (v: { stale: boolean; instances: unknown[] }) => v.stale && v.instances.length === 1,
    );
    backend.store.restore();
    // The masked value never went to the page.
    expect(events.text()).not.toContain('Zq7-not-for-pages');
    const state = (await (await fetch(`${d.url}api/state`)).json()) as Record<string, unknown>;
    expect(Object.keys(state)).toEqual(
      expect.arrayContaining(['backend', 'services', 'service:orders', 'kv', 'locks']),
    );
    expect(JSON.stringify(state)).not.toContain('Zq7-not-for-pages');
  });

  it('holds one watch per service however many browsers, and none once they leave', async () => {
    const backend = await registry();
    const d = await dashboard(backend);
    const a = await sse(d);
    await a.next('service');
    const b = await sse(d);
    await b.next('service');
    expect(d.hub.clientCount).toBe(2);
    expect(d.hub.feeds.refs('orders')).toBe(2);
    expect(d.hub.feeds.services()).toEqual(['orders']);
    a.close();
    await expect.poll(() => d.hub.clientCount).toBe(1);
    expect(d.hub.feeds.refs('orders')).toBe(1);
    b.close();
    await expect.poll(() => d.hub.clientCount).toBe(0);
    expect(d.hub.feeds.services()).toEqual([]);
  });

  it('stops polling the backend once the last browser leaves, and resumes with the next one', async () => {
    const backend = await registry();
    const listServices = backend.discovery.listServices.bind(backend.discovery);
    let lists = 0;
    backend.discovery.listServices = () => {
      lists += 1;
      return listServices();
    };
    const d = await dashboard(backend);
    const a = await sse(d);
    await a.next('service');
    await expect.poll(() => lists).toBeGreaterThan(1);
    a.close();
    await expect.poll(() => d.hub.clientCount).toBe(0);
    const after = lists;
    await new Promise((resolve) => setTimeout(resolve, 300)); // six list intervals
    expect(lists).toBeLessThanOrEqual(after + 1); // at most the read in flight when it left
    const b = await sse(d);
    await b.next('service');
    await expect.poll(() => lists).toBeGreaterThan(after + 1);
  });

  it('refuses a non-loopback host without a token, a short token and a bad port', async () => {
    const backend = createMemoryBackend();
    open.push(backend);
    await expect(startDashboard({ backend, host: '0.0.0.0', port: 0 })).rejects.toThrow(
      /host: '0.0.0.0' is reachable from other machines: refusing to serve without a token/,
    );
    await expect(startDashboard({ backend, port: 0, token: 'short' })).rejects.toThrow(ConfigError);
    await expect(startDashboard({ backend, port: 70000 })).rejects.toThrow(/port: must be an integer/);
  });

  it('with a token, every data request must carry it (header or query); the page does not', async () => {
    const token = 'tok-0123456789abcdef';
    const d = await dashboard(await registry(), { host: '0.0.0.0', token });
    const url = d.url.replace('0.0.0.0', '127.0.0.1');
    expect((await fetch(url)).status).toBe(200);
    expect((await fetch(`${url}api/state`)).status).toBe(401);
    expect((await fetch(`${url}api/state?token=wrong-0123456789abcdef`)).status).toBe(401);
    expect((await fetch(`${url}events`)).status).toBe(401);
    expect((await fetch(`${url}api/state?token=${token}`)).status).toBe(200);
    expect((await fetch(`${url}api/state`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(
      200,
    );
    const events = await openSse(`${url}events?token=${token}`);
    open.push(events);
    await events.next('service');
    expect(events.text()).not.toContain(token);
  });
});

/** The read side of the contract's MigratingBackend over a memory backend: a phase, compare() and 'phase' events. */
function fakeMigrating(backend: MemoryBackend) {
  let phase: MigrationPhase = 'shadow';
  const listeners = new Set<(next: MigrationPhase, previous: MigrationPhase) => void>();
  const comparisons: ServiceComparison[] = [
    { service: 'orders', from: 2, to: 1, onlyInFrom: ['a2'], onlyInTo: [], verdict: 'blocked', stale: false },
  ];
  let compares = 0;
  const migrating = {
    name: 'migrating',
    discovery: backend.discovery,
    kv: backend.kv,
    locks: backend.locks,
    close: () => backend.close(),
    [Symbol.asyncDispose]: () => backend.close(),
    get phase() {
      return phase;
    },
    async compare(): Promise<ServiceComparison[]> {
      compares += 1;
      return comparisons;
    },
    on(_event: 'phase', listener: (next: MigrationPhase, previous: MigrationPhase) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return {
    backend: migrating,
    compares: () => compares,
    listeners: () => listeners.size,
    setPhase(next: MigrationPhase) {
      const previous = phase;
      phase = next;
      comparisons[0] = { ...comparisons[0]!, to: 2, onlyInFrom: [], verdict: 'ok' };
      for (const l of listeners) l(next, previous);
    },
  };
}

describe('dashboard migration panel', () => {
  it('shows the phase and the comparison of a migrating backend, following phase changes at once', async () => {
    const fake = fakeMigrating(await registry());
    const d = await dashboard(fake.backend, { pollIntervalMs: 60_000 });
    const events = await sse(d);
    expect(await events.next('backend')).toMatchObject({ name: 'migrating', migration: true });
    expect(await events.next('migration')).toEqual({
      phase: 'shadow',
      comparisons: [
        {
          service: 'orders',
          from: 2,
          to: 1,
          onlyInFrom: ['a2'],
          onlyInTo: [],
          verdict: 'blocked',
          stale: false,
        },
      ],
    });
    fake.setPhase('dual-read');
    expect(await events.next('migration', (m: { phase: string }) => m.phase === 'dual-read')).toMatchObject({
      comparisons: [{ service: 'orders', verdict: 'ok' }],
    });
    // Refreshed by the phase event, not by a poll (the poll interval is a minute).
    expect(fake.compares()).toBe(2);
    expect(fake.listeners()).toBe(1);
    events.close();
    await expect.poll(() => fake.listeners()).toBe(0);
  });

  it('a backend of another name has no migration panel', async () => {
    const d = await dashboard(await registry());
    const events = await sse(d);
    await events.next('services');
    expect(events.events.some((e) => e.event === 'migration')).toBe(false);
  });
});
