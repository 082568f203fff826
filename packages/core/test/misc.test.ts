import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { Backoff, diffInstances, groupBy, retryForever, sleep } from '../src/driver.js';
import {
  type Backend,
  createHealthHandler,
  type DiscoveryHealth,
  type HealthHandlerOptions,
  installGracefulShutdown,
  isShuttingDown,
  markShuttingDown,
  redactError,
  type ServiceDiscovery,
  SHUTDOWN_EXIT_CODES,
  ValidationError,
  validateInstance,
} from '../src/index.js';

describe('Backoff', () => {
  it('grows exponentially with jitter between half and full delay, capped', () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect([1, 2, 3, 4, 5, 6].map(() => low.next())).toEqual([50, 100, 200, 400, 500, 500]);
    const high = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    const delays = [1, 2, 3, 4, 5].map(() => Math.round(high.next()));
    expect(delays).toEqual([100, 200, 400, 800, 1000]);
    high.reset();
    expect(Math.round(high.next())).toBe(100);
  });

  it('retryForever keeps going past any count until success, and stops on abort', async () => {
    let calls = 0;
    const value = await retryForever(
      async () => {
        calls += 1;
        if (calls < 25) throw new Error('not yet');
        return 'ok';
      },
      { backoff: new Backoff({ initialMs: 1, maxMs: 2 }) },
    );
    expect(value).toBe('ok');
    expect(calls).toBe(25);
    const controller = new AbortController();
    const forever = retryForever(() => Promise.reject(new Error('never')), {
      backoff: new Backoff({ initialMs: 1, maxMs: 5 }),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 30);
    await expect(forever).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    await expect(sleep(10_000, AbortSignal.abort())).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });
});

describe('validation and diff', () => {
  it('returns a frozen copy that later mutation of the input cannot change', () => {
    const input = {
      id: 'a',
      service: 'web',
      host: 'web-1.internal',
      port: 80,
      tags: ['x'],
      metadata: { zone: 'a' },
    };
    const valid = validateInstance(input);
    input.tags.push('y');
    input.metadata.zone = 'b';
    expect(valid.tags).toEqual(['x']);
    expect(valid.metadata).toEqual({ zone: 'a' });
    expect(Object.isFrozen(valid)).toBe(true);
    for (const host of ['::1', '10.0.0.1', 'a.b-c.example', 'localhost'])
      expect(validateInstance({ ...input, host }).host).toBe(host);
    expect(() => validateInstance({ ...input, metadata: { rollcall_id: 'x' } })).toThrow(ValidationError);
    expect(() => validateInstance(null)).toThrow(/instance: must be an object/);
  });

  it('diffInstances reports added, removed and updated by id', () => {
    const a = { id: 'a', service: 's', host: 'h', port: 1 };
    const b = { id: 'b', service: 's', host: 'h', port: 2 };
    expect(
      diffInstances([a, b], [{ ...b, port: 3 }, { ...a }, { id: 'c', service: 's', host: 'h', port: 4 }]),
    ).toEqual({
      added: [{ id: 'c', service: 's', host: 'h', port: 4 }],
      removed: [],
      updated: [{ ...b, port: 3 }],
    });
  });

  it('redactError removes secrets from messages', () => {
    const e = redactError(new Error('auth failed for root:hunter2 at http://x'), ['hunter2']);
    expect(e.message).toBe('auth failed for root:*** at http://x');
  });
});

