import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConsulBackend } from '@rollcall/consul';
import { type Backend, type ValidationError, validateValue } from '@rollcall/core';
import { createEtcdBackend } from '@rollcall/etcd';
import { createMigratingBackend } from '@rollcall/migration';
import {
  type ConsulAgent,
  type EtcdServer,
  eventually,
  startConsul,
  startEtcd,
  uniqueService,
} from '@rollcall/testkit';
import { runCli } from 'rollcall/cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `rollcall migrate` run in-process with a configuration file, against a real Consul agent (its
// kv value limit raised to 2 MiB, so that it can hold a 1 MB value) and a real etcd.
let agent: ConsulAgent;
let etcd: EtcdServer;
let dir: string;
let file: string;
const clients: Backend[] = [];

beforeAll(async () => {
  [agent, etcd] = await Promise.all([
    startConsul({ extraArgs: ['-hcl', 'limits { kv_max_value_size = 2097152 }'] }),
    startEtcd({ tmpDir: '/dev/shm' }),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'rollcall-migrate-cli-'));
  file = join(dir, 'rollcall.config.json');
  writeFileSync(
    file,
    JSON.stringify({
      test: {
        backend: 'migrating',
        migrating: { from: 'consul', to: 'etcd', phase: 'dual-write' },
        consul: { host: agent.host, port: agent.port, watchMode: 'blocking' },
        etcd: { endpoints: etcd.endpoints },
      },
    }),
  );
});
afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled([agent?.stop(), etcd?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(['--config', file, '--env', 'test', ...argv], {
    stdout: (l) => out.push(l),
    stderr: (l) => err.push(l),
    env: {},
  });
  return { code, out, err };
}

function track<T extends Backend>(backend: T): T {
  clients.push(backend);
  return backend;
}

describe('rollcall migrate on real Consul and etcd', () => {
  it('phase: an instance missing in etcd blocks forward moves; --force overrides; rollback always passes', async () => {
    const service = uniqueService('orders');
    const fleet = track(
      createMigratingBackend({
        from: createConsulBackend({ host: agent.host, port: agent.port, watchMode: 'blocking' }),
        to: createEtcdBackend({ endpoints: etcd.endpoints }),
        phase: 'dual-write',
      }),
    );
    await fleet.discovery.register({ id: 'o1', service, host: '127.0.0.1', port: 8001 });
    // A process that never migrated: in Consul only.
    const legacy = track(createConsulBackend({ host: agent.host, port: agent.port }));
    await legacy.discovery.register({ id: 'o2', service, host: '127.0.0.1', port: 8002 });

    const status = await cli('migrate', 'status', service);
    expect(status.code).toBe(0);
    expect(status.out[0]).toBe(
      "phase: dual-write (key 'rollcall/migration/phase' in etcd); from consul to etcd, threshold 1",
    );
    expect(status.out[1]).toMatch(/^SERVICE +IN CONSUL +IN ETCD +ONLY IN CONSUL +ONLY IN ETCD +VERDICT$/);
    expect(status.out[2]).toMatch(new RegExp(`^${service} +2 +1 +o2 +- +blocked$`));
    expect(status.out.at(-1)).toBe('fleet: 1 client(s): 1 in dual-write');

    const shadow = await cli('migrate', 'phase', 'shadow');
    expect(shadow.code).toBe(0);
    expect(shadow.out[1]).toMatch(/^fleet: all 1 client\(s\) follow 'shadow'/);
    const blocked = await cli('migrate', 'phase', 'dual-read');
    expect(blocked.code).toBe(1);
    expect(blocked.err[0]).toBe("cannot move to 'dual-read': 1 service(s) are not ready in etcd");
    expect(blocked.err.join('\n')).toContain(service);
    expect(fleet.phase).toBe('shadow');
    const forced = await cli('migrate', 'phase', 'dual-read', '--force');
    expect(forced.code).toBe(0);
    expect(forced.out[1]).toBe(`forced past 1 blocked service(s): ${service} (from 2, to 1)`);
    await eventually(() => fleet.phase === 'dual-read');
    const back = await cli('migrate', 'phase', 'dual-write');
    expect(back.code).toBe(0);
    expect(fleet.phase).toBe('dual-write');
  });

  it('kv: dry run writes nothing; apply copies byte for byte and reports what it cannot copy; re-apply is a no-op', async () => {
    const put = async (key: string, body: string | Buffer, query = '') => {
      const r = await fetch(`${agent.url}/v1/kv/${key}${query}`, { method: 'PUT', body });
      expect(r.status, key).toBe(200);
    };
    const p = `configs/${uniqueService('app')}/`;
    const unicode = 'zürich ✓ 東京 🚀';
    const large = 'é✓'.repeat(100_000); // 500,000 bytes
    const huge = 'x'.repeat(1024 * 1024);
    await put(`${p}log_level`, 'debug');
    await put(`${p}unicode`, unicode);
    await put(`${p}large`, large);
    await put(`${p}flagged`, 'on', '?flags=42');
    await put(`${p}huge`, huge);
    await put(`${p}binary`, Buffer.from([0xff, 0xfe, 0x00, 0x01]));
    await put(`${p}folder/`, '');
    const long = `${p}${'k'.repeat(520)}`;
    await put(long, 'x');
    const to = track(createEtcdBackend({ endpoints: etcd.endpoints }));

    const dry = await cli('migrate', 'kv', '--prefix', p);
    expect(dry.code).toBe(0);
    expect(dry.out[0]).toBe(
      `dry run of '${p}' from consul to etcd: 4 to create, 0 to change, 0 unchanged, 0 extra in etcd, 4 cannot be copied, 1 with flags`,
    );
    expect(dry.out).toContain(`  flags lost: ${p}flagged has flags 42 in consul`);
    // Too big for every backend (Consul's default limit, applied everywhere): core's own reason is shown.
    const tooBig = (() => {
      try {
        validateValue(huge);
      } catch (error) {
        return (error as ValidationError).reason;
      }
    })();
    expect(tooBig).toMatch(/512 KiB/);
    expect(dry.out).toContain(`  cannot copy ${p}huge: value: ${tooBig}`);
    expect(dry.out).toContain(
      `  cannot copy ${p}binary: the value is not UTF-8 text: it cannot be copied byte for byte`,
    );
    expect(dry.out).toContain(`  cannot copy ${p}folder/: a folder key (ends with /), not a value`);
    expect(dry.out).toContain(
      `  cannot copy ${long}: key: must be at most 512 characters (got ${long.length})`,
    );
    expect(await to.kv.getAll(p)).toEqual(new Map());

    const applied = await cli('migrate', 'kv', '--prefix', p, '--apply');
    expect(applied.code).toBe(0);
    expect(applied.out[0]).toBe('progress: 4/4 keys (100%, 0.5 MiB)');
    expect(applied.out[1]).toMatch(
      new RegExp(
        `^copied '${p}' from consul to etcd in 1 batch\\(es\\), \\d+ ms: 4 created, 0 changed, 0 unchanged, 0 deleted, 4 cannot be copied, 1 with flags lost$`,
      ),
    );
    expect(applied.out.at(-1)).toMatch(/^checksum consul [0-9a-f]{16}, etcd [0-9a-f]{16}: match$/);
    expect(await to.kv.get(`${p}unicode`)).toBe(unicode);
    expect(await to.kv.get(`${p}large`)).toBe(large);
    expect(await to.kv.get(`${p}flagged`)).toBe('on');
    expect(await to.kv.get(`${p}huge`)).toBeUndefined();

    const again = await cli('--json', 'migrate', 'kv', '--prefix', p, '--apply');
    expect(again.code).toBe(0);
    const { result } = JSON.parse(again.out[0]!);
    expect(result).toMatchObject({ created: 0, changed: 0, unchanged: 4, deleted: 0, batches: 0 });
    expect(result.checksum.match).toBe(true);

    for (const bad of ['../etc/', 'configs/../../x', 'a//b']) {
      const refused = await cli('migrate', 'kv', '--prefix', bad);
      expect(refused.code, bad).toBe(2);
      expect(refused.err[0], bad).toMatch(/^rollcall: prefix: /);
    }
  });
});
