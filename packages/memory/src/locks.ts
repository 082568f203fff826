import { AbortedError, SessionGoneError } from '@rollcall/core';

interface Waiter {
  /** The session the request is queued under. */
  readonly session: string;
  readonly value: string | undefined;
  grant(token: bigint): void;
  fail(error: Error): void;
}

interface Holder {
  readonly session: string;
  readonly value: string | undefined;
}

interface LockEntry {
  holder: Holder | undefined;
  queue: Waiter[];
}

/**
 * The memory store's locks: a FIFO queue per name, a fencing counter per name, holders and
 * waiters tied to a session (a session that ends frees its locks and drops its waits). A lock's
 * key, for the liveness engine, is its name (`lock/<name>` or `election/<name>`).
 */
export class LockTable {
  private readonly locks = new Map<string, LockEntry>();
  private readonly tokens = new Map<string, bigint>();

  /** Queues `waiter` for `name`; `grant` is called (maybe at once) when it holds the lock. Returns a withdraw function. */
  enqueue(name: string, waiter: Waiter): () => void {
    let entry = this.locks.get(name);
    if (!entry) {
      entry = { holder: undefined, queue: [] };
      this.locks.set(name, entry);
    }
    entry.queue.push(waiter);
    this.promote(name, entry);
    const queued = entry;
    return () => {
      const at = queued.queue.indexOf(waiter);
      if (at < 0) return;
      queued.queue.splice(at, 1);
      this.promote(name, queued);
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

  /** Every name held or waited for: its holder (session and published value), current fencing token and queue length. */
  entries(): { name: string; session?: string; value?: string; token?: bigint; waiters: number }[] {
    return [...this.locks].map(([name, entry]) => ({
      name,
      ...(entry.holder
        ? { session: entry.holder.session, value: entry.holder.value, token: this.tokens.get(name) }
        : {}),
      waiters: entry.queue.length,
    }));
  }

  /** The session holding `key` (a lock name), if any. */
  holderOfKey(key: string): string | undefined {
    return this.locks.get(key)?.holder?.session;
  }

  /** Releases `key` if `session` holds it: the next waiter gets it. */
  releaseKey(key: string, session: string): void {
    const entry = this.locks.get(key);
    if (entry?.holder?.session !== session) return;
    entry.holder = undefined;
    this.promote(key, entry);
  }

  /** A session ended: its locks pass on and its waits fail. */
  endSession(session: string): void {
    for (const [name, entry] of [...this.locks]) {
      const dropped = entry.queue.filter((w) => w.session === session);
      entry.queue = entry.queue.filter((w) => w.session !== session);
      if (entry.holder?.session === session) entry.holder = undefined;
      for (const w of dropped)
        w.fail(new SessionGoneError('memory', `session ${session} ended while waiting`));
      this.promote(name, entry);
    }
  }

  private promote(name: string, entry: LockEntry): void {
    if (entry.holder) return;
    const next = entry.queue.shift();
    if (!next) {
      if (this.locks.get(name) === entry) this.locks.delete(name);
      return;
    }
    const token = (this.tokens.get(name) ?? 0n) + 1n;
    this.tokens.set(name, token);
    entry.holder = { session: next.session, value: next.value };
    next.grant(token);
  }
}

/** Waits in `table` for `name` under `session` until granted (the fencing token); withdraws when `signal` aborts. */
export function waitForLock(
  table: LockTable,
  name: string,
  session: string,
  value: string | undefined,
  signal: AbortSignal,
  queued: () => void,
): Promise<bigint> {
  return new Promise<bigint>((resolve, reject) => {
    if (signal.aborted) return reject(new AbortedError(signal.reason));
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      withdraw();
      reject(new AbortedError(signal.reason));
    };
    const withdraw = table.enqueue(name, {
      session,
      value,
      grant: (token) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(token);
      },
      fail: (error) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    });
    if (!settled) {
      signal.addEventListener('abort', onAbort, { once: true });
      queued();
    }
  });
}
