import { AbortedError, BackendUnavailableError, ClosedError, type LockInfo } from '@rollcall/core';
import {
  abortable,
  type HeldKey,
  type HeldLock,
  type LivenessEngine,
  type LockDriver,
  type SessionHandle,
  sleep,
  throwIfAborted,
} from '@rollcall/core/driver';
import type { IKeyValue, ITxnResponse } from 'etcd3';
import type { EtcdConnection } from './connection.js';
import { detach, Hold } from './hold.js';
import { isLeaseNotFound } from './sessions.js';

/** One request in a queue: a key on the client's lease. */
export interface Ticket {
  /** The queue: `<namespace>locks/<name>/` or `<namespace>elections/<name>/`. */
  readonly prefix: string;
  /** `<prefix><lease id in hex>-<n>`: unique per request. */
  readonly key: string;
  /** The session (lease) the key lives on, and the key as the liveness engine tracks it (deleted if the lease is lost). */
  readonly session: SessionHandle<string>;
  readonly held: HeldKey<string>;
  /**
   * The key's create revision: its place in the queue, and its fencing token once it holds.
   * etcd's revision is one global counter that every write increases, so a key created later has a
   * greater create revision. The holder is the key with the lowest create revision under the
   * prefix; a later holder's key was created after every key that held before it was (it was
   * still behind them in the queue when they held), so each holder's token is greater than every
   * earlier holder's, across clients and processes, and after a restart (revisions are persisted).
   */
  readonly createRevision: bigint;
  /** For messages: `lock 'x'` or `election 'x'`. */
  readonly what: string;
}

/** Where a queued request stands. */
interface Position {
  /** No key under the prefix has a lower create revision: this request holds the lock. */
  first: boolean;
  /** The key just before ours (greatest create revision below ours), when not first and known. */
  predecessor: string | undefined;
  /**
   * The predecessor was the first key (the holder) when read. Keys below ours can only go away
   * (every new key gets a greater create revision than ours), so once it is deleted we are first,
   * with no need to read again.
   */
  predecessorIsFirst: boolean;
  /** The revision this was read at: the predecessor is watched from the next one. */
  revision: bigint;
}

/** A waiting request, woken early when the client closes. */
interface Waiter {
  wake: () => void;
}

const noop = () => {};

function keyOf(kv: IKeyValue | undefined): string | undefined {
  return kv?.key.toString('utf8');
}

/**
 * The etcd lock driver: the create-revision queue recipe on the client's shared lease.
 *
 * - A request puts a unique key `<namespace>locks/<name>/<leaseId hex>-<n>` on the client's lease
 *   (the liveness engine's session of that TTL: one lease per client, not per lock). Its place
 *   is the key's create revision; it holds the lock when no key under the prefix has a lower one.
 * - A waiter watches only the delete of its immediate predecessor (the greatest create revision
 *   below its own) and then checks again: no polling, no thundering herd, no skip-ahead (a
 *   predecessor that withdraws hands the wait to the key before it, not the lock to us).
 * - The fencing token is the key's create revision (see {@link Ticket.createRevision}).
 * - A held lock is lost (its `lost` signal aborts) when its lease is lost (etcd says so, or no
 *   keepalive sent within the last TTL was acknowledged: etcd may then expire it and hand the lock on)
 *   or when its key disappears (watched while held). The engine deletes the key of a lost hold
 *   before its signal aborts (the lease may live on at etcd: no zombie lock), and revokes the lease.
 *   Lock keys are never re-put after a loss: a lost lock is lost.
 * - Withdraw (abort, timeout) and release delete the key, so the next waiter proceeds at once
 *   and nothing is left behind; a delete etcd cannot take now is retried in the background.
 * - Elections are the same queue under `<namespace>elections/<name>/` with the candidate's value
 *   as the key's value; the leader is the key with the lowest create revision.
 */
