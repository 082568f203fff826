import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type Backend, TYPES } from '@rollcall/core';
import { eventually, startConsul, startEtcd, uniqueService } from '@rollcall/testkit';
import { createContainer, loadConfig } from 'rollcall';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { consulServer, etcdServer, type RealServer } from './servers.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'lock-child.mjs');

interface Line {
  event: string;
  token?: string;
  at?: number;
  intervals?: { token: string; start: number; end: number }[];
}

/** A child process whose stdout JSON lines are collected as they come. */
class Child {
  readonly lines: Line[] = [];
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;
  stderr = '';
  constructor(args: string[], env: Record<string, string>) {
    this.proc = spawn(process.execPath, [child, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => this.lines.push(JSON.parse(l) as Line));
    this.proc.stderr!.on('data', (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
  }
  line(event: string, timeoutMs = 30_000): Promise<Line> {
    return eventually(() => this.lines.find((l) => l.event === event), {
      timeoutMs,
      message: `no '${event}' from child; stderr: ${this.stderr}`,
    });
  }
  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }
}

type Server = RealServer & { ttl: number; graceMs: number };

const backends: [string, () => Promise<Server>][] = [
  [
    'etcd',
    async () => {
      return { ...etcdServer(await startEtcd({ name: 'locks-e2e' })), ttl: 2, graceMs: 2000 };
    },
  ],
  [
    'consul',
    async () => {
      // Consul may keep an expired session up to 2 x its TTL (10 s minimum) before invalidating it.
      return { ...consulServer(await startConsul()), ttl: 10, graceMs: 12_000 };
    },
  ],
];

describe.each(backends)('%s: locks across processes', (_name, start) => {
  let server: Server;
  const children: Child[] = [];
  const clients: Backend[] = [];
  const spawnChild = (...args: string[]) => {
    const c = new Child(args, { ...server.env, ROLLCALL_ENV: 'test' });
    children.push(c);
    return c;
  };
  const client = () => {
    const backend = createContainer(loadConfig({ environment: 'test', env: server.env })).get<Backend>(
      TYPES.Backend,
    );
    clients.push(backend);
    return backend;
  };

  beforeAll(async () => {
    server = await start();
  });
  afterEach(async () => {
    for (const c of children.splice(0)) c.signal('SIGKILL');
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('10 clients in 3 processes: 1,000 increments under withLock, exact, no overlap, tokens strictly increasing', async () => {
    const lock = uniqueService('counter');
    const key = `rc-test/${lock}`;
    const procs = [
      spawnChild('count', lock, key, '4', '100', String(server.ttl)),
      spawnChild('count', lock, key, '3', '100', String(server.ttl)),
      spawnChild('count', lock, key, '3', '100', String(server.ttl)),
    ];
    const codes = await Promise.all(procs.map((p) => p.exited));
    expect(codes, procs.map((p) => p.stderr).join('\n')).toEqual([0, 0, 0]);
    const intervals = procs
      .flatMap((p) => p.lines.find((l) => l.event === 'done')!.intervals!)
      .sort((a, b) => a.start - b.start);
    expect(intervals).toHaveLength(1000);
    let overlaps = 0;
    for (let i = 1; i < intervals.length; i++) {
      if (intervals[i]!.start < intervals[i - 1]!.end) overlaps += 1;
      expect(BigInt(intervals[i]!.token) > BigInt(intervals[i - 1]!.token), `token at ${i}`).toBe(true);
    }
    expect(overlaps).toBe(0);
    expect(await client().kv.get(key)).toBe('1000');
  });

  it('the holder process is killed with SIGKILL: the next waiter gets the lock within ttl + grace', async () => {
    const lock = uniqueService('killed');
    const holder = spawnChild('hold', lock, String(server.ttl));
    const held = await holder.line('held');
    const waiter = client().locks.acquire(lock, { ttlSeconds: server.ttl });
    holder.signal('SIGKILL');
    const killedAt = Date.now();
    const lease = await waiter;
    expect(Date.now() - killedAt).toBeLessThanOrEqual(server.ttl * 1000 + server.graceMs);
    expect(lease.fencingToken > BigInt(held.token!)).toBe(true);
    await lease.release();
  });

  it('pausing the holder longer than its ttl aborts its signal, and the new holder has a greater token', async () => {
    const lock = uniqueService('paused');
    const holder = spawnChild('hold', lock, String(server.ttl));
    const held = await holder.line('held');
    const waiter = client().locks.acquire(lock, { ttlSeconds: server.ttl });
    holder.signal('SIGSTOP');
    const lease = await waiter;
    holder.signal('SIGCONT');
    expect(lease.fencingToken > BigInt(held.token!)).toBe(true);
    await holder.line('lost', server.ttl * 1000 + server.graceMs);
    await lease.release();
  });

  it('election: three candidates, the leader is killed, a new leader within ttl + grace, leader() agrees everywhere', async () => {
    const election = uniqueService('election');
    const first = spawnChild('campaign', election, 'c0', String(server.ttl));
    await first.line('leading');
    const others = [
      spawnChild('campaign', election, 'c1', String(server.ttl)),
      spawnChild('campaign', election, 'c2', String(server.ttl)),
    ];
    const observers = [client(), client(), client()];
    for (const o of observers) expect(await o.locks.leader(election)).toBe('c0');
    first.signal('SIGKILL');
    const killedAt = Date.now();
    const winner = await eventually(() => others.find((o) => o.lines.some((l) => l.event === 'leading')), {
      timeoutMs: server.ttl * 1000 + server.graceMs,
    });
    expect(Date.now() - killedAt).toBeLessThanOrEqual(server.ttl * 1000 + server.graceMs);
    const value = winner === others[0] ? 'c1' : 'c2';
    for (const o of observers)
      await eventually(async () => (await o.locks.leader(election)) === value, { timeoutMs: 2000 });
  });
});
