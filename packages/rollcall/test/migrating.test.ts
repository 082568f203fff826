import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Backend, ConfigError, TYPES } from '@rollcall/core';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { createMigratingBackend, type MigratingBackend } from '@rollcall/migration';
import { eventually } from '@rollcall/testkit';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { createContainer, loadConfig, parseConfig } from '../src/index.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function issues(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).issues];
  }
  throw new Error('no ConfigError');
}

describe('the migrating section', () => {
  it('is validated field by field: phase, threshold, phaseKey, from = to, missing section', () => {
    const base = { backend: 'migrating', consul: {}, etcd: {} };
    expect(
      issues(() =>
        parseConfig({
          ...base,
          migrating: {
            from: 'consul',
            to: 'consul',
            phase: 'sideways',
            threshold: -1,
            phaseKey: 'a/../b',
            extra: 1,
          },
        }),
      )
        .map((i) => i.path)
        .sort(),
    ).toEqual(['migrating', 'migrating.phase', 'migrating.threshold']);
    // Field checks across fields run once the fields themselves are valid.
    expect(
      issues(() =>
        parseConfig({ ...base, migrating: { from: 'etcd', to: 'etcd', phase: 'shadow', phaseKey: 'a//b' } }),
      ),
    ).toEqual([
      { path: 'migrating.to', message: "must be another registry than from ('etcd')" },
      { path: 'migrating.phaseKey', message: expect.stringContaining('empty segments') },
    ]);
    expect(issues(() => parseConfig({ backend: 'migrating' }))).toEqual([
      { path: 'migrating', message: expect.stringContaining("required with backend 'migrating'") },
    ]);
    expect(
      issues(() => parseConfig({ ...base, migrating: { from: 'zookeeper', to: 'etcd', phase: 'done' } }))[0]!
        .path,
    ).toBe('migrating.from');
  });

  it('ROLLCALL_MIGRATION_PHASE sets the phase; a bad one names the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-migrating-'));
    dirs.push(dir);
    const file = join(dir, 'rollcall.config.json');
    writeFileSync(
      file,
      JSON.stringify({
        production: { backend: 'migrating', migrating: { from: 'consul', to: 'etcd', phase: 'dual-write' } },
      }),
    );
    const env = { ROLLCALL_ENV: 'production' };
    expect(loadConfig({ file, env }).migrating).toEqual({ from: 'consul', to: 'etcd', phase: 'dual-write' });
    expect(loadConfig({ file, env: { ...env, ROLLCALL_MIGRATION_PHASE: 'cutover' } }).migrating?.phase).toBe(
      'cutover',
    );
    expect(
      issues(() => loadConfig({ file, env: { ...env, ROLLCALL_MIGRATION_PHASE: 'later' } }))[0]!.path,
    ).toBe('migrating.phase');
  });

  it('the container binds a migrating backend over the two configured registries', async () => {
    const container = createContainer({
      backend: 'migrating',
      migrating: { from: 'memory', to: 'consul', phase: 'dual-write', threshold: 0.9, phaseKey: 'ops/phase' },
      consul: { host: '127.0.0.1', port: 1 },
    });
    const backend = container.get<Backend>(TYPES.Backend) as MigratingBackend;
    expect(backend.name).toBe('migrating');
    expect(backend.from.name).toBe('memory');
    expect(backend.to.name).toBe('consul');
    expect(backend.threshold).toBe(0.9);
    expect(backend.phaseKey).toBe('ops/phase');
    expect(container.get(TYPES.ServiceDiscovery)).toBe(backend.discovery);
    await container.unbindAllAsync();
  });
});

