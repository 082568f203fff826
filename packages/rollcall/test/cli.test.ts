import { createMemoryBackend } from '@rollcall/memory';
import { describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';

async function run(argv: string[], backend = createMemoryBackend()) {
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

describe('rollcall CLI', () => {
  it('lists services and instances', async () => {
    const backend = createMemoryBackend();
    await backend.discovery.register({
      id: 'a1',
      service: 'orders',
      host: '10.0.0.1',
      port: 8080,
      version: '2.1.0',
      tags: ['blue'],
    });
    await backend.discovery.register({ id: 'b1', service: 'billing', host: '10.0.0.2', port: 9090 });
    expect(await run(['services'], backend)).toEqual({ code: 0, out: ['billing', 'orders'], err: [] });
    const instances = await run(['instances', 'orders'], backend);
    expect(instances.code).toBe(0);
    expect(instances.out).toEqual([
      'ID  ADDRESS        VERSION  WEIGHT  TAGS',
      'a1  10.0.0.1:8080  2.1.0    1       blue',
    ]);
    const json = await run(['--json', 'instances', 'orders'], backend);
    expect(JSON.parse(json.out[0]!).instances[0].id).toBe('a1');
    await backend.close();
  });

  it('reads and writes configuration keys', async () => {
    const backend = createMemoryBackend();
    expect((await run(['kv', 'put', '/configs/app/prod/log_level', 'debug'], backend)).code).toBe(0);
    expect((await run(['kv', 'get', 'configs/app/prod/log_level'], backend)).out).toEqual(['debug']);
    expect((await run(['kv', 'ls', 'configs/app/'], backend)).out).toEqual([
      'configs/app/prod/log_level=debug',
    ]);
    const missing = await run(['kv', 'get', 'configs/none'], backend);
    expect(missing.code).toBe(1);
    expect(missing.err[0]).toContain("no key 'configs/none'");
  });

  it('bad input exits 2 with the field named', async () => {
    const bad = await run(['instances', 'Bad/Name']);
    expect(bad.code).toBe(2);
    expect(bad.err[0]).toMatch(/service: must not contain '\/'/);
    expect((await run(['frobnicate'])).code).toBe(2);
  });

  it('without an injected backend it loads the configuration, and reports a bad one', async () => {
    const err: string[] = [];
    const code = await runCli(['services'], {
      stdout: () => {},
      stderr: (l) => err.push(l),
      env: { ROLLCALL_BACKEND: 'zookeeper' },
    });
    expect(code).toBe(2);
    expect(err.join('\n')).toMatch(/backend/);
  });

  it('watch prints sync and changes until its signal aborts', async () => {
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
    const deadline = Date.now() + 2000;
    while (out.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    expect(await done).toBe(0);
    expect(out).toEqual(['sync (none)', 'change +o1 (1 instances)']);
  });
});
