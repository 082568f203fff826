import { defineConfig } from 'vitest/config';

// One vitest run for the whole monorepo. Each package is a project named after its package.json,
// so `vitest run --project @rollcall/etcd` runs one package. Tests that start real servers
// share 2 cores in CI, so files run with bounded parallelism.
export default defineConfig({
  test: {
    projects: ['packages/*', 'test'],
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
