import type { Backend, DiscoveryEvent } from '@rollcall/core';
import { eventually, Recorder, uniqueService } from '@rollcall/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATION_PHASES, type MigratingBackend, type MigrationPhase } from '../src/index.js';
import { bringBack, consulOn, migratingOn, serversForFile, takeDown } from './real-servers.js';

const servers = serversForFile();
const clients: Backend[] = [];
afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
});

const ids = (e: DiscoveryEvent) => e.snapshot.instances.map((i) => i.id).join();

/** One group per phase, side by side on the same servers: each follows its own phase key. */
interface Group {
  phase: MigrationPhase;
  service: string;
  watcher: MigratingBackend;
  watch: Recorder<DiscoveryEvent>;
}

describe('a registry outage in every phase, Consul -> etcd', () => {
  const groups: Group[] = [];

  it('setup: every phase has two instances registered and a watcher', async () => {
    const s = await servers();
    for (const phase of MIGRATION_PHASES) {
      const phaseKey = `test/outages/${phase}`;
      const registrar = migratingOn(s, phase, { phaseKey });
      const watcher = migratingOn(s, phase, { phaseKey });
      clients.push(registrar, watcher);
      const service = uniqueService(`out-${phase}`);
      await registrar.discovery.register(
        { id: 'i1', service, host: '127.0.0.1', port: 9001 },
        { ttlSeconds: 10 },
      );
      await registrar.discovery.register(
        { id: 'i2', service, host: '127.0.0.1', port: 9002 },
        { ttlSeconds: 10 },
      );
      const watch = new Recorder(watcher.discovery.watch(service));
      groups.push({ phase, service, watcher, watch });
    }
    for (const g of groups) await g.watch.next((e) => ids(e) === 'i1,i2', { timeoutMs: 6000 });
  });

  for (const [side, reads] of [
    ['from', ['dual-write', 'shadow', 'dual-read']],
    ['to', ['dual-read', 'cutover', 'done']],
  ] as const) {
    it(`${side === 'from' ? 'Consul' : 'etcd'} down: phases reading it serve a stale list, never an empty one; the others notice nothing; all recover`, async () => {
      const s = await servers();
      const marks = groups.map((g) => g.watch.events.length);
      await takeDown(s, side);
      try {
        for (const [i, g] of groups.entries()) {
          if (!(reads as readonly string[]).includes(g.phase)) continue;
          await g.watch.next((e) => e.type === 'stale', {
            from: marks[i],
            timeoutMs: 15_000,
            message: `${g.phase}: no stale`,
          });
          const snapshot = await g.watcher.discovery.getInstances(g.service);
          expect(snapshot.stale, g.phase).toBe(true);
          expect(
            snapshot.instances.map((x) => x.id),
            g.phase,
          ).toEqual(['i1', 'i2']);
        }
      } finally {
        await bringBack(s, side);
      }
      for (const [i, g] of groups.entries()) {
        if ((reads as readonly string[]).includes(g.phase))
          await g.watch.next((e) => e.type !== 'stale' && !e.snapshot.stale && ids(e) === 'i1,i2', {
            from: marks[i],
            timeoutMs: 25_000,
            message: `${g.phase}: no recovery`,
          });
        else expect(g.watch.events.slice(marks[i]), `${g.phase} must not notice`).toEqual([]);
      }
      // Never an empty list, nor one missing a live instance, in any phase.
      for (const g of groups) for (const e of g.watch.events) expect(ids(e), g.phase).toBe('i1,i2');
      // Consul restarted empty: the registrations are back there by themselves.
      if (side === 'from') {
        const fresh = consulOn(s);
        clients.push(fresh);
        for (const g of groups.filter((x) => x.phase !== 'done'))
          await eventually(
            async () => (await fresh.discovery.getInstances(g.service)).instances.length === 2,
            {
              timeoutMs: 15_000,
            },
          );
      }
    });
  }
});

describe('locks across phases on real Consul and etcd', () => {
  const pairs: [MigrationPhase | 'plain consul', MigrationPhase][] = [
    ['plain consul', 'dual-write'],
    ['dual-write', 'shadow'],
    ['dual-read', 'cutover'],
    ['cutover', 'done'],
  ];
  it.each(pairs)('%s and %s clients exclude each other', async (left, right) => {
    const s = await servers();
    const make = (p: MigrationPhase | 'plain consul', n: number): Backend => {
      const c = p === 'plain consul' ? consulOn(s) : migratingOn(s, p, { phaseKey: `test/locks/${p}-${n}` });
      clients.push(c);
      return c;
    };
    const workers = [make(left, 1), make(right, 1), make(left, 2), make(right, 2)];
    const lock = uniqueService('across');
    let active = 0;
    let overlaps = 0;
    const tokens: bigint[] = [];
    await Promise.all(
      workers.map(async (w) => {
        for (let i = 0; i < 8; i++) {
          await w.locks.withLock(
            lock,
            async (lease) => {
              active += 1;
              if (active > 1) overlaps += 1;
              if (w.name === 'migrating') tokens.push(lease.fencingToken);
              await new Promise((r) => setTimeout(r, 2));
              active -= 1;
            },
            { ttlSeconds: 10 },
          );
        }
      }),
    );
    expect(overlaps).toBe(0);
    // Migrating holders' tokens come from etcd, one counter for every phase.
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]! > tokens[i - 1]!, `token ${i}`).toBe(true);
  });
});
