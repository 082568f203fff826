// The README's "Loading cost" promise, the way a user meets it: a process whose only work is
// `import 'rollcall'` loads no backend client, inversify or zod; they are loaded when first used.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const HEAVY = ['etcd3', 'consul', '@grpc/grpc-js', 'inversify', 'zod'];

/** Runs `body` after `import 'rollcall'` in a fresh process; returns the heavy packages it loaded. */
function loadedAfter(body: string): string[] {
  const script = `
    import { createRequire } from 'node:module';
    const rollcall = await import('rollcall');
    ${body}
    const cache = Object.keys(createRequire(import.meta.url).cache);
    const heavy = ${JSON.stringify(HEAVY)};
    console.log(JSON.stringify(heavy.filter((p) => cache.some((f) => f.includes('/node_modules/' + p + '/')))));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').at(-1) ?? '[]') as string[];
}

describe("import 'rollcall' is lazy", () => {
  it('loads no backend client, inversify or zod; a container over memory loads inversify and zod, still no backend client', () => {
    expect(loadedAfter('')).toEqual([]);
    // The detection works: making a container loads what it needs (and only that).
    expect(
      loadedAfter(
        "await import('reflect-metadata'); rollcall.createContainer(rollcall.loadConfig({ env: { ROLLCALL_BACKEND: 'memory' } }));",
      ),
    ).toEqual(['inversify', 'zod']);
  });
});
