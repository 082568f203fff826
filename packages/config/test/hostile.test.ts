import diagnostics from 'node:diagnostics_channel';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, type ConfigMessage, ROLLCALL_CHANNELS, RollcallError } from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';
import { eventually } from '@rollcall/testkit';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLiveConfig, type LiveConfigError } from '../src/index.js';
import { buildTree } from '../src/tree.js';

const dir = mkdtempSync(join(tmpdir(), 'rollcall-config-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const schema = z.object({ log_level: z.string().default('info') });

describe('the configuration object is a function of the keys alone', () => {
  const segment = fc.constantFrom('db', 'host', 'port', 'a', 'b', 'log_level');
  const keySets = fc.uniqueArray(
    fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/')),
    {
      maxLength: 8,
    },
  );

  it('(property) any order of arrival gives the same object, or the same refusal', () => {
    fc.assert(
      fc.property(
        keySets.chain((keys) =>
          fc.tuple(
            fc.constant(keys),
            fc.shuffledSubarray(keys, { minLength: keys.length, maxLength: keys.length }),
          ),
        ),
        ([keys, shuffled]) => {
          const entries = (order: string[]) => new Map(order.map((k) => [`p/${k}`, JSON.stringify(k)]));
          const a = buildTree(entries(keys), 'p/');
          const b = buildTree(entries(shuffled), 'p/');
          expect(
            JSON.stringify(a.ok ? a.value : [...a.refused].sort((x, y) => (x.key < y.key ? -1 : 1))),
          ).toBe(JSON.stringify(b.ok ? b.value : [...b.refused].sort((x, y) => (x.key < y.key ? -1 : 1))));
          // Refused exactly when one key is a folder of another.
          const conflict = keys.some((k) => keys.some((o) => o.startsWith(`${k}/`)));
          expect(a.ok).toBe(!conflict);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('(property) a segment or JSON key named __proto__, constructor or prototype is refused and never reaches Object.prototype', () => {
    const forbidden = fc.constantFrom('__proto__', 'constructor', 'prototype');
    fc.assert(
      fc.property(
        forbidden,
        fc.array(fc.constantFrom('a', 'b'), { maxLength: 2 }),
        forbidden,
        (name, around, inner) => {
          const key = `p/${[...around, name, 'polluted'].join('/')}`;
          const bySegment = buildTree(new Map([[key, '"yes"']]), 'p/');
          expect(bySegment.ok).toBe(false);
          const byValue = buildTree(new Map([['p/x', `{"a":{"${inner}":{"polluted":"yes"}}}`]]), 'p/');
          expect(byValue.ok).toBe(false);
          expect(({} as Record<string, unknown>).polluted).toBeUndefined();
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('the cache file', () => {
  it('is written with mode 0600, and nothing else is left in its directory', async () => {
    await using backend = createMemoryBackend();
    const cacheFile = join(dir, 'mode', 'cache.json');
    mkdirSync(join(dir, 'mode'));
    await backend.kv.put('cfg/log_level', 'debug');
    await using config = await createLiveConfig({ source: backend.kv, prefix: 'cfg/', schema, cacheFile });
    await eventually(() => readdirSync(join(dir, 'mode')).includes('cache.json'));
    await backend.kv.put('cfg/log_level', 'warn');
    await eventually(() => config.current.log_level === 'warn');
    await config.close();
    expect(statSync(cacheFile).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 'mode'))).toEqual(['cache.json']);
  });

  it('a failed rename (the path is a directory) is reported through error and leaves no temp file behind', async () => {
    await using backend = createMemoryBackend();
    const parent = join(dir, 'rename');
    const cacheFile = join(parent, 'cache.json');
    mkdirSync(cacheFile, { recursive: true });
    await backend.kv.put('cfg/log_level', 'debug');
    await using config = await createLiveConfig({ source: backend.kv, prefix: 'cfg/', schema, cacheFile });
    const errors: LiveConfigError[] = [];
    config.on('error', (e) => errors.push(e));
    await backend.kv.put('cfg/log_level', 'warn');
    await eventually(() => errors.some((e) => /cannot write cache file/.test(e.message)));
    await config.close();
    expect(readdirSync(parent)).toEqual(['cache.json']);
  });
});

describe('createLiveConfig options', () => {
  it('(property) any bad option is a ConfigError naming it, before anything is read or watched', async () => {
    await using backend = createMemoryBackend();
    const good = { source: backend.kv, prefix: 'cfg/', schema };
    const cases = fc.oneof(
      fc
        .constantFrom(null, 42, 'x', {}, [], { get: 1 }, { getAll() {}, get() {}, put() {}, delete() {} })
        .map((source) => ({ options: { ...good, source }, path: 'source' })),
      fc
        .constantFrom(42, null, '../x', 'a//b', 'a\u0000b', '\ud800')
        .map((prefix) => ({ options: { ...good, prefix }, path: 'prefix' })),
      fc.constantFrom(null, {}, 'zod', 1).map((s) => ({ options: { ...good, schema: s }, path: 'schema' })),
      fc.constantFrom(42, 'x', [1]).map((defaults) => ({ options: { ...good, defaults }, path: 'defaults' })),
      fc
        .constantFrom(42, '', 'a\u0000b', {})
        .map((cacheFile) => ({ options: { ...good, cacheFile }, path: 'cacheFile' })),
      fc
        .constantFrom(Number.NaN, -1, 1.5, '5', null, Number.POSITIVE_INFINITY, 2 ** 31)
        .map((startupTimeoutMs) => ({ options: { ...good, startupTimeoutMs }, path: 'startupTimeoutMs' })),
      fc
        .constantFrom(42, {}, { error() {} })
        .map((logger) => ({ options: { ...good, logger }, path: 'logger' })),
      fc.constantFrom('sourse', 'prefx').map((k) => ({ options: { ...good, [k]: 1 }, path: k })),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ options, path }) => {
        const error = await createLiveConfig(options as never).catch((e: unknown) => e);
        expect(error, `${path}: ${String((options as Record<string, unknown>)[path])}`).toBeInstanceOf(
          ConfigError,
        );
        expect(error).toBeInstanceOf(RollcallError);
        expect((error as ConfigError).issues.map((i) => i.path)).toContain(path);
      }),
      { numRuns: 120 },
    );
    for (const options of [undefined, null, 42])
      await expect(createLiveConfig(options as never)).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('the config diagnostics channel', () => {
  it('publishes each update applied (with the fields that changed) and each refused (with the keys at fault)', async () => {
    const seen: ConfigMessage[] = [];
    const onMessage = (m: unknown) => void seen.push(m as ConfigMessage);
    diagnostics.subscribe(ROLLCALL_CHANNELS.config, onMessage);
    try {
      await using backend = createMemoryBackend();
      await backend.kv.put('diag/log_level', 'debug');
      const strict = z.object({ log_level: z.enum(['debug', 'info', 'warn']) });
      await using config = await createLiveConfig({ source: backend.kv, prefix: 'diag/', schema: strict });
      config.on('error', () => {});
      await backend.kv.put('diag/log_level', 'loud');
      await eventually(() => seen.some((m) => m.outcome === 'refused'));
      await backend.kv.put('diag/log_level', 'warn');
      await eventually(() => config.current.log_level === 'warn');
      expect(seen.map((m) => m.outcome)).toEqual(['applied', 'refused', 'applied']);
      expect(seen[0]).toEqual({ prefix: 'diag/', outcome: 'applied', changedKeys: ['log_level'] });
      expect(seen[1]).toMatchObject({ prefix: 'diag/', outcome: 'refused', keys: ['diag/log_level'] });
      expect(seen[1]?.error).toBeInstanceOf(RollcallError);
      expect(seen[2]).toEqual({ prefix: 'diag/', outcome: 'applied', changedKeys: ['log_level'] });
    } finally {
      diagnostics.unsubscribe(ROLLCALL_CHANNELS.config, onMessage);
    }
  });
});
