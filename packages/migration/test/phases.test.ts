import diagnostics from 'node:diagnostics_channel';
import {
  ConfigError,
  ConflictError,
  type DiscoveryEvent,
  type PhaseMessage,
  ROLLCALL_CHANNELS,
  type ServiceInstance,
  ValidationError,
} from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';
import { eventually, Recorder, recordingLogger, uniqueService } from '@rollcall/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createMigratingBackend,
  MIGRATION_PHASES,
  type MigratingBackend,
  MigrationBlockedError,
  type MigrationPhase,
  PHASE_RULES,
} from '../src/index.js';
import { MemoryPair } from './harness.js';

const instance = (service: string, id: string, port = 8000): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port,
});
const ids = (e: DiscoveryEvent) => e.snapshot.instances.map((i) => i.id);

const pairs: MemoryPair[] = [];
const clients: { close(): Promise<void> }[] = [];
function setup(options: { manualClock?: boolean } = {}) {
  const pair = new MemoryPair(options);
  pairs.push(pair);
  const client = (phase: MigrationPhase, extra: Parameters<MemoryPair['client']>[1] = {}) => {
    const c = pair.client(phase, extra);
    clients.push(c);
    return c;
  };
  const plain = (side: 'from' | 'to') => {
    const c = pair.plain(side);
    clients.push(c);
    return c;
  };
  return { pair, client, plain };
}
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  for (const p of pairs.splice(0)) p.dispose();
});

describe('the phase table', () => {
  it('phases that share a rule share it exactly (the real-server files run each slow fault once)', () => {
    // consul-etcd-*.test.ts run the slow faults in one phase of those sharing a rule (Consul outages
    // in dual-write, lock faults in dual-write and done); if one of these changes, revisit them.
    expect(PHASE_RULES.shadow.kvRead).toBe(PHASE_RULES['dual-write'].kvRead);
    expect(PHASE_RULES.shadow.kvWrite).toEqual(PHASE_RULES['dual-write'].kvWrite);
    expect(PHASE_RULES.shadow.discovery).toBe(PHASE_RULES['dual-write'].discovery);
    for (const phase of ['shadow', 'dual-read', 'cutover'] as const)
      expect(PHASE_RULES[phase].locks, phase).toEqual(PHASE_RULES['dual-write'].locks);
    expect(PHASE_RULES['dual-write'].locks).toEqual(['from', 'to']);
    expect(PHASE_RULES.done.locks).toEqual(['to']);
  });
});

describe('options and bad input', () => {
  it('refuses bad options with one ConfigError naming every field', () => {
    const { pair } = setup();
    const from = pair.plain('from');
    const error = (() => {
      try {
        createMigratingBackend({
          from,
          to: from,
          phase: 'sideways' as MigrationPhase,
          phaseKey: '../escape',
          threshold: 0,
        });
      } catch (e) {
        return e;
      }
    })() as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.issues.map((i) => i.path).sort()).toEqual(['phase', 'phaseKey', 'threshold', 'to']);
    expect(error.message).toContain('must be another backend than from');
    expect(() => createMigratingBackend({ from, to: {} as never, phase: 'shadow' })).toThrow(
      /to: must be a Backend/,
    );
  });

  it('setPhase refuses an unknown phase with a ValidationError before writing anything', async () => {
    const { client, pair } = setup();
    const a = client('dual-write');
    const error = await a.setPhase('sideways' as MigrationPhase).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe('phase');
    expect(await pair.plain('to').kv.get('rollcall/migration/phase')).toBeUndefined();
  });

  it('a phase key holding garbage keeps the phase and logs why; a valid value moves, a deletion stays', async () => {
    const { client, plain } = setup();
    const to = plain('to');
    await to.kv.put('rollcall/migration/phase', 'cut over please');
    const logger = recordingLogger();
    const a = client('shadow', { logger });
    await a.ready();
    expect(a.phase).toBe('shadow');
    expect(logger.lines.join('\n')).toMatch(/holds "cut over please", not a phase .*staying in 'shadow'/);
    await to.kv.put('rollcall/migration/phase', ' cutover\n');
    await eventually(() => a.phase === 'cutover');
    await to.kv.put('rollcall/migration/phase', '42');
    await to.kv.delete('rollcall/migration/phase');
    await eventually(() => logger.lines.some((l) => l.includes('was deleted')));
    expect(a.phase).toBe('cutover');
    expect(logger.lines.some((l) => l.includes('holds "42"'))).toBe(true);
  });
});

