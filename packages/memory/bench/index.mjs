#!/usr/bin/env node
// Memory backend + core machinery benchmark: cached getInstances and balancer pick throughput.
// Run after `npm run build`: node packages/memory/bench/index.mjs. Prints a table, writes bench-results/memory.json.
import { createBalancer, hash32 } from '@rollcall/core';
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

// Consistent-hash ring build budget: 1,000 instances of any valid weights must build in < 10 ms
// (median of 15 builds after 5 warm-ups; a fresh balancer each time, so every update is a full build).
let seed = 42;
const random = () => {
  seed = (seed * 16807) % 2147483647;
  return seed / 2147483647;
};
const ringInstances = (weight) =>
  Array.from({ length: 1000 }, (_, i) => ({
    id: `ring-${i}`,
    service: 'ring',
    host: '127.0.0.1',
    port: 1,
    weight: weight(i),
  }));
const medianMs = (run, rounds = 15) => {
  for (let i = 0; i < 5; i++) run();
  const times = [];
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return times.sort((a, b) => a - b)[Math.floor(rounds / 2)];
};
const msRow = (name, value, target) =>
  rows.push({
    name,
    value: Math.round(value * 100) / 100,
    unit: 'ms',
    ...(target ? { target, met: value <= target, atMost: true } : {}),
  });
for (const [label, weight] of [
  ['weight 1', () => 1],
  ['weights 1-10,000 at random', () => 1 + Math.floor(random() * 10_000)],
  ['weight 10,000', () => 10_000],
]) {
  const list = ringInstances(weight);
  msRow(
    `ring build: 1,000 instances, ${label}`,
    medianMs(() => createBalancer('consistent-hash').update(list)),
    10,
  );
}
const steady = createBalancer('consistent-hash');
const same = ringInstances(() => 1 + Math.floor(random() * 10_000));
steady.update(same);
msRow(
  'ring update with the same list again (stale event: no rebuild)',
  medianMs(() => steady.update(same)),
);
// Baseline: the ring as it was (replicas x weight points, comparator sort), at weight 1 only: at
// weight 10,000 it would hold a billion points.
const unbounded = (list) => {
  const ring = [];
  for (const instance of list)
    for (let r = 0; r < 100 * (instance.weight ?? 1); r++)
      ring.push([hash32(`${instance.id}#${r}`), instance]);
  ring.sort((a, b) => a[0] - b[0] || (a[1].id < b[1].id ? -1 : a[1].id > b[1].id ? 1 : 0));
  return ring;
};
msRow(
  '  baseline: unbounded ring, comparator sort, 1,000 instances of weight 1',
  medianMs(() => unbounded(ringInstances(() => 1)), 5),
);

reportBench(
  'memory',
  rows.map((r) => ({
    measure: r.name,
    value: r.value,
    unit: r.unit,
    target: r.target ? `${r.atMost ? '<=' : '>='} ${r.target}` : '',
    met: r.target ? (r.met ? 'yes' : 'NO') : '',
  })),
);
