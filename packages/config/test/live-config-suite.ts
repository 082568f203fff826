import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '@rollcall/core';
import { eventually, uniqueService } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLiveConfig, type LiveConfig, LiveConfigError } from '../src/index.js';

/** What a backend gives the live-config suite. */
export interface LiveConfigHarness {
  newClient(): Promise<Backend>;
  /** Writes several keys as one backend transaction. */
  batch(client: Backend, put: Record<string, string>, deleted?: string[]): Promise<void>;
  /** Makes the backend unreachable / brings it back (a restart where possible). */
  outage(): Promise<void>;
  restore(): Promise<void>;
  teardown?(): Promise<void>;
}

export const schema = z.object({
  log_level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  feature_checkout_v2: z.boolean().default(false),
  max_connections: z.number().int().positive().default(10),
  owner: z.string().optional(),
});
export const defaults = { log_level: 'info' as const, feature_checkout_v2: false, max_connections: 10 };
type AppConfig = z.output<typeof schema>;

/** Writes as soon as the backend takes writes again (after an outage). */
async function putOnceReachable(client: Backend, key: string, value: string): Promise<void> {
  await eventually(
    async () => {
      await client.kv.put(key, value);
      return true;
    },
    { timeoutMs: 20_000 },
  );
}

function recorder(config: LiveConfig<AppConfig>) {
  const changes: { next: AppConfig; previous: AppConfig; keys: string[] }[] = [];
  const errors: LiveConfigError[] = [];
  const stale: Error[] = [];
  let syncs = 0;
  config.on('change', (next, previous, keys) => changes.push({ next, previous, keys }));
  config.on('error', (e) => errors.push(e));
  config.on('stale', (e) => stale.push(e));
  config.on('sync', () => {
    syncs += 1;
  });
  return { changes, errors, stale, syncs: () => syncs };
}