describe('phase changes', () => {
  it('each client publishes its phase changes on the diagnostics channel', async () => {
    const seen: PhaseMessage[] = [];
    const onMessage = (m: unknown) => void seen.push(m as PhaseMessage);
    diagnostics.subscribe(ROLLCALL_CHANNELS.migrationPhase, onMessage);
    try {
      const { client } = setup();
      const [a, b] = [client('dual-write'), client('dual-write')];
      await Promise.all([a.ready(), b.ready()]);
      await a.setPhase('shadow');
      await eventually(() => seen.length === 2);
      expect(seen).toEqual([
        { phase: 'shadow', previous: 'dual-write' },
        { phase: 'shadow', previous: 'dual-write' },
      ]);
    } finally {
      diagnostics.unsubscribe(ROLLCALL_CHANNELS.migrationPhase, onMessage);
    }
  });

  it('setPhase reaches every client of the fleet with phase events, and the fleet list follows', async () => {
    const { client } = setup();
    const [a, b, c] = [client('dual-write'), client('dual-write'), client('dual-write')];
    const seen: string[] = [];
    b.on('phase', (next, previous) => seen.push(`${previous}->${next}`));
    await Promise.all([a.ready(), b.ready(), c.ready()]);
    await a.setPhase('shadow');
    expect(a.phase).toBe('shadow');
    await eventually(() => b.phase === 'shadow' && c.phase === 'shadow');
    expect(seen).toEqual(['dual-write->shadow']);
    await eventually(async () => {
      const fleet = await a.fleet();
      return fleet.length === 3 && fleet.every((m) => m.phase === 'shadow');
    });
    const fleet = await a.fleet();
    expect(fleet.map((m) => m.client).sort()).toEqual([a.clientId, b.clientId, c.clientId].sort());
    await b.close();
    await eventually(async () => (await a.fleet()).length === 2);
  });

  it('a watcher keeps one watch through every phase and back: no sync after the first, never fewer than alive', async () => {
    const { client, plain } = setup();
    const service = uniqueService('walk');
    const fleet = [client('dual-write'), client('dual-write')];
    await fleet[0]!.discovery.register(instance(service, 'both-1'));
    await fleet[1]!.discovery.register(instance(service, 'both-2'));
    // Alive in one registry only: a process that never migrated, and one registered in `to` only.
    await plain('from').discovery.register(instance(service, 'from-only'));
    await plain('to').discovery.register(instance(service, 'to-only'));
    const watcher = client('dual-write');
    const watch = new Recorder(watcher.discovery.watch(service));
    await watch.next((e) => e.type === 'sync');
    const walk: MigrationPhase[] = [
      'shadow',
      'dual-read',
      'cutover',
      'done',
      'cutover',
      'dual-read',
      'shadow',
      'dual-write',
    ];
    const expected: Record<MigrationPhase, string> = {
      'dual-write': 'both-1,both-2,from-only',
      shadow: 'both-1,both-2,from-only',
      'dual-read': 'both-1,both-2,from-only,to-only',
      cutover: 'both-1,both-2,to-only',
      done: 'both-1,both-2,to-only',
    };
    const followed: Record<MigrationPhase, string> = {
      'dual-write': 'from',
      shadow: 'from,to',
      'dual-read': 'from,to',
      cutover: 'to',
      done: 'to',
    };
    for (const phase of walk) {
      await fleet[0]!.setPhase(phase, { force: true });
      await eventually(
        async () =>
          (await watcher.discovery.getInstances(service)).instances.map((i) => i.id).join() ===
          expected[phase],
        {
          message: `list in ${phase}`,
        },
      );
      // Only the registries the phase reads (and `shadow` compares) are followed.
      await eventually(
        () => watcher.discovery.view(service)!.followedSides.sort().join() === followed[phase],
        {
          message: `followed in ${phase}`,
        },
      );
    }
    expect(watch.events.filter((e) => e.type === 'sync')).toHaveLength(1);
    expect(watch.events.filter((e) => e.type === 'stale')).toHaveLength(0);
    for (const e of watch.events) {
      expect(ids(e)).toEqual(expect.arrayContaining(['both-1', 'both-2']));
      expect(ids(e).length).toBeGreaterThanOrEqual(3);
    }
    // One event per switch that changed the list, none for switches between agreeing lists.
    const changes = watch.events
      .filter((e) => e.type === 'change')
      .map((e) =>
        e.type === 'change'
          ? [...e.added.map((i) => `+${i.id}`), ...e.removed.map((i) => `-${i.id}`)].join()
          : '',
      );
    expect(changes).toEqual(['+to-only', '-from-only', '+from-only', '-to-only']);
  });

  it('moving to done deregisters from `from` at once; moving back registers there again', async () => {
    const { client, plain } = setup();
    const service = uniqueService('done');
    const a = client('cutover');
    const registration = await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 30 });
    const onFrom = plain('from');
    expect((await onFrom.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['i1']);
    const events: string[] = [];
    registration.on('lost', () => events.push('lost'));
    registration.on('restored', () => events.push('restored'));
    await a.setPhase('done');
    await eventually(
      async () => (await plain('from').discovery.getInstances(service)).instances.length === 0,
    );
    expect((await plain('to').discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['i1']);
    expect(registration.state).toBe('active');
    await a.setPhase('dual-read');
    await eventually(
      async () => (await plain('from').discovery.getInstances(service)).instances.length === 1,
    );
    expect(registration.state).toBe('active');
    expect(events).toEqual([]);
    await registration.deregister();
    expect((await plain('from').discovery.getInstances(service)).instances).toEqual([]);
    expect((await plain('to').discovery.getInstances(service)).instances).toEqual([]);
  });

  it('joining a registry that is down is a loss, retried until it lands, through quick moves back and forth', async () => {
    const { client, pair, plain } = setup();
    const service = uniqueService('join');
    const a = client('done', { backoff: { initialMs: 10, maxMs: 50 } } as never);
    const registration = await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 30 });
    const events: string[] = [];
    registration.on('lost', () => events.push('lost'));
    registration.on('restored', () => events.push('restored'));
    pair.outage(['from']);
    await a.setPhase('cutover');
    await eventually(() => events.join() === 'lost');
    expect(registration.state).toBe('recovering');
    // The gate cannot read `from` now: only a forced move passes.
    await expect(a.setPhase('done')).rejects.toThrow(/store outage/);
    await a.setPhase('done', { force: true });
    await eventually(() => events.join() === 'lost,restored');
    await a.setPhase('cutover');
    await eventually(() => events.join() === 'lost,restored,lost');
    pair.restore(['from']);
    await eventually(() => events.join() === 'lost,restored,lost,restored');
    expect(registration.state).toBe('active');
    expect((await plain('from').discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['i1']);
  });

  it('a registration lost in one registry is lost, then restored; the other keeps it meanwhile', async () => {
    const { client, pair, plain } = setup({ manualClock: true });
    const service = uniqueService('lost');
    const a = client('dual-read');
    const registration = await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 2 });
    const events: string[] = [];
    registration.on('lost', (e) => events.push(`lost:${e instanceof Error}`));
    registration.on('restored', () => events.push('restored'));
    const watcher = client('dual-read');
    const watch = new Recorder(watcher.discovery.watch(service));
    await watch.next((e) => ids(e).join() === 'i1');
    pair.outage(['from']);
    await pair.elapse(5000);
    expect((await plain('to').discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['i1']);
    pair.restore(['from']);
    await eventually(() => events.join() === 'lost:true,restored', { message: `events ${events}` });
    expect(registration.state).toBe('active');
    for (const e of watch.events) expect(ids(e)).toEqual(['i1']);
  });
});

