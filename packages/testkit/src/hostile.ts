import { RollcallError, type ServiceInstance, ValidationError } from '@rollcall/core';
import fc from 'fast-check';
import { expect } from 'vitest';

/**
 * Bad and good inputs for the public entry points, as fast-check arbitraries, and the check that
 * a bad one is refused properly. The compliance suites run them on every backend; backend
 * packages reuse them for their own entry points. The rules encoded here are the documented
 * limits (core's README "Validation" table), so a test fails when code and table drift apart.
 */

/** A bad input and the field its `ValidationError` must name (an exact name, or a prefix ending with `.` or `[`). */
export interface BadInput<T> {
  readonly input: T;
  readonly field: string;
  /** What is wrong, for the failure message. */
  readonly label: string;
}

/** How long a refusal may take: it happens before any network call, so it is immediate. */
export const REFUSAL_DEADLINE_MS = 1500;

/**
 * Runs `call` and checks it is refused with a {@link ValidationError} whose `field` is `field` (or
 * starts with it, for a prefix such as `instance.metadata.`), within {@link REFUSAL_DEADLINE_MS}:
 * never a `TypeError`, never a `BackendUnavailableError` (which would mean a network call was
 * tried), never a hang. A synchronous throw counts as a refusal too.
 */
export async function expectRefused(call: () => unknown, field: string, label: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), REFUSAL_DEADLINE_MS);
  });
  let outcome: unknown;
  try {
    outcome = await Promise.race([Promise.resolve().then(call), deadline]);
  } catch (error) {
    outcome = error;
  } finally {
    clearTimeout(timer);
  }
  const where = `${label}: expected a ValidationError naming '${field}'`;
  expect(outcome, `${where}, but the call hung`).not.toBe('hung');
  expect(outcome, `${where}, got ${describe(outcome)}`).toBeInstanceOf(ValidationError);
  const error = outcome as ValidationError;
  expect(error).toBeInstanceOf(RollcallError);
  expect(error.code).toBe('ERR_VALIDATION');
  const named =
    field.endsWith('.') || field.endsWith('[') ? error.field.startsWith(field) : error.field === field;
  expect(named, `${where}, got field '${error.field}' (${error.message})`).toBe(true);
}

function describe(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return `a resolved ${JSON.stringify(value)?.slice(0, 80) ?? String(value)}`;
  } catch {
    return 'a resolved value';
  }
}

const bad = <T>(field: string, label: string, arb: fc.Arbitrary<T>): fc.Arbitrary<BadInput<T>> =>
  arb.map((input) => ({ input, field, label }));

/** Values that are not strings. */
export const notString: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.object({ maxDepth: 1, maxKeys: 2 }),
);

/** A string holding an unpaired UTF-16 surrogate somewhere. */
export const loneSurrogate: fc.Arbitrary<string> = fc
  .tuple(
    fc.string({ maxLength: 8 }),
    fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff'),
    fc.string({ maxLength: 8 }),
  )
  .map(([a, s, b]) => `${a}${s}${b}`)
  .filter((s) => /\p{Cs}/u.test(s));

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;
const printableOnly = (s: string) => !UNPRINTABLE.test(s);

const control = fc.constantFrom('\u0000', '\n', '\r', '\t', '\u001b', '\u007f', '\u0085');
const withControl = fc
  .tuple(fc.stringMatching(/^[a-z0-9]{0,6}$/), control, fc.stringMatching(/^[a-z0-9]{0,6}$/))
  .map(([a, c, b]) => `${a}${c}${b}`);

/** Bad service names (for `register`, `getInstances`, `watch`). */
export function badServiceNames(): fc.Arbitrary<unknown> {
  return fc.oneof(
    notString.filter((v) => v !== undefined),
    fc.constantFrom(
      '',
      '.',
      '..',
      'a/b',
      '/web',
      'web/',
      'a..b',
      'Web',
      'web-',
      '-web',
      '.web',
      'web.',
      'wéb',
      'we b',
      'web_1',
    ),
    fc.stringMatching(/^[a-z0-9]{64,80}$/),
    withControl,
    loneSurrogate,
    fc.stringMatching(/^[a-z][a-z0-9]{0,5}[A-Z_/:@ ][a-z0-9]{0,5}$/),
  );
}

