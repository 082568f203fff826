import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff, checkSharedOptions } from '../src/driver.js';
import {
  createBalancer,
  DEFAULT_MAX_RING_POINTS,
  isUnspecifiedAddress,
  MAX_TIMER_MS,
  ringPoints,
  type ServiceInstance,
  ValidationError,
  validateInstance,
  validateTimeoutMs,
} from '../src/index.js';

const inst = (id: string, weight?: number): ServiceInstance => ({
  id,
  service: 's',
  host: '127.0.0.1',
  port: 1,
  ...(weight ? { weight } : {}),
});

describe('consistent-hash ring: bounded, rebuilt only on membership changes', () => {
  it('(property) points are bounded whatever the weights, at least one per instance, and proportional to weight', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 200_000 }),
        (weights, replicas, maxPoints) => {
          const points = ringPoints(weights, replicas, maxPoints);
          const total = points.reduce((a, b) => a + b, 0);
          const below1 = points.filter((p) => p === 1).length;
          expect(total).toBeLessThanOrEqual(maxPoints + below1);
          weights.forEach((w, i) => {
            expect(points[i]).toBeGreaterThanOrEqual(1);
            expect(points[i]).toBeLessThanOrEqual(Math.max(1, replicas * w));
          });
          // Same weight, same points; a heavier instance never gets fewer points.
          for (let i = 1; i < weights.length; i++) {
            const [a, b] = [weights[i - 1]!, weights[i]!];
            if (a === b) expect(points[i]).toBe(points[i - 1]);
            if (a < b) expect(points[i]).toBeGreaterThanOrEqual(points[i - 1]!);
          }
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });

  it('(property) a ring of any valid instances holds at most maxRingPoints plus one point per instance', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,10}$/), { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 40, maxLength: 40 }),
        (ids, weights) => {
          const b = createBalancer('consistent-hash', { maxRingPoints: 5000 });
          b.update(ids.map((id, i) => inst(id, weights[i])));
          const size = (b as unknown as { size: number }).size;
          expect(size).toBeLessThanOrEqual(5000 + ids.length);
          expect(size).toBeGreaterThanOrEqual(ids.length);
          for (const key of ['a', 'b', 'user-1']) expect(ids).toContain(b.pick(key)!.id);
        },
      ),
      { numRuns: 100, seed: 11 },
    );
  });

  it('twenty instances of weight 10,000 (the issue: 1.8 GB, 111 s) make a ring of the default bound', () => {
    const b = createBalancer('consistent-hash');
    b.update(Array.from({ length: 20 }, (_, i) => inst(`heavy-${i}`, 10_000)));
    expect((b as unknown as { size: number }).size).toBeLessThanOrEqual(DEFAULT_MAX_RING_POINTS);
    const counts = new Map<string, number>();
    for (let k = 0; k < 20_000; k++) {
      const id = b.pick(`k${k}`)!.id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const share of counts.values()) expect(share).toBeGreaterThan(500);
  });

  it('is rebuilt only when ids or weights change, not for the same list again (a stale event, a reordered copy, new objects)', () => {
    const b = createBalancer('consistent-hash');
    const rebuilds = () => (b as unknown as { rebuilds: number }).rebuilds;
    const list = [inst('a', 2), inst('b'), inst('c')];
    b.update(list);
    expect(rebuilds()).toBe(1);
    const before = ['k1', 'k2', 'k3', 'k4'].map((k) => b.pick(k)!.id);
    b.update(list);
    b.update([...list].reverse());
    b.update(list.map((i) => ({ ...i, metadata: { changed: 'yes' } })));
    expect(rebuilds()).toBe(1);
    expect(['k1', 'k2', 'k3', 'k4'].map((k) => b.pick(k)!.id)).toEqual(before);
    // The picked objects are the latest ones, even without a rebuild.
    expect(b.pick('k1')!.metadata).toEqual({ changed: 'yes' });
    b.update([inst('a', 3), inst('b'), inst('c')]);
    expect(rebuilds()).toBe(2);
    b.update([inst('a', 3), inst('b')]);
    expect(rebuilds()).toBe(3);
  });

  it('places the same points as hashing `<id>#<n>`, so keys keep their instance across versions', () => {
    const b = createBalancer('consistent-hash', { replicas: 3 });
    b.update([inst('x'), inst('y')]);
    const sameAsBefore = createBalancer('consistent-hash', { replicas: 3 });
    sameAsBefore.update([inst('y'), inst('x')]);
    for (let k = 0; k < 100; k++) expect(b.pick(`k${k}`)!.id).toBe(sameAsBefore.pick(`k${k}`)!.id);
  });

  it('bad strategies and options are ValidationErrors naming the field', () => {
    const refused = (f: () => unknown, field: string) => {
      try {
        f();
      } catch (error) {
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).field).toBe(field);
        return;
      }
      throw new Error(`not refused: ${field}`);
    };
    refused(() => createBalancer('fastest' as never), 'strategy');
    refused(() => createBalancer('constructor' as never), 'strategy');
    for (const replicas of [0, -1, 1.5, 1001, Number.NaN, '5', null])
      refused(() => createBalancer('consistent-hash', { replicas: replicas as number }), 'options.replicas');
    for (const maxRingPoints of [0, 2 ** 21, 0.5, '10'])
      refused(
        () => createBalancer('consistent-hash', { maxRingPoints: maxRingPoints as number }),
        'options.maxRingPoints',
      );
    refused(() => createBalancer('random', { random: 42 as never }), 'options.random');
    refused(() => createBalancer('random', null as never), 'options');
  });
});