describe('two processes using one id', () => {
  it('at another address: the second is refused with a ConflictError and leaves nothing behind; the first is untouched', async () => {
    const { client, plain } = setup();
    const service = uniqueService('twin');
    const first = client('dual-write');
    const held = await first.discovery.register(instance(service, 'i1', 8001));
    const lost: unknown[] = [];
    held.on('lost', (e) => lost.push(e));
    const second = client('dual-write');
    const refused = await second.discovery.register(instance(service, 'i1', 8002)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConflictError);
    expect((refused as ConflictError).code).toBe('ERR_CONFLICT');
    // The id is free again for the second process: nothing of its attempt stayed in either registry.
    expect(second.discovery.activeRegistrations).toEqual([]);
    for (const side of ['from', 'to'] as const)
      expect((await plain(side).discovery.getInstances(service)).instances).toEqual([
        instance(service, 'i1', 8001),
      ]);
    expect(held.state).toBe('active');
    expect(lost).toEqual([]);
  });
});

describe('registry outages in every phase', () => {
  it.each(MIGRATION_PHASES)(
    '%s: a registry down gives a stale list, never an empty one, and recovers',
    async (phase) => {
      const { client, pair } = setup();
      const service = uniqueService('down');
      const a = client(phase);
      await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 30 });
      await a.discovery.register(instance(service, 'i2'), { ttlSeconds: 30 });
      const watcher = client(phase);
      const watch = new Recorder(watcher.discovery.watch(service));
      await watch.next((e) => ids(e).join() === 'i1,i2');
      for (const side of ['from', 'to'] as const) {
        const readsIt =
          side === 'from'
            ? ['dual-write', 'shadow', 'dual-read'].includes(phase)
            : phase !== 'dual-write' && phase !== 'shadow';
        const from = watch.events.length;
        pair.outage([side]);
        if (readsIt) await watch.next((e) => e.type === 'stale', { from });
        const during = await watcher.discovery.getInstances(service);
        expect(
          during.instances.map((i) => i.id),
          `${side} down`,
        ).toEqual(['i1', 'i2']);
        expect(during.stale, `${side} down: stale`).toBe(readsIt);
        pair.restore([side]);
        await eventually(async () => !(await watcher.discovery.getInstances(service)).stale);
        if (readsIt) expect(watch.events.slice(from).map((e) => e.type)).toEqual(['stale', 'sync']);
        else expect(watch.events.slice(from)).toEqual([]);
      }
      for (const e of watch.events) expect(ids(e)).toEqual(['i1', 'i2']);
    },
  );
});

