import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConsulBackend } from '@rollcall/consul';
import { createEtcdBackend } from '@rollcall/etcd';
import {
  type ConsulAgent,
  type EtcdServer,
  freePort,
  startConsul,
  startEtcd,
  uniqueService,
  waitFor,
} from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

// Processes whose only work is the call under test (issue 9, item 6): with nothing else keeping them
// alive, a pending call, an open watch or a registration must keep Node running, as an open socket
// would. Before, Node exited in the middle: code 13 ("unsettled top-level await") with no message,
// or 0 after the first Consul poll.
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'only-call.mjs');

interface Run {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

const running: ChildProcess[] = [];

function run(...args: string[]): Run {
  const child = spawn(process.execPath, [fixture, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

afterEach(() => {
  for (const child of running.splice(0)) child.kill('SIGKILL');
});

describe('a call to an unreachable etcd keeps its process alive until it settles', () => {
  let dead: string;
  beforeAll(async () => {
    dead = `http://127.0.0.1:${await freePort()}`;
  });

  it('an awaited kv.put rejects with BackendUnavailableError, which the process prints as it exits 1 (not 13, not silently)', async () => {
    const r = run('etcd', dead, 'kv-put', 'x');
    const code = await r.exit;
    expect(code).toBe(1);
    expect(r.err()).toMatch(/BackendUnavailableError/);
    expect(r.out()).toBe('');
  });

  it('the same call, caught, runs to its end: the rejection is seen and the process exits 0', async () => {
    const r = run('etcd', dead, 'kv-put-caught', 'x');
    expect(await r.exit).toBe(0);
    expect(r.out()).toBe('rejected BackendUnavailableError\n');
  });

  it('a register() given an already-aborted signal rejects with AbortError, and nothing inside crashes the process', async () => {
    const r = run('etcd', dead, 'register-aborted', uniqueService('aborted'));
    expect(await r.exit).toBe(0);
    expect(r.out()).toBe('rejected AbortError\n');
    expect(r.err()).toBe('');
  });

  it('a register() against it rejects and says so (exit 1 with the error), never exit 13', async () => {
    const r = run('etcd', dead, 'register', uniqueService('dead'));
    expect(await r.exit).toBe(1);
    expect(r.err()).toMatch(/BackendUnavailableError/);
  });
});

describe.each([
  [
    'etcd',
    () =>
      startEtcd({ name: 'exits' }).then((s: EtcdServer) => ({ address: s.clientUrl, stop: () => s.stop() })),
  ],
  ['consul', () => startConsul().then((a: ConsulAgent) => ({ address: a.address, stop: () => a.stop() }))],
])('%s: open work keeps the process alive', (kind, start) => {
  let server: { address: string; stop(): Promise<void> };
  const client = () =>
    kind === 'etcd'
      ? createEtcdBackend({ endpoints: [server.address] })
      : createConsulBackend({
          host: server.address.split(':')[0],
          port: Number(server.address.split(':')[1]),
          pollIntervalMs: 5000,
          watchMode: 'blocking',
        });
  beforeAll(async () => {
    server = await start();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a process whose only work is a registration stays registered (and alive) until it is killed', async () => {
    const service = uniqueService('alone');
    const r = run(kind, server.address, 'register', service);
    await waitFor(() => r.out().includes('registered'), { timeoutMs: 15_000, message: 'never registered' });
    const observer = client();
    try {
      // Longer than a Consul poll interval and than 2 x the ttl (2 s): the process is still there and so is its instance.
      const exited = await Promise.race([
        r.exit.then(() => true),
        new Promise((res) => setTimeout(() => res(false), 7000)),
      ]);
      expect(exited, `exited by itself: ${r.err()}`).toBe(false);
      expect((await observer.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['only']);
    } finally {
      await observer.close();
    }
  });

  it('a register() given an already-aborted signal rejects with AbortError, and nothing inside crashes the process', async () => {
    const r = run(kind, server.address, 'register-aborted', uniqueService('aborted'));
    expect(await r.exit).toBe(0);
    expect(r.out()).toBe('rejected AbortError\n');
    expect(r.err()).toBe('');
  });

  it('a process whose only work is `for await` over a watch keeps following it', async () => {
    const service = uniqueService('follow');
    const r = run(kind, server.address, 'watch', service);
    await waitFor(() => r.out().includes('sync'), { timeoutMs: 15_000, message: `no sync: ${r.err()}` });
    const writer = client();
    try {
      // Past the first poll (and more): then an instance appears, and the watching process reports it.
      await new Promise((res) => setTimeout(res, kind === 'consul' ? 6000 : 500));
      await writer.discovery.register({ id: 'late', service, host: '127.0.0.1', port: 9200 });
      await waitFor(() => r.out().includes('change late'), {
        timeoutMs: 8000,
        message: `the watching process did not follow (output: ${JSON.stringify(r.out())}, stderr: ${r.err()})`,
      });
      expect(r.child.exitCode).toBe(null);
    } finally {
      await writer.close();
    }
  });
});
