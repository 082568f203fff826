import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EtcdServer, eventually, startEtcd } from '@rollcall/testkit';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'examples/grpc-greeter/dist/main.js');

/** The example as a child process, with its output collected. */
function run(args: string[], env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, [main, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
  });
  const proc = { child, out: '', exited: new Promise<number | null>((resolve) => child.on('exit', resolve)) };
  child.stdout?.on('data', (chunk) => {
    proc.out += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    proc.out += chunk;
  });
  return proc;
}

describe('examples/grpc-greeter', () => {
  const children: ReturnType<typeof run>[] = [];
  let etcd: EtcdServer | undefined;
  afterAll(async () => {
    for (const c of children) c.child.kill('SIGKILL');
    await etcd?.stop();
  });

  it('demo on the memory backend: calls spread, one greeter leaves gracefully, one joins, no call fails', async () => {
    const demo = run([], { ROLLCALL_ENV: 'development' });
    children.push(demo);
    expect(await demo.exited, demo.out).toBe(0);
    expect(demo.out).toContain('[demo] backend memory');
    expect(demo.out).toContain('[client] calls spread over greeter-1, greeter-2, greeter-3');
    expect(demo.out).toMatch(/\d+ calls while and after greeter-2 left, 0 failed/);
    expect(demo.out).toContain('[client] greeter-4 gets calls');
    expect(demo.out).toMatch(
      /done: \d+ calls \(greeter-1=\d+, greeter-2=\d+, greeter-3=\d+, greeter-4=\d+\), 0 failed/,
    );
  });

  it('on etcd, in separate processes: SIGTERM on one server deregisters and drains it, and the client loses no call', async () => {
    etcd = await startEtcd({ name: 'grpc-greeter-e2e' });
    const env = {
      ROLLCALL_ENV: 'test',
      ROLLCALL_BACKEND: 'etcd',
      ETCD_ENDPOINTS: etcd.endpoints.join(','),
      DRAIN_MS: '500',
    };
    const [g1, g2] = [run(['serve', 'g1'], env), run(['serve', 'g2'], env)];
    children.push(g1, g2);
    await eventually(() => g1.out.includes('[g1] serving') && g2.out.includes('[g2] serving'), {
      timeoutMs: 20_000,
      message: 'both servers are up',
    });
    const client = run(['call'], env);
    children.push(client);
    await eventually(() => client.out.includes('<- g1') && client.out.includes('<- g2'), {
      timeoutMs: 20_000,
      message: 'the client reaches both servers',
    });

    g1.child.kill('SIGTERM');
    expect(await g1.exited, g1.out).toBe(0);
    expect(g1.out).toContain('[g1] drained and stopped');
    const mark = client.out.length;
    await eventually(() => (client.out.slice(mark).match(/<- g2/g) ?? []).length >= 20, {
      timeoutMs: 10_000,
      message: 'calls go on to g2',
    });

    client.child.kill('SIGTERM');
    expect(await client.exited, client.out).toBe(0);
    expect(client.out).toMatch(/summary: \d+ calls \(g1=\d+, g2=\d+\), 0 failed/);
    expect(client.out).not.toContain('call failed');
    g2.child.kill('SIGTERM');
    expect(await g2.exited, g2.out).toBe(0);
  });
});