describe('the gate', () => {
  it('compare gives counts, ids on one side only and verdicts; threshold applies', async () => {
    const { client, plain } = setup();
    const [full, partial, gone] = [uniqueService('full'), uniqueService('partial'), uniqueService('gone')];
    const a = client('dual-write');
    await a.discovery.register(instance(full, 'f1'));
    await a.discovery.register(instance(partial, 'p1'));
    await plain('from').discovery.register(instance(partial, 'p2'));
    await plain('from').discovery.register(instance(gone, 'g1'));
    await plain('to').discovery.register(instance(full, 'extra'));
    const mine = (await a.compare()).filter((c) => [full, partial, gone].includes(c.service));
    expect(mine).toEqual(
      [
        { service: full, from: 1, to: 2, onlyInFrom: [], onlyInTo: ['extra'], verdict: 'ok', stale: false },
        {
          service: partial,
          from: 2,
          to: 1,
          onlyInFrom: ['p2'],
          onlyInTo: [],
          verdict: 'blocked',
          stale: false,
        },
        { service: gone, from: 1, to: 0, onlyInFrom: ['g1'], onlyInTo: [], verdict: 'blocked', stale: false },
      ].sort((x, y) => (x.service < y.service ? -1 : 1)),
    );
    const lenient = client('dual-write', { threshold: 0.5 });
    expect((await lenient.compare(partial))[0]!.verdict).toBe('ok');
    expect((await lenient.compare(gone))[0]!.verdict).toBe('blocked');
    await expect(a.compare('Bad/Name')).rejects.toBeInstanceOf(ValidationError);
  });

  it('a forward move past a blocked service is refused unless forced (logged); backward moves always pass', async () => {
    const { client, plain, pair } = setup();
    const service = uniqueService('blocked');
    const logger = recordingLogger();
    const a = client('shadow', { logger });
    await a.discovery.register(instance(service, 'i1'));
    await plain('from').discovery.register(instance(service, 'legacy-1'));
    const error = (await a.setPhase('dual-read').catch((e: unknown) => e)) as MigrationBlockedError;
    expect(error).toBeInstanceOf(MigrationBlockedError);
    expect(error.code).toBe('MIGRATION_BLOCKED');
    expect(error.phase).toBe('dual-read');
    expect(error.blocked.map((c) => [c.service, c.from, c.to])).toEqual([[service, 2, 1]]);
    expect(error.message).toContain(`${service} (from 2, to 1)`);
    expect(a.phase).toBe('shadow');
    expect(await pair.plain('to').kv.get('rollcall/migration/phase')).toBeUndefined();
    await a.setPhase('cutover', { force: true });
    expect(a.phase).toBe('cutover');
    expect(logger.lines.join('\n')).toMatch(/warn forced move to 'cutover' past 1 blocked service/);
    await a.setPhase('dual-write');
    expect(a.phase).toBe('dual-write');
    // Moves not into a reading phase are not gated.
    await a.setPhase('shadow');
    expect(a.phase).toBe('shadow');
  });
});