/** The live-configuration behaviour every backend must show (issue 5's test list). */
export function describeLiveConfig(
  name: string,
  harness: () => Promise<LiveConfigHarness>,
  propagationMs = 3000,
): void {
  describe(`${name}: live configuration`, () => {
    let h: LiveConfigHarness;
    let writer: Backend;
    let reader: Backend;
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-live-config-'));
    const prefixFor = () => `/configs/${uniqueService('app')}/production/`;

    beforeAll(async () => {
      h = await harness();
      writer = await h.newClient();
      reader = await h.newClient();
    });
    afterAll(async () => {
      await writer?.close();
      await reader?.close();
      await h?.teardown?.();
      rmSync(dir, { recursive: true, force: true });
    });

    it('starts from the backend merged over defaults; one key changes one field; values parse as JSON where they parse', async () => {
      const prefix = prefixFor();
      await writer.kv.put(`${prefix}log_level`, 'warn');
      await writer.kv.put(`${prefix}max_connections`, '25');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      expect(config.current).toEqual({ log_level: 'warn', feature_checkout_v2: false, max_connections: 25 });
      expect(config.origin).toBe('backend');
      expect(config.stale).toBe(false);
      expect(Object.isFrozen(config.current)).toBe(true);
      const seen = recorder(config);
      await writer.kv.put(`${prefix}feature_checkout_v2`, 'true');
      await eventually(() => seen.changes.length === 1, { timeoutMs: propagationMs });
      expect(seen.changes[0]!.keys).toEqual(['feature_checkout_v2']);
      expect(seen.changes[0]!.previous.feature_checkout_v2).toBe(false);
      expect(config.current.feature_checkout_v2).toBe(true);
      await writer.kv.put(`${prefix}owner`, 'team-checkout');
      await eventually(() => config.current.owner === 'team-checkout', { timeoutMs: propagationMs });
    });

    it('a multi-key transaction is one change event', async () => {
      const prefix = prefixFor();
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      const seen = recorder(config);
      await h.batch(writer, {
        [`${prefix}log_level`]: 'debug',
        [`${prefix}max_connections`]: '99',
        [`${prefix}feature_checkout_v2`]: 'true',
      });
      await eventually(() => seen.changes.length >= 1, { timeoutMs: propagationMs });
      await writer.kv.put(`${prefix}owner`, 'marker');
      await eventually(() => config.current.owner === 'marker', { timeoutMs: propagationMs });
      expect(seen.changes).toHaveLength(2);
      expect(seen.changes[0]!.keys.sort()).toEqual(['feature_checkout_v2', 'log_level', 'max_connections']);
      expect(seen.changes[0]!.next).toMatchObject({
        log_level: 'debug',
        max_connections: 99,
        feature_checkout_v2: true,
      });
    });

    it('an invalid update is refused whole: the last good object stays and error names the key and reason', async () => {
      const prefix = prefixFor();
      await writer.kv.put(`${prefix}log_level`, 'warn');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      const seen = recorder(config);
      const before = config.current;
      await h.batch(writer, { [`${prefix}log_level`]: 'verbose', [`${prefix}max_connections`]: '50' });
      await eventually(() => seen.errors.length === 1, { timeoutMs: propagationMs });
      expect(seen.errors[0]).toBeInstanceOf(LiveConfigError);
      expect(seen.errors[0]!.keys).toEqual([`${prefix.slice(1)}log_level`]);
      expect(seen.errors[0]!.message).toContain('log_level');
      expect(config.current).toBe(before);
      expect(config.current.max_connections).toBe(10);
      expect(seen.changes).toHaveLength(0);
      // Nothing lost: fixing the bad key applies the good part of the refused update too.
      await writer.kv.put(`${prefix}log_level`, 'error');
      await eventually(() => seen.changes.length === 1, { timeoutMs: propagationMs });
      expect(config.current).toMatchObject({ log_level: 'error', max_connections: 50 });
    });

    it('a deleted key falls back to its default', async () => {
      const prefix = prefixFor();
      await writer.kv.put(`${prefix}max_connections`, '77');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      expect(config.current.max_connections).toBe(77);
      const seen = recorder(config);
      await writer.kv.delete(`${prefix}max_connections`);
      await eventually(() => seen.changes.length === 1, { timeoutMs: propagationMs });
      expect(config.current.max_connections).toBe(10);
      expect(seen.changes[0]!.keys).toEqual(['max_connections']);
    });

    it('the cache file holds the last good object, written atomically on every good update', async () => {
      const prefix = prefixFor();
      const cacheFile = join(dir, `${uniqueService('cache')}.json`);
      await writer.kv.put(`${prefix}log_level`, 'debug');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults, cacheFile });
      await eventually(
        () => {
          try {
            return JSON.parse(readFileSync(cacheFile, 'utf8')).value.log_level === 'debug';
          } catch {
            return false;
          }
        },
        { timeoutMs: propagationMs },
      );
      await writer.kv.put(`${prefix}log_level`, 'error');
      await eventually(() => JSON.parse(readFileSync(cacheFile, 'utf8')).value.log_level === 'error', {
        timeoutMs: propagationMs,
      });
      expect(config.current.log_level).toBe('error');
    });

    it('backend down at start: starts from the cache file within startupTimeoutMs, then catches up', async () => {
      const prefix = prefixFor();
      const cacheFile = join(dir, `${uniqueService('down')}.json`);
      await writer.kv.put(`${prefix}log_level`, 'warn');
      {
        await using warm = await createLiveConfig({ source: reader.kv, prefix, schema, defaults, cacheFile });
        expect(warm.current.log_level).toBe('warn');
      }
      await eventually(() => {
        try {
          return JSON.parse(readFileSync(cacheFile, 'utf8')).value.log_level === 'warn';
        } catch {
          return false;
        }
      });
      await h.outage();
      let config: LiveConfig<AppConfig> | undefined;
      try {
        const fresh = await h.newClient();
        const started = Date.now();
        config = await createLiveConfig({
          source: fresh.kv,
          prefix,
          schema,
          defaults,
          cacheFile,
          startupTimeoutMs: 1500,
        });
        expect(Date.now() - started).toBeLessThan(1500 + 2000);
        expect(config.origin).toBe('cache');
        expect(config.stale).toBe(true);
        expect(config.current.log_level).toBe('warn');
        const seen = recorder(config);
        await h.restore();
        await putOnceReachable(writer, `${prefix}log_level`, 'error');
        await eventually(() => config!.current.log_level === 'error', { timeoutMs: 20_000 });
        expect(config.origin).toBe('backend');
        expect(config.stale).toBe(false);
        expect(seen.syncs()).toBeGreaterThanOrEqual(1);
        await config.close();
        await fresh.close();
      } finally {
        await h.restore();
      }
    });

    it('a corrupt cache file is reported and ignored: start from defaults', async () => {
      const prefix = prefixFor();
      const cacheFile = join(dir, `${uniqueService('corrupt')}.json`);
      writeFileSync(cacheFile, '{"prefix": "x", "value": {"log_le');
      await h.outage();
      try {
        const fresh = await h.newClient();
        const errors: string[] = [];
        const config = await createLiveConfig({
          source: fresh.kv,
          prefix,
          schema,
          defaults: { ...defaults, log_level: 'warn' },
          cacheFile,
          startupTimeoutMs: 1000,
          logger: {
            debug() {},
            info() {},
            warn() {},
            error: (f, m) => errors.push(`${m} ${JSON.stringify(f)}`),
          },
        });
        expect(config.origin).toBe('defaults');
        expect(config.current).toEqual({ ...defaults, log_level: 'warn' });
        expect(errors.join('\n')).toMatch(/corrupt and was ignored/);
        await config.close();
        await fresh.close();
      } finally {
        await h.restore();
      }
    });

    it('an outage while running keeps the current object, reports stale, and the next update still arrives', async () => {
      const prefix = prefixFor();
      await writer.kv.put(`${prefix}log_level`, 'info');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      const seen = recorder(config);
      await h.outage();
      try {
        await eventually(() => seen.stale.length === 1, { timeoutMs: 20_000 });
        expect(config.stale).toBe(true);
        expect(config.current.log_level).toBe('info');
      } finally {
        await h.restore();
      }
      await putOnceReachable(writer, `${prefix}log_level`, 'debug');
      await eventually(() => config.current.log_level === 'debug', { timeoutMs: 20_000 });
      expect(config.stale).toBe(false);
    });

    it('a backend holding an invalid value at start: starts from the cache file, reports the refused key, follows the fix', async () => {
      const prefix = prefixFor();
      const cacheFile = join(dir, `${uniqueService('invalid-start')}.json`);
      await writer.kv.put(`${prefix}log_level`, 'warn');
      {
        await using warm = await createLiveConfig({ source: reader.kv, prefix, schema, defaults, cacheFile });
        expect(warm.current.log_level).toBe('warn');
      }
      await eventually(() => {
        try {
          return JSON.parse(readFileSync(cacheFile, 'utf8')).value.log_level === 'warn';
        } catch {
          return false;
        }
      });
      // A bad push, then a restart: no crash loop, the last good object from the cache.
      await writer.kv.put(`${prefix}log_level`, 'verbose');
      await eventually(async () => (await reader.kv.get(`${prefix}log_level`)) === 'verbose');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults, cacheFile });
      expect(config.origin).toBe('cache');
      expect(config.stale).toBe(false);
      expect(config.current.log_level).toBe('warn');
      const seen = recorder(config);
      await eventually(() => seen.errors.length === 1, { timeoutMs: propagationMs });
      expect(seen.errors[0]!.keys).toEqual([`${prefix.slice(1)}log_level`]);
      await writer.kv.put(`${prefix}log_level`, 'error');
      await eventually(() => config.current.log_level === 'error', { timeoutMs: propagationMs });
      expect(config.origin).toBe('backend');
      // Without a cache file: the defaults, and the same report. (Once the running config has
      // refused it, the shared watch holds the bad value.)
      await writer.kv.put(`${prefix}max_connections`, '-4');
      await eventually(() => seen.errors.length === 2, { timeoutMs: propagationMs });
      await using bare = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      expect(bare.origin).toBe('defaults');
      expect(bare.current).toEqual(defaults);
      const bareErrors = recorder(bare).errors;
      await eventually(() => bareErrors.length === 1, { timeoutMs: propagationMs });
      expect(bareErrors[0]!.keys).toEqual([`${prefix.slice(1)}max_connections`]);
    });

    it('a leaf and a folder of the same name (db, db/host) is refused in either order of arrival: current depends on the keys alone', async () => {
      const withDb = schema.extend({ db: z.union([z.string(), z.object({ host: z.string() })]).optional() });
      for (const order of [
        ['db', 'db/host'],
        ['db/host', 'db'],
      ] as const) {
        const prefix = prefixFor();
        const values = { db: 'postgres://db-2', 'db/host': 'db-1' };
        await writer.kv.put(`${prefix}log_level`, 'warn');
        await using early = await createLiveConfig({ source: reader.kv, prefix, schema: withDb, defaults });
        const earlySeen = recorder(early);
        await writer.kv.put(`${prefix}${order[0]}`, values[order[0]]);
        await eventually(() => early.current.db !== undefined, { timeoutMs: propagationMs });
        const good = early.current;
        await writer.kv.put(`${prefix}${order[1]}`, values[order[1]]);
        await eventually(() => earlySeen.errors.length === 1, { timeoutMs: propagationMs });
        expect(earlySeen.errors[0]!.keys.sort()).toEqual([
          `${prefix.slice(1)}db`,
          `${prefix.slice(1)}db/host`,
        ]);
        expect(earlySeen.errors[0]!.message).toMatch(/both a value and a folder/);
        expect(early.current).toBe(good);
        // A process started now sees the same keys: it refuses them too (defaults), never picks one.
        await using late = await createLiveConfig({ source: reader.kv, prefix, schema: withDb, defaults });
        expect(late.current.db).toBeUndefined();
        const lateErrors = recorder(late).errors;
        await eventually(() => lateErrors.length === 1, { timeoutMs: propagationMs });
        // Removing either key makes the configuration valid again, everywhere alike.
        await writer.kv.delete(`${prefix}db`);
        await eventually(
          () =>
            JSON.stringify(early.current.db) === '{"host":"db-1"}' &&
            JSON.stringify(late.current.db) === '{"host":"db-1"}',
          { timeoutMs: propagationMs },
        );
      }
    });

    it('keys and JSON values naming __proto__, constructor or prototype are refused and never reach Object.prototype', async () => {
      const prefix = prefixFor();
      await writer.kv.put(`${prefix}log_level`, 'warn');
      await using config = await createLiveConfig({ source: reader.kv, prefix, schema, defaults });
      const seen = recorder(config);
      const before = config.current;
      const bad = [
        [`${prefix}__proto__/polluted`, '"yes"'],
        [`${prefix}constructor/prototype/polluted`, '"yes"'],
        [`${prefix}owner/prototype`, '"x"'],
        [`${prefix}max_connections`, '{"__proto__":{"polluted":"yes"}}'],
      ] as const;
      for (const [key, value] of bad) {
        await writer.kv.put(key, value);
        await eventually(() => seen.errors.some((e) => e.keys.includes(key.slice(1))), {
          timeoutMs: propagationMs,
        });
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
        expect(config.current).toBe(before);
        await writer.kv.delete(key);
      }
      await writer.kv.put(`${prefix}log_level`, 'error');
      await eventually(() => config.current.log_level === 'error', { timeoutMs: propagationMs });
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });

    it('bad defaults are a ConfigError at start', async () => {
      await expect(
        createLiveConfig({
          source: reader.kv,
          prefix: prefixFor(),
          schema,
          defaults: { max_connections: -1 } as never,
        }),
      ).rejects.toMatchObject({ code: 'ERR_CONFIG' });
    });
  });
}
