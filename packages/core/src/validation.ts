import { isIPv4, isIPv6 } from 'node:net';
import { ValidationError } from './errors.js';
import { describeValue } from './options.js';
import type { RegisterOptions, ServiceInstance } from './types.js';

/** Default registration TTL in seconds. */
export const DEFAULT_TTL_SECONDS = 10;
/** Smallest TTL any backend honours (etcd rounds lower grants up to 2 s). */
export const MIN_TTL_SECONDS = 2;
/** Largest TTL accepted: one day. */
export const MAX_TTL_SECONDS = 86_400;
/** Largest instance weight. */
export const MAX_WEIGHT = 10_000;
/** Metadata keys with this prefix are reserved for backends (the Consul backend stores `version` there). */
export const RESERVED_METADATA_PREFIX = 'rollcall_';
/** Metadata keys with this prefix are reserved by Consul (its agent refuses them); refused on every backend. */
export const CONSUL_RESERVED_METADATA_PREFIX = 'consul-';
/**
 * Most metadata entries of an instance: Consul allows 64 `Meta` pairs per service and its backend
 * keeps up to 4 of them for itself (`rollcall_id`, `rollcall_owner`, `rollcall_version`,
 * `rollcall_shape`), so 60 fit on every backend.
 */
export const MAX_METADATA_ENTRIES = 60;
/** Largest metadata value, in UTF-8 bytes (Consul counts bytes). */
export const MAX_METADATA_VALUE_BYTES = 512;
/** Largest configuration value, in UTF-8 bytes (Consul's default `kv_max_value_size`). */
export const MAX_VALUE_BYTES = 512 * 1024;
/** Largest configuration key or prefix, in characters (after one leading `/` is dropped). */
export const MAX_KEY_LENGTH = 512;
/** Largest election value, in characters. */
export const MAX_ELECTION_VALUE_LENGTH = 4096;
/**
 * The longest delay a Node.js timer can wait: 2^31-1 ms (about 24.8 days). A longer delay would
 * fire at once, so a timeout above it means "wait for ever".
 */
export const MAX_TIMER_MS = 2_147_483_647;
/**
 * Object keys refused wherever outside input becomes object keys (instance metadata, live
 * configuration paths and values, configuration files): assigning them can reach
 * `Object.prototype` (prototype pollution) or shadow what every object inherits.
 */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const SERVICE_RE = /^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$/;
const ID_RE = /^[A-Za-z0-9._-]{1,128}$/;
const META_KEY_RE = /^[A-Za-z0-9_-]{1,128}$/;
const DNS_LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// Any C0/C1 control character or DEL. Such characters could split keys, logs or HTTP headers.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
// An unpaired UTF-16 surrogate: it cannot be encoded as UTF-8, so it would not survive a round trip.
const LONE_SURROGATE_RE = /\p{Cs}/u;
// The native check (Node 20+) is several times faster than the regular expression, and every
// registration and every instance a watch reads passes here once per string field.
const nativeIsWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;

/** True when `value` has no lone surrogate. */
function isWellFormed(value: string): boolean {
  return nativeIsWellFormed ? nativeIsWellFormed.call(value) : !LONE_SURROGATE_RE.test(value);
}

const INSTANCE_FIELDS = new Set(['id', 'service', 'host', 'port', 'version', 'tags', 'metadata', 'weight']);

/*
 * The rules below are written once, as functions answering why a value is refused (or `undefined`):
 * a valid value costs no allocation, and the field name (`instance.tags[3]`) is built only for the
 * error. Every registration and every instance a watch reads passes through them.
 */

