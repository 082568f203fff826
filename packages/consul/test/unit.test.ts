import { ConfigError, type ServiceInstance, ValidationError, validateInstance } from '@rollcall/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createConsulBackend, decodeHealthEntry, parseGoDuration, registrationBody } from '../src/index.js';
import { resolveOptions } from '../src/options.js';

const configError = (f: () => unknown): ConfigError => {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
};

describe('options', () => {
  it('defaults every option', () => {
    const o = resolveOptions({});
    expect(o).toMatchObject({
      host: '127.0.0.1',
      port: 8500,
      secure: false,
      token: undefined,
      pollIntervalMs: 5000,
      deregisterCriticalAfter: '1m',
      datacenter: undefined,
      watchMode: 'poll',
      callTimeoutMs: 5000,
    });
  });

  it('refuses a poll interval below 5000, naming the field and the minimum', () => {
    const error = configError(() => createConsulBackend({ pollIntervalMs: 4999 }));
    expect(error.code).toBe('ERR_CONFIG');
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.path).toBe('pollIntervalMs');
    expect(error.message).toContain('pollIntervalMs');
    expect(error.message).toContain('5000');
  });

  it('lists every bad field at once', () => {
    const error = configError(() =>
      createConsulBackend({
        host: 'not a host',
        port: 0,
        secure: 'yes' as unknown as boolean,
        pollIntervalMs: 1000,
        deregisterCriticalAfter: '10 minutes',
        datacenter: 'dc/1',
        watchMode: 'push' as 'poll',
        callTimeoutMs: -1,
        cacheIdleMs: -5,
        maxQueuedEvents: 0,
        backoff: { initialMs: 0, multiplier: 0.5 },
        pollInterval: 5000,
      } as Parameters<typeof createConsulBackend>[0]),
    );
    expect(error.issues.map((i) => i.path).sort()).toEqual(
      [
        'backoff.initialMs',
        'backoff.multiplier',
        'cacheIdleMs',
        'callTimeoutMs',
        'datacenter',
        'deregisterCriticalAfter',
        'host',
        'maxQueuedEvents',
        'pollInterval',
        'pollIntervalMs',
        'port',
        'secure',
        'watchMode',
      ].sort(),
    );
  });

  it('never echoes the token in a ConfigError', () => {
    const secret = 'tok\nen-s3cr3t-value';
    const error = configError(() => createConsulBackend({ token: secret, port: 0 }));
    expect(error.issues.map((i) => i.path).sort()).toEqual(['port', 'token']);
    expect(error.message).not.toContain('s3cr3t');
    expect(String(error.stack)).not.toContain('s3cr3t');
  });

  it('takes deregisterCriticalAfter as a Go duration or milliseconds', () => {
    expect(resolveOptions({ deregisterCriticalAfter: '90s' }).deregisterCriticalAfter).toBe('90s');
    expect(resolveOptions({ deregisterCriticalAfter: 120_000 })).toMatchObject({
      deregisterCriticalAfter: '120000ms',
      deregisterCriticalAfterMs: 120_000,
    });
    expect(resolveOptions({ deregisterCriticalAfter: '1m30s' }).deregisterCriticalAfterMs).toBe(90_000);
    for (const bad of ['', '90', '-1m', '1d', 0, -5, 1.5]) {
      const error = configError(() => resolveOptions({ deregisterCriticalAfter: bad }));
      expect(error.issues[0]?.path).toBe('deregisterCriticalAfter');
    }
  });

  it('takes lockPrefix as folder segments and lockDelay as a duration from 0 to 60 s', () => {
    expect(resolveOptions({})).toMatchObject({ lockPrefix: 'rollcall/', lockDelay: '0s' });
    expect(resolveOptions({ lockPrefix: 'apps/locks_1/', lockDelay: '15s' })).toMatchObject({
      lockPrefix: 'apps/locks_1/',
      lockDelay: '15s',
    });
    expect(resolveOptions({ lockDelay: 2500 }).lockDelay).toBe('2500ms');
    expect(resolveOptions({ lockDelay: '1m' }).lockDelay).toBe('1m');
    for (const bad of ['', '/rollcall/', 'rollcall', 'a//', 'a/../', './', 'sp ace/', 'a:b/', 7]) {
      const error = configError(() => resolveOptions({ lockPrefix: bad as string }));
      expect(
        error.issues.map((i) => i.path),
        JSON.stringify(bad),
      ).toEqual(['lockPrefix']);
    }
    for (const bad of ['61s', '2m', '15', '-1s', -1, 1.5, 60_001]) {
      const error = configError(() => resolveOptions({ lockDelay: bad }));
      expect(
        error.issues.map((i) => i.path),
        JSON.stringify(bad),
      ).toEqual(['lockDelay']);
    }
  });

  it('parses Go durations', () => {
    expect(parseGoDuration('1m')).toBe(60_000);
    expect(parseGoDuration('1h2m3s')).toBe(3_723_000);
    expect(parseGoDuration('250ms')).toBe(250);
    expect(parseGoDuration('1.5s')).toBe(1500);
    expect(parseGoDuration('1500us')).toBe(1.5);
    expect(parseGoDuration('5')).toBeUndefined();
    expect(parseGoDuration('5 m')).toBeUndefined();
    expect(parseGoDuration('m')).toBeUndefined();
  });

  it('creates a backend without contacting the agent, and closes idempotently', async () => {
    const backend = createConsulBackend({ port: 1 });
    expect(backend.name).toBe('consul');
    expect(backend.discovery.backend).toBe('consul');
    expect(backend.address).toBe('http://127.0.0.1:1');
    await backend.close();
    await backend.close();
  });
});