/** Bad ids, lock names and election names. */
export function badIds(): fc.Arbitrary<unknown> {
  return fc.oneof(
    notString.filter((v) => v !== undefined),
    fc.constantFrom('', '.', '..', 'a/b', 'a..b', '../x', 'a b', 'a:b', 'ü', 'x/'),
    fc.stringMatching(/^[A-Za-z0-9._-]{129,160}$/).filter((s) => !s.includes('..')),
    withControl,
    loneSurrogate,
  );
}

/** Keys that JSON.parse makes own properties of: the only way such keys reach an API. */
function objectWithKey(key: string, value: unknown): Record<string, unknown> {
  return JSON.parse(`{${JSON.stringify(key)}:${JSON.stringify(value)}}`);
}

const GOOD: ServiceInstance = { id: 'i1', service: 'svc', host: '127.0.0.1', port: 8080 };

/** Instances with exactly one bad field, and the field the refusal must name. */
export function badInstances(): fc.Arbitrary<BadInput<unknown>> {
  const metaKeyField = (key: string) => `instance.metadata.${key}`;
  return fc.oneof(
    bad(
      'instance',
      'not an object',
      fc.oneof(fc.constant(null), fc.integer(), fc.string(), fc.array(fc.integer())),
    ),
    bad(
      'instance.service',
      'bad service',
      badServiceNames().map((service) => ({ ...GOOD, service })),
    ),
    bad(
      'instance.id',
      'bad id',
      badIds().map((id) => ({ ...GOOD, id })),
    ),
    bad(
      'instance.host',
      'bad host',
      fc
        .oneof(
          notString,
          fc.constantFrom(
            '',
            'not a host!',
            'a..b',
            '-a.com',
            'a_b.com',
            'host:80',
            '[::1]',
            'http://x',
            '0.0.0.0',
            '::',
            '0::0',
            '::0',
            '0:0:0:0:0:0:0:0',
            '::ffff:0.0.0.0',
            '::0.0.0.0',
          ),
          fc.stringMatching(/^[a-z]{64,70}\.com$/),
          withControl,
          loneSurrogate,
        )
        .map((host) => ({ ...GOOD, host })),
    ),
    bad(
      'instance.port',
      'bad port',
      fc
        .oneof(
          fc.constantFrom(0, -1, 65_536, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '80', null, 2 ** 53),
          fc.integer({ min: 65_536 }),
          fc.integer({ max: 0 }),
        )
        .map((port) => ({ ...GOOD, port })),
    ),
    bad(
      'instance.version',
      'bad version',
      fc
        .oneof(
          notString.filter((v) => v !== undefined),
          fc.constant(''),
          fc.string({ minLength: 129, maxLength: 140 }).filter(printableOnly),
          withControl,
          loneSurrogate,
        )
        .map((version) => ({ ...GOOD, version })),
    ),
    bad(
      'instance.tags',
      'tags not an array',
      notString.filter((v) => v !== undefined && !Array.isArray(v)).map((tags) => ({ ...GOOD, tags })),
    ),
    bad(
      'instance.tags',
      'too many tags',
      fc.constant({ ...GOOD, tags: Array.from({ length: 65 }, (_, i) => `t${i}`) }),
    ),
    bad(
      'instance.tags[',
      'a bad tag',
      fc
        .tuple(
          fc.array(fc.stringMatching(/^[a-z]{1,5}$/), { maxLength: 3 }),
          fc.oneof(
            notString.filter((v) => typeof v !== 'string'),
            fc.constant(''),
            fc.string({ minLength: 257, maxLength: 260 }).filter(printableOnly),
            withControl,
            loneSurrogate,
          ),
        )
        .map(([ok, tag]) => ({ ...GOOD, tags: [...ok, tag] })),
    ),
    // biome-ignore lint/suspicious/noSparseArray: a sparse array is the bad input
    bad('instance.tags[', 'a sparse tag array', fc.constant({ ...GOOD, tags: ['a', , 'b'] })),
    bad(
      'instance.metadata',
      'metadata not an object',
      fc
        .oneof(fc.constant(null), fc.integer(), fc.string(), fc.array(fc.string()))
        .map((metadata) => ({ ...GOOD, metadata })),
    ),
    bad(
      'instance.metadata',
      'too many metadata entries',
      fc.integer({ min: 62, max: 70 }).map((n) => ({
        ...GOOD,
        metadata: Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v'])),
      })),
    ),
    fc
      .oneof(
        fc.constantFrom(
          '__proto__',
          'constructor',
          'prototype',
          'rollcall_id',
          'rollcall_x',
          'consul-x',
          'consul-',
          'a.b',
          'a b',
          'ü',
          '',
        ),
        fc.stringMatching(/^[A-Za-z0-9_-]{129,140}$/),
      )
      .map((key) => ({
        input: { ...GOOD, metadata: objectWithKey(key, 'v') },
        field: key === '' ? 'instance.metadata.' : metaKeyField(key),
        label: `metadata key ${JSON.stringify(key)}`,
      })),
    bad(
      'instance.metadata.k',
      'a bad metadata value',
      fc
        .oneof(
          notString.filter((v) => typeof v !== 'string' && v !== undefined),
          loneSurrogate,
          // Over 512 UTF-8 bytes in fewer than 512 characters: Consul counts bytes.
          fc.integer({ min: 171, max: 200 }).map((n) => '€'.repeat(n)),
          fc.integer({ min: 129, max: 140 }).map((n) => '😀'.repeat(n)),
          fc.integer({ min: 513, max: 600 }).map((n) => 'v'.repeat(n)),
        )
        .map((value) => ({ ...GOOD, metadata: { k: value } })),
    ),
    bad(
      'instance.weight',
      'bad weight',
      fc
        .oneof(fc.constantFrom(0, -1, 1.5, 10_001, Number.NaN, '2', null), fc.integer({ min: 10_001 }))
        .map((weight) => ({ ...GOOD, weight })),
    ),
    fc.constantFrom('adress', 'address', 'Port', 'meta', '__proto__', 'constructor').map((key) => ({
      input: { ...GOOD, ...objectWithKey(key, 'x') },
      field: `instance.${key}`,
      label: `unknown field ${key}`,
    })),
  );
}