describe('rollcall migrate (memory -> memory)', () => {
  const stores: MemoryStore[] = [];
  const clients: Backend[] = [];
  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
    for (const s of stores.splice(0)) s.dispose();
  });
  function fleet() {
    const [from, to] = [new MemoryStore(), new MemoryStore()];
    stores.push(from, to);
    const migrating = (acknowledge = true) => {
      const c = createMigratingBackend({
        from: createMemoryBackend({ store: from }),
        to: createMemoryBackend({ store: to }),
        phase: 'dual-write',
        acknowledge,
      });
      clients.push(c);
      return c;
    };
    const plain = (store: MemoryStore) => {
      const c = createMemoryBackend({ store });
      clients.push(c);
      return c;
    };
    return { migrating, plain: { from: () => plain(from), to: () => plain(to) } };
  }
  async function run(argv: string[], backend: Backend) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, {
      stdout: (l) => out.push(l),
      stderr: (l) => err.push(l),
      backend,
      env: {},
    });
    return { code, out, err };
  }

  it('status: the table, the verdicts and the fleet; --json gives the same as data', async () => {
    const { migrating, plain } = fleet();
    const service = migrating();
    await service.discovery.register({ id: 'o1', service: 'orders', host: '10.0.0.1', port: 80 });
    await plain.from().discovery.register({ id: 'legacy-1', service: 'billing', host: '10.0.0.2', port: 80 });
    const operator = migrating(false);
    await eventually(async () => (await operator.fleet()).length === 1);
    const status = await run(['migrate', 'status'], operator);
    expect(status.code).toBe(0);
    expect(status.out).toEqual([
      "phase: dual-write (key 'rollcall/migration/phase' in memory); from memory to memory, threshold 1",
      'SERVICE  IN MEMORY (FROM)  IN MEMORY (TO)  ONLY IN MEMORY (FROM)  ONLY IN MEMORY (TO)  VERDICT',
      'billing  1                 0               legacy-1               -                    blocked',
      'orders   1                 1               -                      -                    ok',
      '1 service(s) blocked: billing',
      'fleet: 1 client(s): 1 in dual-write',
    ]);
    const json = JSON.parse((await run(['migrate', 'status', 'orders', '--json'], operator)).out[0]!);
    expect(json).toMatchObject({
      phase: 'dual-write',
      blocked: [],
      services: [{ service: 'orders', from: 1, to: 1, verdict: 'ok' }],
    });
  });

  it('phase: blocked moves print the blockers and exit 1; --force moves; the fleet is seen to follow; bad phases exit 2', async () => {
    const { migrating, plain } = fleet();
    const [a, b] = [migrating(), migrating()];
    await a.discovery.register({ id: 'o1', service: 'orders', host: '10.0.0.1', port: 80 });
    await plain.from().discovery.register({ id: 'legacy-1', service: 'orders', host: '10.0.0.2', port: 80 });
    const operator = migrating(false);
    await eventually(async () => (await operator.fleet()).length === 2);
    const blocked = await run(['migrate', 'phase', 'dual-read'], operator);
    expect(blocked.code).toBe(1);
    expect(blocked.err[0]).toBe("cannot move to 'dual-read': 1 service(s) are not ready in memory");
    expect(blocked.err[2]).toMatch(/^orders +2 +1 +legacy-1 +- +blocked$/);
    expect(a.phase).toBe('dual-write');
    const shadow = await run(['migrate', 'phase', 'shadow'], operator);
    expect(shadow).toMatchObject({
      code: 0,
      out: [
        'phase: dual-write -> shadow',
        expect.stringMatching(/^fleet: all 2 client\(s\) follow 'shadow' \(\d+ ms after the write\)$/),
      ],
    });
    expect([a.phase, b.phase]).toEqual(['shadow', 'shadow']);
    const forced = await run(['migrate', 'phase', 'dual-read', '--force'], operator);
    expect(forced.code).toBe(0);
    expect(forced.out[1]).toBe('forced past 1 blocked service(s): orders (from 2, to 1)');
    expect((await run(['migrate', 'phase', 'sideways'], operator)).code).toBe(2);
    await a.close();
    await b.close();
    const nobody = await run(['migrate', 'phase', 'shadow'], operator);
    expect(nobody.out[1]).toMatch(/^fleet: cannot tell/);
  });

  it('kv: dry run writes nothing, apply copies (unicode, 512 KiB), a second apply is a no-op, extras and bad prefixes', async () => {
    const { migrating, plain } = fleet();
    const [from, to] = [plain.from(), plain.to()];
    const big = 'ä€𝄞'.repeat(Math.floor((512 * 1024) / 9));
    await from.kv.put('configs/app/unicode', 'zürich ✓ 東京');
    await from.kv.put('configs/app/big', big);
    await from.kv.put('configs/app/same', 'x');
    await from.kv.put('configs/app/changed', 'new');
    await to.kv.put('configs/app/same', 'x');
    await to.kv.put('configs/app/changed', 'old');
    await to.kv.put('configs/app/extra', 'only in to');
    const operator = migrating(false);
    const dry = await run(['migrate', 'kv', '--prefix', 'configs/'], operator);
    expect(dry.code).toBe(0);
    expect(dry.out[0]).toBe(
      "dry run of 'configs/' from memory to memory: 2 to create, 1 to change, 1 unchanged, 1 extra in memory, 0 cannot be copied, 0 with flags",
    );
    expect(dry.out.at(-1)).toBe('nothing written (--apply copies)');
    expect(await to.kv.get('configs/app/unicode')).toBeUndefined();
    const applied = await run(['migrate', 'kv', '--prefix', 'configs/', '--apply'], operator);
    expect(applied.code).toBe(0);
    expect(applied.out.at(-1)).toMatch(
      /differ \(memory keeps 1 extra key\(s\); --delete-extra removes them\)$/,
    );
    expect(applied.out.some((l) => l.startsWith('progress: 3/3 keys (100%'))).toBe(true);
    expect(await to.kv.get('configs/app/big')).toBe(big);
    expect(await to.kv.get('configs/app/unicode')).toBe('zürich ✓ 東京');
    expect(await to.kv.get('configs/app/changed')).toBe('new');
    const again = await run(
      ['migrate', 'kv', '--prefix', 'configs/', '--apply', '--delete-extra', '--json'],
      operator,
    );
    const { result } = JSON.parse(again.out[0]!);
    expect(result).toMatchObject({ created: 0, changed: 0, unchanged: 4, deleted: 1, extraKept: 0 });
    expect(result.checksum.match).toBe(true);
    expect(await to.kv.get('configs/app/extra')).toBeUndefined();
    for (const bad of ['../etc/', 'configs//x', '', 'rollcall/locks/']) {
      const refused = await run(['migrate', 'kv', '--prefix', bad], operator);
      expect(refused.code, bad).toBe(2);
      expect(refused.err[0], bad).toMatch(/^rollcall: prefix: /);
    }
  });

  it('bridge: mirrors a named service until its signal aborts; naming none is bad usage', async () => {
    const { migrating, plain } = fleet();
    const operator = migrating(false);
    await plain.from().discovery.register({ id: 'l1', service: 'legacy', host: '10.0.0.5', port: 81 });
    const controller = new AbortController();
    const out: string[] = [];
    const done = runCli(['migrate', 'bridge', '--service', 'legacy'], {
      stdout: (l) => out.push(l),
      stderr: (l) => out.push(`ERR ${l}`),
      backend: operator,
      signal: controller.signal,
    });
    const inTo = plain.to();
    await eventually(async () => (await inTo.discovery.getInstances('legacy')).instances.length === 1, {
      timeoutMs: 5000,
    });
    expect((await inTo.discovery.getInstances('legacy')).instances[0]!.metadata).toMatchObject({
      'migration-source': 'memory',
    });
    controller.abort();
    expect(await done).toBe(0);
    expect(out).toEqual([
      'campaigning for leadership',
      'leading: mirroring 1 service(s): legacy',
      'listed legacy: 1 passing instance(s)',
      'copied legacy/l1',
      'removed legacy/l1',
    ]);
    expect((await inTo.discovery.getInstances('legacy')).instances).toEqual([]);
    const none = await run(['migrate', 'bridge'], operator);
    expect(none.code).toBe(2);
    expect(none.err[0]).toMatch(/services: name at least one service/);
  });

  it('migrate commands need the migrating backend', async () => {
    const plainBackend = createMemoryBackend();
    clients.push(plainBackend);
    const r = await run(['migrate', 'status'], plainBackend);
    expect(r.code).toBe(2);
    expect(r.err[0]).toContain("migrate commands need the 'migrating' backend");
  });
});