/** What `GET /v1/health/service` would answer for an instance registered with this body. */
function asHealthEntry(body: Record<string, unknown>, nodeAddress = '10.9.9.9'): unknown {
  return {
    Node: { Node: 'n1', Address: nodeAddress },
    Service: {
      ID: body.ID,
      Service: body.Name,
      Tags: body.Tags,
      Address: body.Address,
      Meta: body.Meta,
      Port: body.Port,
      Weights: body.Weights,
    },
    Checks: [],
  };
}

const arbInstance: fc.Arbitrary<ServiceInstance> = fc
  .record(
    {
      id: fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}$/),
      service: fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/),
      host: fc.constantFrom('127.0.0.1', '10.0.0.5', '::1', 'fe80::1', 'db.internal', 'a-b.example.com'),
      port: fc.integer({ min: 1, max: 65_535 }),
      version: fc.stringMatching(/^[ -~]{1,20}$/),
      tags: fc.array(fc.stringMatching(/^[ -~]{1,10}$/), { maxLength: 4 }),
      metadata: fc.dictionary(fc.stringMatching(/^[a-z][A-Za-z0-9_-]{0,8}$/), fc.string({ maxLength: 20 }), {
        maxKeys: 5,
      }),
      weight: fc.integer({ min: 1, max: 10_000 }),
    },
    { requiredKeys: ['id', 'service', 'host', 'port'] },
  )
  .filter((i) => {
    try {
      validateInstance(i);
      return true;
    } catch {
      return false;
    }
  });

describe('instance mapping', () => {
  it('round-trips every instance exactly through the registration body and a health entry', () => {
    fc.assert(
      fc.property(arbInstance, (instance) => {
        const body = registrationBody(instance, 10, '1m');
        expect(body.ID).toBe(`${instance.service}:${instance.id}`);
        expect(decodeHealthEntry(asHealthEntry(body), instance.service)).toEqual(instance);
        const meta = body.Meta as Record<string, string>;
        expect(meta.rollcall_id).toBe(instance.id);
        expect((body.Weights as { Passing: number }).Passing).toBe(instance.weight ?? 1);
      }),
      { numRuns: 300 },
    );
  });

  it('tells weight 1, empty tags and empty metadata from their absence', () => {
    const base: ServiceInstance = { id: 'a', service: 'web', host: '127.0.0.1', port: 80 };
    for (const instance of [base, { ...base, weight: 1 }, { ...base, tags: [] }, { ...base, metadata: {} }]) {
      expect(decodeHealthEntry(asHealthEntry(registrationBody(instance, 10, '1m')), 'web')).toEqual(instance);
    }
  });

  it('maps entries registered by other tools, and skips the ones that cannot be instances', () => {
    const foreign = (service: Record<string, unknown>) => ({
      Node: { Address: '10.0.0.9' },
      Service: { Service: 'web', Port: 80, ...service },
    });
    expect(
      decodeHealthEntry(
        foreign({ ID: 'web-1', Address: '', Tags: ['x'], Meta: { zone: 'a' }, Weights: { Passing: 5 } }),
        'web',
      ),
    ).toEqual({
      id: 'web-1',
      service: 'web',
      host: '10.0.0.9',
      port: 80,
      tags: ['x'],
      metadata: { zone: 'a' },
      weight: 5,
    });
    expect(
      decodeHealthEntry(
        foreign({ ID: 'web-2', Address: '10.1.1.1', Tags: [], Meta: null, Weights: { Passing: 1 } }),
        'web',
      ),
    ).toEqual({
      id: 'web-2',
      service: 'web',
      host: '10.1.1.1',
      port: 80,
    });
    expect(decodeHealthEntry(foreign({ ID: 'redis:6379' }), 'web')).toBeUndefined();
    expect(decodeHealthEntry(foreign({ ID: 'ok', Port: 0 }), 'web')).toBeUndefined();
    expect(decodeHealthEntry(foreign({ ID: 'ok' }), 'webx')).toBeUndefined();
  });

  it('refuses what Consul would refuse, before any network call', async () => {
    const backend = createConsulBackend({ port: 1 });
    try {
      const unspecified = await backend.discovery
        .register({ id: 'a', service: 'web', host: '0.0.0.0', port: 80 })
        .catch((e: unknown) => e);
      expect(unspecified).toBeInstanceOf(ValidationError);
      expect((unspecified as ValidationError).field).toBe('instance.host');
      const metadata = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v']));
      const tooMany = await backend.discovery
        .register({ id: 'a', service: 'web', host: '127.0.0.1', port: 80, metadata })
        .catch((e: unknown) => e);
      expect(tooMany).toBeInstanceOf(ValidationError);
      expect((tooMany as ValidationError).field).toBe('instance.metadata');
    } finally {
      await backend.close();
    }
  });
});

