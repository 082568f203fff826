import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Mirror, type MirrorView } from '../src/driver.js';
import { BackendUnavailableError, ClosedError } from '../src/index.js';
import { FakeTimers } from './fake-timers.js';

type Ev = { type: string; keys: string[]; detail?: string };
const view: MirrorView<string, Ev> = {
  equals: (a, b) => a === b,
  sync: (s) => ({ type: 'sync', keys: [...s.entries.keys()].sort() }),
  change: (s, a, u, r) => ({
    type: 'change',
    keys: [...s.entries.keys()].sort(),
    detail: [...a.map(([k]) => `+${k}`), ...u.map(([k]) => `~${k}`), ...r.map(([k]) => `-${k}`)].join(),
  }),
  stale: (s, e) => ({ type: 'stale', keys: [...s.entries.keys()].sort(), detail: e.message }),
};
const mirror = (maxQueued = 1000) =>
  new Mirror<string, Ev>(view, { backend: 'test', subject: 'thing', maxQueued });

async function take(iter: AsyncIterator<Ev>, n: number): Promise<Ev[]> {
  const out: Ev[] = [];
  for (let i = 0; i < n; i++) out.push((await iter.next()).value as Ev);
  return out;
}

describe('Mirror', () => {
  it('sends sync first, then diffs; a replace that changes nothing emits nothing', async () => {
    const m = mirror();
    const q = m.subscribe();
    m.replace([['a', '1']]);
    m.replace([['a', '1']]);
    m.replace([
      ['a', '2'],
      ['b', '1'],
    ]);
    m.apply([], ['a']);
    m.apply([['b', '1']], []);
    expect(q.backlog).toBe(3);
    expect(await take(q, 3)).toEqual([
      { type: 'sync', keys: ['a'] },
      { type: 'change', keys: ['a', 'b'], detail: '+b,~a' },
      { type: 'change', keys: ['b'], detail: '-a' },
    ]);
  });

  it('a key deleted and put again in one transaction is an update', async () => {
    const m = mirror();
    m.replace([['k', 'old']]);
    const q = m.subscribe();
    m.apply([['k', 'new']], ['k']);
    expect(await take(q, 2)).toEqual([
      { type: 'sync', keys: ['k'] },
      { type: 'change', keys: ['k'], detail: '~k' },
    ]);
  });

  it('stale keeps the last known good entries, once; the next answer is a fresh sync', async () => {
    const m = mirror();
    m.replace([['a', '1']]);
    const q = m.subscribe();
    m.stale(new Error('down'));
    m.stale(new Error('still down'));
    expect(m.state.stale).toBe(true);
    expect([...m.state.entries.keys()]).toEqual(['a']);
    m.replace([
      ['a', '1'],
      ['b', '2'],
    ]);
    expect(await take(q, 3)).toEqual([
      { type: 'sync', keys: ['a'] },
      { type: 'stale', keys: ['a'], detail: 'down' },
      { type: 'sync', keys: ['a', 'b'] },
    ]);
    // A late subscriber while stale gets the list and then the stale flag.
    m.stale(new Error('again'));
    expect(await take(m.subscribe(), 2)).toEqual([
      { type: 'sync', keys: ['a', 'b'] },
      { type: 'stale', keys: ['a', 'b'], detail: 'again' },
    ]);
  });

  it('ready() waits for the first answer and rejects with BackendUnavailableError if the backend fails first', async () => {
    const ok = mirror();
    const waiting = ok.ready();
    ok.replace([]);
    await expect(waiting).resolves.toBeUndefined();
    const bad = mirror();
    const failing = bad.ready();
    bad.stale(new Error('connection refused'));
    await expect(failing).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(bad.ready()).rejects.toThrow(/connection refused/);
    const closed = mirror();
    const pending = closed.ready();
    closed.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedError);
  });

  it('a slow subscriber neither blocks others nor grows without bound: it catches up to the latest state', async () => {
    const m = mirror(10);
    const slow = m.subscribe();
    const fast = m.subscribe();
    m.replace([]);
    const seen: Ev[] = [];
    const reader = (async () => {
      for await (const e of fast) {
        seen.push(e);
        if (e.keys.length === 500) break;
      }
    })();
    for (let i = 0; i < 500; i++) {
      m.apply([[`k${String(i).padStart(3, '0')}`, 'v']], []);
      await Promise.resolve();
    }
    await reader;
    expect(seen).toHaveLength(501);
    expect(slow.backlog).toBeLessThanOrEqual(11);
    expect(slow.collapses).toBeGreaterThan(0);
    const events: Ev[] = [];
    while (slow.backlog > 0) events.push((await slow.next()).value as Ev);
    // Whatever was skipped, the last thing the slow reader sees is the full latest state.
    const last = events.at(-1)!;
    expect(last.keys).toHaveLength(500);
    expect(events.some((e) => e.type === 'sync' && e.keys.length > 1)).toBe(true);
  });

  it('close ends every subscriber and later pushes are ignored', async () => {
    const m = mirror();
    m.replace([['a', '1']]);
    const q = m.subscribe();
    m.close();
    m.apply([['b', '1']], []);
    expect(await q.next()).toEqual({ value: undefined, done: true });
    expect(() => m.subscribe()).toThrow(ClosedError);
  });
});

