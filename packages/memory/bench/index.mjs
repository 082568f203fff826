#!/usr/bin/env node
// Memory backend + core machinery benchmark: cached getInstances and balancer pick throughput.
// Run after `npm run build`: node packages/memory/bench/index.mjs. Prints a table, writes bench-results/memory.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBalancer } from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Runs `fn` in batches until `ms` have passed; returns operations per second (best of 3 rounds). */
async function throughput(fn, { ms = 700, batch = 10_000 } = {}) {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let ops = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(ms) * 1_000_000n;
    let now = start;
    while (now < end) {
      for (let i = 0; i < batch; i++) await fn(i);
      ops += batch;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, ops / (Number(now - start) / 1e9));
  }
  return best;
}

function syncThroughput(fn, { ms = 700, batch = 100_000 } = {}) {
  let best = 0;
  let sink = 0;
  for (let round = 0; round < 3; round++) {
    let ops = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(ms) * 1_000_000n;
    let now = start;
    while (now < end) {
      for (let i = 0; i < batch; i++) sink += fn(i) ? 1 : 0;
      ops += batch;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, ops / (Number(now - start) / 1e9));
  }
  if (sink < 0) console.log(sink);
  return best;
}

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
  await throughput(() => backend.discovery.getInstances('bench')),
  'ops/s',
);
const raw = new Map([['bench', snapshot]]);
add('  baseline: awaited Map.get', await throughput(async () => raw.get('bench')), 'ops/s');
add(
  '  baseline: plain array index pick',
  syncThroughput((i) => snapshot.instances[i % 10]),
  'picks/s',
);
const keys = Array.from({ length: 1024 }, (_, i) => `user-${i}`);
for (const strategy of ['round-robin', 'random', 'weighted-round-robin', 'consistent-hash']) {
  const balancer = createBalancer(strategy);
  balancer.update(snapshot.instances);
  add(
    `pick: ${strategy} (10 instances)`,
    syncThroughput((i) => balancer.pick(keys[i & 1023])),
    'picks/s',
    1_000_000,
  );
}
await backend.close();

const result = {
  benchmark: 'memory',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  rows,
};
console.log(
  `memory backend and core balancers, ${result.date.slice(0, 10)}, ${result.machine.cpus} cores, node ${process.version}`,
);
console.table(
  rows.map((r) => ({
    measure: r.name,
    value: r.value.toLocaleString('en-US'),
    unit: r.unit,
    target: r.target ? `>= ${r.target.toLocaleString('en-US')}` : '',
    met: r.target ? (r.met ? 'yes' : 'NO') : '',
  })),
);
const file = join(root, 'bench-results', 'memory.json');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${file}`);