/** Bad `ttlSeconds` on every backend (below the contract-wide minimum of 2, fractional, above one day, not a number). */
export function badTtls(): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constantFrom(0, 1, -1, 1.5, 2.5, 86_401, Number.NaN, Number.POSITIVE_INFINITY, '10', null),
    fc.integer({ max: 1 }),
    fc.integer({ min: 86_401 }),
  );
}

/** Option objects that are not objects. */
export const notOptions: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.string(),
  fc.boolean(),
  fc.array(fc.integer(), { maxLength: 2 }),
);

/** `signal` values that are not AbortSignals. */
export const notSignal: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.string(),
  fc.boolean(),
  fc.object({ maxDepth: 0, maxKeys: 2 }),
  fc.constant({ aborted: false }),
);

/** Register options with exactly one bad field. */
export function badRegisterOptions(): fc.Arbitrary<BadInput<unknown>> {
  return fc.oneof(
    bad('options', 'options not an object', notOptions),
    bad(
      'options.ttlSeconds',
      'bad ttl',
      badTtls().map((ttlSeconds) => ({ ttlSeconds })),
    ),
    bad(
      'options.signal',
      'not a signal',
      notSignal.map((signal) => ({ signal })),
    ),
  );
}

/** Watch options (`{ signal? }`) with a bad field. */
export function badWatchOptions(): fc.Arbitrary<BadInput<unknown>> {
  return fc.oneof(
    bad('options', 'options not an object', notOptions),
    bad(
      'options.signal',
      'not a signal',
      notSignal.map((signal) => ({ signal })),
    ),
  );
}

const KEY_SEGMENT = /^[A-Za-z0-9._~ -]{1,12}$/;

/** Configuration keys refused everywhere (field `key` for get/put/delete, `prefix` for getAll/watchPrefix). */
export function badKeys(): fc.Arbitrary<unknown> {
  return fc.oneof(
    notString.filter((v) => v !== undefined),
    fc.constantFrom(
      '',
      '/',
      '//',
      'a//b',
      '//a',
      '../x',
      'a/../b',
      'a/..',
      './a',
      'a/./b',
      'a/.',
      '..',
      '.',
      'trailing/',
    ),
    fc.stringMatching(/^[a-z]{513,530}$/),
    withControl,
    loneSurrogate,
    fc
      .tuple(fc.stringMatching(KEY_SEGMENT), fc.constantFrom('/../', '/./', '//'))
      .map(([a, trick]) => `${a}${trick}x`),
  );
}

