#!/usr/bin/env node
// Memory backend + core machinery benchmark: cached getInstances and balancer pick throughput.
// Run after `npm run build`: node packages/memory/bench/index.mjs. Prints a table, writes bench-results/memory.json.
import { createBalancer } from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';
import { reportBench } from '@rollcall/testkit';

/**
 * Runs `runBatch(batch)` (which performs `batch` operations, sync or async) until `ms` have
 * passed; returns operations per second, best of 3 rounds.
 */
async function opsPerSecond(runBatch, { ms = 700, batch = 10_000 } = {}) {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let ops = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(ms) * 1_000_000n;
    let now = start;
    while (now < end) {
      await runBatch(batch);
      ops += batch;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, ops / (Number(now - start) / 1e9));
  }
  return best;
}

let sink = 0;
/** A synchronous picker loop; `sink` keeps the results alive so the loop is not optimized away. */
const pickLoop = (pick) => (n) => {
  for (let i = 0; i < n; i++) sink += pick(i) ? 1 : 0;
};

const backend = createMemoryBackend();
const instances = Array.from({ length: 10 }, (_, i) => ({
  id: `i${i}`,
  service: 'bench',
  host: '127.0.0.1',
  port: 9000 + i,
  weight: 1 + (i % 3),
}));
for (const instance of instances) await backend.discovery.register(instance);
await backend.discovery.getInstances('bench');
const snapshot = await backend.discovery.getInstances('bench');

const rows = [];
const add = (name, value, unit, target) =>
  rows.push({ name, value: Math.round(value), unit, ...(target ? { target, met: value >= target } : {}) });

add(
  'getInstances (cached, awaited)',
  await opsPerSecond(async (n) => {
    for (let i = 0; i < n; i++) await backend.discovery.getInstances('bench');
  }),
  'ops/s',
);
const raw = new Map([['bench', snapshot]]);
add(
  '  baseline: awaited Map.get',
  await opsPerSecond(async (n) => {
    for (let i = 0; i < n; i++) await raw.get('bench');
  }),
  'ops/s',
);
add(
  '  baseline: plain array index pick',
  await opsPerSecond(
    pickLoop((i) => snapshot.instances[i % 10]),
    { batch: 100_000 },
  ),
  'picks/s',
);
const keys = Array.from({ length: 1024 }, (_, i) => `user-${i}`);
for (const strategy of ['round-robin', 'random', 'weighted-round-robin', 'consistent-hash']) {
  const balancer = createBalancer(strategy);
  balancer.update(snapshot.instances);
  add(
    `pick: ${strategy} (10 instances)`,
    await opsPerSecond(
      pickLoop((i) => balancer.pick(keys[i & 1023])),
      { batch: 100_000 },
    ),
    'picks/s',
    1_000_000,
  );
}
await backend.close();
if (sink < 0) console.log(sink);

reportBench(
  'memory',
  rows.map((r) => ({
    measure: r.name,
    value: r.value,
    unit: r.unit,
    target: r.target ? `>= ${r.target}` : '',
    met: r.target ? (r.met ? 'yes' : 'NO') : '',
  })),
);
