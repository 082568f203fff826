#!/usr/bin/env node
// Benchmark of @rollcall/consul against a real Consul 1.8.7 dev agent (started here, on free ports).
//
//  1. Propagation: register -> seen by a watcher on another client, in poll mode and in blocking
//     mode, registrations at random moments (2-10 s apart).
//  2. Requests per minute reaching Consul (counted by an HTTP proxy in front of the agent) for 1, 10
//     and 100 subscribers of one service: Rollcall poll mode, Rollcall blocking mode, and the same
//     number of subscribers each running `consul.watch` (health.service, passing) directly. Once with
//     the service idle, once with it changing every second.
//  4. Scale (bench/scale.mjs): 10,000 registrations at once from one process, Rollcall against the
//     raw client, each on a fresh agent.
//  3. Locks (bench/locks.mjs): during the rate window, 3 crashed holders (crash -> next holder);
//     after it, on the then idle agent, uncontended acquire/release, hand-off between two waiting
//     clients and 10-client contention.
//
// Everything in 1-2 runs concurrently on separate services, so the whole run takes ~100 s.
// Prints a Markdown table and writes bench-results/consul.json at the repository root.
// Usage: npm run build && node packages/consul/bench/index.mjs

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { consulBinary, startConsul, startCountingHttpProxy } from '@rollcall/testkit';
import Consul from 'consul';
import { createConsulBackend } from '../dist/index.js';
import { benchLockExpiry, benchLocks } from './locks.mjs';
import { benchScale } from './scale.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const POLL_MS = 5000;
const WINDOW_MS = 90_000;
const PROPAGATION_SAMPLES = 12;
const SUBSCRIBERS = [1, 10, 100];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const round = (n) => Math.round(n);

const started = Date.now();
// Consul limits HTTP connections per client IP (limits.http_max_conns_per_client, default 200):
// 222 concurrent consul.watch long polls from one process exceed it, so the limit is raised here.
const agent = await startConsul({
  logLevel: 'warn',
  extraArgs: ['-hcl', 'limits { http_max_conns_per_client = 4000 }'],
});
const proxy = await startCountingHttpProxy({ host: agent.host, port: agent.port });
const direct = { host: agent.host, port: agent.port, pollIntervalMs: POLL_MS };
const viaProxy = { host: agent.host, port: proxy.port, pollIntervalMs: POLL_MS };
const closers = [];
const backend = (options) => {
  const b = createConsulBackend(options);
  closers.push(() => b.close());
  return b;
};
const writer = backend(direct);
const instance = (service, id) => ({ id, service, host: '127.0.0.1', port: 9000 });

// ---- 2. request rates (set up first: its window runs while propagation is measured) ----

const groups = [];
for (const churn of [false, true]) {
  for (const n of SUBSCRIBERS) {
    for (const kind of ['rollcall-poll', 'rollcall-blocking', 'consul.watch']) {
      const service = `bench-${churn ? 'churn' : 'idle'}-${kind.replace('.', '-')}-${n}`;
      await writer.discovery.register(instance(service, 'base'), { ttlSeconds: 30 });
      groups.push({ kind, n, churn, service });
    }
  }
}
const rawClient = new Consul({ host: agent.host, port: proxy.port });
const watches = [];
for (const group of groups) {
  if (group.kind === 'consul.watch') {
    for (let i = 0; i < group.n; i++) {
      const watch = rawClient.watch({
        method: rawClient.health.service,
        options: { service: group.service, passing: true },
      });
      watch.on('error', () => {});
      watch.on('change', () => {});
      watches.push(watch);
    }
  } else {
    const b = backend({ ...viaProxy, watchMode: group.kind === 'rollcall-poll' ? 'poll' : 'blocking' });
    for (let i = 0; i < group.n; i++) {
      const watch = b.discovery.watch(group.service);
      (async () => {
        for await (const _ of watch);
      })();
    }
  }
}
await sleep(1000); // every subscriber has made its first request
proxy.reset();
const windowStart = Date.now();
let churning = true;
const churners = groups
  .filter((g) => g.churn)
  .map(async (g) => {
    for (let n = 0; churning; n++) {
      const r = await writer.discovery.register(instance(g.service, `c${n}`), { ttlSeconds: 30 });
      await sleep(500);
      await r.deregister();
      await sleep(500);
    }
  });

// Locks: crashed holders, one after another, within the window (a session and a blocking query each).
const lockExpiry = benchLockExpiry({ host: agent.host, port: agent.port }, { samples: 3 });

// ---- 1. propagation ----

async function propagation(mode) {
  const service = `bench-propagation-${mode}`;
  const watcher = backend({ ...direct, watchMode: mode });
  const seen = new Map();
  const watch = watcher.discovery.watch(service);
  (async () => {
    for await (const event of watch) {
      for (const i of event.snapshot.instances) if (!seen.has(i.id)) seen.set(i.id, performance.now());
    }
  })();
  await watcher.discovery.getInstances(service);
  const delays = [];
  let registerMs = 0;
  for (let k = 0; k < PROPAGATION_SAMPLES; k++) {
    await sleep(2000 + Math.random() * 8000);
    const t0 = performance.now();
    await writer.discovery.register(instance(service, `p${k}`), { ttlSeconds: 30 });
    const registered = performance.now();
    registerMs += registered - t0;
    while (!seen.has(`p${k}`)) await sleep(5);
    const delay = Math.max(0, seen.get(`p${k}`) - registered);
    delays.push(delay);
  }
  return {
    samples: delays.length,
    p50Ms: round(quantile(delays, 0.5)),
    p95Ms: round(quantile(delays, 0.95)),
    maxMs: round(Math.max(...delays)),
    meanMs: round(delays.reduce((a, b) => a + b, 0) / delays.length),
    // Seen at once: in blocking mode, when a blocking query was waiting (no request in the last 5 s).
    within100Ms: delays.filter((d) => d < 100).length,
    registerMeanMs: Math.round((registerMs / delays.length) * 10) / 10,
  };
}
const [poll, blocking] = await Promise.all([propagation('poll'), propagation('blocking')]);