/** Why `value` is not a string that survives storage, if it is not. */
function stringProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${describeValue(value)}`;
  if (!isWellFormed(value))
    return 'must not contain lone surrogates (unpaired UTF-16 halves): they cannot be stored as UTF-8';
  return undefined;
}

function requireString(field: string, value: unknown): string {
  const problem = stringProblem(value);
  if (problem !== undefined) throw new ValidationError(field, problem);
  return value as string;
}

/**
 * Checks that `options` is `undefined` or an object (not `null`, an array or a primitive) and
 * returns it as a record (`{}` when undefined). Throws {@link ValidationError} naming `field`.
 */
export function validateOptionsObject(options: unknown, field = 'options'): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new ValidationError(field, `must be an object, got ${describeValue(options)}`);
  return options as Record<string, unknown>;
}

/** Checks an optional `AbortSignal`. Throws {@link ValidationError} naming `field` for anything else. */
export function validateSignal(signal: unknown, field = 'options.signal'): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal))
    throw new ValidationError(field, `must be an AbortSignal, got ${describeValue(signal)}`);
  return signal;
}

/** Checks the options of a call or a watch (`{ signal? }`, see `CallOptions`) and returns the signal. */
export function validateCallOptions(options: unknown): AbortSignal | undefined {
  return validateSignal(validateOptionsObject(options).signal);
}

/** The options of a watch are those of a call: {@link validateCallOptions}. */
export const validateWatchOptions = validateCallOptions;

/**
 * Checks an optional timeout in ms: a number >= 0. Returns `undefined` (no timeout: wait for ever)
 * for `undefined`, `Infinity` and anything above {@link MAX_TIMER_MS}, which a timer cannot wait.
 */
export function validateTimeoutMs(timeoutMs: unknown, field = 'options.timeoutMs'): number | undefined {
  if (timeoutMs === undefined) return undefined;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)
    throw new ValidationError(field, `must be a number of ms >= 0, got ${describeValue(timeoutMs)}`);
  return timeoutMs > MAX_TIMER_MS ? undefined : timeoutMs;
}

function checkNoEscape(field: string, value: string): void {
  if (value.length === 0) throw new ValidationError(field, 'must not be empty');
  if (CONTROL_RE.test(value)) throw new ValidationError(field, 'must not contain control characters');
  if (value.includes('/'))
    throw new ValidationError(field, `must not contain '/' (got ${describeValue(value)})`);
  if (value.includes('..') || value === '.')
    throw new ValidationError(field, `must not be '.' or contain '..' (got ${describeValue(value)})`);
}

/** Checks a service name (contract rule 1). Throws {@link ValidationError} naming `field`. */
export function validateServiceName(service: unknown, field = 'service'): string {
  const value = requireString(field, service);
  checkNoEscape(field, value);
  if (value.length > 63)
    throw new ValidationError(field, `must be at most 63 characters (got ${value.length})`);
  if (!SERVICE_RE.test(value)) {
    throw new ValidationError(
      field,
      `must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (got ${describeValue(value)})`,
    );
  }
  return value;
}

/** Checks an instance id, lock name or election name: 1-128 chars of `[A-Za-z0-9._-]`. */
export function validateId(id: unknown, field = 'id'): string {
  const value = requireString(field, id);
  checkNoEscape(field, value);
  if (value.length > 128)
    throw new ValidationError(field, `must be at most 128 characters (got ${value.length})`);
  if (!ID_RE.test(value))
    throw new ValidationError(field, `must be characters of [A-Za-z0-9._-] (got ${describeValue(value)})`);
  return value;
}

/**
 * True for an unspecified address (`0.0.0.0`, `::` in any spelling, `::ffff:0.0.0.0`): it names no
 * host, so nobody could reach an instance registered there (and Consul refuses it).
 */
export function isUnspecifiedAddress(host: string): boolean {
  if (isIPv4(host)) return host === '0.0.0.0';
  if (!isIPv6(host)) return false;
  let text = host.replace(/%.*$/, '').toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    if (v4[1] !== '0.0.0.0') return false;
    text = `${text.slice(0, -v4[1]!.length)}0:0`;
  }
  const [head = '', tail] = text.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const front = groups(head);
  const back = groups(tail);
  const all = [...front, ...Array(8 - front.length - back.length).fill('0'), ...back].map((g) =>
    Number.parseInt(g, 16),
  );
  const zeroUpTo = (n: number) => all.slice(0, n).every((g) => g === 0);
  // All zeros (`::`), or the IPv4-mapped unspecified address (`::ffff:0.0.0.0`).
  return zeroUpTo(8) || (zeroUpTo(5) && all[5] === 0xffff && all[6] === 0 && all[7] === 0);
}

/** True for an IPv4 or IPv6 literal or an RFC 1123 DNS name. */
export function isValidHost(host: string): boolean {
  if (isIPv4(host) || isIPv6(host)) return true;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((label) => DNS_LABEL_RE.test(label));
}

/** Why `value` is not a printable string of 1 to `max` characters, if it is not. */
function printableProblem(value: unknown, max: number): string | undefined {
  const problem = stringProblem(value);
  if (problem !== undefined) return problem;
  const text = value as string;
  if (text.length === 0) return 'must not be empty';
  if (text.length > max) return `must be at most ${max} characters (got ${text.length})`;
  if (CONTROL_RE.test(text)) return 'must not contain control characters';
  return undefined;
}

function validatePrintable(field: string, value: unknown, max: number): string {
  const problem = printableProblem(value, max);
  if (problem !== undefined) throw new ValidationError(field, problem);
  return value as string;
}

const RESERVED_METADATA_PREFIXES = [RESERVED_METADATA_PREFIX, CONSUL_RESERVED_METADATA_PREFIX] as const;

/** Why a metadata entry is refused, if it is. */
function metadataProblem(key: string, value: unknown): string | undefined {
  if (!META_KEY_RE.test(key)) return 'key must be 1-128 characters of [A-Za-z0-9_-]';
  if (FORBIDDEN_KEYS.has(key)) return `'${key}' is refused as a key (it could reach Object.prototype)`;
  for (const prefix of RESERVED_METADATA_PREFIXES)
    if (key.startsWith(prefix)) return `keys starting with '${prefix}' are reserved`;
  const problem = stringProblem(value);
  if (problem !== undefined) return problem;
  // At most 3 UTF-8 bytes per UTF-16 unit: most values need no byte count.
  const text = value as string;
  if (text.length * 3 <= MAX_METADATA_VALUE_BYTES) return undefined;
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_METADATA_VALUE_BYTES)
    return `must be at most ${MAX_METADATA_VALUE_BYTES} bytes in UTF-8 (got ${bytes})`;
  return undefined;
}

/** The field names of an instance's parts, made once for the usual `field` ('instance'). */
function instancePaths(field: string) {
  return {
    service: `${field}.service`,
    id: `${field}.id`,
    host: `${field}.host`,
    port: `${field}.port`,
    version: `${field}.version`,
    tags: `${field}.tags`,
    metadata: `${field}.metadata`,
    weight: `${field}.weight`,
  };
}
const INSTANCE_PATHS = instancePaths('instance');

/**
 * Validates an instance (contract rule 1) and returns a frozen copy holding only the known fields,
 * so later mutation of the caller's object cannot change what was registered.
 */
export function validateInstance(input: unknown, field = 'instance'): ServiceInstance {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError(field, `must be an object, got ${describeValue(input)}`);
  }
  const path = field === 'instance' ? INSTANCE_PATHS : instancePaths(field);
  const raw = input as Record<string, unknown>;
  for (const key in raw) {
    if (!INSTANCE_FIELDS.has(key) && Object.hasOwn(raw, key) && raw[key] !== undefined)
      throw new ValidationError(`${field}.${key}`, 'unknown field');
  }
  const service = validateServiceName(raw.service, path.service);
  const id = validateId(raw.id, path.id);
  const host = requireString(path.host, raw.host);
  if (!isValidHost(host))
    throw new ValidationError(
      path.host,
      `must be an IPv4 or IPv6 address or a DNS name (got ${describeValue(host)})`,
    );
  if (isUnspecifiedAddress(host))
    throw new ValidationError(
      path.host,
      `must be a reachable address, not the unspecified address ${describeValue(host)}`,
    );
  const port = raw.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ValidationError(path.port, `must be an integer from 1 to 65535 (got ${describeValue(port)})`);
  }
  const out: ServiceInstance = { id, service, host, port };
  const version = raw.version; // read once: a getter could answer differently the second time
  if (version !== undefined) out.version = validatePrintable(path.version, version, 128);
  if (raw.tags !== undefined) {
    const given = raw.tags;
    if (!Array.isArray(given))
      throw new ValidationError(path.tags, `must be an array of strings, got ${describeValue(given)}`);
    if (given.length > 64)
      throw new ValidationError(path.tags, `must hold at most 64 tags (got ${given.length})`);
    // An index loop, not map: map skips the holes of a sparse array, which would go unchecked.
    const tags: string[] = [];
    for (let i = 0; i < given.length; i++) {
      const tag: unknown = given[i];
      const problem = printableProblem(tag, 256);
      if (problem !== undefined) throw new ValidationError(`${path.tags}[${i}]`, problem);
      tags.push(tag as string);
    }
    out.tags = Object.freeze(tags) as string[];
  }
  if (raw.metadata !== undefined) {
    const meta = raw.metadata;
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
      throw new ValidationError(
        path.metadata,
        `must be an object of string values, got ${describeValue(meta)}`,
      );
    }
    const keys = Object.keys(meta);
    if (keys.length > MAX_METADATA_ENTRIES)
      throw new ValidationError(
        path.metadata,
        `must hold at most ${MAX_METADATA_ENTRIES} entries (got ${keys.length})`,
      );
    const copy: Record<string, string> = {};
    for (const key of keys) {
      const value = (meta as Record<string, unknown>)[key];
      const problem = metadataProblem(key, value);
      if (problem !== undefined) throw new ValidationError(`${path.metadata}.${key}`, problem);
      copy[key] = value as string;
    }
    out.metadata = Object.freeze(copy) as Record<string, string>;
  }
  if (raw.weight !== undefined) {
    const weight = raw.weight;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
      throw new ValidationError(
        path.weight,
        `must be an integer from 1 to ${MAX_WEIGHT} (got ${describeValue(weight)})`,
      );
    }
    out.weight = weight;
  }
  return Object.freeze(out);
}

/** Checks a TTL in seconds: an integer from {@link MIN_TTL_SECONDS} to {@link MAX_TTL_SECONDS}. */
export function validateTtl(ttl: unknown, field = 'options.ttlSeconds', min = MIN_TTL_SECONDS): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < min || ttl > MAX_TTL_SECONDS) {
    throw new ValidationError(
      field,
      `must be an integer number of seconds from ${min} to ${MAX_TTL_SECONDS} (got ${describeValue(ttl)})`,
    );
  }
  return ttl;
}

/** Validates {@link RegisterOptions} and applies the default TTL. */
export function validateRegisterOptions(options: RegisterOptions | undefined): {
  ttlSeconds: number;
  signal?: AbortSignal;
} {
  const o = validateOptionsObject(options);
  const ttlSeconds = o.ttlSeconds === undefined ? DEFAULT_TTL_SECONDS : validateTtl(o.ttlSeconds);
  const signal = validateSignal(o.signal);
  return signal ? { ttlSeconds, signal } : { ttlSeconds };
}

function checkPath(field: string, path: string, allowEmpty: boolean): string {
  const normalized = path.startsWith('/') ? path.slice(1) : path;
  if (normalized.length === 0) {
    if (allowEmpty) return normalized;
    throw new ValidationError(field, 'must not be empty');
  }
  if (normalized.length > MAX_KEY_LENGTH)
    throw new ValidationError(
      field,
      `must be at most ${MAX_KEY_LENGTH} characters (got ${normalized.length})`,
    );
  if (CONTROL_RE.test(normalized)) throw new ValidationError(field, 'must not contain control characters');
  const segments = normalized.split('/');
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '..' || segment === '.')
      throw new ValidationError(field, `must not contain '.' or '..' segments (got ${describeValue(path)})`);
    // An empty last segment is a trailing '/': allowed for prefixes only.
    if (segment === '' && !(last && allowEmpty))
      throw new ValidationError(field, `must not contain empty segments ('//') (got ${describeValue(path)})`);
  });
  return normalized;
}

/**
 * Checks a configuration key and returns it normalized (one leading `/` removed):
 * `/configs/app/prod/log_level` and `configs/app/prod/log_level` are the same key.
 */
export function normalizeKey(key: unknown, field = 'key'): string {
  const path = checkPath(field, requireString(field, key), false);
  if (path.endsWith('/')) throw new ValidationError(field, "must not end with '/'");
  return path;
}

/** Checks a key prefix (may be empty, may end with `/`) and returns it normalized like {@link normalizeKey}. */
export function normalizePrefix(prefix: unknown, field = 'prefix'): string {
  return checkPath(field, requireString(field, prefix), true);
}

/** Checks a configuration value: a string of at most 512 KiB in UTF-8 (Consul's limit, applied everywhere for portability). */
export function validateValue(value: unknown, field = 'value'): string {
  const text = requireString(field, value);
  if (Buffer.byteLength(text) > MAX_VALUE_BYTES)
    throw new ValidationError(field, `must be at most ${MAX_VALUE_BYTES} bytes (512 KiB) in UTF-8`);
  return text;
}

/** Checks an election value: a string of at most {@link MAX_ELECTION_VALUE_LENGTH} characters. */
export function validateElectionValue(value: unknown, field = 'value'): string {
  const text = requireString(field, value);
  if (text.length > MAX_ELECTION_VALUE_LENGTH)
    throw new ValidationError(
      field,
      `must be at most ${MAX_ELECTION_VALUE_LENGTH} characters (got ${text.length})`,
    );
  return text;
}
