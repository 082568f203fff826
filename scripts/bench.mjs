#!/usr/bin/env node
// Runs every package benchmark (`packages/*/bench/index.mjs`), one after another so they do not
// compete for the 2 cores. Each prints its own table and writes `bench-results/<package>.json`.
// Usage: npm run bench [-- name ...]   (e.g. `npm run bench -- etcd`, `npm run bench -- imports`)
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv.slice(2);
const packages = readdirSync(join(root, 'packages')).filter(
  (name) =>
    existsSync(join(root, 'packages', name, 'bench', 'index.mjs')) &&
    (only.length === 0 || only.includes(name)),
);
// Import cost of every entry point (scripts/bench-imports.mjs), beside the packages' own benchmarks.
const runs = packages.map((name) => [name, join(root, 'packages', name, 'bench', 'index.mjs')]);
if (only.length === 0 || only.includes('imports'))
  runs.unshift(['imports', join(root, 'scripts', 'bench-imports.mjs')]);
let failed = 0;
for (const [name, script] of runs) {
  console.log(`\n=== bench: ${name} ===`);
  const result = spawnSync(process.execPath, ['--expose-gc', script], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    failed += 1;
    console.error(`bench ${name} failed with exit code ${result.status}`);
  }
}
console.log(`\n${runs.length - failed} benchmarks ran, ${failed} failed; results in bench-results/`);
process.exit(failed ? 1 : 0);
