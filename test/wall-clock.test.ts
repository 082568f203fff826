import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConsulBackend } from '@rollcall/consul';
import { createEtcdBackend } from '@rollcall/etcd';
import { startConsul, startEtcd, steppableWallClock, uniqueService, waitFor } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Issue 9, item 11: a wall-clock step (an NTP correction) must neither freeze pollers nor make
// registrations believe they were silent. Intervals are measured on the monotonic clock; only
// `syncedAt` is wall time. The child's clock is stepped by a preload; the machine's is not touched.
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'clock-child.mjs');

describe.each([
  [
    'etcd',
    () => startEtcd({ name: 'clock' }).then((s) => ({ address: s.clientUrl, stop: () => s.stop() })),
    1000,
  ],
  ['consul', () => startConsul().then((a) => ({ address: a.address, stop: () => a.stop() })), 5000 + 1000],
])('%s: wall-clock steps', (kind, start, propagationMs) => {
  let server: { address: string; stop(): Promise<void> };
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    server = await start();
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await server?.stop();
  });

  it('a step backwards does not freeze the watch, a step forwards is not taken for silence: no lost, no gap', async () => {
    const service = uniqueService('clock');
    const clock = steppableWallClock();
    child = spawn(process.execPath, [...clock.execArgv, fixture, kind, server.address, service], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...clock.env },
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await waitFor(() => out.includes('sync me'), { timeoutMs: 15_000, message: `no sync: ${out}` });
    const writer =
      kind === 'etcd'
        ? createEtcdBackend({ endpoints: [server.address] })
        : createConsulBackend({
            host: server.address.split(':')[0],
            port: Number(server.address.split(':')[1]),
          });
    try {
      clock.step(child, -60_000);
      await writer.discovery.register({ id: 'b1', service, host: '127.0.0.1', port: 9301 });
      await waitFor(() => out.includes('b1,me'), {
        timeoutMs: propagationMs + 1000,
        message: `after a step backwards the watch froze: ${out}`,
      });
      clock.step(child, 180_000);
      await writer.discovery.register({ id: 'b2', service, host: '127.0.0.1', port: 9302 });
      await waitFor(() => out.includes('b1,b2,me'), {
        timeoutMs: propagationMs + 1000,
        message: `after a step forwards the watch stopped: ${out}`,
      });
      // Two heartbeat intervals after the forward step: still no loss.
      await new Promise((r) => setTimeout(r, 2500));
      expect(out).not.toMatch(/lost|restored/);
      expect(child.exitCode).toBe(null);
    } finally {
      await writer.close();
    }
  });
});
