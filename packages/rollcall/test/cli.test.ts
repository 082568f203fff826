import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '@rollcall/core';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { afterAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli, VERSION } from '../src/cli.js';

// The CLI in-process over the memory backend: every command's output, --json, exit codes and
// usage errors. The real binary against real etcd and Consul is in cli-etcd / cli-consul.

async function run(argv: string[], backend: Backend = createMemoryBackend(), io: Partial<CliIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, {
    stdout: (l) => out.push(l),
    stderr: (l) => err.push(l),
    backend,
    env: {},
    ...io,
  });
  return { code, out, err };
}

const json = (r: { out: string[] }) => JSON.parse(r.out.join('\n')) as unknown;

async function registry() {
  const store = new MemoryStore();
  const backend = createMemoryBackend({ store });
  await backend.discovery.register({
    id: 'a1',
    service: 'orders',
    host: '10.0.0.1',
    port: 8080,
    version: '2.1.0',
    tags: ['blue', 'canary'],
    metadata: { zone: 'eu-1' },
    weight: 3,
  });
  await backend.discovery.register({
    id: 'a2',
    service: 'orders',
    host: '10.0.0.2',
    port: 8080,
    tags: ['blue'],
    metadata: { zone: 'eu-2' },
  });
  await backend.discovery.register({ id: 'b1', service: 'billing', host: '::1', port: 9090 });
  return backend;
}

describe('rollcall CLI: discovery', () => {
  it('lists services and instances, as a table and as JSON', async () => {
    const backend = await registry();
    expect(await run(['services'], backend)).toEqual({ code: 0, out: ['billing', 'orders'], err: [] });
    expect(json(await run(['--json', 'services'], backend))).toEqual(['billing', 'orders']);
    const instances = await run(['instances', 'orders'], backend);
    expect(instances).toEqual({
      code: 0,
      out: [
        'ID  ADDRESS        VERSION  WEIGHT  TAGS         METADATA',
        'a1  10.0.0.1:8080  2.1.0    3       blue,canary  zone=eu-1',
        'a2  10.0.0.2:8080  -        1       blue         zone=eu-2',
      ],
      err: [],
    });
    expect((await run(['instances', 'billing'], backend)).out[1]).toMatch(/^b1 {2}\[::1\]:9090 /);
    const snapshot = json(await run(['instances', 'orders', '--json'], backend)) as {
      service: string;
      stale: boolean;
      instances: { id: string }[];
    };
    expect(snapshot).toMatchObject({ service: 'orders', stale: false });
    expect(snapshot.instances.map((i) => i.id)).toEqual(['a1', 'a2']);
    await backend.close();
  });

  it('filters instances by --tag and --meta (every one must match)', async () => {
    const backend = await registry();
    const ids = async (...args: string[]) =>
      (
        json(await run(['--json', 'instances', 'orders', ...args], backend)) as {
          instances: { id: string }[];
        }
      ).instances.map((i) => i.id);
    expect(await ids('--tag', 'blue')).toEqual(['a1', 'a2']);
    expect(await ids('--tag', 'blue', '--tag', 'canary')).toEqual(['a1']);
    expect(await ids('--meta', 'zone=eu-2')).toEqual(['a2']);
    expect(await ids('-t', 'canary', '-m', 'zone=eu-2')).toEqual([]);
    expect(await ids('--meta', 'zone=')).toEqual([]);
    expect((await run(['instances', 'orders', '--tag', 'nope'], backend)).out).toEqual([
      "no instances of 'orders'",
    ]);
    const bad = await run(['instances', 'orders', '--meta', 'zone'], backend);
    expect(bad).toEqual({ code: 2, out: [], err: ["rollcall: --meta: expected key=value, got 'zone'"] });
    await backend.close();
  });

  it('bad input exits 2 with the field named, before any call', async () => {
    const bad = await run(['instances', 'Bad/Name']);
    expect(bad.code).toBe(2);
    expect(bad.err).toEqual([expect.stringMatching(/^rollcall: service: must not contain '\/'/)]);
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toEqual(["rollcall: unknown command 'frobnicate' (see rollcall --help)"]);
    expect((await run(['instances'])).code).toBe(2);
    expect((await run(['--timeout', '5', 'services'])).code).toBe(2);
    expect((await run(['kv'])).code).toBe(2);
  });

  it('watch prints sync and changes until its signal aborts, then exits 0', async () => {
    const backend = createMemoryBackend();
    const controller = new AbortController();
    const out: string[] = [];
    const done = runCli(['watch', 'orders'], {
      stdout: (l) => out.push(l),
      stderr: () => {},
      backend,
      signal: controller.signal,
    });
    const other = createMemoryBackend({ store: backend.store });
    await other.discovery.register({ id: 'o1', service: 'orders', host: '10.0.0.1', port: 1 });
    await expect.poll(() => out.length).toBe(2);
    controller.abort();
    expect(await done).toBe(0);
    expect(out).toEqual(['sync (none)', 'change +o1 (1 instances)']);
    await other.close();
  });
});

