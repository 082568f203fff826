import { createEtcdBackend, type EtcdBackend } from '@rollcall/etcd';
import { createMemoryBackend } from '@rollcall/memory';
import { type EtcdServer, startEtcd } from '@rollcall/testkit';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { startDashboard } from '../src/dashboard/server.js';
import { type Chromium, launchChromium } from './chromium.mjs';

// `rollcall ui` in a real headless Chromium (Debian's, installed by scripts/install-servers.mjs),
// driven by playwright-core, over a real etcd: the page follows the registry live, without reloads.

let etcd: EtcdServer;
let browser: Chromium;
const clients: EtcdBackend[] = [];
const stops: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  [etcd, browser] = await Promise.all([
    startEtcd(),
    launchChromium({ viewport: { width: 1280, height: 800 } }),
  ]);
});
afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await Promise.all(clients.map((c) => c.close()));
  await browser?.close();
  await etcd?.stop();
});

/** A page that records console errors and uncaught exceptions. */
async function openPage(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  return { page, errors };
}

/** `rollcall ui` in-process, configured by environment variables like a user's shell; resolves with its URL. */
async function ui(env: Record<string, string>, args: string[] = []): Promise<string> {
  const stop = new AbortController();
  let listening!: (url: string) => void;
  const url = new Promise<string>((resolve) => {
    listening = resolve;
  });
  const done = runCli(['ui', '--port', '0', ...args], {
    stdout: () => {},
    stderr: (line) => console.error(line),
    env,
    signal: stop.signal,
    onListening: listening,
  });
  stops.push(async () => {
    stop.abort();
    expect(await done).toBe(0);
  });
  return url;
}

/** Distinct colours of a PNG, decoded by the browser itself (in a blank page without the dashboard's policy). */
async function distinctColours(png: Buffer): Promise<{ colours: number; width: number; height: number }> {
  const page = await browser.context.newPage();
  try {
    const src = JSON.stringify(`data:image/png;base64,${png.toString('base64')}`);
    // Browser code as text: the tests are type-checked without the DOM library.
    return await page.evaluate(`(async (src) => {
      const image = new Image();
      image.src = src;
      await image.decode();
      const canvas = document.createElement('canvas');
      canvas.width = image.width;
      canvas.height = image.height;
      const context = canvas.getContext('2d');
      context.drawImage(image, 0, 0);
      const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      const seen = new Set();
      for (let i = 0; i < data.length; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      return { colours: seen.size, width: canvas.width, height: canvas.height };
    })(${src})`);
  } finally {
    await page.close();
  }
}

