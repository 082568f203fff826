// Benchmark of the `rollcall ui` dashboard on one etcd started for the run: how long after a
// change on etcd does a real Chromium page show it? Beside it, in the same run, the raw time of
// the same change to reach a Rollcall watch in Node (what the dashboard itself is fed by) and to
// reach a server-sent events client, so the ratios say what the page adds.
// Run: npm run build && node packages/rollcall/bench/index.mjs [--samples=N]
// Prints a table and writes bench-results/rollcall-dashboard.json. Not a test: no assertions.
import { createEtcdBackend } from '@rollcall/etcd';
import { reportBench, startEtcd, summarize } from '@rollcall/testkit';
import { startDashboard } from '../dist/dashboard/server.js';
import { launchChromium } from '../test/chromium.mjs';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const SAMPLES = Number(args.get('samples') ?? 40);
const NEW_SERVICES = Number(args.get('new-services') ?? 10);

const etcd = await startEtcd();
const browser = await launchChromium();
const viewer = createEtcdBackend({ endpoints: etcd.endpoints });
const writer = createEtcdBackend({ endpoints: etcd.endpoints });
const watcher = createEtcdBackend({ endpoints: etcd.endpoints });
const dashboard = await startDashboard({ backend: viewer, port: 0 });

try {
  const page = await browser.context.newPage();
  await page.goto(dashboard.url);
  const service = 'bench';
  const anchor = await writer.discovery.register({ id: 'anchor', service, host: '10.0.0.1', port: 1 });
  await page.click(`#services tr[data-service="${service}"]`, { timeout: 10_000 });
  await page.waitForSelector('#instances tr[data-id="anchor"]');

  // A Node SSE client on the same dashboard: the stream without the page's rendering.
  const sse = await fetch(`${dashboard.url}events`);
  const reader = sse.body.getReader();
  let buffered = '';
  const seen = [];
  const sseWaiters = new Set();
  void (async () => {
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      seen.push(performance.now());
      for (const w of sseWaiters) w();
    }
  })();
  const sseShows = (id, present) =>
    new Promise((resolve) => {
      const check = () => {
        const blocks = buffered
          .split('\n\n')
          .filter((b) => b.startsWith(`event: service\n`) && b.includes(`"service":"${service}"`));
        const last = blocks.at(-1) ?? '';
        if (last.includes(`"id":"${id}"`) === present) {
          sseWaiters.delete(check);
          resolve(performance.now());
        }
      };
      sseWaiters.add(check);
      check();
    });

  const watch = watcher.discovery.watch(service)[Symbol.asyncIterator]();
  await watch.next();
  const watchShows = async (id, present) => {
    for (;;) {
      const { value } = await watch.next();
      if (value.snapshot.instances.some((i) => i.id === id) === present) return performance.now();
    }
  };

  const rows = { watch: [], sse: [], page: [], pageGone: [] };
  for (let i = 0; i < SAMPLES; i++) {
    const id = `i${i}`;
    const start = performance.now();
    const [watched, streamed, shown] = await Promise.all([
      watchShows(id, true),
      sseShows(id, true),
      page.waitForSelector(`#instances tr[data-id="${id}"]`).then(() => performance.now()),
      writer.discovery.register({ id, service, host: '10.0.0.2', port: 2 }).then((r) => {
        rows.registration = r;
      }),
    ]);
    rows.watch.push(watched - start);
    rows.sse.push(streamed - start);
    rows.page.push(shown - start);
    const leaving = performance.now();
    await Promise.all([
      watchShows(id, false),
      sseShows(id, false),
      page.waitForSelector(`#instances tr[data-id="${id}"]`, { state: 'detached' }),
      rows.registration.deregister(),
    ]);
    rows.pageGone.push(performance.now() - leaving);
  }

  // A service nobody watched yet: found by the service list poll (500 ms), then watched.
  const newService = [];
  for (let i = 0; i < NEW_SERVICES; i++) {
    const name = `fresh-${i}`;
    const start = performance.now();
    const registration = await writer.discovery.register({
      id: 'x',
      service: name,
      host: '10.0.0.3',
      port: 3,
    });
    await page.waitForSelector(`#services tr[data-service="${name}"]`);
    newService.push(performance.now() - start);
    await registration.deregister();
  }
  await anchor.deregister();

  const watch50 = summarize(rows.watch).p50;
  const table = [
    { path: 'register -> Rollcall watch event (Node)', ...summarize(rows.watch), ratio: 1 },
    { path: 'register -> dashboard SSE event (Node client)', ...summarize(rows.sse) },
    { path: 'register -> row on the page (Chromium)', ...summarize(rows.page) },
    { path: 'deregister -> row gone from the page', ...summarize(rows.pageGone) },
    { path: 'new service -> listed on the page', ...summarize(newService) },
  ].map((r) => ({ ...r, ratio: Math.round((r.p50 / watch50) * 10) / 10 }));
  reportBench('rollcall-dashboard', table, {
    samples: SAMPLES,
    newServices: NEW_SERVICES,
    listIntervalMs: 500,
  });
  reader.cancel().catch(() => {});
} finally {
  await dashboard.close();
  await Promise.all([viewer.close(), writer.close(), watcher.close()]);
  await browser.close();
  await etcd.stop();
}