describe('shadow', () => {
  it('reports differences with their start, warns once they outlive the grace, and notes their end', async () => {
    const { client, plain } = setup();
    const service = uniqueService('shadow');
    const logger = recordingLogger();
    const a = client('shadow', { logger, shadowGraceMs: 100 } as never);
    await a.discovery.register(instance(service, 'both'));
    const legacy = await plain('from').discovery.register(instance(service, 'legacy'));
    const watch = new Recorder(a.discovery.watch(service));
    await watch.next((e) => ids(e).join() === 'both,legacy');
    await eventually(() => a.shadowReport(service).length === 1);
    const [d] = a.shadowReport(service);
    expect(d).toMatchObject({ service, id: 'legacy', onlyIn: 'from' });
    expect(d!.since).toBeLessThanOrEqual(Date.now());
    await eventually(() =>
      logger.lines.some((l) =>
        l.startsWith(`warn shadow: '${service}' has 1 instance(s) only in memory (from)`),
      ),
    );
    await legacy.deregister();
    await eventually(() => a.shadowReport(service).length === 0);
    expect(
      logger.lines.some((l) => l.includes(`'${service}' instance 'legacy' is in both registries again`)),
    ).toBe(true);
  });
});

describe('key/value by phase', () => {
  it('writes both until done, reads by phase, and a prefix watch follows the phase with changes only', async () => {
    const { client, plain } = setup();
    const p = `configs/${uniqueService('kv')}/`;
    const [onFrom, onTo] = [plain('from'), plain('to')];
    await onFrom.kv.put(`${p}only-from`, 'f');
    await onFrom.kv.put(`${p}both`, 'old');
    await onTo.kv.put(`${p}both`, 'new');
    const a = client('dual-write');
    const watch = new Recorder(a.kv.watchPrefix(p));
    await watch.next((e) => e.type === 'sync');
    expect(await a.kv.get(`${p}both`)).toBe('old');
    await a.kv.put(`${p}written`, 'w1');
    expect(await onFrom.kv.get(`${p}written`)).toBe('w1');
    expect(await onTo.kv.get(`${p}written`)).toBe('w1');
    await a.setPhase('dual-read', { force: true });
    expect(await a.kv.get(`${p}both`)).toBe('new');
    expect(await a.kv.get(`${p}only-from`)).toBe('f');
    expect(Object.fromEntries(await a.kv.getAll(p))).toEqual({
      [`${p}both`]: 'new',
      [`${p}only-from`]: 'f',
      [`${p}written`]: 'w1',
    });
    await a.setPhase('done', { force: true });
    expect(await a.kv.get(`${p}only-from`)).toBeUndefined();
    await a.kv.put(`${p}written`, 'w2');
    expect(await onFrom.kv.get(`${p}written`)).toBe('w1');
    expect(await onTo.kv.get(`${p}written`)).toBe('w2');
    await eventually(() =>
      watch.events.some((e) => e.type === 'change' && e.put.get(`${p}written`) === 'w2'),
    );
    expect(watch.events.map((e) => e.type)).toEqual(['sync', 'change', 'change', 'change', 'change']);
    const [, written, toDualRead, toDone] = watch.events;
    expect(written).toEqual({ type: 'change', put: new Map([[`${p}written`, 'w1']]), deleted: [] });
    expect(toDualRead).toEqual({ type: 'change', put: new Map([[`${p}both`, 'new']]), deleted: [] });
    expect(toDone).toEqual({ type: 'change', put: new Map(), deleted: [`${p}only-from`] });
  });
});

