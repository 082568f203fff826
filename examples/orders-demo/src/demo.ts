/**
 * Rollcall demo on the in-memory backend: three order-service instances register, a checkout
 * client discovers them and balances calls; one instance stops gracefully, another is killed
 * without deregistering, and the client keeps working throughout. Exits 0 when the scenario ends.
 */
import type { DiscoveryEvent, ServiceDiscovery } from '@rollcall/core';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { CheckoutClient } from './checkout.js';
import { type OrderService, startOrderService } from './order-service.js';

const TTL_SECONDS = 2;
let checkoutStale = false;
const started = Date.now();
const log = (line: string) =>
  console.log(`${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s  ${line}`);

function describe(event: DiscoveryEvent): string {
  const ids = event.snapshot.instances.map((i) => i.id).join(', ') || '(none)';
  if (event.type === 'sync') return `sync: ${ids}`;
  if (event.type === 'stale') return `stale (${event.error.message}); keeping ${ids}`;
  const parts = [
    ...event.added.map((i) => `+${i.id}`),
    ...event.removed.map((i) => `-${i.id}`),
    ...event.updated.map((i) => `~${i.id}`),
  ];
  return `change ${parts.join(' ')} -> now ${ids}`;
}

async function watchOrders(discovery: ServiceDiscovery, until: Promise<void>): Promise<void> {
  const watch = discovery.watch('orders');
  void until.then(() => watch.close());
  for await (const event of watch) {
    checkoutStale = event.snapshot.stale;
    log(`[checkout watch] ${describe(event)}`);
  }
}

async function calls(client: CheckoutClient, count: number): Promise<string[]> {
  const servedBy: string[] = [];
  for (let i = 0; i < count; i++) {
    const reply = await client.getOrder(`A${100 + i}`);
    servedBy.push(reply.servedBy);
    log(`[checkout] GET /orders/${reply.order} -> served by ${reply.servedBy}`);
  }
  return servedBy;
}

async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  // One store shared by every "process": each service instance and the client has its own backend.
  const store = new MemoryStore();
  log(`Rollcall demo: in-memory registry, ttl ${TTL_SECONDS}s`);
  const backends = ['orders-1', 'orders-2', 'orders-3'].map(() => createMemoryBackend({ store }));
  const services: OrderService[] = [];
  for (const [n, backend] of backends.entries()) {
    const service = await startOrderService(backend.discovery, `orders-${n + 1}`, TTL_SECONDS);
    services.push(service);
    log(
      `[orders-${n + 1}] listening on 127.0.0.1:${service.port}, registered (state ${service.registration.state})`,
    );
  }

  const checkoutBackend = createMemoryBackend({ store });
  let finish: () => void = () => {};
  const finished = new Promise<void>((r) => {
    finish = r;
  });
  const watching = watchOrders(checkoutBackend.discovery, finished);
  using client = new CheckoutClient(checkoutBackend.discovery, log);
  await client.ready();

  log('--- 1. three instances: calls go round robin');
  const first = await calls(client, 6);

  log('--- 2. orders-2 stops gracefully (deregisters first)');
  await services[1]!.stop();
  await waitUntil(() => client.instanceIds().join() === 'orders-1,orders-3', 2000, 'orders-2 to leave');
  const second = await calls(client, 4);

  log('--- 3. orders-3 is killed: no deregistration, still listed until its ttl runs out');
  store.crash(backends[2]!);
  await services[2]!.kill();
  const third = await calls(client, 4);
  const removal = await checkoutBackend.discovery.getInstances('orders');
  log(`[checkout] registry still lists: ${removal.instances.map((i) => i.id).join(', ')}`);
  await waitUntil(
    () => client.instanceIds().join() === 'orders-1',
    (TTL_SECONDS + 2) * 1000,
    'orders-3 to expire',
  );
  const fourth = await calls(client, 2);

  log('--- 4. the registry itself goes down: the client keeps the last known list');
  // orders-1's probes: liveness never depends on the registry (an outage must not restart every
  // pod); readiness fails once its registration is lost (its ttl passed unconfirmed), and passes
  // again once it is written back. No probe sends anything to the registry.
  const probe = async (path: string, label: string) => {
    const res = await fetch(`http://127.0.0.1:${services[0]!.port}${path}`);
    const body = (await res.json()) as { status: string; reasons?: string[] };
    log(
      `[orders-1] GET ${path} ${label} -> ${res.status}${body.reasons?.length ? ` (${body.reasons.join('; ')})` : ''}`,
    );
    return res.status;
  };
  await probe('/readyz', 'before the outage');
  store.outage();
  const during = await checkoutBackend.discovery.getInstances('orders');
  log(
    `[checkout] getInstances during the outage -> ${during.instances.map((i) => i.id).join(', ')} (stale: ${during.stale})`,
  );
  const fifth = await calls(client, 2);
  await probe('/livez', 'during the outage');
  await waitUntil(
    async () => (await fetch(`http://127.0.0.1:${services[0]!.port}/readyz`)).status === 503,
    (TTL_SECONDS + 2) * 1000,
    "orders-1's registration to be lost",
  );
  await probe('/readyz', 'once its ttl passed');
  await probe('/livez', 'still');
  store.restore();
  await waitUntil(() => !checkoutStale, 2000, 'the watch to resync');
  await waitUntil(
    async () => (await fetch(`http://127.0.0.1:${services[0]!.port}/readyz`)).status === 200,
    5000,
    "orders-1's registration to be written back",
  );
  await probe('/readyz', 'after the outage');

  log('--- shutting down');
  finish();
  await watching;
  await services[0]!.stop();
  await Promise.all([...backends, checkoutBackend].map((b) => b.close()));
  store.dispose();

  const served = [...first, ...second, ...third, ...fourth, ...fifth];
  log(`done: ${served.length} calls, all answered; served by ${[...new Set(served)].sort().join(', ')}`);
  if (new Set(first).size !== 3 || second.includes('orders-2') || fourth.some((s) => s !== 'orders-1')) {
    throw new Error('unexpected balancing result');
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('demo failed:', error);
    process.exit(1);
  },
);