/** Prefixes refused everywhere (an empty prefix and a trailing `/` are allowed). */
export function badPrefixes(): fc.Arbitrary<unknown> {
  return badKeys().filter((k) => k !== '' && k !== '/' && k !== 'trailing/');
}

/** Configuration values refused everywhere (field `value`). */
export function badValues(): fc.Arbitrary<unknown> {
  return fc.oneof(
    notString,
    loneSurrogate,
    // 512 KiB + 1 byte, in two- and three-byte characters.
    fc.constantFrom(`${'é'.repeat(262_144)}x`, '€'.repeat(174_763)),
  );
}

/** Good configuration keys under `root`: unicode, spaces and dots in segments, up to the 512-character limit. */
export function goodKeys(root: string): fc.Arbitrary<string> {
  const segment = fc.oneof(
    fc.stringMatching(KEY_SEGMENT).filter((s) => s !== '.' && s !== '..'),
    fc.constantFrom('zürich', '東京', 'emoji😀', 'a?b#c%d+e&f=g', 'x:y@z', '...'),
  );
  return fc.oneof(
    fc.array(segment, { minLength: 1, maxLength: 5 }).map((segments) => `${root}${segments.join('/')}`),
    // The longest key: exactly 512 characters, multi-byte included.
    fc.constantFrom('a', 'é', '東').map((c) => `${root}${c.repeat(512 - root.length)}`),
  );
}

/** Good configuration values: anything well-formed, control characters included, up to 512 KiB of UTF-8. */
export function goodValues(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !/\p{Cs}/u.test(s)),
    fc.constantFrom('', ' ', '\u0000', '{"a":[1,null]}', 'a'.repeat(512 * 1024), '€'.repeat(174_762)),
  );
}

/** An instance of `service` with every field at its documented maximum (128-character id and version, 64 tags of 253 characters, 60 metadata entries of 510 bytes, weight 10,000). */
export function maximalInstance(service: string): ServiceInstance {
  return {
    id: 'i'.repeat(128),
    service,
    host: `${'a'.repeat(63)}.${'b'.repeat(63)}.example.com`,
    port: 65_535,
    version: '東'.repeat(128),
    tags: Array.from({ length: 64 }, (_, i) => `${i}-${'t'.repeat(250)}`),
    metadata: Object.fromEntries(
      Array.from({ length: 60 }, (_, i) => [`k${i}-${'m'.repeat(120)}`, '€'.repeat(170)]),
    ),
    weight: 10_000,
  };
}

/** Good instances of `service` at the documented maximum lengths (unicode in version, tags and metadata values). */
export function goodInstances(service: string): fc.Arbitrary<ServiceInstance> {
  const printable = (max: number) =>
    fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: max })
      .filter((s) => s.length >= 1 && s.length <= max && printableOnly(s));
  const longest = (c: string, max: number) => c.repeat(Math.floor(max / c.length));
  return fc.record(
    {
      id: fc
        .oneof(fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/), fc.constant('i'.repeat(128)))
        .filter((id) => !id.includes('..')),
      service: fc.constant(service),
      host: fc.constantFrom(
        '127.0.0.1',
        '::1',
        'fe80::1',
        'db.internal',
        `${'a'.repeat(63)}.${'b'.repeat(63)}.example.com`,
      ),
      port: fc.constantFrom(1, 80, 65_535),
      version: fc.oneof(
        printable(128),
        fc.constantFrom(longest('v', 128), longest('東', 128), longest('😀', 128)),
      ),
      tags: fc.oneof(fc.array(printable(256), { maxLength: 4 }), fc.constant(maximalInstance(service).tags!)),
      metadata: fc.oneof(
        fc.dictionary(
          fc
            .stringMatching(/^[A-Za-z0-9_-]{1,128}$/)
            .filter((k) => !/^(rollcall_|consul-|__proto__$|constructor$|prototype$)/.test(k)),
          printable(40),
          {
            maxKeys: 4,
          },
        ),
        fc.constant(
          Object.fromEntries(
            Array.from({ length: 60 }, (_, i) => [`k${i}-${'m'.repeat(120)}`, '€'.repeat(170)]),
          ),
        ),
        fc.constant({ v: '😀'.repeat(128), w: 'x'.repeat(512), empty: '' }),
      ),
      weight: fc.constantFrom(1, 10_000),
    },
    { requiredKeys: ['id', 'service', 'host', 'port'] },
  );
}
