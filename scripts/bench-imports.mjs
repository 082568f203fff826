#!/usr/bin/env node
// Benchmark: what importing each entry point costs a process: wall time of the import and the
// resident memory after it, each measured in a fresh Node process (median of --runs, default 5),
// beside the raw clients Rollcall wraps (etcd3, consul, @grpc/grpc-js) and an empty process.
// Run after a build: node scripts/bench-imports.mjs [--runs=N]. Prints a table and writes
// bench-results/imports.json. Not a test: no assertions.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { reportBench } from '@rollcall/testkit';

const root = join(import.meta.dirname, '..');
const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5);
const entries = [];
for (const dir of readdirSync(join(root, 'packages'))) {
  const pkg = JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8'));
  for (const key of Object.keys(pkg.exports ?? { '.': 1 }))
    if (!key.endsWith('.json')) entries.push(key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`);
}
const raw = ['etcd3', 'consul', '@grpc/grpc-js', 'inversify', 'zod'];

/** One fresh process importing `specifier` (nothing when undefined): ms and MB after the import. */
function measure(specifier) {
  const script = `const t = performance.now();
${specifier ? `await import(${JSON.stringify(specifier)});` : ''}
const ms = performance.now() - t;
globalThis.gc?.();
console.log(JSON.stringify({ ms, rssMB: process.memoryUsage().rss / 1048576, heapMB: process.memoryUsage().heapUsed / 1048576 }));`;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    cwd: join(root, 'packages', 'rollcall'),
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').at(-1));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rows = [];
const baseline = Array.from({ length: runs }, () => measure(undefined));
const base = { rss: median(baseline.map((r) => r.rssMB)), heap: median(baseline.map((r) => r.heapMB)) };
const core = [];
for (const [kind, specifier] of [
  ...entries.map((e) => ['rollcall', e]),
  ...raw.map((r) => ['raw client', r]),
]) {
  const samples = Array.from({ length: runs }, () => measure(specifier));
  const row = {
    entry: specifier,
    kind,
    importMs: Math.round(median(samples.map((s) => s.ms))),
    rssMB: Math.round(median(samples.map((s) => s.rssMB)) - base.rss),
    heapMB: Math.round((median(samples.map((s) => s.heapMB)) - base.heap) * 10) / 10,
  };
  if (specifier === '@rollcall/core') core.push(row);
  rows.push(row);
}
for (const row of rows)
  row['x core'] = core[0] ? Math.round((row.importMs / core[0].importMs) * 10) / 10 : null;
reportBench('imports', rows, {
  runs,
  baselineRssMB: Math.round(base.rss),
  note: 'rssMB and heapMB: above an empty Node process',
});