// ---- end of the rate window ----
const remaining = WINDOW_MS - (Date.now() - windowStart);
if (remaining > 0) await sleep(remaining);
const windowMs = Date.now() - windowStart;
const counted = proxy.requests.filter((r) => r.at - windowStart <= windowMs);
churning = false;
for (const g of groups) {
  const prefix = `/v1/health/service/${g.service}?`;
  g.requestsPerMinute = round((counted.filter((r) => r.path.startsWith(prefix)).length * 60_000) / windowMs);
}
await Promise.all(churners);
for (const w of watches) w.end();
await Promise.allSettled(closers.map((close) => close()));
rawClient.destroy();
await proxy.close();
const expiry = await lockExpiry;
// ---- 3. locks, on the now idle agent ----
const locks = await benchLocks({ host: agent.host, port: agent.port });
await agent.stop();
// ---- 4. scale: 10,000 registrations from one process, on fresh agents ----
const scale = await benchScale(10_000);

// ---- report ----

const rate = (kind, n, churn) =>
  groups.find((g) => g.kind === kind && g.n === n && g.churn === churn).requestsPerMinute;
const rates = {};
for (const churn of [false, true]) {
  rates[churn ? 'changingEverySecond' : 'idle'] = Object.fromEntries(
    SUBSCRIBERS.map((n) => [
      n,
      {
        rollcallPoll: rate('rollcall-poll', n, churn),
        rollcallBlocking: rate('rollcall-blocking', n, churn),
        consulWatch: rate('consul.watch', n, churn),
      },
    ]),
  );
}
let consulVersion = 'unknown';
try {
  consulVersion = execFileSync(consulBinary(), ['version'], { encoding: 'utf8' }).split('\n')[0];
} catch {}
const machine = {
  cpus: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  node: process.version,
  consul: consulVersion,
};
const lines = [
  '| measure | poll mode | blocking mode |',
  '| --- | --- | --- |',
  `| register -> seen by a watcher, p50 / p95 / max (${PROPAGATION_SAMPLES} samples, 2-10 s apart) | ${poll.p50Ms} / ${poll.p95Ms} / ${poll.maxMs} ms | ${blocking.p50Ms} / ${blocking.p95Ms} / ${blocking.maxMs} ms |`,
  `| samples seen within 100 ms | ${poll.within100Ms} of ${poll.samples} | ${blocking.within100Ms} of ${blocking.samples} |`,
  `| register() call (until visible in /v1/health) | ${poll.registerMeanMs} ms | ${blocking.registerMeanMs} ms |`,
  '',
  `| health requests per minute reaching Consul (${Math.round(windowMs / 1000)} s window) | Rollcall poll | Rollcall blocking | consul.watch per subscriber |`,
  '| --- | --- | --- | --- |',
];
for (const churn of [false, true]) {
  for (const n of SUBSCRIBERS) {
    const r = rates[churn ? 'changingEverySecond' : 'idle'][n];
    lines.push(
      `| ${n} subscriber${n > 1 ? 's' : ''}, service ${churn ? 'changing every second' : 'idle'} | ${r.rollcallPoll} | ${r.rollcallBlocking} | ${r.consulWatch} |`,
    );
  }
}
lines.push(
  '',
  '| 10,000 registrations at once from one process (ttl 300 s) | registered | failed | time | per second | close |',
  '| --- | --- | --- | --- | --- | --- |',
  ...scale.map(
    (r) =>
      `| ${r.client} | ${r.registered} | ${r.failed}${r.firstError ? ` (${r.firstError})` : ''} | ${r.registerMs} ms | ${r.perSecond} | ${r.closeMs === null ? '' : `${r.closeMs} ms, ${r.leftAfterClose} left`} |`,
  ),
  `| TTL passes per second the agent answers holding ${scale[0].listedByAgent} services (raw client, 16 at a time) | ${scale[0].agentPassesPerSecond} | | | | |`,
  '',
  locks.table,
  `| holder crashed -> the waiter holds it (TTL ${expiry.ttlSeconds} s, ${expiry.samples} crashes at random points of the renewal cycle) | min ${expiry.minMs} ms | max ${expiry.maxMs} ms | |`,
);
const table = lines.join('\n');
const result = {
  date: new Date().toISOString(),
  machine,
  pollIntervalMs: POLL_MS,
  propagation: { poll, blocking },
  requestsPerMinute: rates,
  locks: { ...locks.results, crashedHolder: expiry },
  scale,
  durationMs: Date.now() - started,
  table,
};
mkdirSync(join(root, 'bench-results'), { recursive: true });
writeFileSync(join(root, 'bench-results', 'consul.json'), `${JSON.stringify(result, null, 2)}\n`);
console.log(table);
console.log(
  `\n${machine.cpus} x ${machine.cpu}, ${machine.node}, ${machine.consul}; ${Math.round(result.durationMs / 1000)} s; written to bench-results/consul.json`,
);
process.exit(0);