describe('EventQueue.closeOn', () => {
  it('closes on abort, and lets go of the signal when closed first', async () => {
    const m = mirror();
    m.replace([]);
    const controller = new AbortController();
    const listeners = () => getEventListeners(controller.signal, 'abort').length;
    const first = m.subscribe().closeOn(controller.signal);
    first.close();
    expect(listeners()).toBe(0);
    const second = m.subscribe().closeOn(controller.signal);
    controller.abort();
    expect(second.isClosed).toBe(true);
    expect(m.subscribe().closeOn(AbortSignal.abort()).isClosed).toBe(true);
  });
});

describe('snapshots and confirmations', () => {
  it('a poll that confirms an unchanged list moves syncedAt and keeps the same instances array', async () => {
    const { createServiceDiscovery } = await import('../src/driver.js');
    let feed!: import('../src/driver.js').MirrorFeed<import('../src/index.js').ServiceInstance>;
    let time = 1000;
    const discovery = createServiceDiscovery(
      {
        backend: 'test',
        // This test registers nothing.
        liveness: undefined as never,
        registration: () => {
          throw new Error('not used');
        },
        watch: (_service, f) => {
          feed = f;
          return () => {};
        },
        listServices: async () => [],
        ping: async () => {},
        close: async () => {},
      },
      { now: () => time },
    );
    const instance = { id: 'a', service: 'web', host: 'h', port: 1 };
    const first = discovery.getInstances('web');
    feed.replace([['a', instance]]);
    const before = await first;
    time = 6000;
    feed.replace([['a', { ...instance }]]);
    const after = await discovery.getInstances('web');
    expect(after.syncedAt).toBe(6000);
    expect(before.syncedAt).toBe(1000);
    expect(after.instances).toBe(before.instances);
    feed.stale(new Error('down'));
    const stale = await discovery.getInstances('web');
    expect(stale.stale).toBe(true);
    expect(stale.instances).toBe(before.instances);
    await discovery.close();
  });
});

describe('the grace window after a re-sync (resyncGraceMs)', () => {
  const graceMirror = (timers: FakeTimers) =>
    new Mirror<string, Ev>(view, { backend: 'test', subject: 'thing', resyncGraceMs: 1000, timers });

  it('keeps what a re-sync misses for the window; what comes back leaves it; the rest goes when it ends', async () => {
    const timers = new FakeTimers();
    const m = graceMirror(timers);
    const q = m.subscribe();
    m.replace([
      ['a', '1'],
      ['b', '1'],
      ['c', '1'],
    ]);
    await timers.advance(100);
    m.replace([['a', '1']], { resynced: true });
    expect(m.heldBack).toBe(2);
    expect([...m.state.entries.keys()].sort()).toEqual(['a', 'b', 'c']);
    // Listed again by a later re-sync: b leaves the window; c keeps its deadline (t = 1100).
    await timers.advance(400);
    m.replace(
      [
        ['a', '1'],
        ['b', '1'],
      ],
      { resynced: true },
    );
    m.apply([['b', '2']], []);
    expect(m.heldBack).toBe(1);
    await timers.advance(599);
    expect(m.heldBack).toBe(1);
    await timers.advance(1);
    expect(m.heldBack).toBe(0);
    expect(await take(q, 3)).toEqual([
      { type: 'sync', keys: ['a', 'b', 'c'] },
      { type: 'change', keys: ['a', 'b', 'c'], detail: '~b' },
      { type: 'change', keys: ['a', 'b'], detail: '-c' },
    ]);
    expect(q.backlog).toBe(0);
  });

  it('a service of 200,000 instances all missing from a re-sync is held back and then removed, without a throw', async () => {
    const timers = new FakeTimers();
    const m = graceMirror(timers);
    const q = m.subscribe();
    m.replace(Array.from({ length: 200_000 }, (_, i): [string, string] => [`k${i}`, '1']));
    m.replace([], { resynced: true });
    expect(m.heldBack).toBe(200_000);
    expect(m.state.entries.size).toBe(200_000);
    await timers.advance(1000);
    expect(m.heldBack).toBe(0);
    expect(m.state.entries.size).toBe(0);
    const [, removal] = await take(q, 2);
    expect(removal!.type).toBe('change');
    expect(removal!.keys).toEqual([]);
  });
});
