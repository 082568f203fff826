import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// Issue 15: every package installs and works alone from its tarball, as a team outside this
// repository installs it. The checks live in scripts/check-packages.mjs (runnable by hand); this
// runs it as a child process, after `npm test` built everything.
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = mkdtempSync(join(tmpdir(), 'rollcall-packages-report-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

type Report = { failed: number; results: { name: string; ok: boolean; error?: string; detail?: unknown }[] };

describe('packages from their tarballs, in an app outside the repository', () => {
  it('pack cleanly, install alone (with and without the optional backends), import from ESM and CommonJS, type-check', async () => {
    const reportFile = join(out, 'report.json');
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(
        process.execPath,
        [join(root, 'scripts', 'check-packages.mjs'), '--no-build', '--json', reportFile],
        {
          cwd: root,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      child.stdout.on('data', (d) => output.push(String(d)));
      child.stderr.on('data', (d) => output.push(String(d)));
      child.on('exit', resolve);
    });
    const report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
    const names = report.results.map((r) => r.name);
    expect(
      report.results.filter((r) => !r.ok),
      output.join(''),
    ).toEqual([]);
    expect(code).toBe(0);
    // Every check ran (a failed install would have skipped the later ones).
    for (const expected of [
      'pack @rollcall/core',
      'pack rollcall',
      'install full app (every tarball)',
      'install lean app (rollcall --omit=optional)',
      'full: every entry point imports from ESM and CommonJS',
      'full: a TypeScript consumer type-checks (nodenext, skipLibCheck off)',
      'full: a TypeScript consumer type-checks (bundler, skipLibCheck off)',
      'lean: rollcall and its packages import from ESM and CommonJS',
      'lean: a TypeScript consumer type-checks without the optional backends (nodenext)',
      'lean: a TypeScript consumer type-checks without the optional backends (bundler)',
      'lean: memory works; etcd is a ConfigError naming the package to install',
    ])
      expect(names).toContain(expected);
  }, 600_000);
});
