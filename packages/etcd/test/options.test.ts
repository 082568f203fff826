import { ConfigError } from '@rollcall/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createEtcdBackend, ETCD_DEFAULTS, type EtcdOptions, resolveEtcdOptions } from '../src/index.js';

function issues(options: unknown): string[] {
  try {
    resolveEtcdOptions(options as EtcdOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('ERR_CONFIG');
    return (error as ConfigError).issues.map((i) => i.path);
  }
  return [];
}

describe('etcd options', () => {
  it('applies the documented defaults', () => {
    const o = resolveEtcdOptions(undefined);
    expect(o.endpoints).toEqual(['http://127.0.0.1:2379']);
    expect(o.namespace).toBe('/rollcall/');
    expect(o.kvPrefix).toBe('/');
    expect(o.dialTimeoutMs).toBe(5000);
    expect(o.callTimeoutMs).toBe(5000);
    expect(o.keepaliveMs).toBe(5000);
    expect(o.auth).toBeUndefined();
    expect(o.tls).toBeUndefined();
    expect(ETCD_DEFAULTS.namespace).toBe('/rollcall/');
  });

  it('normalizes endpoints and keeps valid values', () => {
    const o = resolveEtcdOptions({
      endpoints: ['http://10.0.0.1:2379/', 'http://etcd-2'],
      namespace: '/team-a/rollcall/',
      kvPrefix: '',
      callTimeoutMs: 750,
      backoff: { initialMs: 50, maxMs: 1000 },
      cacheIdleMs: 1000,
      maxQueuedEvents: 10,
    });
    expect(o.endpoints).toEqual(['http://10.0.0.1:2379', 'http://etcd-2:2379']);
    expect(o.kvPrefix).toBe('');
    expect(o.discovery).toMatchObject({ cacheIdleMs: 1000, maxQueuedEvents: 10 });
    expect(o.backoff).toEqual({ initialMs: 50, maxMs: 1000 });
  });

  it('lists every bad field in one ConfigError', () => {
    expect(
      issues({
        endpoints: ['ftp://x:1', 'not a url', 'http://ok:2379/path'],
        namespace: 'rollcall',
        kvPrefix: '/a/../',
        auth: { username: '', password: 42 },
        dialTimeoutMs: 0,
        callTimeoutMs: 1.5,
        keepaliveMs: 10,
        cacheIdleMs: -1,
        maxQueuedEvents: 0,
        backoff: { initialMs: 0, maxMs: 'x' },
        logger: { warn: () => {} },
        endpionts: ['typo'],
      }).sort(),
    ).toEqual(
      [
        'endpoints[0]',
        'endpoints[1]',
        'endpoints[2]',
        'namespace',
        'kvPrefix',
        'auth.username',
        'auth.password',
        'dialTimeoutMs',
        'callTimeoutMs',
        'keepaliveMs',
        'cacheIdleMs',
        'maxQueuedEvents',
        'backoff.initialMs',
        'backoff.maxMs',
        'logger',
        'endpionts',
      ].sort(),
    );
  });

  it('refuses namespaces that could escape or collide', () => {
    for (const namespace of ['', 'x', '/a//b/', '/../', '/a/./', '/a\n/'])
      expect(issues({ namespace }), namespace).toEqual(['namespace']);
    expect(issues({ endpoints: [] })).toEqual(['endpoints']);
    expect(issues({ endpoints: ['http://a:1', 'https://b:2'] })).toEqual(['endpoints']);
    expect(issues('nope')).toEqual(['']);
  });

  it('createEtcdBackend validates before connecting and makes no connection until used', async () => {
    expect(() => createEtcdBackend({ callTimeoutMs: -5 })).toThrow(ConfigError);
    const backend = createEtcdBackend({ endpoints: ['http://127.0.0.1:1'], callTimeoutMs: 500 });
    expect(backend.name).toBe('etcd');
    expect(backend.discovery.backend).toBe('etcd');
    // Bad lock names are refused before any call; a good one fails within the call timeout, typed.
    await expect(backend.locks.acquire('a/b')).rejects.toMatchObject({
      code: 'ERR_VALIDATION',
      field: 'name',
    });
    await expect(backend.locks.tryAcquire('x')).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE' });
    await backend.close();
    await backend.close();
  });
});

describe('etcd options against hostile input', () => {
  // For each option, values that must be refused: a ConfigError naming that option, never a TypeError.
  const BAD: Record<string, unknown[]> = {
    endpoints: [null, 'http://x:1', [], 42, { 0: 'http://x:1' }],
    'endpoints[0]': [['ftp://x:1'], ['not a url'], ['http://u:p@x:1'], ['http://x:1/path'], [42], [null]],
    namespace: [null, 42, '', 'x', '/a//b/', '/../', '/a\n/', '/\ud800/'],
    kvPrefix: [null, 42, 'x', '/a/../', '/rollcall/services/', '/rollcall/locks/a/', '/\udc00/'],
    auth: [null, 42, 'user:pass', []],
    'auth.username': [{ username: '', password: 'p' }, { username: 42, password: 'p' }, { password: 'p' }],
    'auth.password': [{ username: 'u', password: 42 }, { username: 'u', password: '' }, { username: 'u' }],
    tls: [null, 42, 'ca.pem'],
    'tls.ca': [{ ca: 42 }, { ca: '' }, { ca: '/nonexistent/ca.pem' }],
    dialTimeoutMs: [null, 0, -1, 1.5, Number.NaN, 3_600_001, '5000', Number.POSITIVE_INFINITY],
    callTimeoutMs: [null, 0, -1, 1.5, Number.NaN, 3_600_001, '5000'],
    keepaliveMs: [null, 999, 1.5, '5000'],
    cacheIdleMs: [null, -1, 1.5, '1'],
    maxQueuedEvents: [null, 0, -1, 1.5],
    now: [null, 42, 'Date.now'],
    logger: [null, 42, {}, { warn() {} }],
    backoff: [null, 42, 'fast'],
    'backoff.maxMs': [{ maxMs: 3e9 }, { maxMs: Number.MAX_VALUE }, { maxMs: 0 }, { maxMs: 'x' }],
    'backoff.initialMs': [{ initialMs: 2 ** 31 }, { initialMs: -1 }],
    'backoff.multiplier': [{ multiplier: 0.5 }, { multiplier: Number.NaN }],
    'backoff.jitter': [{ jitter: 1 }],
  };
  const cases = Object.entries(BAD).flatMap(([path, values]) =>
    values.map((value) => {
      const [option] = path.split(/[.[]/);
      return { path, options: { [option!]: value } };
    }),
  );

  it('(property) any bad option, alone or among good ones, is a ConfigError naming it; the password never appears', () => {
    fc.assert(
      fc.property(fc.constantFrom(...cases), fc.boolean(), ({ path, options }, withAuth) => {
        const secret = 'Hx9QmZt7Lw';
        const all = {
          ...(withAuth && !('auth' in options) ? { auth: { username: 'u', password: secret } } : {}),
          ...options,
        };
        let error: unknown;
        try {
          createEtcdBackend(all as EtcdOptions);
        } catch (e) {
          error = e;
        }
        expect(error, `${path}: ${String(Object.values(options)[0])}`).toBeInstanceOf(ConfigError);
        expect((error as ConfigError).issues.map((i) => i.path)).toContain(path);
        expect((error as ConfigError).message).not.toContain(secret);
      }),
      { numRuns: 200 },
    );
    for (const options of [null, 42, 'x', []])
      expect(() => createEtcdBackend(options as never)).toThrow(ConfigError);
    expect(() => createEtcdBackend({ unknownOption: 1 } as never)).toThrow(/unknownOption: unknown option/);
  });
});