export class EtcdLockDriver implements LockDriver {
  readonly backend = 'etcd';
  /** etcd's minimum lease TTL (a 1 s grant becomes 2 s). */
  readonly minTtlSeconds = 2;
  private readonly locksRoot: string;
  private readonly electionsRoot: string;
  private sequence = 0;
  /**
   * For tests and health pages. `rechecks`: times a waiting request or a held lock read its key's
   * state again after its watch ended (predecessor gone, woken, cancelled by etcd, disconnected).
   * `watchCancels`: lock watches cancelled by etcd (start revision compacted away).
   * `directHandoffs`: locks taken without a read, because the deleted predecessor was the holder.
   */
  readonly counters = { rechecks: 0, watchCancels: 0, directHandoffs: 0 };
  private readonly waiters = new Set<Waiter>();
  private readonly holds = new Set<Hold>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    readonly conn: EtcdConnection,
    private readonly engine: LivenessEngine<string, string>,
  ) {
    this.locksRoot = `${conn.options.namespace}locks/`;
    this.electionsRoot = `${conn.options.namespace}elections/`;
  }

  /** Locks and leaderships this client holds now. */
  get heldCount(): number {
    return this.holds.size;
  }

  /** Requests of this client waiting in a queue now. */
  get waitingCount(): number {
    return this.waiters.size;
  }

  /** The etcd prefix of a lock's queue. */
  lockPrefix(name: string): string {
    return `${this.locksRoot}${name}/`;
  }

  /** The etcd prefix of an election's queue. */
  electionPrefix(election: string): string {
    return `${this.electionsRoot}${election}/`;
  }

  acquire(name: string, ttlSeconds: number, signal: AbortSignal, queued: () => void): Promise<HeldLock> {
    return this.track(this.wait(this.lockPrefix(name), `lock '${name}'`, '', ttlSeconds, signal, queued));
  }

  async tryAcquire(name: string, ttlSeconds: number): Promise<HeldLock | undefined> {
    this.assertOpen();
    const what = `lock '${name}'`;
    const { ticket, position } = await this.enqueue(this.lockPrefix(name), what, '', ttlSeconds);
    if (position.first && !ticket.held.lost.aborted) return this.hold(ticket, position.revision);
    await ticket.held.release();
    return undefined;
  }

  campaign(election: string, value: string, ttlSeconds: number, signal: AbortSignal): Promise<HeldLock> {
    return this.track(
      this.wait(this.electionPrefix(election), `election '${election}'`, value, ttlSeconds, signal, noop),
    );
  }

  async leader(election: string): Promise<string | undefined> {
    this.assertOpen();
    const response = await this.conn.call(`leader of election '${election}'`, (o) =>
      this.conn.client
        .getAll()
        .prefix(this.electionPrefix(election))
        .sort('Create', 'Ascend')
        .limit(1)
        .options(o)
        .exec(),
    );
    return response.kvs[0]?.value.toString('utf8');
  }

  /**
   * Every lock and election with a key: one range read per root, ordered by create revision, so
   * the first key of each name is its holder (token: that key's create revision) and the rest wait.
   * A lock's holder is the lease id (hex) its key lives on; an election's is the leader's value.
   */
  async list(): Promise<LockInfo[]> {
    this.assertOpen();
    const roots = [
      ['lock', this.locksRoot],
      ['election', this.electionsRoot],
    ] as const;
    // Both roots read at once: one round trip's wait, not two.
    const listed = await Promise.all(
      roots.map(([kind, root]) =>
        this.conn.call(`list ${kind}s`, (o) =>
          this.conn.client.getAll().prefix(root).sort('Create', 'Ascend').options(o).exec(),
        ),
      ),
    );
    return roots.flatMap(([kind, root], i) => {
      const byName = new Map<string, LockInfo>();
      for (const kv of listed[i]!.kvs) {
        const rest = kv.key.toString('utf8').slice(root.length);
        const slash = rest.lastIndexOf('/');
        // Not a queue key (`<name>/<lease hex>-<n>`): written by someone else, not ours to report.
        if (slash <= 0) continue;
        const name = rest.slice(0, slash);
        const entry = byName.get(name);
        if (entry) entry.waiters += 1;
        else
          byName.set(name, {
            kind,
            name,
            holder:
              kind === 'election'
                ? kv.value.toString('utf8')
                : `lease ${rest.slice(slash + 1).split('-')[0]}`,
            token: BigInt(kv.create_revision),
            waiters: 0,
          });
      }
      return [...byName.values()];
    });
  }

  /**
   * Stops for good: wakes every waiter (each withdraws its key and rejects with `ClosedError`),
   * lets in-flight requests settle, and stops the watches of held locks. Held locks are released
   * by core's `close()` before this; whatever is left goes with the lease, revoked next.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.waiters) waiter.wake();
    const settle = Promise.allSettled([...this.inFlight]);
    await Promise.race([settle, sleep(this.conn.options.callTimeoutMs)]);
    for (const hold of [...this.holds]) hold.stop();
  }

  /** A simulated crash: waits end, watches stop, nothing is deleted (the keys expire with the lease). */
  crash(): void {
    this.closed = true;
    for (const waiter of this.waiters) waiter.wake();
    for (const hold of [...this.holds]) hold.stop();
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('etcd backend');
    this.conn.assertOpen();
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    const done = () => this.inFlight.delete(promise);
    promise.then(done, done);
    return promise;
  }

  /** Queues for the lock and resolves once it is held; withdraws (deletes the key) when `signal` aborts first. */
  private async wait(
    prefix: string,
    what: string,
    value: string,
    ttlSeconds: number,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<HeldLock> {
    this.assertOpen();
    throwIfAborted(signal);
    const waiter: Waiter = { wake: noop };
    this.waiters.add(waiter);
    let ticket: Ticket | undefined;
    try {
      let position: Position;
      ({ ticket, position } = await this.enqueueAbortable(prefix, what, value, ttlSeconds, signal));
      queued();
      for (;;) {
        throwIfAborted(signal);
        this.assertOpen();
        if (position.first && !ticket.held.lost.aborted) {
          const hold = this.hold(ticket, position.revision);
          ticket = undefined;
          return hold;
        }
        if (position.predecessor !== undefined && !ticket.held.lost.aborted) {
          const outcome = await this.predecessorGone(
            position.predecessor,
            position.revision + 1n,
            signal,
            waiter,
            ticket.held.lost,
          );
          throwIfAborted(signal);
          this.assertOpen();
          if (outcome === 'deleted' && position.predecessorIsFirst) {
            // The holder went and nobody was before it: we are first. Our key was there at position.revision;
            // the hold watches it from the next revision, so a loss of it since then is still seen.
            this.counters.directHandoffs += 1;
            position = {
              first: true,
              predecessor: undefined,
              predecessorIsFirst: false,
              revision: position.revision,
            };
            continue;
          }
          // The watch stream broke: wait until etcd answers, then read where we stand (never trust a resume).
          if (outcome === 'disconnected') await this.conn.waitReachable(signal);
        }
        const checked = ticket.held.lost.aborted ? undefined : await this.check(ticket, signal);
        this.counters.rechecks += 1;
        if (checked) {
          position = checked;
          continue;
        }
        // Our key is gone while we waited: the lease was lost (etcd unreachable longer than the TTL), or
        // someone deleted it. We never held the lock, so queue again, at the back, on the current lease.
        this.conn.options.logger.warn(
          {
            lock: what,
            key: ticket.key,
          },
          'etcd: a queued lock request lost its key while waiting; queueing again',
        );
        ticket.held.forget();
        ticket = undefined;
        ({ ticket, position } = await this.enqueueAbortable(prefix, what, value, ttlSeconds, signal));
      }
    } catch (error) {
      if (ticket) {
        // Withdraw: the next waiter must not be blocked by our key. Waits at most ~1 s for etcd; the
        // delete goes on in the background when etcd cannot take it now.
        const removal = ticket.held.release().catch(noop);
        await Promise.race([removal, sleep(1000)]);
      }
      if (this.closed && !(error instanceof AbortedError)) throw new ClosedError('etcd backend');
      throw error;
    } finally {
      this.waiters.delete(waiter);
    }
  }

  /** {@link enqueue}, rejecting at once when `signal` aborts; a write still in flight is then undone when it lands. */
  private async enqueueAbortable(
    prefix: string,
    what: string,
    value: string,
    ttlSeconds: number,
    signal: AbortSignal,
  ): Promise<{ ticket: Ticket; position: Position }> {
    const attempt = this.enqueue(prefix, what, value, ttlSeconds, signal);
    try {
      return await abortable(attempt, signal);
    } catch (error) {
      attempt.then(
        ({ ticket }) => ticket.held.release().catch(noop),
        noop, // enqueue removes what it may have written when it fails
      );
      throw error;
    }
  }

  /**
   * Puts a new key for this request on the keeper's lease and reads where it stands, in one
   * transaction: `if key absent: put key; read the first key; read the two newest keys (ours and
   * its predecessor)`, `else: read key; read the first key` (a retry after a write that landed
   * but whose answer was lost). A failed write that may have landed is removed in the background.
   */
  private async enqueue(
    prefix: string,
    what: string,
    value: string,
    ttlSeconds: number,
    signal?: AbortSignal,
  ): Promise<{ ticket: Ticket; position: Position }> {
    const n = this.sequence++;
    const attempted = new Set<string>();
    const client = this.conn.client;
    let held: HeldKey<string> | undefined;
    try {
      return await this.conn
        .call(
          `queue for ${what}`,
          async (o) => {
            const session = await this.engine.session(ttlSeconds, signal);
            const leaseId = session.value;
            const key = `${prefix}${BigInt(leaseId).toString(16)}-${n}`;
            attempted.add(key);
            const first = () => client.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1);
            let response: ITxnResponse;
            try {
              response = await client
                .if(key, 'Create', '==', 0)
                .then(
                  client.put(key).value(value).lease(leaseId),
                  first(),
                  client.getAll().prefix(prefix).sort('Create', 'Descend').limit(2),
                )
                .else(client.get(key), first())
                .options(o)
                .commit();
            } catch (error) {
              // Our lease expired while etcd was unreachable: the engine drops it; the retry gets a new one.
              if (isLeaseNotFound(error)) this.engine.invalidate(session, error as Error);
              throw error;
            }
            const revision = BigInt(response.header.revision);
            const [r0, r1, r2] = response.responses.map((r) => r.response_range?.kvs ?? []);
            let createRevision: bigint;
            let predecessor: string | undefined;
            if (response.succeeded) {
              createRevision = revision;
              predecessor = keyOf(r2?.[1]);
            } else {
              const mine = r0?.[0];
              if (!mine) throw new Error(`etcd: ${key} vanished between the comparison and the read`);
              createRevision = BigInt(mine.create_revision);
            }
            const firstKey = keyOf(r1?.[0]);
            const isFirst = firstKey === key;
            // From here the engine deletes the key if the lease is lost.
            held = this.engine.attach(session, key);
            attempted.delete(key);
            const ticket: Ticket = { prefix, key, session, held, createRevision, what };
            // Not first and the predecessor not known (the retry branch): check() finds it.
            if (!isFirst && predecessor === undefined) return { ticket, position: undefined };
            return {
              ticket,
              position: {
                first: isFirst,
                predecessor,
                predecessorIsFirst: firstKey === predecessor,
                revision,
              },
            };
          },
          undefined,
          signal,
        )
        .then(async ({ ticket, position }) => {
          if (position) return { ticket, position };
          const checked = await this.check(ticket, signal);
          if (!checked)
            throw new BackendUnavailableError('etcd', `queue for ${what}: our key vanished at once`);
          return { ticket, position: checked };
        });
    } catch (error) {
      for (const key of attempted) this.removeInBackground(key, `${what}: undo a failed queue write`);
      held?.release().catch(noop);
      throw this.conn.error(error, `queue for ${what}`);
    }
  }

  /**
   * Reads where `ticket` stands now, in one transaction: `if our key still has its create
   * revision: read the key with the greatest create revision below it, and the first key`.
   * Undefined when our key is gone. While etcd cannot answer it waits (until `signal` aborts)
   * rather than fail a queued request.
   */
  private async check(ticket: Ticket, signal?: AbortSignal): Promise<Position | undefined> {
    const client = this.conn.client;
    const backoff = this.conn.backoff();
    for (;;) {
      try {
        const response = await abortable(
          this.conn.call(
            `check the place of ${ticket.what}`,
            (o) =>
              client
                .if(ticket.key, 'Create', '==', ticket.createRevision.toString())
                .then(
                  client
                    .getAll()
                    .prefix(ticket.prefix)
                    .maxCreateRevision((ticket.createRevision - 1n).toString())
                    .sort('Create', 'Descend')
                    .limit(1),
                  client.getAll().prefix(ticket.prefix).sort('Create', 'Ascend').limit(1),
                )
                .options(o)
                .commit(),
            undefined,
            signal,
          ),
          signal,
        );
        if (!response.succeeded) return undefined;
        const predecessor = keyOf(response.responses[0]?.response_range?.kvs[0]);
        const firstKey = keyOf(response.responses[1]?.response_range?.kvs[0]);
        return {
          first: predecessor === undefined,
          predecessor,
          predecessorIsFirst: predecessor !== undefined && firstKey === predecessor,
          revision: BigInt(response.header.revision),
        };
      } catch (error) {
        if (!(error instanceof BackendUnavailableError) || !signal) throw error;
        await sleep(backoff.next(), signal);
        await this.conn.waitReachable(signal);
      }
    }
  }

  /**
   * Resolves when `key` (our predecessor) is deleted at or after `fromRevision` ('deleted'), when
   * the watch is cancelled by etcd (history compacted) or the waiter is woken ('recheck'), or when
   * the watch stream breaks ('disconnected'). Rejects when `signal` aborts.
   */
  private predecessorGone(
    key: string,
    fromRevision: bigint,
    signal: AbortSignal,
    waiter: Waiter,
    lost: AbortSignal,
  ): Promise<'deleted' | 'recheck' | 'disconnected'> {
    return new Promise((resolve, reject) => {
      const watcher = this.conn.client
        .watch()
        .key(key)
        .startRevision(fromRevision.toString())
        .only('delete')
        .watcher();
      let settled = false;
      const finish = (outcome: 'deleted' | 'recheck' | 'disconnected' | Error) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        lost.removeEventListener('abort', onLost);
        waiter.wake = noop;
        detach(watcher);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const onAbort = () => finish(new AbortedError(signal.reason));
      // Our lease was lost: our key is gone (or going); queue again.
      const onLost = () => finish('recheck');
      watcher.on('delete', () => finish('deleted'));
      // etcd cancels a watch whose start revision was compacted away: read again and watch anew.
      watcher.on('error', () => {
        this.counters.watchCancels += 1;
        finish('recheck');
      });
      watcher.on('disconnected', () => finish('disconnected'));
      waiter.wake = () => finish('recheck');
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      if (lost.aborted) onLost();
      else lost.addEventListener('abort', onLost, { once: true });
      if (this.closed) finish('recheck');
    });
  }

  private hold(ticket: Ticket, revision: bigint): Hold {
    const hold: Hold = new Hold(this.conn, this.counters, ticket, revision + 1n, () =>
      this.holds.delete(hold),
    );
    this.holds.add(hold);
    return hold;
  }

  private removeInBackground(key: string, what: string): void {
    if (!this.conn.isOpen) return;
    this.conn.retryInBackground(
      'removing a lock key',
      () => this.conn.call(what, (o) => this.conn.client.delete().key(key).options(o).exec()),
      { key },
    );
  }
}