describe('health', () => {
  const probe = async (discovery: object, path: string, options: HealthHandlerOptions = {}) => {
    const server = createServer(createHealthHandler(discovery as ServiceDiscovery, options));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: res.status, body: await res.json() };
    } finally {
      server.close();
    }
  };
  const base: DiscoveryHealth = {
    backend: 'memory',
    connection: 'up',
    reachable: true,
    watches: [],
    registrations: [{ service: 'web', id: 'a', state: 'active', losses: 0 }],
  };
  const source = (health: DiscoveryHealth) => ({ backend: 'memory', health: async () => health });

  it('/health answers 200 only when the backend is reachable and every own registration is active', async () => {
    expect(await probe(source(base), '/health')).toMatchObject({
      status: 200,
      body: { status: 'pass', backend: 'memory', connection: 'up', shuttingDown: false },
    });
    const recovering: DiscoveryHealth = {
      ...base,
      registrations: [{ service: 'web', id: 'a', state: 'recovering', losses: 1, error: 'lease lost' }],
    };
    expect(await probe(source(recovering), '/health')).toMatchObject({
      status: 503,
      body: { status: 'fail', registrations: [{ state: 'recovering' }] },
    });
    expect(
      await probe(
        source({ ...base, connection: 'down', reachable: false, error: 'connection refused' }),
        '/health',
      ),
    ).toMatchObject({ status: 503 });
  });

  it('/livez is 200 whatever the backend says, and never asks it', async () => {
    let asked = 0;
    const down = {
      backend: 'etcd',
      health: async () => {
        asked++;
        return { ...base, connection: 'down', reachable: false };
      },
    };
    expect(await probe(down, '/livez')).toEqual({ status: 200, body: { status: 'pass', reasons: [] } });
    expect(asked).toBe(0);
  });

  it('/readyz fails while a registration is not active, with no registration when required, and once shutting down', async () => {
    expect(await probe(source(base), '/readyz')).toEqual({
      status: 200,
      body: { status: 'pass', reasons: [] },
    });
    const recovering: DiscoveryHealth = {
      ...base,
      registrations: [{ service: 'web', id: 'a', state: 'recovering', losses: 1, error: 'lease lost' }],
    };
    expect(await probe(source(recovering), '/readyz')).toEqual({
      status: 503,
      body: { status: 'fail', reasons: ['web/a is recovering: lease lost'] },
    });
    const none = source({ ...base, registrations: [] });
    expect((await probe(none, '/readyz')).status).toBe(200);
    expect(await probe(none, '/readyz', { requireRegistration: true })).toEqual({
      status: 503,
      body: { status: 'fail', reasons: ['no registration yet'] },
    });
    // A registry outage alone does not make a registered process unready: its instance is
    // still there for callers until its ttl, and restarting pods would not bring etcd back.
    expect((await probe(source({ ...base, connection: 'down', reachable: false }), '/readyz')).status).toBe(
      200,
    );
    const leaving = source(base);
    markShuttingDown(leaving as never);
    expect(await probe(leaving, '/readyz')).toEqual({
      status: 503,
      body: { status: 'fail', reasons: ['shutting down'] },
    });
    expect((await probe(leaving, '/livez')).status).toBe(200);
  });

  it('serves configured paths, and 404 elsewhere', async () => {
    const paths = { livenessPath: '/alive', readinessPath: '/ready', detailPath: '/status' };
    expect((await probe(source(base), '/alive', paths)).status).toBe(200);
    expect((await probe(source(base), '/ready', paths)).status).toBe(200);
    expect((await probe(source(base), '/status', paths)).body).toMatchObject({ status: 'pass' });
    expect((await probe(source(base), '/livez', paths)).status).toBe(404);
  });

  const fakeBackend = (steps: string[], close: () => Promise<void> = async () => void steps.push('close')) =>
    ({
      discovery: { activeRegistrations: [{ deregister: async () => void steps.push('deregister') }] },
      close,
    }) as never;

  it('graceful shutdown: not ready, deregister, drain, beforeExit, close the whole backend, exit 0', async () => {
    const steps: string[] = [];
    const emitter = new EventEmitter();
    const backend = fakeBackend(steps);
    const exited = new Promise<number>((resolve) => {
      installGracefulShutdown(backend, {
        drainMs: 20,
        emitter,
        exit: resolve,
        beforeExit: () =>
          void steps.push(`beforeExit shuttingDown=${isShuttingDown((backend as Backend).discovery)}`),
      });
    });
    emitter.emit('SIGTERM', 'SIGTERM');
    expect(await exited).toBe(SHUTDOWN_EXIT_CODES.ok);
    expect(steps).toEqual(['deregister', 'beforeExit shuttingDown=true', 'close']);
  });

  it('graceful shutdown: a close that hangs is cut (exit 2), a failing step gives exit 1, a second signal exits at once (130)', async () => {
    const run = async (backend: never, options: { second?: boolean; beforeExit?: () => void } = {}) => {
      const emitter = new EventEmitter();
      const codes: number[] = [];
      installGracefulShutdown(backend, {
        drainMs: options.second ? 500 : 10,
        closeTimeoutMs: 50,
        emitter,
        exit: (code) => void codes.push(code),
        beforeExit: options.beforeExit,
      });
      emitter.emit('SIGTERM', 'SIGTERM');
      if (options.second) emitter.emit('SIGINT', 'SIGINT');
      for (let waited = 0; codes.length === 0 && waited < 5000; waited += 5) await sleep(5);
      return codes[0];
    };
    expect(await run(fakeBackend([], () => new Promise(() => {})))).toBe(SHUTDOWN_EXIT_CODES.timedOut);
    expect(
      await run(fakeBackend([]), {
        beforeExit: () => {
          throw new Error('flush failed');
        },
      }),
    ).toBe(SHUTDOWN_EXIT_CODES.failed);
    expect(await run(fakeBackend([]), { second: true })).toBe(SHUTDOWN_EXIT_CODES.interrupted);
  });
});