describe('options against hostile input', () => {
  // For each option, values that must be refused: a ConfigError naming that option, never a TypeError.
  const BAD: Record<string, unknown[]> = {
    host: [null, 42, '', 'not a host!', 'a..b', 'http://x'],
    port: [null, 0, 65_536, 1.5, '8500', Number.NaN],
    secure: [null, 'true', 1],
    token: [null, 42, '', ' padded', 'a\nb', 'tök', '\ud800'],
    pollIntervalMs: [null, 4999, 1.5, Number.NaN, 3_600_001, '5000'],
    deregisterCriticalAfter: [null, '', 'abc', '-1m', 0, -1, 1.5],
    datacenter: [null, '', 'a b', 42, 'x'.repeat(65)],
    watchMode: [null, 'push', 1],
    callTimeoutMs: [null, 99, 600_001, 1.5],
    lockPrefix: [null, 42, '', 'x', '/x/', 'a//', '../', 'a/../', 'a b/'],
    lockDelay: [null, '61s', -1, 'x', 1.5],
    cacheIdleMs: [null, -1, 1.5],
    maxQueuedEvents: [null, 0],
    now: [null, 42],
    logger: [null, 42, {}],
    backoff: [null, 42],
    'backoff.maxMs': [{ maxMs: 3e9 }, { maxMs: Number.MAX_VALUE }, { maxMs: 0 }],
    'backoff.initialMs': [{ initialMs: 2 ** 31 }, { initialMs: Number.NaN }],
    unknownOption: [1],
  };
  const cases = Object.entries(BAD).flatMap(([path, values]) =>
    values.map((value) => ({ path, options: { [path.split('.')[0]!]: value } })),
  );

  it('(property) any bad option, alone or among good ones, is a ConfigError naming it; the token never appears', () => {
    fc.assert(
      fc.property(fc.constantFrom(...cases), fc.boolean(), ({ path, options }, withToken) => {
        const secret = 'tok-Hx9QmZt7Lw';
        const all = { ...(withToken && !('token' in options) ? { token: secret } : {}), ...options };
        const error = configError(() => createConsulBackend(all as never));
        expect(
          error.issues.map((i) => i.path),
          `${path}: ${String(Object.values(options)[0])}`,
        ).toContain(path);
        expect(error.message).not.toContain(secret);
      }),
      { numRuns: 200 },
    );
    for (const options of [null, 42, 'x', []]) configError(() => createConsulBackend(options as never));
  });

  it('foreign Meta keys that could reach Object.prototype are dropped when decoding', () => {
    const entry = JSON.parse(
      '{"Node":{"Address":"10.0.0.9"},"Service":{"Service":"web","ID":"web-1","Port":80,"Meta":{"__proto__":{"polluted":"yes"},"constructor":"c","prototype":"p","zone":"z"}}}',
    );
    const decoded = decodeHealthEntry(entry, 'web');
    expect(decoded).toEqual({
      id: 'web-1',
      service: 'web',
      host: '10.0.0.9',
      port: 80,
      metadata: { zone: 'z' },
    });
    expect(Object.keys(decoded!.metadata!)).toEqual(['zone']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
