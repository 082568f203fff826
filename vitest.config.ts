import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// One vitest run for the whole monorepo. Each package is a project named after its package.json,
// so `vitest run --project @rollcall/etcd` runs one package; every project inherits the options
// below (`extends: true`). Tests that start real servers share 2 cores in CI, so at most two
// files run at once, and waits on real servers get generous timeouts.
const roots = [...readdirSync('packages').map((p) => join('packages', p)), 'test'];
export default defineConfig({
  test: {
    projects: roots.map((root) => ({
      extends: true,
      test: { root, name: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name as string },
    })),
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