describe('validation against hostile input', () => {
  it('recognises the unspecified address in every spelling, and nothing else', () => {
    for (const host of [
      '0.0.0.0',
      '::',
      '::0',
      '0::',
      '0:0:0:0:0:0:0:0',
      '0000::0000',
      '::ffff:0.0.0.0',
      '::0.0.0.0',
      '::FFFF:0.0.0.0',
    ])
      expect(isUnspecifiedAddress(host), host).toBe(true);
    for (const host of [
      '127.0.0.1',
      '::1',
      '0.0.0.1',
      '::ffff:127.0.0.1',
      'fe80::',
      '1::',
      'db.internal',
      '0.0.0.0.nip.io',
    ])
      expect(isUnspecifiedAddress(host), host).toBe(false);
  });

  it('metadata values are limited in UTF-8 bytes (as Consul counts), keys prefixed consul- are reserved', () => {
    const ok = validateInstance({ ...inst('a'), metadata: { k: '€'.repeat(170), e: '😀'.repeat(128) } });
    expect(ok.metadata).toEqual({ k: '€'.repeat(170), e: '😀'.repeat(128) });
    expect(() => validateInstance({ ...inst('a'), metadata: { k: '€'.repeat(171) } })).toThrow(/512 bytes/);
    expect(() => validateInstance({ ...inst('a'), metadata: { 'consul-x': 'v' } })).toThrow(ValidationError);
    expect(validateInstance({ ...inst('a'), metadata: { 'Consul-x': 'v', consul: 'v' } }).metadata).toEqual({
      'Consul-x': 'v',
      consul: 'v',
    });
  });

  it('a field is read once: a getter cannot pass validation with one value and be stored with another', () => {
    const answers = ['1.0.0', 'bad\nversion'];
    const tricky = { ...inst('a') } as Record<string, unknown>;
    Object.defineProperty(tricky, 'version', { enumerable: true, get: () => answers.shift() });
    const tag = ['ok', 'bad\ntag'];
    const tags = [] as unknown[];
    Object.defineProperty(tags, 0, { enumerable: true, get: () => tag.shift() });
    Object.defineProperty(tags, 'length', { value: 1 });
    tricky.tags = tags;
    const stored = validateInstance(tricky);
    expect(stored.version).toBe('1.0.0');
    expect(stored.tags).toEqual(['ok']);
  });

  it('every part of an instance is refused with its own field name, after the quick check fails', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ version: 'a\u0000b' }, 'instance.version'],
      [{ version: 'x'.repeat(129) }, 'instance.version'],
      [{ tags: ['ok', '\ud800'] }, 'instance.tags[1]'],
      [{ tags: ['ok', ''] }, 'instance.tags[1]'],
      [{ metadata: { ok: 'v', 'bad key': 'v' } }, 'instance.metadata.bad key'],
      [{ metadata: { rollcall_x: 'v' } }, 'instance.metadata.rollcall_x'],
      [{ metadata: { k: 7 } }, 'instance.metadata.k'],
      [{ metadata: { k: '\udc00' } }, 'instance.metadata.k'],
    ];
    for (const [extra, field] of cases) {
      let caught: unknown;
      try {
        validateInstance({ ...inst('a'), ...extra });
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(extra)).toBeInstanceOf(ValidationError);
      expect((caught as ValidationError).field, JSON.stringify(extra)).toBe(field);
    }
    expect(validateInstance({ ...inst('a'), tags: ['x'] }, 'registration').tags).toEqual(['x']);
    expect(() => validateInstance({ ...inst('a'), version: '' }, 'registration')).toThrow(
      expect.objectContaining({ field: 'registration.version' }),
    );
  });

  it('timeouts above what a timer can wait mean "for ever"; bad ones are refused', () => {
    expect(validateTimeoutMs(undefined)).toBeUndefined();
    expect(validateTimeoutMs(0)).toBe(0);
    expect(validateTimeoutMs(MAX_TIMER_MS)).toBe(MAX_TIMER_MS);
    for (const forever of [MAX_TIMER_MS + 1, 2 ** 31, 1e15, Number.MAX_VALUE, Number.POSITIVE_INFINITY])
      expect(validateTimeoutMs(forever)).toBeUndefined();
    for (const bad of [-1, Number.NaN, '5', null, Number.NEGATIVE_INFINITY])
      expect(() => validateTimeoutMs(bad)).toThrow(ValidationError);
  });

  it('backoff delays a timer cannot wait are refused', () => {
    for (const [field, backoff] of [
      ['backoff.maxMs', { maxMs: 3e9 }],
      ['backoff.maxMs', { maxMs: Number.MAX_VALUE }],
      ['backoff.initialMs', { initialMs: 2 ** 31 }],
    ] as const) {
      const issues: string[] = [];
      checkSharedOptions({ backoff }, (path) => issues.push(path), 'test');
      expect(issues, JSON.stringify(backoff)).toContain(field);
    }
    const issues: string[] = [];
    const resolved = checkSharedOptions(
      { backoff: { maxMs: MAX_TIMER_MS } },
      (path) => issues.push(path),
      'test',
    );
    expect(issues).toEqual([]);
    expect(new Backoff(resolved.backoff).maxMs).toBe(MAX_TIMER_MS);
  });
});
