import { createHash } from 'node:crypto';
import {
  type KeyValueSource,
  normalizeKey,
  normalizePrefix,
  ValidationError,
  validateValue,
} from '@rollcall/core';
import type { KvInspector } from './consul-kv.js';

/** etcd refuses requests larger than this (its default `--max-request-bytes`, 1.5 MiB). */
export const ETCD_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** etcd refuses transactions with more operations than this (its default `--max-txn-ops`). */
export const ETCD_MAX_TXN_OPS = 128;
/** Keys under this prefix are Rollcall's own (Consul lock keys, the phase key): never copied as configuration. */
export const RESERVED_KV_PREFIX = 'rollcall/';

/**
 * An optional write path some key/value stores offer: several puts and deletes at once (the
 * memory backend's `kv.batch`). When `to` has it, each batch is one call; otherwise its writes
 * are sent concurrently, one request each.
 */
export interface KvBatchWriter {
  batch(put: Record<string, string>, deleted?: string[]): Promise<void>;
}

/** Options of {@link planKvCopy}. */
export interface KvCopyOptions {
  /** Where configuration is copied from (usually Consul's kv). */
  from: KeyValueSource;
  /** Where it is copied to (usually etcd's kv). */
  to: KeyValueSource & Partial<KvBatchWriter>;
  /** The subtree to copy, e.g. `configs/`. Must not be empty nor escape (`..`, `//`). */
  prefix: string;
  /** Reads what `from`'s kv API cannot tell (Consul flags, binary values): see `consulKvInspector`. */
  inspect?: KvInspector;
}

/** A key that will not be copied, and why. */
export interface SkippedKey {
  key: string;
  reason: string;
}

/** What a copy would do (a dry run), key by key. */
export interface KvCopyPlan {
  prefix: string;
  /** Keys missing in `to`. */
  create: string[];
  /** Keys whose value differs in `to`. */
  change: string[];
  /** Keys `to` already holds with the same value. */
  unchanged: string[];
  /** Keys only in `to` (deleted only with `deleteExtra`). */
  extra: string[];
  /** Keys of `from` that cannot be copied (invalid on the target, Rollcall's own, too big, not UTF-8). */
  unsupported: SkippedKey[];
  /** Keys copied whose Consul `flags` are lost (etcd has no place for them). */
  flagsLost: { key: string; flags: number }[];
  /** Whether `from`'s flags and binary values were checked (an inspector was given). */
  inspected: boolean;
  /** Checksums of what each side holds now (see {@link checksum}). */
  checksum: { from: string; to: string };
}

/** Progress of an applied copy. */
export interface KvCopyProgress {
  /** Keys written or deleted so far. */
  done: number;
  total: number;
  /** Value and key bytes written so far. */
  bytes: number;
}

/** Options of {@link applyKvCopy}. */
export interface KvApplyOptions {
  /** Also delete the keys only `to` holds. Default `false`. */
  deleteExtra?: boolean;
  /** Called after each batch. */
  onProgress?: (progress: KvCopyProgress) => void;
  /** Most operations per batch. Default 128 (etcd's transaction limit). */
  maxBatchOps?: number;
  /** Most bytes per batch. Default 1.5 MiB (etcd's request limit). */
  maxBatchBytes?: number;
}

/** What an applied copy did. */
export interface KvCopyResult {
  created: number;
  changed: number;
  unchanged: number;
  deleted: number;
  /** Extra keys left in `to`. */
  extraKept: number;
  batches: number;
  elapsedMs: number;
  /** Checksums after the copy: equal when `to` holds exactly what was copyable from `from`. */
  checksum: { from: string; to: string; match: boolean };
}

/**
 * A checksum of key/value pairs: SHA-256 over the pairs sorted by key, each length-prefixed (so
 * no two different sets collide by concatenation), shortened to 16 hex digits.
 */
export function checksum(entries: ReadonlyMap<string, string>): string {
  const hash = createHash('sha256');
  for (const key of [...entries.keys()].sort()) {
    const value = entries.get(key)!;
    hash.update(`${Buffer.byteLength(key)}:${key}${Buffer.byteLength(value)}:`);
    hash.update(value);
  }
  return hash.digest('hex').slice(0, 16);
}

