import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { locateBinary } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// @rollcall/testkit used the way another project uses it: the packed tarballs of core, memory and
// testkit installed into a project outside the repository (from the npm cache where it can), the
// README's third-party backend example copied in as written, type-checked, and run with that
// project's vitest: the three compliance suites, plus real etcd and Consul started from there
// (etcd found on PATH, Consul in the install cache). One temporary project per run.

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = ['core', 'memory', 'testkit'];
const timings: Record<string, number> = {};
let project: string;
/** The environment of every command run in the project (see {@link thirdPartyEnv}). */
let projectEnv: NodeJS.ProcessEnv;

function timed<T>(label: string, f: () => T): T {
  const start = performance.now();
  try {
    return f();
  } finally {
    timings[label] = Math.round(performance.now() - start);
  }
}

function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const result: SpawnSyncReturns<string> = spawnSync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: options.env ?? process.env,
    cwd: options.cwd,
  });
  const out = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (result.error) throw result.error;
  return { code: result.status, out, stdout: result.stdout ?? '' };
}

function mustRun(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const result = run(cmd, args, options);
  if (result.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited with ${result.code}:\n${result.out}`);
  return result;
}

/** The fenced blocks of the README's example whose first line is `// <file name>`. */
function readmeExample(): Map<string, string> {
  const readme = readFileSync(join(root, 'packages/testkit/README.md'), 'utf8');
  const section = readme.split('## Example: a third-party backend')[1]?.split('\n## ')[0] ?? '';
  const files = new Map<string, string>();
  for (const match of section.matchAll(/```ts\n\/\/ ([\w.-]+\.ts)\n([\s\S]*?)```/g)) {
    if (match[1] && match[2] !== undefined) files.set(match[1], match[2]);
  }
  return files;
}

const installedVersion = (name: string): string =>
  (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version;

/**
 * The environment of the third-party project's commands: no ROLLCALL_*_BIN and no vitest
 * variables of this run; PATH without any consul (so Consul must come from the install cache) and
 * with etcd's directory (so etcd comes from PATH).
 */
function thirdPartyEnv(): NodeJS.ProcessEnv {
  const etcd = locateBinary('etcd').found;
  const consul = locateBinary('consul').found;
  if (!etcd || !consul) throw new Error('etcd or Consul missing: run `node scripts/install-servers.mjs`');
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(VITEST|TINYPOOL)/.test(key) || /^ROLLCALL_(ETCD|ETCDCTL|CONSUL)_BIN$/.test(key)) continue;
    env[key] = value;
  }
  const path = (process.env.PATH ?? '').split(delimiter).filter((d) => d && !existsSync(join(d, 'consul')));
  env.PATH = [dirname(etcd.path), ...path].join(delimiter);
  if (consul.source !== 'cache') {
    // This run's Consul came from a variable or PATH: give the project a cache that holds it.
    const cache = join(project, 'servers-cache');
    mkdirSync(join(cache, 'consul/usr/bin'), { recursive: true });
    symlinkSync(consul.path, join(cache, 'consul/usr/bin/consul'));
    env.ROLLCALL_SERVERS_DIR = cache;
  }
  return env;
}

const WHERE_TEST = `import { join } from 'node:path';
import { locateBinary, serversDir } from '@rollcall/testkit';
import { expect, it } from 'vitest';

it('finds etcd on PATH and Consul in the install cache', () => {
  expect(locateBinary('etcd').found?.source).toBe('PATH');
  expect(locateBinary('consul').found).toEqual({
    path: join(serversDir(), 'consul', 'usr', 'bin', 'consul'),
    source: 'cache',
  });
});
`;

beforeAll(() => {
  for (const name of PACKAGES) {
    if (!existsSync(join(root, 'packages', name, 'dist', 'index.js')))
      throw new Error(`packages/${name}/dist is missing: run \`npm run build\` first`);
  }
  project = mkdtempSync(join(tmpdir(), 'rollcall-third-party-'));
  const tarballs = join(project, 'tarballs');
  mkdirSync(tarballs);
  const packed = timed('npm pack', () =>
    mustRun(
      'npm',
      [
        'pack',
        '--json',
        '--pack-destination',
        tarballs,
        ...PACKAGES.flatMap((p) => ['-w', `@rollcall/${p}`]),
      ],
      { cwd: root },
    ),
  );
  const files = (JSON.parse(packed.stdout) as { name: string; filename: string }[]).map((p) => [
    p.name,
    `file:tarballs/${p.filename.replace(/^@rollcall\//, 'rollcall-').replace('/', '-')}`,
  ]);
  writeFileSync(
    join(project, 'package.json'),
    `${JSON.stringify(
      {
        name: 'acme-rollcall-backend',
        private: true,
        type: 'module',
        devDependencies: {
          ...Object.fromEntries(files),
          '@types/node': installedVersion('@types/node'),
          typescript: installedVersion('typescript'),
          vitest: installedVersion('vitest'),
        },
      },
      null,
      2,
    )}\n`,
  );
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        noEmit: true,
        // The example against the packed types; checking the declaration files themselves
        // (vitest's, node's) would nearly double the time and is the package-install test's business.
        skipLibCheck: true,
        types: ['node'],
      },
      include: ['*.ts'],
    }),
  );
  const example = readmeExample();
  expect([...example.keys()].sort()).toEqual([
    'acme-backend.ts',
    'acme.contract.test.ts',
    'servers.test.ts',
    'vitest.config.ts',
  ]);
  for (const [file, text] of example) writeFileSync(join(project, file), text);
  writeFileSync(join(project, 'where.test.ts'), WHERE_TEST);
  projectEnv = thirdPartyEnv();
  timed('npm install', () =>
    mustRun(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock'],
      { cwd: project, env: projectEnv },
    ),
  );
}, 300_000);

