import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '@rollcall/core';
import { uniqueService, waitFor } from '@rollcall/testkit';
import { expect } from 'vitest';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'soak-worker.mjs');

/** One worker process and what it printed. */
class Worker {
  readonly child: ChildProcess;
  lines: string[] = [];
  private buffer = '';
  constructor(
    readonly role: string,
    readonly name: string,
    args: string[],
  ) {
    this.child = spawn(process.execPath, [fixture, role, ...args, name], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.buffer += d.toString();
      const parts = this.buffer.split('\n');
      this.buffer = parts.pop() ?? '';
      this.lines.push(...parts);
    });
  }
  send(command: string): void {
    this.child.stdin?.write(`${command}\n`);
  }
  async report(): Promise<{ ids: string[]; events: number }> {
    const before = this.lines.length;
    this.send('report');
    await waitFor(() => this.lines.slice(before).some((l) => l.startsWith('report ')), {
      timeoutMs: 5000,
      message: `${this.name} did not report`,
    });
    const line = this.lines.slice(before).find((l) => l.startsWith('report ')) as string;
    return JSON.parse(line.slice('report '.length));
  }
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

export interface SoakOptions {
  backend: 'etcd' | 'consul';
  address: string;
  /** How long the churn runs. */
  churnMs: number;
  /** From the end of the churn until every watcher must agree with the registry. */
  settleMs: number;
  /** A client to read the truth with. */
  observer: Backend;
}

/**
 * Issue 9's soak: an anchor process, 4 churning processes (registering, deregistering, and being
 * SIGKILLed and replaced at random), and 2 watcher processes folding every event. Checks that no
 * event removes an unknown instance or adds a duplicate, that no watcher ever shows an empty list
 * (the anchor is alive throughout), and that at the end every watcher's view equals the registry.
 */
export async function soak(options: SoakOptions): Promise<{ events: number; kills: number }> {
  const service = uniqueService('soak');
  const args = [options.backend, options.address, service];
  const workers: Worker[] = [];
  const start = async (role: string, name: string) => {
    const w = new Worker(role, name, args);
    workers.push(w);
    await waitFor(() => w.lines.includes('ready'), { timeoutMs: 15_000, message: `${name} not ready` });
    return w;
  };
  let kills = 0;
  try {
    await start('anchor', 'anchor');
    const watchers = [await start('watcher', 'w1'), await start('watcher', 'w2')];
    let churners = await Promise.all([1, 2, 3, 4].map((n) => start('churn', `c${n}i0`)));
    const until = Date.now() + options.churnMs;
    let incarnation = 0;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 2000 + Math.random() * 3000));
      // A process dies without closing: its instances must leave every watcher by their ttl.
      const victim = churners[Math.floor(Math.random() * churners.length)] as Worker;
      victim.child.kill('SIGKILL');
      kills += 1;
      incarnation += 1;
      const replacement = await start('churn', `${victim.name.split('i')[0]}i${incarnation}`);
      churners = churners.map((c) => (c === victim ? replacement : c));
    }
    for (const c of churners) c.send('freeze');
    const truth = async () => {
      const ids = new Set<string>(['anchor']);
      for (const c of churners) for (const id of (await c.report()).ids) ids.add(id);
      return [...ids].sort();
    };
    let expected: string[] = [];
    await waitFor(
      async () => {
        expected = await truth();
        const registry = (await options.observer.discovery.getInstances(service)).instances.map((i) => i.id);
        if (registry.join() !== expected.join()) return false;
        for (const w of watchers) if ((await w.report()).ids.join() !== expected.join()) return false;
        return true;
      },
      {
        timeoutMs: options.settleMs,
        intervalMs: 500,
        message: 'the watchers never agreed with the registry',
      },
    );
    let events = 0;
    for (const w of watchers) events += (await w.report()).events;
    const violations = workers.flatMap((w) =>
      w.lines.filter((l) => l.startsWith('VIOLATION')).map((l) => `${w.name}: ${l}`),
    );
    expect(violations).toEqual([]);
    for (const w of [...watchers]) expect(w.alive, `${w.name} died`).toBe(true);
    expect(expected.length).toBeGreaterThan(1);
    return { events, kills };
  } finally {
    for (const w of workers) w.child.kill('SIGKILL');
  }
}
