import { AbortedError, BackendUnavailableError, ClosedError } from '@rollcall/core';
import { type HeldLock, sleep } from '@rollcall/core/driver';
import type { Watcher } from 'etcd3';
import type { EtcdConnection } from './connection.js';
import type { Ticket } from './locks.js';

const noop = () => {};

/** Drops an etcd3 watcher (cancelling it on the server when still connected). */
export function detach(watcher: Watcher): void {
  watcher.removeAllListeners();
  // etcd3 may still emit on it while cancelling; an 'error' with no listener would throw.
  watcher.on('error', noop);
  watcher.cancel().catch(noop);
}

/** Counters the holds update (the lock driver's). */
export interface HoldCounters {
  rechecks: number;
  watchCancels: number;
}

/**
 * A held lock. `lost` aborts when its lease is lost (the liveness engine deletes the key first) or
 * when its key disappears (a watch on the key while held: someone deleted it); `release()` deletes
 * the key (only while still on its lease).
 */
export class Hold implements HeldLock {
  readonly fencingToken: bigint;
  private readonly controller = new AbortController();
  private watcher: Watcher | undefined;
  /** Set by release, loss or stop: no more watching, no more loss. */
  private ended = false;
  private releasing: Promise<void> | undefined;
  /** Aborted when the hold ends: stops a re-check waiting for etcd. */
  private readonly stopper = new AbortController();
  private readonly onSessionLost = () => this.lose(this.ticket.held.lost.reason as Error);

  constructor(
    private readonly conn: EtcdConnection,
    private readonly counters: HoldCounters,
    readonly ticket: Ticket,
    fromRevision: bigint,
    private readonly onEnd: () => void,
  ) {
    this.fencingToken = ticket.createRevision;
    if (ticket.held.lost.aborted) {
      this.lose(ticket.held.lost.reason as Error);
      return;
    }
    ticket.held.lost.addEventListener('abort', this.onSessionLost, { once: true });
    this.watch(fromRevision);
  }

  get lost(): AbortSignal {
    return this.controller.signal;
  }

  release(): Promise<void> {
    if (!this.releasing) {
      this.stop();
      this.releasing = this.ticket.held.release().catch((error: unknown) => {
        // Closed: the lease was revoked (or expires), taking the key with it.
        if (error instanceof ClosedError) return;
        throw error;
      });
    }
    return this.releasing;
  }

  /** The lock is lost: abort `lost` (once). */
  lose(error: Error): void {
    if (this.ended) return;
    this.stop();
    this.conn.options.logger.warn(
      {
        lock: this.ticket.what,
        key: this.ticket.key,
        error: error?.message,
      },
      'etcd: a held lock was lost',
    );
    this.controller.abort(error);
  }

  /** Stops watching, without aborting `lost` (release, close, crash). */
  stop(): void {
    if (this.ended) return;
    this.ended = true;
    this.ticket.held.lost.removeEventListener('abort', this.onSessionLost);
    this.stopper.abort();
    if (this.watcher) detach(this.watcher);
    this.watcher = undefined;
    this.onEnd();
  }

  private watch(fromRevision: bigint): void {
    const watcher = this.conn.client
      .watch()
      .key(this.ticket.key)
      .startRevision(fromRevision.toString())
      .only('delete')
      .watcher();
    this.watcher = watcher;
    watcher.on('delete', () => {
      if (this.watcher !== watcher) return;
      // Gone from etcd: the engine must not delete it again later (another client may queue under that name).
      this.ticket.held.forget();
      this.lose(
        new BackendUnavailableError(
          'etcd',
          `${this.ticket.what} lost: its key ${this.ticket.key} was deleted (its lease expired, or someone deleted it)`,
        ),
      );
    });
    // Cancelled by etcd (history compacted) or the stream broke: read the key, then watch again from there.
    watcher.on('error', () => {
      if (this.watcher !== watcher) return;
      this.counters.watchCancels += 1;
      void this.recheck();
    });
    watcher.on('disconnected', () => {
      if (this.watcher === watcher) void this.recheck();
    });
  }

  private async recheck(): Promise<void> {
    if (this.watcher) detach(this.watcher);
    this.watcher = undefined;
    const conn = this.conn;
    const signal = this.stopper.signal;
    const backoff = conn.backoff();
    for (;;) {
      if (this.ended) return;
      try {
        await conn.waitReachable(signal);
        const response = await conn.call(
          `check ${this.ticket.what}`,
          (o) => conn.client.get(this.ticket.key).options(o).exec(),
          undefined,
          signal,
        );
        if (this.ended) return;
        const kv = response.kvs[0];
        if (!kv || BigInt(kv.create_revision) !== this.ticket.createRevision) {
          this.ticket.held.forget();
          this.lose(
            new BackendUnavailableError(
              'etcd',
              `${this.ticket.what} lost: its key ${this.ticket.key} is gone (its lease expired, or someone deleted it)`,
            ),
          );
          return;
        }
        this.counters.rechecks += 1;
        this.watch(BigInt(response.header.revision) + 1n);
        return;
      } catch (error) {
        if (this.ended || error instanceof ClosedError || error instanceof AbortedError) return;
        // etcd went away again (or refused the read): wait a little and for etcd, then read again.
        await sleep(backoff.next(), signal).catch(noop);
      }
    }
  }
}
