import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Backend, TYPES } from '@rollcall/core';
import { eventually, Recorder, startConsul, startEtcd, uniqueService } from '@rollcall/testkit';
import { createContainer, loadConfig } from 'rollcall';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'service-child.mjs');

type Server = { env: Record<string, string>; propagationMs: number; stop(): Promise<void> };
const servers: [string, () => Promise<Server>][] = [
  [
    'etcd',
    async () => {
      const etcd = await startEtcd({ name: 'shutdown-e2e' });
      return {
        env: { ROLLCALL_BACKEND: 'etcd', ETCD_ENDPOINTS: etcd.endpoints.join(',') },
        propagationMs: 2000,
        stop: () => etcd.stop(),
      };
    },
  ],
  [
    'consul',
    async () => {
      const agent = await startConsul();
      return {
        env: { ROLLCALL_BACKEND: 'consul', CONSUL_HTTP_ADDR: agent.address },
        propagationMs: 7000,
        stop: () => agent.stop(),
      };
    },
  ],
];

// spring-cloud-consul#178: SIGTERM did not deregister, so callers kept calling a dead instance until its TTL.
describe.each(servers)('%s: SIGTERM deregisters before the process exits', (_name, start) => {
  let server: Server;
  let observer: Backend;
  beforeAll(async () => {
    server = await start();
    observer = createContainer(loadConfig({ environment: 'test', env: server.env })).get<Backend>(
      TYPES.Backend,
    );
  });
  afterAll(async () => {
    await observer?.close();
    await server?.stop();
  });

  it('the instance leaves every watcher long before its 30 s ttl, and the process exits 0 after draining', async () => {
    const service = uniqueService('graceful');
    const child = spawn(process.execPath, [fixture, service, 'g1'], {
      env: { ...process.env, ...server.env, ROLLCALL_ENV: 'test' },
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await eventually(() => out.includes('registered'), { timeoutMs: 15_000, message: out });
    const watch = new Recorder(observer.discovery.watch(service));
    await watch.next((e) => e.snapshot.instances.some((i) => i.id === 'g1'), {
      timeoutMs: server.propagationMs,
    });
    child.kill('SIGTERM');
    const signalledAt = Date.now();
    await watch.next((e) => e.type === 'change' && e.removed.some((i) => i.id === 'g1'), {
      timeoutMs: server.propagationMs,
    });
    expect(Date.now() - signalledAt).toBeLessThan(server.propagationMs + 1000);
    expect(await exited, out).toBe(0);
    expect(out).toContain('draining done');
  });
});