afterAll(() => {
  console.log(`[testkit-third-party] timings (ms): ${JSON.stringify(timings)}`);
  if (project) rmSync(project, { recursive: true, force: true });
});

describe('@rollcall/testkit from a project outside the repository', () => {
  it('ships the rollcall-testkit command: --help, and install-servers finding everything present', () => {
    const env = projectEnv;
    const help = mustRun('npx', ['--no', '--', 'rollcall-testkit', '--help'], { cwd: project, env });
    expect(help.out).toContain('rollcall-testkit install-servers [--with-browser] [--with-zsh]');
    const install = timed('install-servers', () =>
      mustRun('npx', ['--no', '--', 'rollcall-testkit', 'install-servers'], { cwd: project, env }),
    );
    expect(install.out).toMatch(/^etcd +present: etcd Version: 3\.\d+\.\d+ /m);
    expect(install.out).toMatch(/^consul +present: Consul v1\.8\.7 /m);
    expect(install.out).toMatch(/^install-servers: done in \d+ ms$/m);
  });

  it("the README's third-party backend example type-checks against the packed types", () => {
    const tsc = timed('tsc', () =>
      run(process.execPath, [join(project, 'node_modules/typescript/bin/tsc'), '-p', project], {
        cwd: project,
      }),
    );
    expect(tsc.out).toBe('');
    expect(tsc.code).toBe(0);
  });

  it('its vitest runs the three compliance suites on the example backend and starts real etcd and Consul', () => {
    const report = join(project, 'report.json');
    const vitest = timed('vitest', () =>
      run(
        process.execPath,
        [join(project, 'node_modules/vitest/vitest.mjs'), 'run', '--reporter=json', `--outputFile=${report}`],
        { cwd: project, env: projectEnv },
      ),
    );
    expect(existsSync(report), vitest.out).toBe(true);
    const result = JSON.parse(readFileSync(report, 'utf8')) as {
      numFailedTests: number;
      numPendingTests: number;
      numTodoTests: number;
      testResults: {
        name: string;
        assertionResults: { ancestorTitles: string[]; title: string; status: string }[];
      }[];
    };
    const tests = result.testResults.flatMap((f) =>
      f.assertionResults.map((a) => ({
        file: f.name.slice(project.length + 1),
        suite: a.ancestorTitles[0],
        ...a,
      })),
    );
    const failed = tests
      .filter((t) => t.status !== 'passed')
      .map((t) => `${t.file} > ${t.title}: ${t.status}`);
    expect(failed, vitest.out.slice(-4000)).toEqual([]);
    const passed = (suite: string) => tests.filter((t) => t.suite === suite && t.status === 'passed').length;
    console.log(
      `[testkit-third-party] passed: ${['discovery', 'key/value', 'lock'].map((s) => `${s} ${passed(`acme: ${s} contract`)}`).join(', ')}, all ${tests.length}`,
    );
    expect(passed('acme: discovery contract')).toBeGreaterThanOrEqual(15);
    expect(passed('acme: key/value contract')).toBeGreaterThanOrEqual(8);
    expect(passed('acme: lock contract')).toBeGreaterThanOrEqual(14);
    expect(
      tests.filter((t) => t.file !== 'acme.contract.test.ts').map((t) => `${t.file}: ${t.title}`),
    ).toEqual([
      'servers.test.ts: a real etcd and a real Consul answer on their loopback ports',
      'where.test.ts: finds etcd on PATH and Consul in the install cache',
    ]);
    expect(result.numPendingTests + result.numTodoTests).toBe(0);
    expect(vitest.code, vitest.out.slice(-4000)).toBe(0);
  });
});