function checkPrefix(prefix: string): string {
  const p = normalizePrefix(prefix, 'prefix');
  if (p === '')
    throw new ValidationError('prefix', 'must name a subtree (e.g. configs/), not the whole store');
  if (p.startsWith(RESERVED_KV_PREFIX))
    throw new ValidationError('prefix', `must not be inside '${RESERVED_KV_PREFIX}' (Rollcall's own keys)`);
  return p;
}

/** Why `key` (with `value`) cannot be copied, if it cannot. */
function refusal(key: string, value: string): string | undefined {
  if (key.endsWith('/')) return 'a folder key (ends with /), not a value';
  try {
    normalizeKey(key);
    validateValue(value);
  } catch (error) {
    return error instanceof ValidationError ? `${error.field}: ${error.reason}` : String(error);
  }
  return undefined;
}

/** The copyable entries of `from` and the plan, from one read of each side. */
async function read(options: KvCopyOptions): Promise<{ plan: KvCopyPlan; copyable: Map<string, string> }> {
  const prefix = checkPrefix(options.prefix);
  const [source, all, raw] = await Promise.all([
    options.from.getAll(prefix),
    options.to.getAll(prefix),
    options.inspect?.(prefix),
  ]);
  const target = new Map([...all].filter(([key]) => !key.startsWith(RESERVED_KV_PREFIX)));
  const plan: KvCopyPlan = {
    prefix,
    create: [],
    change: [],
    unchanged: [],
    extra: [],
    unsupported: [],
    flagsLost: [],
    inspected: raw !== undefined,
    checksum: { from: '', to: checksum(target) },
  };
  const copyable = new Map<string, string>();
  // Keys the kv API left out (Consul folders) are reported too.
  for (const key of raw?.keys() ?? [])
    if (!source.has(key)) plan.unsupported.push({ key, reason: 'a folder key (ends with /), not a value' });
  for (const [key, value] of source) {
    const info = raw?.get(key);
    const why = key.startsWith(RESERVED_KV_PREFIX)
      ? "Rollcall's own key (locks, migration state), not configuration"
      : info && !info.utf8
        ? 'the value is not UTF-8 text: it cannot be copied byte for byte'
        : refusal(key, value);
    if (why) {
      plan.unsupported.push({ key, reason: why });
      continue;
    }
    copyable.set(key, value);
    if (info && info.flags !== 0) plan.flagsLost.push({ key, flags: info.flags });
    const there = target.get(key);
    if (there === undefined) plan.create.push(key);
    else if (there === value) plan.unchanged.push(key);
    else plan.change.push(key);
  }
  for (const key of target.keys()) if (!source.has(key)) plan.extra.push(key);
  for (const list of [plan.create, plan.change, plan.unchanged, plan.extra]) list.sort();
  plan.unsupported.sort((a, b) => (a.key < b.key ? -1 : 1));
  plan.checksum.from = checksum(copyable);
  return { plan, copyable };
}

/** A dry run: what a copy of `prefix` would create, change, leave alone and find extra in `to`. Writes nothing. */
export async function planKvCopy(options: KvCopyOptions): Promise<KvCopyPlan> {
  return (await read(options)).plan;
}