describe('rollcall CLI: configuration keys', () => {
  it('put, get, ls and rm, with --json', async () => {
    const backend = createMemoryBackend();
    expect(await run(['kv', 'put', '/configs/app/prod/log_level', 'debug'], backend)).toEqual({
      code: 0,
      out: [],
      err: [],
    });
    await run(['kv', 'put', 'configs/app/prod/workers', '4'], backend);
    expect((await run(['kv', 'get', 'configs/app/prod/log_level'], backend)).out).toEqual(['debug']);
    expect(json(await run(['--json', 'kv', 'get', 'configs/app/prod/log_level'], backend))).toEqual({
      key: 'configs/app/prod/log_level',
      value: 'debug',
    });
    expect((await run(['kv', 'ls', 'configs/app/'], backend)).out).toEqual([
      'configs/app/prod/log_level=debug',
      'configs/app/prod/workers=4',
    ]);
    expect(json(await run(['kv', 'ls', '--json'], backend))).toEqual({
      'configs/app/prod/log_level': 'debug',
      'configs/app/prod/workers': '4',
    });
    expect(json(await run(['--json', 'kv', 'rm', 'configs/app/prod/workers'], backend))).toEqual({
      key: 'configs/app/prod/workers',
      deleted: true,
    });
    expect((await run(['kv', 'delete', 'configs/app/prod/workers'], backend)).code).toBe(0);
    const missing = await run(['--json', 'kv', 'get', 'configs/app/prod/workers'], backend);
    expect(missing.code).toBe(1);
    expect(json(missing)).toEqual({ key: 'configs/app/prod/workers', value: null });
    expect(missing.err).toEqual(["rollcall: no key 'configs/app/prod/workers'"]);
    expect((await run(['kv', 'put', 'a/../b', 'x'], backend)).code).toBe(2);
  });
});

