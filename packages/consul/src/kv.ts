import { AbortedError, type BackoffOptions, type Logger } from '@rollcall/core';
import {
  Backoff,
  type KvDriver,
  linkSignals,
  type MirrorFeed,
  UpstreamCounter,
  unboundedController,
} from '@rollcall/core/driver';
import type { ConsulApi, KvItem } from './api.js';
import { sleepUntil } from './time.js';

/** Least time between two requests of one prefix watch (a blocking query answers at once on a change). */
export const KV_MIN_INTERVAL_MS = 1000;
/** What the key/value driver needs of the backend options. */
export interface KvDriverOptions {
  /**
   * `wait` of a prefix watch's blocking query: the poll interval, so that a silent partition, or an
   * agent that restarted and would hold a query with an older index for its whole wait, is noticed
   * within about that long.
   */
  waitMs: number;
  backoff: BackoffOptions;
  logger: Logger;
  /** The locks' `lockPrefix`: its lock and election subtrees and fencing-epoch key are reserved. */
  lockPrefix: string;
}

/**
 * The Consul KV keys the lock driver owns under `lockPrefix` (see `locks.ts`): the lock and
 * election subtrees, and the fencing epoch key. The key/value API can never reach them.
 */
export function lockKeys(lockPrefix: string): string[] {
  return [`${lockPrefix}locks/`, `${lockPrefix}elections/`, `${lockPrefix}fencing-epoch`];
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Consul stores values as bytes and sends them base64-encoded in JSON; the client decodes them as
 * UTF-8. An empty value arrives as `null`. Keys ending in `/` are "folders" made by the Consul UI,
 * not Rollcall keys (a Rollcall key never ends with `/`): they are skipped.
 */
function toEntries(items: readonly KvItem[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of items) {
    if (typeof item?.Key !== 'string' || item.Key.endsWith('/')) continue;
    out.set(item.Key, typeof item.Value === 'string' ? item.Value : '');
  }
  return out;
}

/**
 * The Consul key/value driver: `/v1/kv/<key>`, and prefix watches by rate-limited blocking queries.
 * Key `k` is the Consul KV key `k`; the lock keys ({@link lockKeys}) are reserved: core refuses kv
 * keys inside them and leaves them out of wider listings.
 */
export class ConsulKvDriver implements KvDriver {
  readonly backend = 'consul';
  readonly reservedKeys: readonly string[];
  private readonly lifetime = unboundedController();
  private readonly watches = new UpstreamCounter();

  constructor(
    private readonly api: ConsulApi,
    private readonly options: KvDriverOptions,
  ) {
    this.reservedKeys = lockKeys(options.lockPrefix);
  }

  async get(key: string): Promise<string | undefined> {
    const item = await this.api.kvGet(key);
    if (!item) return undefined;
    return typeof item.Value === 'string' ? item.Value : '';
  }

  async getAll(prefix: string): Promise<Map<string, string>> {
    const { data } = await this.api.kvList(prefix);
    return toEntries(data);
  }

  async put(key: string, value: string): Promise<void> {
    await this.api.kvSet(key, value);
  }

  async delete(key: string): Promise<void> {
    await this.api.kvDelete(key);
  }

  watch(prefix: string, feed: MirrorFeed<string>): () => void {
    const stop = new AbortController();
    const linked = linkSignals(stop.signal, this.lifetime.signal);
    void this.follow(prefix, feed, linked.signal).catch((error) =>
      this.options.logger.error({ prefix, error: message(error) }, 'consul key/value watch failed'),
    );
    return this.watches.track(prefix, () => {
      stop.abort();
      linked.dispose();
    });
  }

  /** Number of upstream watches this client runs for `prefix`. */
  watchCount(prefix: string): number {
    return this.watches.count(prefix);
  }

  /**
   * One prefix watch: blocking queries on `?recurse`, at least {@link KV_MIN_INTERVAL_MS} apart
   * (plus a jittered backoff after errors), the index reset to 0 when it goes backwards. Each
   * answer is the full contents of the prefix; core diffs it into `change` events, so writes that
   * land within one interval arrive merged into one `change` (a key put and deleted again within it
   * is not seen at all): Consul keeps no history to replay.
   */
  private async follow(prefix: string, feed: MirrorFeed<string>, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(this.options.backoff);
    let index = 0n;
    let lastStart = Number.NEGATIVE_INFINITY;
    let extraMs = 0;
    let failing = false;
    while (!signal.aborted) {
      try {
        await sleepUntil(lastStart + KV_MIN_INTERVAL_MS + extraMs, signal);
      } catch {
        return;
      }
      lastStart = performance.now();
      try {
        const wasRead = index === 0n;
        const answer = await this.api.kvList(prefix, { index, waitMs: this.options.waitMs, signal });
        index = answer.index === undefined || answer.index < index ? 0n : answer.index;
        // The index-0 read that starts (or restarts) a watch answers at once; the first blocking
        // query follows it without waiting, so that the watch is listening from the start.
        if (wasRead && index > 0n) lastStart = Number.NEGATIVE_INFINITY;
        extraMs = 0;
        backoff.reset();
        if (failing) this.options.logger.info({ prefix }, 'consul key/value watch recovered');
        failing = false;
        feed.replace(toEntries(answer.data));
      } catch (error) {
        if (signal.aborted || error instanceof AbortedError) return;
        if (!failing)
          this.options.logger.warn(
            {
              prefix,
              error: message(error),
            },
            'consul key/value watch failed; retrying',
          );
        failing = true;
        index = 0n;
        extraMs = backoff.next();
        feed.stale(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  close(): void {
    this.lifetime.abort();
  }
}