describe('patchSorted', () => {
  it('(property) equals re-sorting the list after any mix of upserts and removals', async () => {
    const fc = (await import('fast-check')).default;
    const { byId, patchSorted } = await import('../src/driver.js');
    const inst = (id: string, port = 1) => ({ id, service: 's', host: 'h', port });
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[a-z0-9]{1,4}$/), { maxLength: 40 }),
        fc.array(fc.tuple(fc.stringMatching(/^[a-z0-9]{1,4}$/), fc.integer({ min: 1, max: 9 })), {
          maxLength: 10,
        }),
        fc.array(fc.stringMatching(/^[a-z0-9]{1,4}$/), { maxLength: 10 }),
        (ids, upsertPairs, removed) => {
          const previous = ids.map((id) => inst(id)).sort(byId);
          const upserts = [...new Map(upsertPairs.map(([id, port]) => [id, inst(id, port)])).values()].filter(
            (u) => !removed.includes(u.id),
          );
          const expected = new Map(previous.map((i) => [i.id, i]));
          for (const id of removed) expected.delete(id);
          for (const u of upserts) expected.set(u.id, u);
          return (
            JSON.stringify(patchSorted(previous, upserts, removed)) ===
            JSON.stringify([...expected.values()].sort(byId))
          );
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('linkSignals', () => {
  it('follows any source until disposed, then lets go of the sources', async () => {
    const { linkSignals } = await import('../src/driver.js');
    const a = new AbortController();
    const b = new AbortController();
    const first = linkSignals(a.signal, b.signal);
    b.abort('b went');
    expect(first.signal.aborted).toBe(true);
    expect(first.signal.reason).toBe('b went');
    const second = linkSignals(a.signal);
    second.dispose();
    a.abort('late');
    expect(second.signal.aborted).toBe(false);
    expect(linkSignals(AbortSignal.abort('already')).signal.reason).toBe('already');
  });
});

describe('checkSharedOptions', () => {
  it('resolves the options every backend shares and reports each bad one by path', async () => {
    const { checkSharedOptions } = await import('../src/driver.js');
    const { silentLogger } = await import('../src/index.js');
    const issues: string[] = [];
    const bad = (path: string) => void issues.push(path);
    const now = () => 1;
    const good = checkSharedOptions(
      { cacheIdleMs: 0, maxQueuedEvents: 5, now, backoff: { initialMs: 10, maxMs: 20 } },
      bad,
      'test',
    );
    expect(issues).toEqual([]);
    expect(good.discovery).toEqual({ cacheIdleMs: 0, maxQueuedEvents: 5, now, logger: silentLogger });
    expect(good.backoff).toEqual({ initialMs: 10, maxMs: 20 });
    checkSharedOptions(
      {
        cacheIdleMs: -1,
        maxQueuedEvents: 0,
        now: 3,
        logger: { warn() {} },
        backoff: { initialMs: 0, maxMs: 'x', multiplier: 0.5, jitter: 1 },
      },
      bad,
      'test',
    );
    expect(issues.sort()).toEqual(
      [
        'backoff.initialMs',
        'backoff.jitter',
        'backoff.maxMs',
        'backoff.multiplier',
        'cacheIdleMs',
        'logger',
        'maxQueuedEvents',
        'now',
      ].sort(),
    );
    checkSharedOptions({ backoff: { initialMs: 50, maxMs: 10 } }, bad, 'test');
    expect(issues.at(-1)).toBe('backoff.maxMs');
  });
});

describe('errors from another copy of @rollcall/core', () => {
  it('are instanceof the classes of this copy (by class, through the hierarchy), and nothing else is', async () => {
    const here = await import('../src/errors.js');
    // A second instance of the module, as when an application resolves two versions of core.
    // The query makes a second module instance (a specifier TypeScript cannot resolve, hence the variable).
    const copy = '../src/errors.js?copy';
    const other = (await import(copy)) as typeof here;
    expect(other.ConfigError).not.toBe(here.ConfigError);
    const config = new other.ConfigError([{ path: 'etcd.endpoints', message: 'bad' }]);
    expect(config).toBeInstanceOf(here.ConfigError);
    expect(config).toBeInstanceOf(here.RollcallError);
    expect(config).toBeInstanceOf(Error);
    expect(config).not.toBeInstanceOf(here.ValidationError);
    const aborted = new other.AbortedError('stop');
    expect(aborted.name).toBe('AbortError');
    expect(aborted).toBeInstanceOf(here.AbortedError);
    expect(new Error('plain')).not.toBeInstanceOf(here.RollcallError);
    expect({ code: 'ERR_CONFIG' }).not.toBeInstanceOf(here.ConfigError);
    expect(null).not.toBeInstanceOf(here.RollcallError);
  });
});

describe('groupBy', () => {
  it('groups in order, one array per group, appended to', () => {
    const items = ['a1', 'b1', 'a2', 'c1', 'b2', 'a3'];
    const groups = groupBy(items, (s) => s[0]);
    expect([...groups.keys()]).toEqual(['a', 'b', 'c']);
    expect(groups.get('a')).toEqual(['a1', 'a2', 'a3']);
    expect(groups.get('b')).toEqual(['b1', 'b2']);
    expect(groups.get('c')).toEqual(['c1']);
    // Any iterable: the indices of an array, as the etcd driver groups refs by lease.
    const leases = ['L1', 'L2', 'L1'];
    expect(groupBy(leases.keys(), (i) => leases[i])).toEqual(
      new Map([
        ['L1', [0, 2]],
        ['L2', [1]],
      ]),
    );
    expect(groupBy([], (x: number) => x).size).toBe(0);
  });
});