describe('rollcall ui in Chromium', () => {
  it('shows an instance registered on etcd without a reload, filters by tag, and drops it when deregistered', async () => {
    const url = await ui({ ROLLCALL_BACKEND: 'etcd', ETCD_ENDPOINTS: etcd.endpoints.join(',') }, [
      '--kv-prefix',
      'configs/',
    ]);
    const registry = createEtcdBackend({ endpoints: etcd.endpoints });
    clients.push(registry);
    await registry.kv.put('configs/web/prod/log_level', 'info');
    const { page, errors } = await openPage(url);
    await expect.poll(() => page.textContent('#backend')).toContain('etcd');
    await page.waitForSelector('#live.ok');
    await page.waitForSelector('#kv tr[data-key="configs/web/prod/log_level"]');

    const blue = await registry.discovery.register({
      id: 'web-1',
      service: 'web',
      host: '10.9.0.1',
      port: 8080,
      version: '1.2.3',
      tags: ['blue'],
      metadata: { zone: 'eu-1' },
      weight: 2,
    });
    await page.click('#services tr[data-service="web"]');
    const row = page.locator('#instances tr[data-id="web-1"]');
    await row.waitFor();
    // Already there when the dashboard first saw the service: its age is a lower bound.
    expect(await row.locator('td').allTextContents()).toEqual([
      'web-1',
      '10.9.0.1:8080',
      '1.2.3',
      '2',
      'blue',
      'zone=eu-1',
      expect.stringMatching(/^before /),
    ]);
    await registry.discovery.register({
      id: 'web-2',
      service: 'web',
      host: '10.9.0.2',
      port: 8080,
      tags: ['green'],
    });
    const second = page.locator('#instances tr[data-id="web-2"]');
    await second.waitFor();
    expect(await second.locator('td.since').textContent()).toMatch(/^\d+ s ago$/);
    expect(await page.textContent('#services tr[data-service="web"] .count')).toBe('2 / 2');

    await page.fill('#tag-filter', 'blue');
    await expect.poll(() => page.locator('#instances tbody tr').count()).toBe(1);
    expect(await page.textContent('#filter-count')).toBe('1 of 2 shown');
    await page.fill('#tag-filter', '');
    await page.fill('#meta-filter', 'zone=eu-1');
    await expect.poll(() => page.locator('#instances tbody tr').count()).toBe(1);
    await page.fill('#meta-filter', '');
    // A tag chip adds itself to the filter.
    await page.click('#instances tr[data-id="web-2"] button.chip');
    expect(await page.inputValue('#tag-filter')).toBe('green');
    await expect.poll(() => page.locator('#instances tbody tr').count()).toBe(1);
    await page.fill('#tag-filter', '');

    const screenshot = await page.screenshot({ fullPage: true });
    const image = await distinctColours(screenshot);
    expect(image.width).toBe(1280);
    // A blank or single-colour page has 1-2 colours; text, badges and borders give many.
    expect(image.colours).toBeGreaterThan(50);

    await blue.deregister();
    await page.locator('#instances tr[data-id="web-1"]').waitFor({ state: 'detached' });
    expect(await page.locator('#instances tbody tr').count()).toBe(1);
    expect(await page.textContent('#services tr[data-service="web"] .count')).toBe('1 / 1');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('three open pages share one etcd watch per service', async () => {
    const viewer = createEtcdBackend({ endpoints: etcd.endpoints });
    clients.push(viewer);
    const writer = createEtcdBackend({ endpoints: etcd.endpoints });
    clients.push(writer);
    await writer.discovery.register({ id: 'api-1', service: 'api', host: '10.7.0.1', port: 80 });
    const dashboard = await startDashboard({ backend: viewer, port: 0 });
    stops.push(() => dashboard.close());
    const pages = await Promise.all([1, 2, 3].map(() => openPage(`${dashboard.url}#service=api`)));
    await Promise.all(pages.map(({ page }) => page.locator('#instances tr[data-id="api-1"]').waitFor()));
    expect(dashboard.hub.feeds.refs('api')).toBe(3);
    expect(viewer.upstreams('api')).toBe(1);
    await writer.discovery.register({ id: 'api-2', service: 'api', host: '10.7.0.2', port: 80 });
    await Promise.all(pages.map(({ page }) => page.locator('#instances tr[data-id="api-2"]').waitFor()));
    for (const { page, errors } of pages) {
      expect(errors).toEqual([]);
      await page.close();
    }
    // The last page gone, the dashboard's watch ends (the discovery's cache keeps its own for cacheIdleMs).
    await expect.poll(() => dashboard.hub.feeds.refs('api')).toBe(0);
    expect(dashboard.hub.clientCount).toBe(0);
  });

  it('passes its token on to the event stream, and shows the migration panel of a migrating backend', async () => {
    const memory = createMemoryBackend();
    stops.push(() => memory.close());
    await memory.discovery.register({ id: 'm1', service: 'mail', host: '10.8.0.1', port: 25 });
    const migrating = {
      name: 'migrating',
      discovery: memory.discovery,
      kv: memory.kv,
      locks: memory.locks,
      close: () => memory.close(),
      [Symbol.asyncDispose]: () => memory.close(),
      phase: 'shadow',
      compare: async () => [
        { service: 'mail', from: 1, to: 0, onlyInFrom: ['m1'], onlyInTo: [], verdict: 'blocked' as const },
      ],
    };
    const token = 'dashboard-token-0123456789';
    const dashboard = await startDashboard({ backend: migrating, port: 0, token, listIntervalMs: 100 });
    stops.push(() => dashboard.close());
    const { page, errors } = await openPage(`${dashboard.url}?token=${token}`);
    await page.locator('#instances tr[data-id="m1"]').waitFor();
    await page.locator('#migration tr[data-compare="mail"]').waitFor();
    expect(await page.isVisible('#migration-panel')).toBe(true);
    expect(await page.textContent('#phase')).toBe('shadow');
    expect(await page.locator('#migration tr[data-compare="mail"] td').allTextContents()).toEqual([
      'mail',
      '1',
      '0',
      'm1',
      '–',
      'blocked',
    ]);
    expect(errors).toEqual([]);
    await page.close();
  });
});
