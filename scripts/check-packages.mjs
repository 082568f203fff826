#!/usr/bin/env node
// Installs Rollcall the way a team outside this repository does, and checks that every package
// works alone from its tarball with only its declared dependencies:
//
// 1. `npm pack` every package (after a build): each tarball holds LICENSE, README, dist and the
//    sources its maps point at, and no build leftovers (.tsbuildinfo, tests);
// 2. two apps in a temp dir outside the repo install the tarballs and the peer dependencies:
//    `full` (every package) and `lean` (`rollcall` with `--omit=optional`: no etcd, no Consul);
// 3. each app imports every entry point from ESM and, through require(esm), from CommonJS;
// 4. each app type-checks a TypeScript consumer under `nodenext` and `bundler` resolution with
//    `skipLibCheck: false`;
// 5. the lean app makes a memory backend and gets a ConfigError naming the package to install
//    when it asks for etcd.
//
// Prints one line per check and, with --json <file>, writes the results there (--keep keeps the
// temp apps, --no-build skips the build). Exits 1 when a check fails. Uses the npm cache first (`--prefer-offline`): only the npm registry is needed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const keep = args.includes('--keep');
const results = [];
let failed = 0;

function check(name, run) {
  const started = performance.now();
  try {
    const detail = run();
    results.push({ name, ok: true, ms: Math.round(performance.now() - started), detail });
    console.log(
      `ok    ${name}${detail ? ` (${typeof detail === 'string' ? detail : JSON.stringify(detail)})` : ''}`,
    );
  } catch (error) {
    failed += 1;
    const message = String(error.stderr || error.stdout || error.message)
      .trim()
      .split('\n')
      .slice(0, 30)
      .join('\n');
    results.push({ name, ok: false, ms: Math.round(performance.now() - started), error: message });
    console.log(`FAIL  ${name}\n${message.replace(/^/gm, '      ')}`);
  }
}

function run(cmd, argv, cwd, extra = {}) {
  return execFileSync(cmd, argv, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      npm_config_update_notifier: 'false',
    },
    maxBuffer: 64 * 1024 * 1024,
    ...extra,
  });
}

const packages = readdirSync(join(root, 'packages'))
  .map((dir) => ({
    dir: join(root, 'packages', dir),
    json: JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')),
  }))
  .filter((p) => !p.json.private);
const byName = new Map(packages.map((p) => [p.json.name, p]));

/** The module entry points of a package (its `exports` keys that are code). */
function entryPoints(pkg) {
  const exports = pkg.json.exports ?? { '.': pkg.json.main };
  return Object.keys(exports)
    .filter((k) => k !== './package.json' && !k.endsWith('.json'))
    .map((k) => (k === '.' ? pkg.json.name : `${pkg.json.name}/${k.slice(2)}`));
}

const work = mkdtempSync(join(tmpdir(), 'rollcall-packages-'));
const tarballs = join(work, 'tarballs');
mkdirSync(tarballs);
const tarballOf = new Map();

if (!args.includes('--no-build'))
  check('build (tsc -b)', () => {
    run(
      process.execPath,
      [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'tsconfig.build.json'],
      root,
    );
  });

for (const pkg of packages) {
  check(`pack ${pkg.json.name}`, () => {
    const out = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tarballs], pkg.dir));
    const files = out[0].files.map((f) => f.path);
    tarballOf.set(pkg.json.name, join(tarballs, out[0].filename));
    const problems = [];
    for (const needed of ['LICENSE', 'README.md', 'package.json'])
      if (!files.includes(needed)) problems.push(`missing ${needed}`);
    for (const f of files) {
      if (/\.tsbuildinfo$/.test(f)) problems.push(`build leftover ${f}`);
      if (/(^|\/)test\//.test(f)) problems.push(`test file ${f}`);
    }
    // Every source map points at a file the tarball holds.
    for (const map of files.filter((f) => f.endsWith('.js.map') || f.endsWith('.d.ts.map'))) {
      const { sources } = JSON.parse(readFileSync(join(pkg.dir, map), 'utf8'));
      for (const s of sources) {
        const target = join(dirname(map), s);
        if (!files.includes(target)) problems.push(`${map} points at ${s}, not shipped`);
      }
    }
    for (const [section, deps] of Object.entries({
      dependencies: pkg.json.dependencies,
      optionalDependencies: pkg.json.optionalDependencies,
      peerDependencies: pkg.json.peerDependencies,
    }))
      for (const [dep, range] of Object.entries(deps ?? {}))
        if (range === '*' || range === 'latest') problems.push(`${section}.${dep} is ${range}`);
    if (problems.length > 0) throw new Error(problems.join('\n'));
    return `${files.length} files, ${Math.round(out[0].size / 1024)} KiB`;
  });
}

