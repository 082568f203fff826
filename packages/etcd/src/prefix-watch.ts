import { ClosedError } from '@rollcall/core';
import { type MirrorFeed, sleep } from '@rollcall/core/driver';
import type { IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import type { EtcdConnection } from './connection.js';

/** How a {@link PrefixWatch} turns etcd keys and values into mirror entries. */
export interface PrefixCodec<V> {
  /** The entry key (instance id, config key) of an etcd key under the prefix; `undefined` ignores the key. */
  id(key: string): string | undefined;
  /**
   * The entry for a stored value; `undefined` when the value is not valid (the entry then counts
   * as absent). May return the entry key to use instead of `id` (same text, e.g. the decoded
   * instance's own `id`, so the mirror does not keep a slice of the etcd key alive).
   * `lease` is the id of the lease the key is attached to (`'0'`: none).
   */
  decode(id: string, value: Buffer, key: string, lease: string): V | undefined;
  /** The entry key to store a decoded value under. Default: the `id` of its etcd key. */
  keyOf?(value: V): string;
}

/**
 * Mirrors every key under one etcd prefix into a core {@link MirrorFeed}; the one machinery behind
 * discovery (a service's instances) and key/value watches (the keys under a prefix).
 *
 * - Reads the prefix at a revision R (one linearizable range) and feeds `replace(list)`, then
 *   watches from R + 1; each etcd revision (one transaction) becomes one `apply(puts, deletes)`.
 * - Connection lost (the watch stream failed): `stale(error)` at once, then, once etcd answers
 *   again, a fresh read (which the mirror turns into a `sync`) and a new watch from its revision.
 *   The etcd3 watcher is dropped rather than trusted to resume, so a watch never goes silent.
 * - History gone (start revision compacted) or watch cancelled by the server: read again and
 *   `replace(list, { forceSync: true })`, then watch from the new revision.
 * - Retries forever with capped backoff until stopped. Events at or below the revision already
 *   mirrored are ignored, so nothing is applied twice.
 */
export class PrefixWatch<V> {
  private watcher: Watcher | undefined;
  /** The etcd revision the feed reflects. */
  private revision = 0n;
  private isStopped = false;
  /** Exists only while waiting between attempts (an AbortSignal costs ~0.8 KB; thousands of watches are idle). */
  private waiting: AbortController | undefined;
  private syncing = false;

  constructor(
    private readonly conn: EtcdConnection,
    /** The etcd key prefix, ending with a separator. */
    readonly prefix: string,
    private readonly codec: PrefixCodec<V>,
    private readonly feed: MirrorFeed<V>,
    /** What is mirrored, for logs (`service 'web'`). */
    private readonly subject: string,
  ) {}

  /** Starts mirroring (asynchronously). */
  start(): this {
    void this.resync(false);
    return this;
  }

  /** The revision mirrored so far (0 before the first read). */
  get mirroredRevision(): bigint {
    return this.revision;
  }

  get stopped(): boolean {
    return this.isStopped;
  }

  /** Stops the watch for good. Idempotent. */
  stop(): void {
    if (this.isStopped) return;
    this.isStopped = true;
    this.waiting?.abort();
    this.detach();
  }

  /**
   * Reads the prefix (retrying until it succeeds or the watch stops), feeds it, and watches from
   * there. `pause`: wait a backoff first (a server that refused the watch would refuse it again now).
   */
  private async resync(forceSync: boolean, pause = false): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    const backoff = this.conn.backoff();
    try {
      if (pause) {
        this.waiting = new AbortController();
        try {
          await sleep(backoff.next(), this.waiting.signal);
        } catch {
          return;
        } finally {
          this.waiting = undefined;
        }
      }
      for (;;) {
        if (this.stopped || !this.conn.isOpen) return;
        try {
          const response = await this.conn.call(`read ${this.subject}`, (o) =>
            this.conn.client.getAll().prefix(this.prefix).options(o).exec(),
          );
          if (this.stopped) return;
          this.conn.watchStats.reads += 1;
          this.revision = BigInt(response.header.revision);
          const entries: [string, V][] = [];
          for (const kv of response.kvs) {
            const entry = this.decodeKv(kv);
            if (entry?.[1] !== undefined) entries.push(entry as [string, V]);
          }
          this.feed.replace(entries, forceSync ? { forceSync: true } : undefined);
          this.attach(this.revision + 1n);
          return;
        } catch (error) {
          if (this.stopped || error instanceof ClosedError) return;
          const mapped = this.conn.error(error, `read ${this.subject}`);
          this.feed.stale(mapped);
          this.conn.options.logger.warn(
            {
              subject: this.subject,
              error: mapped.message,
            },
            'etcd watch cannot read; retrying',
          );
          this.waiting = new AbortController();
          try {
            await sleep(backoff.next(), this.waiting.signal);
            await this.conn.waitReachable(this.waiting.signal);
          } catch {
            return;
          } finally {
            this.waiting = undefined;
          }
        }
      }
    } finally {
      this.syncing = false;
    }
  }

  private attach(fromRevision: bigint): void {
    this.detach();
    const watcher = this.conn.client
      .watch()
      .prefix(this.prefix)
      .startRevision(fromRevision.toString())
      .watcher();
    this.watcher = watcher;
    // etcd3's own 'data' listener only re-emits each event as 'put'/'delete' and recomputes the revision
    // it would resume from (with bignumber.js); this class never lets etcd3 resume a watcher (it drops it on
    // disconnect and starts a new one from its own revision), so that work is skipped: events reach the
    // mirror sooner.
    watcher.removeAllListeners('data');
    watcher.on('data', (response: IWatchResponse) => {
      if (this.watcher === watcher) this.onData(response);
    });
    watcher.on('disconnected', (error) => {
      if (this.watcher !== watcher) return;
      this.detach();
      this.conn.watchStats.disconnects += 1;
      const mapped = this.conn.error(error, `watch ${this.subject}`);
      if (this.stopped || !this.conn.isOpen) return;
      this.feed.stale(mapped);
      this.conn.options.logger.warn(
        {
          subject: this.subject,
          error: mapped.message,
        },
        'etcd watch disconnected; will re-sync',
      );
      void this.resync(false);
    });
    watcher.on('error', (error) => {
      if (this.watcher !== watcher) return;
      this.detach();
      if (this.stopped || !this.conn.isOpen) return;
      const reason = this.conn.redact(error instanceof Error ? error.message : String(error));
      if (!/permission denied|auth/i.test(reason)) {
        // Our start revision was compacted away (etcd 3.4 gives no reason then), or the history
        // may be gone for another server-side reason: start over from a full read, announced as
        // a fresh sync.
        this.conn.watchStats.forcedSyncs += 1;
        this.conn.options.logger.warn(
          {
            subject: this.subject,
            revision: this.revision.toString(),
            reason,
          },
          'etcd watch cancelled by the server (history compacted?); re-syncing',
        );
        void this.resync(true);
        return;
      }
      // Refused by the server's permissions: no history was lost, but nothing arrives either. Stale
      // until a read (after a backoff) succeeds again.
      this.conn.watchStats.cancels += 1;
      const mapped = this.conn.error(error, `watch ${this.subject}`);
      this.feed.stale(mapped);
      this.conn.options.logger.warn(
        {
          subject: this.subject,
          error: mapped.message,
        },
        'etcd watch cancelled by the server; re-syncing',
      );
      void this.resync(false, true);
    });
  }

  /** Drops the current etcd3 watcher (cancelling it on the server if still connected). */
  private detach(): void {
    const watcher = this.watcher;
    if (!watcher) return;
    this.watcher = undefined;
    watcher.removeAllListeners();
    // etcd3 may still emit on it while cancelling; an 'error' with no listener would throw.
    watcher.on('error', () => {});
    watcher.cancel().catch(() => {});
  }

  private onData(response: IWatchResponse): void {
    const events = response.events;
    if (events.length === 0) {
      // A progress notification: every event up to header.revision has been delivered.
      if (!response.created) {
        const progress = BigInt(response.header.revision);
        if (progress > this.revision) this.revision = progress;
        this.feed.confirm();
      }
      return;
    }
    // One response may carry several revisions (a watch catching up): one apply per revision, i.e.
    // per etcd transaction, in order.
    let i = 0;
    while (i < events.length) {
      const revisionText = events[i]!.kv.mod_revision;
      const revision = BigInt(revisionText);
      const fresh = revision > this.revision;
      const puts: [string, V][] = [];
      const deleted: string[] = [];
      for (; i < events.length && events[i]!.kv.mod_revision === revisionText; i++) {
        if (!fresh) continue;
        const event = events[i]!;
        // 'PUT' or 'DELETE' (etcd3's proto enums as strings).
        if ((event.type as string).charCodeAt(0) === 80) {
          const entry = this.decodeKv(event.kv);
          if (!entry) continue;
          if (entry[1] === undefined) deleted.push(entry[0]);
          else puts.push(entry as [string, V]);
        } else {
          const id = this.codec.id(event.kv.key.toString('utf8'));
          if (id !== undefined) deleted.push(id);
        }
      }
      if (!fresh) continue;
      this.revision = revision;
      if (puts.length + deleted.length > 0) this.feed.apply(puts, deleted);
    }
  }

  private decodeKv(kv: IKeyValue): [string, V | undefined] | undefined {
    const key = kv.key.toString('utf8');
    const id = this.codec.id(key);
    if (id === undefined) return undefined;
    const value = this.codec.decode(id, kv.value, key, kv.lease);
    return [value !== undefined && this.codec.keyOf ? this.codec.keyOf(value) : id, value];
  }
}
