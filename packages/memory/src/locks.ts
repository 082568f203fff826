import { AbortedError, BackendUnavailableError, type HeldLock } from '@rollcall/core';
import type { StoreClient } from './store.js';

interface Waiter {
  client: StoreClient;
  ttlMs: number;
  value: string | undefined;
  grant: (held: HeldLock) => void;
}

interface Holder extends Waiter {
  token: bigint;
  lost: AbortController;
}

interface LockEntry {
  holder: Holder | undefined;
  queue: Waiter[];
}

/**
 * The memory store's locks: a FIFO queue per name, a fencing counter per name, holders
 * tied to their client's liveness like the instances (a crashed client's lock is freed after
 * its TTL; an outage longer than the TTL loses every lock).
 */
export class LockTable {
  private readonly locks = new Map<string, LockEntry>();
  private readonly tokens = new Map<string, bigint>();

  /** Queues `client` for `name`; `grant` is called (maybe at once) when it holds the lock. Returns a withdraw function. */
  enqueue(name: string, waiter: Waiter): () => void {
    const entry = this.entry(name);
    entry.queue.push(waiter);
    this.promote(name, entry);
    return () => {
      const at = entry.queue.indexOf(waiter);
      if (at >= 0) entry.queue.splice(at, 1);
    };
  }

  /** True when nobody holds or waits for `name`. */
  isFree(name: string): boolean {
    const entry = this.locks.get(name);
    return !entry || (!entry.holder && entry.queue.length === 0);
  }

  /** The value the holder of `name` published (elections). */
  holderValue(name: string): string | undefined {
    return this.locks.get(name)?.holder?.value;
  }

  /** Frees every lock whose holder has been silent (per `silentSince`) longer than its TTL. */
  expire(now: number, silentSince: (client: StoreClient) => number | undefined): void {
    for (const [name, entry] of this.locks) {
      // A dead client's waits vanish with it.
      entry.queue = entry.queue.filter((w) => {
        const since = silentSince(w.client);
        return since === undefined || now < since + w.ttlMs;
      });
      const holder = entry.holder;
      if (holder) {
        const since = silentSince(holder.client);
        if (since !== undefined && now >= since + holder.ttlMs) {
          entry.holder = undefined;
          holder.lost.abort(
            new BackendUnavailableError(
              'memory',
              `lock '${name}' expired: its holder was silent for its ttl`,
            ),
          );
        }
      }
      this.promote(name, entry);
    }
  }

  private release(name: string, holder: Holder): void {
    const entry = this.locks.get(name);
    if (entry?.holder !== holder) return;
    entry.holder = undefined;
    this.promote(name, entry);
  }

  private promote(name: string, entry: LockEntry): void {
    if (entry.holder) return;
    const next = entry.queue.shift();
    if (!next) {
      this.locks.delete(name);
      return;
    }
    const token = (this.tokens.get(name) ?? 0n) + 1n;
    this.tokens.set(name, token);
    const holder: Holder = { ...next, token, lost: new AbortController() };
    entry.holder = holder;
    next.grant({
      fencingToken: token,
      lost: holder.lost.signal,
      release: async () => this.release(name, holder),
    });
  }

  private entry(name: string): LockEntry {
    let entry = this.locks.get(name);
    if (!entry) {
      entry = { holder: undefined, queue: [] };
      this.locks.set(name, entry);
    }
    return entry;
  }
}

/** Waits in `table` for `name` until granted, or withdraws on abort. */
export function waitForLock(
  table: LockTable,
  name: string,
  client: StoreClient,
  ttlMs: number,
  value: string | undefined,
  signal: AbortSignal,
  queued: () => void,
): Promise<HeldLock> {
  return new Promise<HeldLock>((resolve, reject) => {
    if (signal.aborted) return reject(new AbortedError(signal.reason));
    let granted = false;
    let withdraw: () => void = () => {};
    const onAbort = () => {
      withdraw();
      reject(new AbortedError(signal.reason));
    };
    withdraw = table.enqueue(name, {
      client,
      ttlMs,
      value,
      grant: (held) => {
        granted = true;
        signal.removeEventListener('abort', onAbort);
        resolve(held);
      },
    });
    if (!granted) {
      signal.addEventListener('abort', onAbort, { once: true });
      queued();
    }
  });
}
