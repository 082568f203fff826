// Makes docs/dashboard.png, the README's screenshot: a demo registry on a fresh etcd, shown by
// `rollcall ui` in headless Chromium. Run: npm run build && node packages/rollcall/docs/screenshot.mjs
import { createEtcdBackend } from '@rollcall/etcd';
import { startEtcd } from '@rollcall/testkit';
import { startDashboard } from '../dist/dashboard/server.js';
import { launchChromium } from '../test/chromium.mjs';

const out = new URL('dashboard.png', import.meta.url).pathname;
const etcd = await startEtcd();
const demo = createEtcdBackend({ endpoints: etcd.endpoints });
const viewer = createEtcdBackend({ endpoints: etcd.endpoints });
try {
  const orders = [
    ['orders-1', '10.0.0.7', '1.4.0', ['blue', 'canary'], { zone: 'eu-west-1a' }, 3],
    ['orders-2', '10.0.0.8', '1.4.0', ['blue'], { zone: 'eu-west-1b' }, 1],
    ['orders-3', '10.0.0.9', '1.3.2', ['green'], { zone: 'eu-west-1c' }, 1],
  ];
  for (const [id, host, version, tags, metadata, weight] of orders)
    await demo.discovery.register({
      id,
      service: 'orders',
      host,
      port: 8080,
      version,
      tags,
      metadata,
      weight,
    });
  await demo.discovery.register({
    id: 'pay-1',
    service: 'payments',
    host: '10.0.1.2',
    port: 9000,
    version: '2.0.1',
  });
  await demo.discovery.register({
    id: 'pay-2',
    service: 'payments',
    host: '10.0.1.3',
    port: 9000,
    version: '2.0.1',
  });
  await demo.discovery.register({
    id: 'mail-1',
    service: 'mailer',
    host: '10.0.2.5',
    port: 2525,
    version: '0.9.0',
  });
  await demo.kv.put('configs/orders/production/log_level', 'info');
  await demo.kv.put('configs/orders/production/max_batch', '200');
  await demo.kv.put('configs/orders/production/db_password', 'not-shown');
  await demo.locks.acquire('nightly-invoices', { ttlSeconds: 15 });
  await demo.locks.campaign('scheduler', 'orders-1', { ttlSeconds: 15 });
  const dashboard = await startDashboard({
    backend: viewer,
    port: 0,
    kvPrefix: 'configs/',
    server: etcd.clientUrl,
  });
  const browser = await launchChromium({ viewport: { width: 1280, height: 720 } });
  const page = await browser.context.newPage();
  await page.goto(`${dashboard.url}#service=orders`);
  await page.waitForSelector('#instances tr[data-id="orders-3"]');
  await page.waitForSelector('#locks tbody tr');
  // A newly registered instance shows its age ("0 s ago") beside those already there.
  await demo.discovery.register({
    id: 'orders-4',
    service: 'orders',
    host: '10.0.0.10',
    port: 8080,
    version: '1.4.1',
    tags: ['canary'],
    metadata: { zone: 'eu-west-1a' },
  });
  await page.waitForSelector('#instances tr[data-id="orders-4"]');
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
  await browser.close();
  await dashboard.close();
} finally {
  await Promise.all([demo.close(), viewer.close()]);
  await etcd.stop();
}
