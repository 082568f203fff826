import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type ConsulAgent,
  type EtcdServer,
  eventually,
  startConsul,
  startEtcd,
  uniqueService,
} from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The move the project exists for, end to end: a fleet of provider processes registered through
// the migrating backend, consumer processes calling them in a loop, and an operator walking every
// phase with the real `rollcall migrate phase` command, then rolling back. No call may fail and no
// consumer may ever be given fewer instances than are alive.
const here = dirname(fileURLToPath(import.meta.url));
const child = join(here, 'fixtures', 'migration-child.mjs');
const rollcallBin = join(here, '..', 'packages', 'rollcall', 'bin', 'rollcall.js');
const run = promisify(execFile);

interface Line {
  event: string;
  phase?: string;
  calls?: number;
  failures?: number;
  fewest?: number;
  events?: number;
  errors?: string[];
}

class Child {
  readonly lines: Line[] = [];
  readonly exited: Promise<number | null>;
  stderr = '';
  private readonly proc: ChildProcess;
  constructor(args: string[], cwd: string) {
    this.proc = spawn(process.execPath, [child, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => this.lines.push(JSON.parse(l) as Line));
    this.proc.stderr!.on('data', (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
  }
  line(predicate: (l: Line) => boolean, timeoutMs = 20_000): Promise<Line> {
    return eventually(() => this.lines.find(predicate), {
      timeoutMs,
      message: `no such line from child; lines ${JSON.stringify(this.lines)}; stderr: ${this.stderr}`,
    });
  }
  /** The phases this process took, in order. */
  get phases(): string[] {
    return this.lines.filter((l) => l.event === 'phase').map((l) => l.phase!);
  }
  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.proc.kill(signal);
  }
}

let agent: ConsulAgent;
let etcd: EtcdServer;
let dir: string;
const children: Child[] = [];

beforeAll(async () => {
  [agent, etcd] = await Promise.all([startConsul(), startEtcd({ tmpDir: '/dev/shm' })]);
  dir = mkdtempSync(join(tmpdir(), 'rollcall-migration-e2e-'));
  writeFileSync(
    join(dir, 'rollcall.config.json'),
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
  for (const c of children) c.stop('SIGKILL');
  await Promise.allSettled([agent?.stop(), etcd?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the real CLI, as an operator would. */
async function migrate(...args: string[]): Promise<string[]> {
  const { stdout } = await run(process.execPath, [rollcallBin, '--env', 'test', 'migrate', ...args], {
    cwd: dir,
    env: { ...process.env, ROLLCALL_ENV: 'test' },
  });
  return stdout.trimEnd().split('\n');
}

/** Ids of the passing instances of `service`, straight from the Consul agent. */
async function inConsul(service: string): Promise<string[]> {
  const response = await fetch(`${agent.url}/v1/health/service/${service}?passing`);
  const entries = (await response.json()) as { Service: { Meta: Record<string, string> } }[];
  return entries.map((e) => e.Service.Meta.rollcall_id ?? '?').sort();
}

describe('moving a live fleet from Consul to etcd', () => {
  it('walks every phase to done and rolls back from cutover: no failed call, no short list, everyone follows', async () => {
    const service = uniqueService('orders');
    const spawnChild = (...args: string[]) => {
      const c = new Child(args, dir);
      children.push(c);
      return c;
    };
    const providers = ['p1', 'p2', 'p3'].map((id) => spawnChild('provider', service, id));
    for (const p of providers) await p.line((l) => l.event === 'ready');
    expect(await inConsul(service)).toEqual(['p1', 'p2', 'p3']);
    const consumers = [spawnChild('consumer', service, '3'), spawnChild('consumer', service, '3')];
    for (const c of consumers) await c.line((l) => l.event === 'ready');
    const everyone = [...providers, ...consumers];

    const walk = ['shadow', 'dual-read', 'cutover', 'done', 'cutover', 'dual-read'];
    for (const phase of walk) {
      const out = await migrate('phase', phase);
      expect(out[1], `${phase}: ${out.join('\n')}`).toMatch(
        new RegExp(`^fleet: all 5 client\\(s\\) follow '${phase}' \\(\\d+ ms after the write\\)$`),
      );
      for (const c of everyone) expect(c.phases.at(-1), phase).toBe(phase);
      if (phase === 'done') {
        // Deregistered from Consul at once, still served from etcd.
        expect(await inConsul(service)).toEqual([]);
        const status = await migrate('status', service);
        expect(status[2]).toMatch(new RegExp(`^${service} +0 +3 +- +p1,p2,p3 +ok$`));
      }
    }
    // Rolled back: registered in Consul again.
    await eventually(async () => (await inConsul(service)).length === 3);
    for (const c of everyone) expect(c.phases).toEqual(walk);

    for (const c of consumers) c.stop();
    for (const c of consumers) {
      const stats = await c.line((l) => l.event === 'stats');
      expect(stats.failures, JSON.stringify(stats.errors)).toBe(0);
      expect(stats.calls).toBeGreaterThan(50);
      expect(stats.fewest).toBe(3);
    }
  });
});
