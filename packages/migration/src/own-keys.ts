import { type Backend, ValidationError } from '@rollcall/core';
import { describeValue } from '@rollcall/core/driver';
import type { Side } from './phases.js';

/** What core's shared key/value source (`ManagedKeyValueSource`, every Rollcall backend's `kv`) tells about its backend's own keys. */
interface ReservingKv {
  /** True when a normalized key lies in the backend's registry, lock or election subtrees. */
  isReserved(key: string): boolean;
}

function reserving(kv: unknown): kv is ReservingKv {
  return typeof (kv as Partial<ReservingKv> | undefined)?.isReserved === 'function';
}

/**
 * The keys either registry keeps for itself (Consul: its lock, election and fencing keys; etcd: its
 * registry, lock and election subtrees), as each registry's key/value source reports them. The
 * migrating key/value source refuses what either refuses, in every phase, before any network
 * call: a key allowed in one phase must not become a refusal (or a forged lock) in the next, and a
 * write to both must not land in one registry and be refused by the other.
 */
export class OwnKeys {
  private readonly checks: { backend: string; isReserved: (key: string) => boolean }[];

  constructor(backends: Readonly<Record<Side, Backend>>) {
    this.checks = (['from', 'to'] as const).flatMap((side) => {
      const kv = backends[side].kv;
      return reserving(kv) ? [{ backend: backends[side].name, isReserved: (key) => kv.isReserved(key) }] : [];
    });
  }

  /** True when `key` (normalized) is one of either registry's own keys. */
  isReserved(key: string): boolean {
    return this.checks.some((c) => c.isReserved(key));
  }

  /** Throws a {@link ValidationError} naming `key` when a registry keeps `key` (normalized) for itself. */
  checkKey(key: string): string {
    const owner = this.checks.find((c) => c.isReserved(key));
    if (owner) throw new ValidationError('key', refusal(key, owner.backend));
    return key;
  }

  /**
   * Throws a {@link ValidationError} naming `prefix` when `prefix` (normalized) lies inside a
   * registry's own keys. A backend refuses a prefix that starts with one of its own subtrees or
   * exact keys; seen through `isReserved`, that is a prefix with a leading part that is reserved.
   */
  checkPrefix(prefix: string): string {
    for (let end = 1; end <= prefix.length; end++) {
      const head = prefix.slice(0, end);
      const owner = this.checks.find((c) => c.isReserved(head));
      if (owner) throw new ValidationError('prefix', refusal(prefix, owner.backend));
    }
    return prefix;
  }
}

function refusal(path: string, backend: string): string {
  return `${describeValue(path)} lies in the ${backend} registry's own keys (registry, locks, elections), which only the discovery and lock APIs may touch`;
}