/** Peer dependencies of the given packages, with their ranges. */
function peersOf(names) {
  const peers = {};
  for (const name of names)
    for (const [dep, range] of Object.entries(byName.get(name)?.json.peerDependencies ?? {}))
      peers[dep] = range;
  return peers;
}

function makeApp(kind, names, omitOptional) {
  const dir = join(work, kind);
  mkdirSync(dir);
  const deps = Object.fromEntries(names.map((n) => [n, `file:${tarballOf.get(n)}`]));
  // Internal dependencies resolve to the tarballs too (not to the registry).
  const overrides = Object.fromEntries([...tarballOf].map(([n, t]) => [n, `file:${t}`]));
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify(
      {
        name: `rollcall-consumer-${kind}`,
        private: true,
        type: 'module',
        dependencies: { ...deps, ...peersOf(names), typescript: '~5.9.3', '@types/node': '^20.19.0' },
        overrides,
      },
      null,
      2,
    )}\n`,
  );
  run(
    'npm',
    ['install', '--prefer-offline', '--no-package-lock', ...(omitOptional ? ['--omit=optional'] : [])],
    dir,
  );
  return dir;
}

function importAll(dir, entries) {
  const esm = entries.map((e) => `await import(${JSON.stringify(e)});`).join('\n');
  writeFileSync(join(dir, 'import-all.mjs'), `${esm}\nconsole.log('esm ok');\n`);
  const cjs = entries.map((e) => `require(${JSON.stringify(e)});`).join('\n');
  writeFileSync(join(dir, 'require-all.cjs'), `${cjs}\nconsole.log('cjs ok');\n`);
  run(process.execPath, ['import-all.mjs'], dir);
  // require(esm) may print an ExperimentalWarning on some Node 20 releases: only failures count.
  run(process.execPath, ['require-all.cjs'], dir);
}

function typecheck(dir, source, resolution) {
  const name = `consumer-${resolution}`;
  writeFileSync(join(dir, `${name}.ts`), source);
  const compilerOptions =
    resolution === 'nodenext'
      ? { module: 'nodenext', moduleResolution: 'nodenext' }
      : { module: 'esnext', moduleResolution: 'bundler' };
  writeFileSync(
    join(dir, `tsconfig.${resolution}.json`),
    JSON.stringify({
      compilerOptions: {
        ...compilerOptions,
        target: 'es2023',
        lib: ['es2023', 'esnext.disposable'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
        experimentalDecorators: true,
      },
      files: [`${name}.ts`],
    }),
  );
  run(
    process.execPath,
    [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${resolution}.json`],
    dir,
  );
}

