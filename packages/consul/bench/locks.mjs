#!/usr/bin/env node
// Lock benchmark of @rollcall/consul against a real Consul 1.8.7 dev agent. Run by bench/index.mjs
// on its agent once the discovery measurements are done (the agent is idle then); run alone
// (`node packages/consul/bench/locks.mjs` after a build) it starts its own agent and only prints.
//
//  1. Uncontended: acquire + release of a free lock, one client (2 requests to acquire: queue +
//     take, 1 to release).
//  2. Hand-off between two waiting clients: A holds, B is queued (blocking query on the lock key);
//     time from A's release() call until B's acquire() resolves. The roles then swap.
//  3. Contention: 10 clients (one process) each run withLock in a loop; acquisitions per second.
//  4. (benchLockExpiry) A holder that dies: a client holds a lock, another waits; the holder is
//     crashed (renewals stop, nothing released) at a random moment of its renewal cycle; time until
//     the waiter holds the lock. Consul invalidates a session 2 x TTL after its last renewal.

import { fileURLToPath } from 'node:url';
import { startConsul } from '@rollcall/testkit';
import { createConsulBackend, simulateCrash } from '../dist/index.js';

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const ms = (n) => Math.round(n * 100) / 100;
const stats = (values) => ({
  samples: values.length,
  p50Ms: ms(quantile(values, 0.5)),
  p99Ms: ms(quantile(values, 0.99)),
  maxMs: ms(Math.max(...values)),
  meanMs: ms(values.reduce((a, b) => a + b, 0) / values.length),
});

/** Runs the three measurements against the agent at `host:port`; resolves with the results and a Markdown table. */
export async function benchLocks({ host, port }, { samples = 500, ttlSeconds = 10 } = {}) {
  const clients = [];
  const client = () => {
    const c = createConsulBackend({ host, port });
    clients.push(c);
    return c;
  };
  try {
    // ---- 1. uncontended ----
    const solo = client();
    const lock = `bench-solo-${process.pid}`;
    const acquireMs = [];
    const totalMs = [];
    for (let i = 0; i < samples + 20; i++) {
      const t0 = performance.now();
      const lease = await solo.locks.acquire(lock, { ttlSeconds });
      const t1 = performance.now();
      await lease.release();
      const t2 = performance.now();
      if (i < 20) continue; // warm-up: session creation, connections
      acquireMs.push(t1 - t0);
      totalMs.push(t2 - t0);
    }

    // ---- 2. hand-off between two waiting clients ----
    const pair = [client(), client()];
    const shared = `bench-handoff-${process.pid}`;
    let holder = await pair[0].locks.acquire(shared, { ttlSeconds });
    let waiter = pair[1];
    const handoffMs = [];
    for (let i = 0; i < samples + 20; i++) {
      let queued;
      const isQueued = new Promise((r) => {
        queued = r;
      });
      let grantedAt = 0;
      const next = waiter.locks.acquire(shared, { ttlSeconds, onQueued: queued }).then((lease) => {
        grantedAt = performance.now();
        return lease;
      });
      await isQueued;
      const releasedAt = performance.now();
      await holder.release();
      const lease = await next;
      if (i >= 20) handoffMs.push(grantedAt - releasedAt);
      waiter = waiter === pair[0] ? pair[1] : pair[0];
      holder = lease;
    }
    await holder.release();

    // ---- 3. contention: 10 clients ----
    const contenders = Array.from({ length: 10 }, client);
    const busy = `bench-contended-${process.pid}`;
    const perClient = Math.max(10, Math.round(samples / 5));
    const started = performance.now();
    await Promise.all(
      contenders.map(async (c) => {
        for (let i = 0; i < perClient; i++) await c.locks.withLock(busy, async () => {}, { ttlSeconds });
      }),
    );
    const contendedS = (performance.now() - started) / 1000;
    const contention = {
      clients: contenders.length,
      acquisitions: contenders.length * perClient,
      perSecond: Math.round((contenders.length * perClient) / contendedS),
    };

    const results = {
      ttlSeconds,
      uncontended: { acquire: stats(acquireMs), acquireAndRelease: stats(totalMs) },
      handoff: stats(handoffMs),
      contention,
    };
    const u = results.uncontended;
    const table = [
      '| lock measure (Consul sessions, fair queue) | p50 | p99 | max |',
      '| --- | --- | --- | --- |',
      `| uncontended acquire (${u.acquire.samples} samples) | ${u.acquire.p50Ms} ms | ${u.acquire.p99Ms} ms | ${u.acquire.maxMs} ms |`,
      `| uncontended acquire + release | ${u.acquireAndRelease.p50Ms} ms | ${u.acquireAndRelease.p99Ms} ms | ${u.acquireAndRelease.maxMs} ms |`,
      `| hand-off: release() -> the queued client holds it (${results.handoff.samples} samples) | ${results.handoff.p50Ms} ms | ${results.handoff.p99Ms} ms | ${results.handoff.maxMs} ms |`,
      `| ${contention.clients} clients contending (withLock, empty body) | ${contention.perSecond} acquisitions/s over ${contention.acquisitions} | | |`,
    ].join('\n');
    return { results, table };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
  }
}

/** Crashes `samples` holders one after another; resolves with the crash -> next holder times (ms). */
export async function benchLockExpiry({ host, port }, { samples = 3, ttlSeconds = 10 } = {}) {
  const delays = [];
  for (let i = 0; i < samples; i++) {
    const holder = createConsulBackend({ host, port });
    const waiter = createConsulBackend({ host, port });
    try {
      const lock = `bench-expiry-${process.pid}-${i}`;
      await holder.locks.acquire(lock, { ttlSeconds });
      let queued;
      const isQueued = new Promise((r) => {
        queued = r;
      });
      const next = waiter.locks.acquire(lock, { ttlSeconds, onQueued: queued });
      await isQueued;
      // Anywhere in the holder's renewal cycle (renewals every ttl/2).
      await new Promise((r) => setTimeout(r, Math.random() * ttlSeconds * 1000));
      simulateCrash(holder);
      const crashedAt = performance.now();
      const lease = await next;
      delays.push(performance.now() - crashedAt);
      await lease.release();
    } finally {
      await Promise.allSettled([holder.close(), waiter.close()]);
    }
  }
  return {
    ttlSeconds,
    samples: delays.length,
    delaysMs: delays.map(Math.round),
    minMs: Math.round(Math.min(...delays)),
    maxMs: Math.round(Math.max(...delays)),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const agent = await startConsul({ logLevel: 'warn' });
  try {
    const withExpiry = process.argv.includes('--expiry');
    const expiry = withExpiry ? benchLockExpiry(agent) : undefined;
    const { results, table } = await benchLocks(agent);
    console.log(table);
    console.log(JSON.stringify(results, null, 2));
    if (expiry) console.log(JSON.stringify(await expiry, null, 2));
  } finally {
    await agent.stop();
  }
  process.exit(0);
}