describe('rollcall CLI: locks', () => {
  it('lock list shows holders, tokens and waiters; leader prints the leader or exits 1', async () => {
    const backend = createMemoryBackend();
    expect((await run(['lock', 'list'], backend)).out).toEqual(['no locks held or awaited']);
    const lease = await backend.locks.acquire('jobs', { ttlSeconds: 2 });
    const leadership = await backend.locks.campaign('primary', 'node-7', { ttlSeconds: 2 });
    const listed = await run(['lock', 'list'], backend);
    expect(listed.out[0]).toBe('KIND      NAME     HOLDER  TOKEN  WAITERS');
    expect(listed.out[1]).toMatch(/^lock {6}jobs {5}\S+ +1 +0$/);
    expect(listed.out[2]).toMatch(/^election {2}primary {2}node-7 +1 +0$/);
    expect(json(await run(['--json', 'lock', 'list'], backend))).toEqual([
      {
        kind: 'lock',
        name: 'jobs',
        holder: expect.any(String),
        token: String(lease.fencingToken),
        waiters: 0,
      },
      { kind: 'election', name: 'primary', holder: 'node-7', token: '1', waiters: 0 },
    ]);
    expect(await run(['leader', 'primary'], backend)).toEqual({ code: 0, out: ['node-7'], err: [] });
    const none = await run(['--json', 'leader', 'nobody'], backend);
    expect(none.code).toBe(1);
    expect(json(none)).toEqual({ election: 'nobody', leader: null });
    expect(none.err).toEqual(["rollcall: election 'nobody' has no leader"]);
    await lease.release();
    await leadership.resign();
    await backend.close();
  });

  it('lock hold prints the fencing token, holds until interrupted, then releases and exits 0', async () => {
    const backend = createMemoryBackend();
    const controller = new AbortController();
    const out: string[] = [];
    const done = runCli(['--json', 'lock', 'hold', 'jobs', '--ttl', '2'], {
      stdout: (l) => out.push(l),
      stderr: () => {},
      backend,
      signal: controller.signal,
    });
    await expect.poll(() => out.length).toBe(1);
    expect(JSON.parse(out[0]!)).toEqual({ lock: 'jobs', fencingToken: '1', held: true });
    expect(await backend.locks.tryAcquire('jobs', { ttlSeconds: 2 })).toBeUndefined();
    controller.abort();
    expect(await done).toBe(0);
    expect(JSON.parse(out[1]!)).toEqual({ lock: 'jobs', fencingToken: '1', held: false });
    const next = await backend.locks.tryAcquire('jobs', { ttlSeconds: 2 });
    expect(next?.fencingToken).toBe(2n);
    await backend.close();
  });

  it('lock hold exits 1 when the lock is lost while held, and on --max-wait', async () => {
    const store = new MemoryStore();
    const backend = createMemoryBackend({ store });
    const out: string[] = [];
    const done = runCli(['lock', 'hold', 'jobs', '--ttl', '2'], {
      stdout: (l) => out.push(l),
      stderr: (l) => out.push(l),
      backend,
      signal: new AbortController().signal,
    });
    await expect.poll(() => out.length).toBe(1);
    expect(out[0]).toBe("holding lock 'jobs' (fencing token 1); Ctrl-C releases it");
    store.outage();
    expect(await done).toBe(1);
    expect(out[1]).toMatch(/^rollcall: lock 'jobs' was lost/);
    store.restore();

    const holder = createMemoryBackend({ store });
    await holder.locks.acquire('busy', { ttlSeconds: 2 });
    const waited = await run(['lock', 'hold', 'busy', '--max-wait', '50'], backend, {
      signal: new AbortController().signal,
    });
    expect(waited).toEqual({ code: 1, out: [], err: ["rollcall: lock 'busy' not acquired within 50 ms"] });
    expect((await run(['lock', 'hold', 'busy', '--ttl', '1'], backend)).code).toBe(2);
    expect((await run(['lock', 'hold', 'busy', '--ttl', 'x'], backend)).code).toBe(2);
    await Promise.all([holder.close(), backend.close()]);
  });

  it('lock list on a backend that cannot enumerate holders fails with a clear line', async () => {
    const backend = createMemoryBackend();
    const plain: Backend = {
      ...backend,
      name: 'plain',
      locks: { ...backend.locks, list: undefined } as never,
    };
    expect(await run(['lock', 'list'], plain)).toEqual({
      code: 1,
      out: [],
      err: ['rollcall: plain: listing locks is not supported by this backend'],
    });
    await backend.close();
  });
});

describe('rollcall CLI: health and doctor', () => {
  it('health reports reachability and latencies', async () => {
    const backend = await registry();
    const text = await run(['health'], backend);
    expect(text.code).toBe(0);
    expect(text.out[0]).toBe('backend    memory');
    expect(text.out).toContainEqual(expect.stringMatching(/^services +2 listed in \d/));
    const report = json(await run(['--json', 'health'], backend)) as Record<string, unknown>;
    expect(report).toMatchObject({ backend: 'memory', reachable: true, services: 2 });
    expect(report.latencyMs).toEqual({
      ping: expect.any(Number),
      listServices: expect.any(Number),
      kvGet: expect.any(Number),
    });
    backend.store.outage();
    const down = await run(['--json', 'health'], backend);
    expect(down.code).toBe(1);
    expect(json(down)).toMatchObject({ reachable: false, error: expect.stringContaining('outage') });
    expect(down.err).toEqual([expect.stringMatching(/^rollcall: .*outage/)]);
    backend.store.restore();
    await backend.close();
  });

  it('doctor checks end to end with a second client, one verdict per line', async () => {
    const backend = createMemoryBackend();
    const text = await run(['doctor'], backend);
    expect(text.code).toBe(0);
    expect(text.out.map((l) => l.split(/ +/).slice(0, 2).join(' '))).toEqual([
      'VERDICT CHECK',
      'ok configuration',
      'ok reachable',
      'ok auth',
      'ok registration',
      'ok watch',
      'skip clock',
      'skip server',
      'doctor: 7',
    ]);
    const report = json(await run(['--json', 'doctor'], backend)) as {
      ok: boolean;
      checks: { check: string }[];
    };
    expect(report.ok).toBe(true);
    // The test instance is gone again.
    expect((await backend.discovery.getInstances('rollcall-doctor')).instances).toEqual([]);
    backend.store.outage();
    const down = await run(['doctor'], backend);
    expect(down.code).toBe(1);
    expect(down.out.at(-1)).toBe('doctor: 1 of 7 checks failed: reachable');
    backend.store.restore();
    await backend.close();
  });
});