describe('locks across phases', () => {
  // Clients in different phases at once: each group follows its own phase key.
  const pairsOfPhases: [MigrationPhase | 'plain-from', MigrationPhase][] = [
    ['plain-from', 'dual-write'],
    ['dual-write', 'shadow'],
    ['shadow', 'dual-read'],
    ['dual-read', 'cutover'],
    ['cutover', 'done'],
  ];
  it.each(pairsOfPhases)('%s and %s clients exclude each other; tokens come from to', async (left, right) => {
    const { client, plain } = setup();
    const make = (p: MigrationPhase | 'plain-from', n: number) =>
      p === 'plain-from' ? plain('from') : client(p, { phaseKey: `test/phase-${p}-${n}` });
    const workers = [make(left, 1), make(right, 1), make(left, 2), make(right, 2)];
    await Promise.all(workers.map((w) => ('ready' in w ? (w as MigratingBackend).ready() : undefined)));
    const lock = uniqueService('contended');
    let active = 0;
    let overlaps = 0;
    let count = 0;
    await Promise.all(
      workers.map(async (w) => {
        for (let i = 0; i < 25; i++) {
          await w.locks.withLock(lock, async () => {
            active += 1;
            if (active > 1) overlaps += 1;
            const seen = count;
            await new Promise((r) => setImmediate(r));
            count = seen + 1;
            active -= 1;
          });
        }
      }),
    );
    expect(overlaps).toBe(0);
    expect(count).toBe(100);
    if (left !== 'plain-from') {
      const a = await (workers[0] as MigratingBackend).locks.acquire(lock);
      await a.release();
      const b = await (workers[1] as MigratingBackend).locks.acquire(lock);
      expect(b.fencingToken > a.fencingToken).toBe(true);
      await b.release();
    }
  });
});

describe('the view cache', () => {
  it('with cacheIdleMs 0, first reads racing the idle sweep never fail with ClosedError (a read in progress pins its view)', async () => {
    const { pair } = setup();
    for (const phase of ['shadow', 'dual-read'] as const) {
      const c = createMigratingBackend({
        from: createMemoryBackend({ store: pair.from }),
        to: createMemoryBackend({ store: pair.to }),
        phase,
        cacheIdleMs: 0,
      });
      clients.push(c);
      const services = Array.from({ length: 200 }, (_, i) => `${uniqueService('race')}-${i}`);
      const reads = services.map((s) => c.discovery.getInstances(s));
      // Sweep between every turn of the microtask queue until every read settled.
      let settled = false;
      const all = Promise.allSettled(reads).finally(() => {
        settled = true;
      });
      for (let i = 0; !settled && i < 100_000; i++) {
        c.discovery.sweep();
        await (i % 50 === 49 ? new Promise((r) => setImmediate(r)) : Promise.resolve());
      }
      const results = await all;
      const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
      expect(
        failed.map((f) => String(f.reason)),
        phase,
      ).toEqual([]);
      expect(results).toHaveLength(200);
    }
  });
});