/** Cuts operations into batches within the op and byte limits (a single operation is never split). */
function batches<T>(items: readonly T[], size: (item: T) => number, maxOps: number, maxBytes: number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (current.length > 0 && (current.length >= maxOps || bytes + n > maxBytes)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += n;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Bytes an operation adds to a request, with room for its framing. */
const opBytes = (key: string, value = '') => Buffer.byteLength(key) + Buffer.byteLength(value) + 32;

/**
 * Copies `prefix` from `from` to `to`: the keys to create or change, in batches within etcd's
 * limits (128 operations, 1.5 MiB), then (with `deleteExtra`) removes the keys only `to` holds.
 * Idempotent: a second run finds everything unchanged and writes nothing. Ends by reading both
 * sides again and comparing their checksums.
 */
export async function applyKvCopy(
  options: KvCopyOptions,
  apply: KvApplyOptions = {},
): Promise<{ plan: KvCopyPlan; result: KvCopyResult }> {
  const started = performance.now();
  const { plan, copyable } = await read(options);
  const maxOps = apply.maxBatchOps ?? ETCD_MAX_TXN_OPS;
  const maxBytes = apply.maxBatchBytes ?? ETCD_MAX_REQUEST_BYTES;
  const writes = [...plan.create, ...plan.change].map((k) => [k, copyable.get(k)!] as [string, string]);
  const deletes = apply.deleteExtra ? plan.extra : [];
  const total = writes.length + deletes.length;
  const progress: KvCopyProgress = { done: 0, total, bytes: 0 };
  const to = options.to;
  let count = 0;
  for (const batch of batches(writes, ([k, v]) => opBytes(k, v), maxOps, maxBytes)) {
    if (typeof to.batch === 'function') await to.batch(Object.fromEntries(batch));
    else await Promise.all(batch.map(([k, v]) => to.put(k, v)));
    count += 1;
    progress.done += batch.length;
    progress.bytes += batch.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    apply.onProgress?.({ ...progress });
  }
  for (const batch of batches(deletes, (k) => opBytes(k), maxOps, maxBytes)) {
    if (typeof to.batch === 'function') await to.batch({}, batch);
    else await Promise.all(batch.map((k) => to.delete(k)));
    count += 1;
    progress.done += batch.length;
    apply.onProgress?.({ ...progress });
  }
  const after = await read(options);
  return {
    plan,
    result: {
      created: plan.create.length,
      changed: plan.change.length,
      unchanged: plan.unchanged.length,
      deleted: deletes.length,
      extraKept: after.plan.extra.length,
      batches: count,
      elapsedMs: Math.round(performance.now() - started),
      checksum: {
        from: after.plan.checksum.from,
        to: after.plan.checksum.to,
        match: after.plan.checksum.from === after.plan.checksum.to,
      },
    },
  };
}

const MAX_LISTED = 20;

function listed(label: string, keys: readonly string[], suffix = ''): string[] {
  const lines = keys.slice(0, MAX_LISTED).map((k) => `  ${label} ${k}${suffix}`);
  if (keys.length > MAX_LISTED) lines.push(`  ... and ${keys.length - MAX_LISTED} more to ${label.trim()}`);
  return lines;
}

/** The reports shared by a dry run and an applied copy: what cannot be copied, and lost flags. */
function caveats(plan: KvCopyPlan, from: string): string[] {
  const lines = [
    ...plan.unsupported.slice(0, MAX_LISTED).map((s) => `  cannot copy ${s.key}: ${s.reason}`),
    ...(plan.unsupported.length > MAX_LISTED
      ? [`  ... and ${plan.unsupported.length - MAX_LISTED} more that cannot be copied`]
      : []),
    ...plan.flagsLost
      .slice(0, MAX_LISTED)
      .map((f) => `  flags lost: ${f.key} has flags ${f.flags} in ${from}`),
  ];
  if (!plan.inspected) lines.push(`  (flags and binary values not checked: no direct reader for ${from})`);
  return lines;
}

/** `rollcall migrate kv` without `--apply`, as text lines. */
export function formatKvPlan(plan: KvCopyPlan, from: string, to: string): string[] {
  return [
    `dry run of '${plan.prefix}' from ${from} to ${to}: ${plan.create.length} to create, ${plan.change.length} to change, ${plan.unchanged.length} unchanged, ${plan.extra.length} extra in ${to}, ${plan.unsupported.length} cannot be copied, ${plan.flagsLost.length} with flags`,
    ...listed('create', plan.create),
    ...listed('change', plan.change),
    ...listed('extra ', plan.extra, ` (only in ${to}; --delete-extra removes it)`),
    ...caveats(plan, from),
    `checksum ${from} ${plan.checksum.from}, ${to} ${plan.checksum.to}${plan.checksum.from === plan.checksum.to ? ' (same)' : ''}`,
    'nothing written (--apply copies)',
  ];
}

/** `rollcall migrate kv --apply`, as text lines. */
export function formatKvResult(plan: KvCopyPlan, result: KvCopyResult, from: string, to: string): string[] {
  const c = result.checksum;
  return [
    `copied '${plan.prefix}' from ${from} to ${to} in ${result.batches} batch(es), ${result.elapsedMs} ms: ${result.created} created, ${result.changed} changed, ${result.unchanged} unchanged, ${result.deleted} deleted, ${plan.unsupported.length} cannot be copied, ${plan.flagsLost.length} with flags lost`,
    ...caveats(plan, from),
    `checksum ${from} ${c.from}, ${to} ${c.to}: ${c.match ? 'match' : result.extraKept > 0 ? `differ (${to} keeps ${result.extraKept} extra key(s); --delete-extra removes them)` : 'differ (written meanwhile by someone else?)'}`,
  ];
}