const CORE_CONSUMER = `
import 'reflect-metadata';
import { type Backend, ConfigError, createPicker, type Logger, type ServiceDiscovery, TYPES, ValidationError } from '@rollcall/core';
import { createBackend, type SessionDriver } from '@rollcall/core/driver';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { createLiveConfig } from '@rollcall/config';
import { createMigratingBackend } from '@rollcall/migration';
import { createContainer, loadConfig, type RollcallConfig } from 'rollcall';
import { z } from 'zod';

const config: RollcallConfig = { backend: 'memory', etcd: { endpoints: ['http://127.0.0.1:2379'] } };
const container = createContainer(config);
const discovery = container.get<ServiceDiscovery>(TYPES.ServiceDiscovery);
const backend: Backend = createMemoryBackend({ store: new MemoryStore() });
const logger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
void createPicker(discovery, 'orders');
void createLiveConfig({ source: backend.kv, prefix: 'x/', schema: z.object({ a: z.string().default('') }) });
void createMigratingBackend({ from: backend, to: createMemoryBackend(), phase: 'dual-write', logger });
void [loadConfig, createBackend, ConfigError, ValidationError];
export type Driver = SessionDriver<unknown>;
`;
const FULL_CONSUMER = `${CORE_CONSUMER}
import { createEtcdBackend } from '@rollcall/etcd';
import { createConsulBackend } from '@rollcall/consul';
import { registerResolver } from '@rollcall/grpc';
import { describeDiscoveryContract } from '@rollcall/testkit';
void [createEtcdBackend, createConsulBackend, registerResolver, describeDiscoveryContract];
`;

const LEAN = ['@rollcall/core', '@rollcall/memory', '@rollcall/config', '@rollcall/migration', 'rollcall'];
if (failed === 0) {
  let full;
  let lean;
  check('install full app (every tarball)', () => {
    full = makeApp('full', [...tarballOf.keys()], false);
  });
  check('install lean app (rollcall --omit=optional)', () => {
    lean = makeApp('lean', LEAN, true);
    const installed = readdirSync(join(lean, 'node_modules', '@rollcall'));
    if (installed.includes('etcd') || installed.includes('consul'))
      throw new Error(`optional backends installed anyway: ${installed.join(', ')}`);
    return `@rollcall/${installed.join(', @rollcall/')}`;
  });
  if (full) {
    const entries = [...tarballOf.keys()].flatMap((n) => entryPoints(byName.get(n)));
    check('full: every entry point imports from ESM and CommonJS', () => {
      importAll(full, entries);
      return `${entries.length} entry points`;
    });
    for (const resolution of ['nodenext', 'bundler'])
      check(`full: a TypeScript consumer type-checks (${resolution}, skipLibCheck off)`, () =>
        typecheck(full, FULL_CONSUMER, resolution),
      );
  }
  if (lean) {
    check('lean: rollcall and its packages import from ESM and CommonJS', () =>
      importAll(
        lean,
        LEAN.flatMap((n) => entryPoints(byName.get(n))),
      ),
    );
    for (const resolution of ['nodenext', 'bundler'])
      check(`lean: a TypeScript consumer type-checks without the optional backends (${resolution})`, () =>
        typecheck(lean, CORE_CONSUMER, resolution),
      );
    check('lean: memory works; etcd is a ConfigError naming the package to install', () => {
      writeFileSync(
        join(lean, 'lean.cjs'),
        `const { createContainer } = require('rollcall');
const { TYPES } = require('@rollcall/core');
(async () => {
  const container = createContainer({ backend: 'memory' });
  const discovery = container.get(TYPES.ServiceDiscovery);
  await discovery.register({ id: 'a', service: 'orders', host: '127.0.0.1', port: 1 });
  const { instances } = await discovery.getInstances('orders');
  if (instances.length !== 1) throw new Error('not registered');
  await container.unbindAllAsync();
  try {
    createContainer({ backend: 'etcd' });
    throw new Error('etcd accepted without its package');
  } catch (error) {
    if (error.code !== 'ERR_CONFIG' || !/npm install @rollcall\\/etcd/.test(error.message)) throw error;
    console.log(error.message);
  }
})().catch((error) => { console.error(error); process.exit(1); });
`,
      );
      return run(process.execPath, ['lean.cjs'], lean).trim();
    });
  }
}

if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify({ failed, results }, null, 2)}\n`);
if (!keep) rmSync(work, { recursive: true, force: true });
else console.log(`kept ${work}`);
console.log(`\n${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