describe('rollcall CLI: configuration, version, completion', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('without an injected backend it loads the configuration, and reports a bad one (exit 2)', async () => {
    const err: string[] = [];
    const code = await runCli(['-b', 'nosuch', 'services'], {
      stdout: () => {},
      stderr: (l) => err.push(l),
      env: {},
    });
    expect(code).toBe(2);
    expect(err).toEqual([
      'rollcall: invalid configuration: backend: unknown backend "nosuch"; valid backends: memory, etcd, consul, migrating',
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-cli-'));
    dirs.push(dir);
    const file = join(dir, 'rollcall.config.json');
    writeFileSync(file, JSON.stringify({ development: { backend: 'memory' } }));
    expect(await runCli(['-c', file, 'services'], { stdout: () => {}, stderr: () => {}, env: {} })).toBe(0);
  });

  it('--version prints the package version; --help lists every command and the exit codes', async () => {
    expect(await run(['--version'])).toEqual({ code: 0, out: [VERSION], err: [] });
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    const text = help.out.join('\n');
    for (const command of [
      'services',
      'instances',
      'watch',
      'kv',
      'lock',
      'leader',
      'health',
      'doctor',
      'ui',
      'completion',
    ])
      expect(text).toMatch(new RegExp(`\\n  ${command}\\b`));
    expect(text).toContain('Exit codes: 0 success, 1 failure');
    const kvHelp = (await run(['kv', '--help'])).out.join('\n');
    expect(kvHelp).toMatch(/get <key> +print a key's value/);
    expect(kvHelp).toMatch(/rm\|delete <key> +delete a key/);
  });

  it('completion bash completes commands, subcommands, options and backend names in a real bash', async () => {
    const script = (await run(['completion', 'bash'])).out.join('\n');
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-completion-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'rollcall.bash'), script);
    const complete = (...words: string[]) =>
      execFileSync(
        'bash',
        [
          '-c',
          `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _rollcall; printf '%s\\n' "\${COMPREPLY[@]}"`,
          'bash',
          join(dir, 'rollcall.bash'),
          ...words,
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter(Boolean);
    expect(complete('rollcall', 'k')).toEqual(['kv']);
    expect(complete('rollcall', 'kv', '')).toEqual(
      expect.arrayContaining(['get', 'put', 'rm', 'delete', 'ls']),
    );
    expect(complete('rollcall', '--json', 'lock', 'h')).toEqual(['hold']);
    expect(complete('rollcall', 'lock', 'hold', 'x', '--')).toEqual(
      expect.arrayContaining(['--ttl', '--max-wait', '--json', '--help']),
    );
    expect(complete('rollcall', '-b', '')).toEqual(['memory', 'etcd', 'consul', 'migrating']);
    expect(complete('rollcall', 'instances', '--tag', '')).toEqual([]);
    expect(complete('rollcall', 'completion', '')).toEqual(expect.arrayContaining(['bash', 'zsh']));
  });

  it('completion zsh is valid zsh that registers _rollcall and lists words per command', async () => {
    const script = (await run(['completion', 'zsh'])).out.join('\n');
    expect(script.split('\n')[0]).toBe('#compdef rollcall');
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-completion-'));
    dirs.push(dir);
    writeFileSync(join(dir, '_rollcall'), script);
    execFileSync('zsh', ['-n', join(dir, '_rollcall')]);
    const out = execFileSync(
      'zsh',
      [
        '-f',
        '-c',
        `autoload -U compinit && compinit -u -d "$2/.zcompdump" && source "$1" && print -r -- $_comps[rollcall] && _rollcall_words lock`,
        'zsh',
        join(dir, '_rollcall'),
        dir,
      ],
      { encoding: 'utf8' },
    ).split('\n');
    expect(out[0]).toBe('_rollcall');
    expect(out).toContain(
      'list:list held and awaited locks and elections (where the backend can enumerate them)',
    );
    expect(out.some((l) => l.startsWith('hold:'))).toBe(true);
    expect(await run(['completion', 'fish'])).toEqual({
      code: 2,
      out: [],
      err: [
        "rollcall: command-argument value 'fish' is invalid for argument 'shell'. Allowed choices are bash, zsh. (see rollcall --help)",
      ],
    });
  });
});
